/*
 * A miniature simulation of one victim rule (Waldspurger, Saemundsson, Ahmad
 * and Park, "Cache Modeling and Optimization using Miniature Simulations",
 * USENIX ATC 2017): a cache of capacity / R entries that sees only the
 * hashes picked by a 1-in-R hash sample, and counts its own hits. Sampling by
 * hash keeps every access of a sampled hash, so the small cache sees the same
 * reuse pattern, scaled down R times; its hit ratio estimates the full
 * cache's under the same rule. The adaptive policy runs one per candidate
 * rule and follows the one with the most recent hits.
 *
 * Model: an access of a hash is a hit when the hash is held, and leaves it
 * held at the back of the probation list (the real cache has it in use);
 * its release puts it at the back of the segment the real policy chose.
 * Victims follow the rule's bonuses scaled to the small capacity. A prefix
 * hit in the real cache also needs the block's ancestors; the model counts
 * blocks alone (docs/POLICIES.md discusses the bias).
 *
 * All memory is allocated by init; access and release are O(1) expected.
 */
#ifndef KVBM_HOST_POLICY_MINI_SIM_H
#define KVBM_HOST_POLICY_MINI_SIM_H

#include <stdint.h>

#include "segments.h"
#include "u64_map.h"

typedef struct kvbm__mini_sim {
    kvbm__segments_t order;  /* over slots 0..capacity-1 */
    kvbm__u64_map_t slot_of; /* hash -> slot */
    uint64_t *hash;          /* capacity; the hash in each used slot */
    uint32_t *free_slots;    /* a stack of unused slots */
    uint32_t free_count;
    uint32_t capacity;
    int64_t bonus[KVBM__SEG_COUNT]; /* in stamps of this small cache */
    uint64_t hits;                  /* since the owner last aged them */
} kvbm__mini_sim_t;

/*
 * A simulation of @p capacity (>= 1) entries for the rule whose bonuses are
 * @p bonus_capacities[seg] times the capacity (KVBM__SEG_FAR multiples are
 * kept as they are). KVBM_ERR_NO_MEMORY leaves nothing to free.
 */
kvbm_status_t kvbm__mini_sim_init(kvbm__mini_sim_t *sim, uint32_t capacity,
                                  const int64_t bonus_capacities[KVBM__SEG_COUNT]);
void kvbm__mini_sim_fini(kvbm__mini_sim_t *sim);
/* An access of a sampled hash: counts a hit if held, and holds it. */
void kvbm__mini_sim_access(kvbm__mini_sim_t *sim, uint64_t hash);
/* The release of a sampled hash into segment @p seg. */
void kvbm__mini_sim_release(kvbm__mini_sim_t *sim, uint64_t hash, uint8_t seg);

/* A bonus in capacities, turned into stamps of a cache of @p capacity. */
int64_t kvbm__segment_bonus_stamps(int64_t bonus_capacities, uint32_t capacity);

#endif /* KVBM_HOST_POLICY_MINI_SIM_H */
