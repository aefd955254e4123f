/* Names of the tiers as vLLM spells them (the `medium` of KV events). */
#include "kvbm/event_record.h"

const char *kvbm_medium_name(kvbm_medium_t medium)
{
    switch (medium) {
    case KVBM_MEDIUM_GPU:
        return "GPU";
    case KVBM_MEDIUM_CPU:
        return "CPU";
    case KVBM_MEDIUM_DISK:
        return "DISK";
    }
    return NULL;
}
