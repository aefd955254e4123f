/* Miniature simulation of one victim rule; see mini_sim.h. */
#include "mini_sim.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

int64_t kvbm__segment_bonus_stamps(int64_t bonus_capacities, uint32_t capacity)
{
    if (bonus_capacities >= KVBM__SEG_FAR || bonus_capacities <= -KVBM__SEG_FAR)
        return bonus_capacities; /* already beyond any stamp difference */
    return bonus_capacities * (int64_t)capacity;
}

kvbm_status_t kvbm__mini_sim_init(kvbm__mini_sim_t *sim, uint32_t capacity,
                                  const int64_t bonus_capacities[KVBM__SEG_COUNT])
{
    memset(sim, 0, sizeof(*sim));
    if (capacity == 0)
        capacity = 1;
    kvbm_status_t status = kvbm__segments_init(&sim->order, capacity);
    if (status != KVBM_OK)
        return status;
    status = kvbm__u64_map_init(&sim->slot_of, capacity);
    if (status != KVBM_OK)
        goto err_fini_order;
    sim->hash = kvbm__alloc(capacity, sizeof(uint64_t));
    sim->free_slots = kvbm__alloc(capacity, sizeof(uint32_t));
    if (sim->hash == NULL || sim->free_slots == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_fini_map;
    }
    for (uint32_t i = 0; i < capacity; i++)
        sim->free_slots[i] = capacity - 1 - i;
    sim->free_count = capacity;
    sim->capacity = capacity;
    for (int i = 0; i < KVBM__SEG_COUNT; i++)
        sim->bonus[i] = kvbm__segment_bonus_stamps(bonus_capacities[i], capacity);
    return KVBM_OK;

err_fini_map:
    kvbm__free(sim->hash);
    kvbm__free(sim->free_slots);
    kvbm__u64_map_fini(&sim->slot_of);
err_fini_order:
    kvbm__segments_fini(&sim->order);
    memset(sim, 0, sizeof(*sim));
    return status;
}

void kvbm__mini_sim_fini(kvbm__mini_sim_t *sim)
{
    kvbm__u64_map_fini(&sim->slot_of);
    kvbm__segments_fini(&sim->order);
    kvbm__free(sim->hash);
    kvbm__free(sim->free_slots);
    memset(sim, 0, sizeof(*sim));
}

/* The slot holding @p hash, taking one (evicting by the rule when full) if
 * it is not held. */
static uint32_t hold(kvbm__mini_sim_t *sim, uint64_t hash, bool *was_held)
{
    uint64_t *slot = kvbm__u64_map_find(&sim->slot_of, hash);
    if (slot != NULL) {
        *was_held = true;
        kvbm__segments_unlink(&sim->order, (uint32_t)*slot);
        return (uint32_t)*slot;
    }
    *was_held = false;
    if (sim->free_count == 0) {
        uint32_t victim;
        bool popped = kvbm__segments_pop(&sim->order, sim->bonus, &victim);
        assert(popped); /* every used slot is in a list between calls */
        (void)popped;
        kvbm__u64_map_erase(&sim->slot_of, sim->hash[victim]);
        sim->free_slots[sim->free_count++] = victim;
    }
    uint32_t id = sim->free_slots[--sim->free_count];
    sim->hash[id] = hash;
    *kvbm__u64_map_upsert(&sim->slot_of, hash, id) = id;
    return id;
}

void kvbm__mini_sim_access(kvbm__mini_sim_t *sim, uint64_t hash)
{
    bool was_held;
    uint32_t id = hold(sim, hash, &was_held);
    sim->hits += was_held;
    kvbm__segments_push(&sim->order, id, KVBM__SEG_PROBATION);
}

void kvbm__mini_sim_release(kvbm__mini_sim_t *sim, uint64_t hash, uint8_t seg)
{
    bool was_held;
    uint32_t id = hold(sim, hash, &was_held);
    kvbm__segments_push(&sim->order, id, seg);
}
