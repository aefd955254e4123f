/*
 * The registry: sequence hash -> the first block registered under it.
 *
 * An open-addressing table with the key inline, sized once at create for
 * the manager's capacity (there can never be more distinct hashes than
 * blocks) at a load factor of at most one half: two slots per block, linear
 * probing, backward-shift deletion (no tombstones, so probes stay short
 * however long a manager runs). Each slot is 16 bytes (the hash, the first
 * block, its distance from its home slot), four to a cache line; a lookup
 * reads one or two lines and never touches block metadata. Why not uthash, the house
 * choice for hash tables: DECISIONS.md (64) has the measurements.
 *
 * Several blocks may carry one hash under the allow duplication policy: the
 * slot names the first, and the blocks chain through a next-duplicate field
 * the manager owns.
 *
 * One hash computation per hash: callers compute the home slot once
 * (kvbm__registry_home), prefetch it a few hashes ahead, and pass it to the
 * lookup; blocks keep their hash's home for the removal. Nothing here allocates after create or can
 * fail. Not thread-safe: the owning manager's lock protects it.
 */
#ifndef KVBM_HOST_REGISTRY_H
#define KVBM_HOST_REGISTRY_H

#include <assert.h>
#include <stdint.h>

#include "core/mix.h"
#include "kvbm/policy.h"
#include "kvbm/status.h"

typedef struct kvbm__registry_slot {
    uint64_t hash;
    uint32_t first_plus_one; /* the first block + 1; 0 marks an empty slot */
    uint32_t distance;       /* slots from its home slot: deletion never rehashes */
} kvbm__registry_slot_t;

/* Slots per block: at most one in three used, so a probe that misses (every
 * new registration) reads about 1.5 slots, and deletion moves few. */
#define KVBM__REGISTRY_SLOTS_PER_BLOCK 3

typedef struct kvbm__registry {
    kvbm__registry_slot_t *slots; /* n_slots; zero pages until first written */
    uint32_t n_slots;             /* KVBM__REGISTRY_SLOTS_PER_BLOCK x capacity (at most 2^32 - 1) */
    uint32_t count;               /* registered hashes */
} kvbm__registry_t;

/* A table for @p capacity distinct hashes (1..KVBM_MANAGER_MAX_BLOCKS).
 * KVBM_ERR_NO_MEMORY leaves @p registry zeroed. */
kvbm_status_t kvbm__registry_init(kvbm__registry_t *registry, uint32_t capacity);
void kvbm__registry_fini(kvbm__registry_t *registry);

/* The home slot of a hash: 32 spread bits (core/mix.h: small dense
 * integers spread evenly too), then a multiply instead of a modulo (the slot
 * count need not be a power of two, so the table costs exactly its slots
 * per block). Callers compute it once per hash and pass it on. */
static inline uint32_t kvbm__registry_home(const kvbm__registry_t *registry, uint64_t hash)
{
    return (uint32_t)(((uint64_t)kvbm__spread32(hash) * registry->n_slots) >> 32);
}

static inline uint32_t kvbm__registry_next(const kvbm__registry_t *registry, uint32_t slot)
{
    return slot + 1 == registry->n_slots ? 0 : slot + 1;
}

/* Starts loading the slot a lookup from @p home reads first. */
static inline void kvbm__registry_prefetch(const kvbm__registry_t *registry, uint32_t home)
{
    __builtin_prefetch(&registry->slots[home]);
}

/* The slot holding @p hash (whose home slot is @p home), or the empty slot
 * that ends its probe; with @p distance_out, how far that slot is from home. */
static inline kvbm__registry_slot_t *kvbm__registry_probe_from(const kvbm__registry_t *registry,
                                                               uint64_t hash, uint32_t home,
                                                               uint32_t *distance_out)
{
    uint32_t i = home;
    uint32_t distance = 0;
    while (registry->slots[i].first_plus_one != 0 && registry->slots[i].hash != hash) {
        i = kvbm__registry_next(registry, i);
        distance++;
    }
    *distance_out = distance;
    return &registry->slots[i];
}

