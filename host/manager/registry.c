/* The hash -> block registry; see registry.h. */
#include "registry.h"

#include <stdlib.h>

kvbm_status_t kvbm__registry_init(kvbm__registry_t *registry, uint32_t capacity)
{
    *registry = (kvbm__registry_t){0};
    /* Clamped for the largest managers: still at least two slots a block. */
    uint64_t wanted = (uint64_t)KVBM__REGISTRY_SLOTS_PER_BLOCK * capacity;
    uint32_t n_slots = wanted > UINT32_MAX ? UINT32_MAX : (uint32_t)wanted;
    /* calloc: the pages of a large table are mapped zeroed on first touch,
     * so creating a manager costs what it later uses, not its capacity. */
    registry->slots = calloc(n_slots, sizeof(kvbm__registry_slot_t));
    if (registry->slots == NULL)
        return KVBM_ERR_NO_MEMORY;
    registry->n_slots = n_slots;
    return KVBM_OK;
}

void kvbm__registry_fini(kvbm__registry_t *registry)
{
    free(registry->slots);
    *registry = (kvbm__registry_t){0};
}

void kvbm__registry_remove(kvbm__registry_t *registry, kvbm__registry_slot_t *found)
{
    assert(found->first_plus_one != 0);
    /* Backward-shift deletion: an entry further along the run moves back
     * into the hole when its home is not past the hole (its distance is at
     * least the gap), so no probe sequence is broken. */
    uint32_t hole = (uint32_t)(found - registry->slots);
    uint32_t gap = 0;
    for (uint32_t i = kvbm__registry_next(registry, hole); registry->slots[i].first_plus_one != 0;
         i = kvbm__registry_next(registry, i)) {
        gap++;
        if (registry->slots[i].distance >= gap) {
            registry->slots[hole] = registry->slots[i];
            registry->slots[hole].distance -= gap;
            hole = i;
            gap = 0;
        }
    }
    registry->slots[hole].first_plus_one = 0;
    registry->count--;
}
