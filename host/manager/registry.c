/* The hash -> block registry; see registry.h. */
#include "registry.h"

#include <stdlib.h>

#include "core/alloc.h"

kvbm_status_t kvbm__registry_init(kvbm__registry_t *registry, uint32_t capacity)
{
    *registry = (kvbm__registry_t){0};
    /* Clamped for the largest managers: still at least two slots a block. */
    uint64_t wanted = (uint64_t)KVBM__REGISTRY_SLOTS_PER_BLOCK * capacity;
    uint32_t n_slots = wanted > UINT32_MAX ? UINT32_MAX : (uint32_t)wanted;
    /* calloc: the pages of a large table are mapped zeroed on first touch,
     * so creating a manager costs what it later uses, not its capacity. */
    registry->slots = kvbm__calloc(n_slots, sizeof(kvbm__registry_slot_t));
    if (registry->slots == NULL)
        return KVBM_ERR_NO_MEMORY;
    registry->n_slots = n_slots;
    return KVBM_OK;
}

void kvbm__registry_fini(kvbm__registry_t *registry)
{
    kvbm__free(registry->slots);
    *registry = (kvbm__registry_t){0};
}