/* The slot holding @p hash, or the empty slot that ends its probe. */
static inline kvbm__registry_slot_t *kvbm__registry_probe(const kvbm__registry_t *registry,
                                                          uint64_t hash, uint32_t home)
{
    uint32_t i = home;
    while (registry->slots[i].first_plus_one != 0 && registry->slots[i].hash != hash)
        i = kvbm__registry_next(registry, i);
    return &registry->slots[i];
}

/* The slot of a hash known to be registered: no slot between its home and
 * its slot is empty (that is what lets probes stop at an empty slot), so
 * comparing the keys alone finds it, an empty slot's stale key never being
 * reached. */
static inline kvbm__registry_slot_t *kvbm__registry_slot_of(const kvbm__registry_t *registry,
                                                            uint64_t hash, uint32_t home)
{
    uint32_t i = home;
    while (registry->slots[i].hash != hash)
        i = kvbm__registry_next(registry, i);
    assert(registry->slots[i].first_plus_one != 0);
    return &registry->slots[i];
}

/* The first block registered under @p hash, or KVBM_BLOCK_NONE. */
static inline uint32_t kvbm__registry_find(const kvbm__registry_t *registry, uint64_t hash,
                                           uint32_t home)
{
    return kvbm__registry_probe(registry, hash, home)->first_plus_one - 1;
}

/* Registers @p hash on @p block_id unless present. Returns the first block
 * already registered under it (nothing added), or KVBM_BLOCK_NONE when it was
 * added. Never fails: the owner registers at most capacity hashes. */
static inline uint32_t kvbm__registry_insert(kvbm__registry_t *registry, uint64_t hash,
                                             uint32_t home, uint32_t block_id)
{
    uint32_t distance;
    kvbm__registry_slot_t *slot = kvbm__registry_probe_from(registry, hash, home, &distance);
    if (slot->first_plus_one != 0)
        return slot->first_plus_one - 1;
    assert(registry->count + 1 < registry->n_slots); /* a probe always ends at an empty slot */
    *slot =
        (kvbm__registry_slot_t){.hash = hash, .first_plus_one = block_id + 1, .distance = distance};
    registry->count++;
    return KVBM_BLOCK_NONE;
}

/* The first block of a slot probe() returned, KVBM_BLOCK_NONE if empty. */
static inline uint32_t kvbm__registry_slot_first(const kvbm__registry_slot_t *slot)
{
    return slot->first_plus_one - 1;
}

/* Points a present hash's slot at another first block (duplicate promotion). */
static inline void kvbm__registry_slot_set_first(kvbm__registry_slot_t *slot, uint32_t block_id)
{
    assert(slot->first_plus_one != 0);
    slot->first_plus_one = block_id + 1;
}

/* Removes the hash in a present slot (from probe()); later slots of its run
 * may move, so no slot pointer survives it. Never fails. Backward-shift
 * deletion: an entry further along the run moves back into the hole when
 * its home is not past the hole (its distance is at least the gap), so no
 * probe sequence is broken. */
static inline void kvbm__registry_remove(kvbm__registry_t *registry, kvbm__registry_slot_t *slot)
{
    assert(slot->first_plus_one != 0);
    kvbm__registry_slot_t *slots = registry->slots;
    uint32_t hole = (uint32_t)(slot - slots);
    uint32_t gap = 0;
    for (uint32_t i = kvbm__registry_next(registry, hole); slots[i].first_plus_one != 0;
         i = kvbm__registry_next(registry, i)) {
        gap++;
        if (slots[i].distance >= gap) {
            slots[hole] = slots[i];
            slots[hole].distance -= gap;
            hole = i;
            gap = 0;
        }
    }
    slots[hole].first_plus_one = 0;
    registry->count--;
}

#endif /* KVBM_HOST_REGISTRY_H */
