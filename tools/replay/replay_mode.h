/*
 * A replay mode: how the contract's steps 2-7 of one request run. replay.c
 * (the front) picks one at create and does what every mode shares (request
 * and block counts, the oversize rule of step 1, timing); each mode lives in
 * its own file and fills this table:
 *   replay_logical.c  logical managers (G1, G2, G3), no bytes moved;
 *   replay_data.c     the tiered cache with real copies on a memory backend
 *                     (and a disk tier in a file).
 * Nothing in a mode calls back into replay.c.
 */
#ifndef KVBM_REPLAY_MODE_H
#define KVBM_REPLAY_MODE_H

#include "replay.h"

typedef struct replay_mode_ops {
    /* Builds the mode's state for @p config; sets *state_out only on success. */
    kvbm_status_t (*open)(const replay_config_t *config, void **state_out);
    void (*close)(void *state);
    /* Steps 2-7 for a request of 1..g1_blocks hashes, adding what happened
     * to the hit, miss, dedup, offload and eviction counts it keeps itself. */
    kvbm_status_t (*request)(void *state, const uint64_t *hashes, size_t count,
                             replay_counts_t *counts);
    /* Fills in the counts the mode keeps elsewhere (data mode: the cache's
     * metrics); may leave @p counts as it is. */
    void (*counts)(const void *state, replay_counts_t *counts);
    /* "logical", or the memory backend's name. */
    const char *(*backend_name)(const void *state);
    /* The manager of a tier (GPU: G1, CPU: G2, DISK: G3); NULL without that tier. */
    kvbm_manager_t *(*manager)(const void *state, kvbm_medium_t medium);
    /* Resynchronises routers: AllBlocksCleared, then every tier's hashes,
     * as one batch of the events batcher (nothing without one). */
    kvbm_status_t (*announce)(void *state);
    /* The disk engine of a G3 with a file ("io_uring+direct", ...), else NULL. */
    const char *(*g3_engine)(const void *state);
} replay_mode_ops_t;

extern const replay_mode_ops_t replay_logical_mode;
extern const replay_mode_ops_t replay_data_mode;

/* Per-request id arrays a mode reuses, grown for the largest request so far. */
typedef struct replay_scratch {
    size_t capacity;
    uint32_t *g1_ids;      /* matched then registered, in request order */
    uint32_t *fresh_ids;   /* newly allocated G1 blocks */
    uint32_t *g2_ids;      /* matched G2 blocks */
    uint32_t *g3_ids;      /* matched G3 blocks */
    uint32_t *release_ids; /* reversed order for release */
    kvbm_evicted_t *evicted;
} replay_scratch_t;

/* Room for @p count entries in every array (replay_scratch.c). */
kvbm_status_t replay_scratch_reserve(replay_scratch_t *scratch, size_t count);
void replay_scratch_free(replay_scratch_t *scratch);

#endif /* KVBM_REPLAY_MODE_H */
