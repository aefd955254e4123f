/*
 * Private state of kvbm_cache_t, shared by cache.c (the calls), batch.c
 * (copies in flight and their completion) and g3.c (the disk tier: writes
 * of G2 victims, verified reads into G1, staging buffers).
 */
#ifndef KVBM_HOST_CACHE_INTERNAL_H
#define KVBM_HOST_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "disk/tier.h"
#include "kvbm/admission.h"
#include "kvbm/cache.h"

typedef enum cache_batch_kind {
    BATCH_OFFLOAD = 0,    /* G1 -> G2 on the d2h stream */
    BATCH_ONBOARD = 1,    /* G2 -> G1 on the h2d stream */
    BATCH_G3_WRITE = 2,   /* G2 victims -> G3: staging buffers written by the disk engine */
    BATCH_G3_ONBOARD = 3, /* G3 -> G1: verified staging buffers copied on the h2d stream */
} cache_batch_kind_t;

/* One batched copy in flight.
 * Offload: entry i (of n) copies G1 block g1_ids[i] into G2 block g2_ids[i]
 * for hashes[i].
 * Onboard: copies G2 block copy_g2[i] into G1 block g1_ids[i] for i < n_copy
 * (the G2 hits not deduplicated by G1), and holds the n matched G2 blocks
 * g2_ids (match order) until processed, then releases them last first.
 * G3 write: entry i (of n) writes staging[i] (a G2 victim's bytes) into G3
 * block g3_ids[i] for hashes[i], through the disk batch `disk`; completes
 * when the disk batch does, not through a fence.
 * G3 onboard: copies staging slot copy_staging[i] (read from disk and
 * verified) into G1 block g1_ids[i] for i < n_copy; holds the n_staging
 * staging slots of its reads, and the n_g3 G3 blocks g3_ids (already in
 * release order), until processed. */
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
    uint64_t *parents;   /* offload, G3 write: the parent of hashes[i], when has_parent[i] */
    uint8_t *has_parent; /* offload, G3 write */
    uint8_t *poisoned;   /* offload entry reads a slab whose onboard failed */
    /* G3 kinds only (NULL otherwise). */
    uint32_t *g3_ids;
    size_t n_g3;
    uint32_t *staging;
    size_t n_staging;
    uint32_t *copy_staging;
    kvbm__disk_batch_t *disk; /* G3 write */
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
    kvbm_manager_t *g2;           /* NULL without G2 */
    bool g2_release_ordered;      /* set at create: G2's policy never evicts a block released
                                   * after an older inactive one (lru, lineage, priority) */
    kvbm_admission_t *admission;  /* NULL unless G2 admission is on; under lock */
    uint32_t request_blocks;      /* under lock: the length of the request being acquired, a
                                   * registration hint (G3 onboarding may drop the lock:
                                   * then it may be a later call's; only hints read it) */
    kvbm__disk_tier_t *g3;        /* NULL without G3 */
    kvbm_manager_t *g3_manager;   /* the tier's; NULL without G3 */
    kvbm__disk_store_t *g3_store; /* the tier's; NULL without G3 */
    kvbm_pool_t *staging_pool;    /* pinned host, staging_blocks slots of slot_bytes */
    unsigned char *staging_base;
    size_t slot_bytes;
    uint32_t staging_blocks;
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
    uint32_t *staging_free;       /* G3: free staging slots (a stack) */
    uint32_t n_staging_free;
    pthread_cond_t staging_freed; /* G3, with lock: signalled when slots are freed */
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
/* Tells the G2 admission filter (if any) that ids[0..count) were registered
 * in G1 (ids_out[i] != ids[i]: a dedup, a use of the block that held the
 * hash), at positions first_position.. of a request of request_blocks (0:
 * unknown). With the lock held. */
void kvbm__cache_admission_registered(kvbm_cache_t *cache, const uint32_t *ids,
                                      const uint64_t *hashes, const uint32_t *ids_out, size_t count,
                                      uint32_t request_blocks, uint32_t first_position);
