/*
 * The sequential replay model of shared/REPLAY.md, driving real kvbm
 * managers through the public API: G1 (device tier, C1 blocks) and an
 * optional G2 (host tier, C2 blocks). One request at a time.
 */
#ifndef KVBM_REPLAY_REPLAY_H
#define KVBM_REPLAY_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/kvbm.h"

/* X(field): the counts of the contract, in output order. */
#define REPLAY_COUNTS_LIST(X)                                                                      \
    X(requests)                                                                                    \
    X(blocks)                                                                                      \
    X(g1_hits)                                                                                     \
    X(g2_hits)                                                                                     \
    X(misses)                                                                                      \
    X(offloads)                                                                                    \
    X(onboards)                                                                                    \
    X(offload_skipped)                                                                             \
    X(offload_refused)                                                                             \
    X(dedup)                                                                                       \
    X(oversize)                                                                                    \
    X(g1_evictions)                                                                                \
    X(g2_evictions)

/* X(field): the counts a G3 adds (printed only with a G3). */
#define REPLAY_G3_COUNTS_LIST(X)                                                                   \
    X(g3_hits)                                                                                     \
    X(g3_offloads)                                                                                 \
    X(g3_offload_skipped)                                                                          \
    X(g3_evictions)                                                                                \
    X(g3_hits_from_file)

typedef struct replay_counts {
#define REPLAY_COUNT_FIELD(name) uint64_t name;
    REPLAY_COUNTS_LIST(REPLAY_COUNT_FIELD)
    REPLAY_G3_COUNTS_LIST(REPLAY_COUNT_FIELD)
#undef REPLAY_COUNT_FIELD
    double core_ns;           /* time inside the replay steps (library calls, copy waits) */
    uint64_t bytes_moved;     /* data mode: bytes copied G1->G2 and G2->G1 */
    uint64_t wrong_blocks;    /* data mode with verify: served blocks with the wrong stamp */
    uint64_t verified_blocks; /* data mode with verify: served blocks checked */
    uint64_t failed_copies;   /* data mode */
} replay_counts_t;

typedef struct replay_config {
    uint32_t g1_blocks;
    uint32_t g2_blocks; /* 0: no G2 tier */
    uint32_t g3_blocks; /* 0: no G3 tier; needs a G2 tier */
    const kvbm_policy_ops_t *g1_policy;
    const kvbm_policy_ops_t *g2_policy;
    const kvbm_policy_ops_t *g3_policy;
    kvbm_policy_config_t policy_config; /* tuning, and the oracle for belady */
    /* Data mode: run G1 and G2 through the tiered cache with real copies on
     * a memory backend (needs g2_blocks > 0). */
    bool data_mode;
    kvbm_backend_kind_t backend_kind;
    uint32_t block_kib; /* bytes per block / 1024 in data mode */
    bool verify;        /* fill blocks with their hash's pattern and check what is served */
    /* Data mode with G3: the tier's file is <g3_dir>/kvbm-replay-g3.bin. Without
     * g3_keep it starts empty and is removed at the end; with it, a file left
     * by an earlier run is reopened (warm) and kept. */
    const char *g3_dir;
    bool g3_keep;
    uint64_t g3_min_free_bytes;
    /* G2 admission (kvbm/admission.h): offload only evicted blocks judged
     * likely to come back. Off by default: the contract offloads them all. */
    bool g2_admission;
    double admission_keep_ratio; /* 0: the filter's default */
    /* Registration hints (request length, position) to the G1 policy and
     * the filter; on by default, as an engine would give them. */
    bool no_hints;
    /* Optional, borrowed: the batcher the tiers' KV events go to (G1 is
     * GPU, G2 CPU, G3 DISK), e.g. a publisher's
     * (kvbm_publisher_batcher_create). The replay flushes it once per
     * request in logical mode; the cache, once per call in data mode. */
    kvbm_event_batcher_t *events;
    /* Optional, borrowed: the publisher behind events. When it reports a
     * dropped batch (kvbm_publisher_resync_needed), the replay resynchronises
     * routers after the request (replay_announce). */
    kvbm_publisher_t *publisher;
} replay_config_t;

/* Tokens per block of the traces (Mooncake's 512), given to routers as the
 * block size of stored events (the traces carry no token ids). */
#define REPLAY_BLOCK_TOKENS 512

typedef struct replay replay_t;

kvbm_status_t replay_create(const replay_config_t *config, replay_t **replay_out);

/* One batch of AllBlocksCleared and a stored event for every hash each tier
 * holds (kvbm_cache_announce, or the same over the logical managers). */
kvbm_status_t replay_announce(replay_t *replay);
void replay_destroy(replay_t *replay);

/* Replays one request of @p count block hashes (the contract's steps 1-7). */
kvbm_status_t replay_request(replay_t *replay, const uint64_t *hashes, size_t count);

/* The counts so far. */
void replay_get_counts(const replay_t *replay, replay_counts_t *counts_out);

/* The manager of a tier (G1: GPU, G2: CPU); NULL without that tier. */
kvbm_manager_t *replay_manager(const replay_t *replay, kvbm_medium_t medium);

/* "logical", or the memory backend's name in data mode. */
const char *replay_backend_name(const replay_t *replay);

/* Data mode with G3: the disk engine chosen ("io_uring+direct", ...), else NULL. */
const char *replay_g3_engine(const replay_t *replay);

/* hit_rate = (g1_hits + g2_hits + g3_hits) / blocks, 0 when no blocks. */
double replay_hit_rate(const replay_counts_t *counts);

/* offloads / g2_hits: blocks copied to G2 per block served from it (0 when
 * there was no G2 hit); times the block size, the offload bytes per G2 hit. */
double replay_offloads_per_g2_hit(const replay_counts_t *counts);

#endif /* KVBM_REPLAY_REPLAY_H */
