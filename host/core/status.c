/* Status strings, generated from the one list in status.h. */
#include "kvbm/status.h"

const char *kvbm_status_str(kvbm_status_t status)
{
    switch (status) {
#define KVBM_STATUS_STR_CASE(name, value, text)                                                    \
    case name:                                                                                     \
        return text;
        KVBM_STATUS_LIST(KVBM_STATUS_STR_CASE)
#undef KVBM_STATUS_STR_CASE
    }
    return "unknown status";
}

const char *kvbm_status_name(kvbm_status_t status)
{
    switch (status) {
#define KVBM_STATUS_NAME_CASE(name, value, text)                                                   \
    case name:                                                                                     \
        return #name;
        KVBM_STATUS_LIST(KVBM_STATUS_NAME_CASE)
#undef KVBM_STATUS_NAME_CASE
    }
    return "KVBM_UNKNOWN";
}
