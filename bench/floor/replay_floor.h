/*
 * The replay floor: the replay contract (shared/REPLAY.md), LRU, G1 only,
 * written as plainly and fast as C allows, as the reference kvbm's replay
 * core is measured against in the same run (bench/bench_replay_floor.c).
 *
 * Not kvbm: no lock, no validation, no policy interface, no events. One
 * allocation at create; one open-addressing table with the key inline
 * (linear probing, backward-shift deletion, no tombstones), one 24-byte
 * record per block carrying its LRU links, and a free stack threaded
 * through the records above a never-used watermark. Single thread.
 */
#ifndef KVBM_BENCH_REPLAY_FLOOR_H
#define KVBM_BENCH_REPLAY_FLOOR_H

#include <stddef.h>
#include <stdint.h>

/* The contract's counts for G1 only (the G2 counts are all zero). */
typedef struct floor_counts {
    uint64_t requests;
    uint64_t blocks;
    uint64_t g1_hits;
    uint64_t misses;
    uint64_t dedup;
    uint64_t oversize;
    uint64_t g1_evictions;
} floor_counts_t;

typedef struct replay_floor replay_floor_t;

/* A floor for @p g1_blocks (>= 1) blocks; NULL when out of memory. */
replay_floor_t *replay_floor_create(uint32_t g1_blocks);
void replay_floor_destroy(replay_floor_t *floor);

/* The contract's steps 1-7 for one request of @p count hashes. */
void replay_floor_request(replay_floor_t *floor, const uint64_t *hashes, size_t count);

const floor_counts_t *replay_floor_counts(const replay_floor_t *floor);

#endif /* KVBM_BENCH_REPLAY_FLOOR_H */