void kvbm__cache_reap(kvbm_cache_t *cache);
/* Waits (dropping the lock meanwhile) until batches up to @p seq are processed. */
void kvbm__cache_wait_processed(kvbm_cache_t *cache, uint64_t seq);

/* Delivers the call's events (if any), then releases the cache lock: the
 * end of every cache call. */
void kvbm__cache_unlock(kvbm_cache_t *cache);

/* Whether a batch has completed (KVBM_ERR_BUSY while not), and how: its
 * fence, or for a G3 write its disk batch (always KVBM_OK once done). */
kvbm_status_t kvbm__cache_batch_query(const cache_batch_t *batch);

/* The offloads one call gathers: the G1 -> G2 copies, and the G3 writes of
 * the G2 victims that taking G2 blocks evicts. Each batch is made on first
 * use and issued when the call ends, or earlier in parts (see cache.c). */
typedef struct cache_offload {
    size_t capacity;          /* entries a copies batch is made for */
    cache_batch_t *copies;    /* G1 -> G2 being gathered, or NULL */
    cache_batch_t *g3_writes; /* G2 victims -> G3 being gathered, or NULL */
    bool copies_issued;       /* this call has issued copies already */
    bool writes_issued;       /* this call has issued G3 writes already */
} cache_offload_t;

/* g3.c. All with the cache lock held; the ones that wait drop it meanwhile. */
kvbm_status_t kvbm__cache_g3_open(kvbm_cache_t *cache, const kvbm_cache_config_t *config);
void kvbm__cache_g3_close(kvbm_cache_t *cache);
/*
 * A G2 victim (@p victim: the G2 block, about to be reused, its hash and
 * parent) goes to G3 unless G3 has the hash: its bytes are copied to a
 * staging buffer now and queued in off->g3_writes, issued by
 * kvbm__cache_g3_flush(); its parent goes with it to G3's stored event.
 */
void kvbm__cache_g3_offload(kvbm_cache_t *cache, const kvbm_evicted_t *victim,
                            cache_offload_t *off);
/* Issues the G3 writes gathered (nothing when there are none). */
void kvbm__cache_g3_flush(kvbm_cache_t *cache, cache_offload_t *off);
/*
 * Onboards @p k3 G3 hits (held blocks g3_ids, the fresh G1 blocks `fresh`)
 * for hashes[start, start + k3): reads, verifies, registers in G1, copies in.
 * ids_out[start + j] gets each block's G1 id. *last_out is the newest onboard
 * batch issued, with a reference the caller drops (NULL if none).
 */
void kvbm__cache_g3_onboard(kvbm_cache_t *cache, const uint64_t *hashes, size_t start, size_t k3,
                            const uint32_t *g3_ids, const uint32_t *fresh, uint32_t *ids_out,
                            cache_batch_t **last_out);
/* kvbm_cache_clear's part (nothing active, nothing in flight): every G3
 * block is dropped and leaves the file's index, so a restart does not bring
 * back what was cleared. KVBM_ERR_NO_MEMORY (nothing dropped). */
kvbm_status_t kvbm__cache_g3_clear(kvbm_cache_t *cache);
/* reap's processing of the G3 kinds. */
void kvbm__cache_g3_process_write(kvbm_cache_t *cache, cache_batch_t *batch);
void kvbm__cache_g3_process_onboard(kvbm_cache_t *cache, cache_batch_t *batch,
                                    kvbm_status_t result);
/* The G3 onboard's host-to-device copy (batch.c's submit). */
kvbm_status_t kvbm__cache_g3_copy_in(kvbm_cache_t *cache, cache_batch_t *batch);

/* Test hook, see KVBM__CACHE_UNSAFE_*. */
void kvbm__cache_set_unsafe(kvbm_cache_t *cache, unsigned flags);

#endif /* KVBM_HOST_CACHE_INTERNAL_H */
