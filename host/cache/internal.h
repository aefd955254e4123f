/*
 * Private state of kvbm_cache_t, shared by cache.c (the calls) and
 * batch.c (copies in flight and their completion).
 */
#ifndef KVBM_HOST_CACHE_INTERNAL_H
#define KVBM_HOST_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvbm/cache.h"

typedef enum cache_batch_kind {
    BATCH_OFFLOAD = 0, /* G1 -> G2 on the d2h stream */
    BATCH_ONBOARD = 1, /* G2 -> G1 on the h2d stream */
} cache_batch_kind_t;

/* One batched copy in flight.
 * Offload: entry i (of n) copies G1 block g1_ids[i] into G2 block g2_ids[i]
 * for hashes[i].
 * Onboard: copies G2 block copy_g2[i] into G1 block g1_ids[i] for i < n_copy
 * (the G2 hits not deduplicated by G1), and holds the n matched G2 blocks
 * g2_ids (match order) until processed, then releases them last first. */
typedef struct cache_batch {
    struct cache_batch *next; /* in-flight FIFO, submission order */
    cache_batch_kind_t kind;
    uint64_t seq;
    int refs;                   /* the FIFO's, plus one per waiter; under cache lock */
    kvbm_fence_t *fence;        /* recorded after the copies */
    kvbm_fence_t *engine_fence; /* engine-stream record the copies waited on (rule 1) */
    size_t n;
    size_t n_copy;
    uint32_t *g1_ids;
    uint32_t *g2_ids;
    uint32_t *copy_g2;
    uint64_t *hashes;
    uint64_t *parents;   /* offload: the parent of hashes[i], when has_parent[i] */
    uint8_t *has_parent; /* offload */
    uint8_t *poisoned;   /* offload entry reads a slab whose onboard failed */
} cache_batch_t;

/* Test-only switches that break an ordering rule, so the integrity tests can
 * show they catch the breakage. Never set outside tests. */
enum {
    KVBM__CACHE_UNSAFE_NO_ENGINE_ORDER = 1u << 0,  /* rule 1 */
    KVBM__CACHE_UNSAFE_NO_REUSE_ORDER = 1u << 1,   /* rule 2 */
    KVBM__CACHE_UNSAFE_EARLY_G2_RELEASE = 1u << 2, /* rule 3 */
};

struct kvbm_cache {
    /* Guards everything below except what is marked immutable. Lock order:
     * cache lock, then a manager's lock (the managers never call back). It
     * is never held while waiting for a fence. */
    pthread_mutex_t lock;

    /* Immutable after create. */
    kvbm_backend_t *backend;
    kvbm_layout_t *g1_layout;
    kvbm_layout_t *g2_layout; /* NULL without G2 */
    kvbm_pool_t *g1_pool;
    kvbm_pool_t *g2_pool;
    kvbm_stream_t *d2h;    /* offloads */
    kvbm_stream_t *h2d;    /* onboards */
    kvbm_stream_t *engine; /* borrowed, optional */
    kvbm_manager_t *g1;
    kvbm_manager_t *g2; /* NULL without G2 */
    kvbm_offload_mode_t mode;
    uint32_t g1_blocks;
    size_t block_bytes;
    unsigned unsafe; /* KVBM__CACHE_UNSAFE_* */

    /* Under lock. */
    kvbm_event_batcher_t *events; /* borrowed (config.events_batcher); NULL: no events */
    cache_batch_t *head, *tail;   /* in flight, oldest first */
    uint64_t next_seq;            /* seq of the next batch (starts at 1) */
    uint64_t processed_seq;       /* every batch up to this one is processed */
    cache_batch_t *last_offload;  /* newest offload in flight, or NULL */
    cache_batch_t *last_onboard;  /* newest onboard in flight, or NULL */
    uint64_t *loading_seq;        /* per G1 block: onboard batch writing it, 0 none */
    uint8_t *load_failed;         /* per G1 block: its onboarding failed */
    kvbm_cache_metrics_t metrics;
};

/* batch.c. All with the cache lock held. */
kvbm_status_t kvbm__cache_batch_new(kvbm_cache_t *cache, cache_batch_kind_t kind, size_t n,
                                    cache_batch_t **batch_out);
void kvbm__cache_batch_unref(kvbm_cache_t *cache, cache_batch_t *batch);
/* Enqueues the batch's copies (after the needed stream waits) and appends it
 * to the FIFO. On error nothing is enqueued and the caller still owns it. */
kvbm_status_t kvbm__cache_batch_submit(kvbm_cache_t *cache, cache_batch_t *batch);
/* A failed onboarding leaves garbage in its G1 blocks @p g1_ids: withdraw
 * their hashes, remember the failure for kvbm_cache_check(), and poison the
 * offloads in flight from @p later on that read them, so the garbage never
 * reaches G2. For an onboarding that could not even be issued, @p later is
 * NULL (no offload can have read its blocks since). */
void kvbm__cache_onboard_failed(kvbm_cache_t *cache, const uint32_t *g1_ids, size_t n,
                                cache_batch_t *later);
/* Processes completed batches in order; stops at the first pending one. */
void kvbm__cache_reap(kvbm_cache_t *cache);
/* Waits (dropping the lock meanwhile) until batches up to @p seq are processed. */
void kvbm__cache_wait_processed(kvbm_cache_t *cache, uint64_t seq);

/* Delivers the call's events (if any), then releases the cache lock: the
 * end of every cache call. */
void kvbm__cache_unlock(kvbm_cache_t *cache);

/* Test hook, see KVBM__CACHE_UNSAFE_*. */
void kvbm__cache_set_unsafe(kvbm_cache_t *cache, unsigned flags);

#endif /* KVBM_HOST_CACHE_INTERNAL_H */
