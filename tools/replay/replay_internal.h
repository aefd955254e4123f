/* Private state of a replay, shared by replay.c (logical mode, two managers)
 * and replay_data.c (data mode, the tiered cache with real copies). */
#ifndef KVBM_REPLAY_INTERNAL_H
#define KVBM_REPLAY_INTERNAL_H

#include <time.h>

#include "replay.h"

struct replay {
    /* Logical mode with an event sink: the managers' records, one batch per
     * request (as the cache batches per call in data mode). */
    kvbm_event_batcher_t *events;
    kvbm_manager_t *g1;
    kvbm_manager_t *g2; /* NULL without a host tier */
    uint32_t g1_blocks;
    replay_counts_t counts;
    /* Data mode only. */
    kvbm_backend_t *backend;
    kvbm_cache_t *cache;
    kvbm_fence_t *ready;
    bool verify;
    /* Scratch, sized for the largest request so far. */
    size_t scratch_capacity;
    uint32_t *g1_ids;      /* matched then registered, in request order */
    uint32_t *fresh_ids;   /* newly allocated G1 blocks */
    uint32_t *g2_ids;      /* matched G2 blocks */
    uint32_t *release_ids; /* reversed order for release */
    kvbm_evicted_t *evicted;
};

double replay__now_ns(void);
kvbm_status_t replay__ensure_scratch(replay_t *replay, size_t count);

kvbm_status_t replay__data_open(replay_t *replay, const replay_config_t *config);
void replay__data_close(replay_t *replay);
kvbm_status_t replay__data_request(replay_t *replay, const uint64_t *hashes, size_t count);
/* Fills in the counts the cache and its managers keep. */
void replay__data_counts(const replay_t *replay, replay_counts_t *counts);

#endif /* KVBM_REPLAY_INTERNAL_H */
