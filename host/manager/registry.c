/* The hash -> block registry; see registry.h. */
#include "registry.h"

#include <stdlib.h>

kvbm_status_t kvbm__registry_init(kvbm__registry_t *registry, uint32_t capacity)
{
    *registry = (kvbm__registry_t){0};
    uint32_t n_slots = 2 * capacity;
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

/* Whether an entry at @p slot, whose home is @p home, may move back to
 * @p hole: its home must not lie cyclically in (hole, slot]. */
static int may_fill_hole(uint32_t hole, uint32_t home, uint32_t slot)
{
    if (hole <= slot)
        return home <= hole || home > slot;
    return home <= hole && home > slot;
}

void kvbm__registry_remove(kvbm__registry_t *registry, kvbm__registry_slot_t *found)
{
    assert(found->first_plus_one != 0);
    /* Backward-shift deletion: pull later entries of the run back into the
     * hole wherever their probe allows, so no probe sequence is broken. */
    uint32_t hole = (uint32_t)(found - registry->slots);
    for (uint32_t i = kvbm__registry_next(registry, hole); registry->slots[i].first_plus_one != 0;
         i = kvbm__registry_next(registry, i)) {
        if (may_fill_hole(hole, kvbm__registry_home(registry, registry->slots[i].spread), i)) {
            registry->slots[hole] = registry->slots[i];
            hole = i;
        }
    }
    registry->slots[hole].first_plus_one = 0;
    registry->count--;
}
