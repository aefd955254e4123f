/**
 * @file cache.h
 * @brief The tiered cache: a device tier (G1), a pinned-host tier (G2) and
 *        an optional disk tier (G3), with eviction-triggered offload and
 *        prefix-hit onboarding.
 *
 * A kvbm_cache_t owns two logical managers (G1 over a device pool, G2 over a
 * pinned host pool, both laid out by one geometry), and two copy streams of
 * a backend (device-to-host for offloads, host-to-device for onboards).
 *
 * - Offload (write-back, the default): when allocating G1 blocks evicts
 *   cached ones, each evicted block whose hash is not in G2 gets a G2 block
 *   and a device-to-host copy of its slab, one batch per call (in parts when
 *   G2 runs out of blocks for it: the call then waits for each part to land
 *   in G2 before the next takes its blocks, so a small G2 caches what
 *   one-by-one offloads would). The G2 block is registered only once its
 *   copy has succeeded; a failed copy returns it
 *   to the free pool and the hash is simply not cached. G2 is inclusive: a
 *   hash already in G2 is not copied again.
 * - Write-through (option): the copy is made when a block is registered, so
 *   a later eviction finds the hash in G2 and costs nothing.
 * - Onboarding: kvbm_cache_match() continues a G1 prefix into G2; the G2
 *   hits get new G1 blocks, a host-to-device copy (one batch) and are
 *   registered in G1 at once, so a concurrent request for the same hashes
 *   finds and shares the onboarding in flight instead of copying again.
 *
 * - Disk tier (G3, optional, below G2; include/kvbm/disk.h): when taking a
 *   G2 block evicts G2's victim, the victim is first written to G3 unless
 *   G3 has its hash (write-back, inclusive); its bytes are copied into a
 *   pinned staging buffer at once and written by the disk engine, and the
 *   G3 block is registered once the write has completed. A match continues
 *   G1 -> G2 -> G3; G3 hits are read from disk into staging buffers (the
 *   call waits for the reads, with the cache lock released), verified (header
 *   and XXH3 checksum), registered in G1 and copied in with a host-to-device
 *   copy covered by the call's fence, like G2 onboarding. A block whose read
 *   fails or does not verify is never registered in G1: it is withdrawn from
 *   G3, counted, and kvbm_cache_check() reports KVBM_ERR_COPY_FAILED for it.
 *
 * Ordering (what peers got wrong):
 * 1. An offload never reads a slab the engine may still be writing: with an
 *    engine stream configured, offload copies wait for the work already
 *    enqueued on it.
 * 2. A slab is never overwritten by its new owner before its offload has
 *    read it: with an engine stream, the cache makes it wait for the offload
 *    copies; the optional @c ready fence of each call completes only after
 *    them, for engines that order their work themselves; with neither, the
 *    call that hands the blocks out waits for those copies itself.
 * 3. A G2 block being copied into or out of is held (never evicted or handed
 *    out) until its copy has completed and been processed.
 *
 * Failures: a failed onboarding copy withdraws the G1 blocks' hashes (no
 * later match returns them) and kvbm_cache_check() reports
 * KVBM_ERR_COPY_FAILED to whoever holds them; a block whose data failed to
 * load is never reported as loaded.
 *
 * Threads: every call is thread-safe. One cache lock serialises the calls
 * (lock order: cache, then a manager); waiting for copies happens outside it.
 * Completed copies are processed at the start of every call, by
 * kvbm_cache_progress(), and by kvbm_cache_sync().
 */
#ifndef KVBM_CACHE_H
#define KVBM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/backend.h"
#include "kvbm/config_init.h"
#include "kvbm/disk.h"
#include "kvbm/export.h"
#include "kvbm/layout.h"
#include "kvbm/manager.h"
#include "kvbm/policy.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_CACHE_CONFIG_VERSION 4u /* 2: g3; 3: G2 admission fields; 4: events_batcher */

typedef struct kvbm_cache kvbm_cache_t;

typedef enum kvbm_offload_mode {
    KVBM_OFFLOAD_WRITE_BACK = 0,    /**< copy to G2 when G1 evicts */
    KVBM_OFFLOAD_WRITE_THROUGH = 1, /**< copy to G2 when G1 registers */
} kvbm_offload_mode_t;

typedef enum kvbm_tier {
    KVBM_TIER_G1 = 1, /**< device */
    KVBM_TIER_G2 = 2, /**< pinned host */
    KVBM_TIER_G3 = 3, /**< disk */
} kvbm_tier_t;

typedef struct kvbm_cache_config {
    uint32_t struct_size; /**< sizeof(kvbm_cache_config_t) */
    uint32_t version;     /**< KVBM_CACHE_CONFIG_VERSION */
    /** Backend for pools, streams and copies; borrowed, must outlive the cache. */
    kvbm_backend_t *backend;
    /** G1 geometry; its num_blocks is the G1 capacity. Copied. */
    kvbm_layout_config_t layout;
    /** G2 capacity in blocks; 0 for no host tier. */
    uint32_t g2_blocks;
    const kvbm_policy_ops_t *g1_policy; /**< NULL: LRU */
    const kvbm_policy_ops_t *g2_policy; /**< NULL: LRU */
    kvbm_policy_config_t policy_config;
    kvbm_offload_mode_t offload_mode;
    /** The engine's compute stream (optional, borrowed): see ordering rules. */
    kvbm_stream_t *engine_stream;
    /**
     * Versions 1-3's per-tier event callback and its context, replaced in
     * version 4 by @c events_batcher (the slots keep their place so older
     * configs keep their layout). Must be NULL: create returns
     * KVBM_ERR_UNSUPPORTED otherwise.
     */
    void *retired_on_events;
    void *retired_events_ctx;
    /**
     * Optional: the engine's own KV memory for G1 (a device pointer with
     * CUDA), laid out by @c layout, at least kvbm_layout_total_bytes() long
     * and aligned to the layout's alignment. The cache then binds blocks to
     * it instead of allocating a pool; the memory stays the caller's and must
     * outlive the cache. NULL: the cache allocates the G1 pool.
     */
    void *g1_memory;
    size_t g1_memory_bytes;
    /**
     * Optional disk tier below G2 (needs g2_blocks > 0); NULL for none. Read
     * at create only (strings included). Its blocks have G1's geometry; its
     * namespace is that geometry, the model id and the TP rank and size.
     */
    const kvbm_disk_config_t *g3;
    /**
     * G2 admission (kvbm/admission.h): offload only evicted blocks whose
     * class comes back often enough. Off by default (every evicted block is
     * offloaded, as the replay contract counts); write-back mode with a G2
     * only (create returns KVBM_ERR_INVALID_ARG with write-through or
     * g2_blocks 0, where the filter would do nothing).
     */
    bool offload_admission;
    /** The filter's keep_ratio; 0 uses its default. Must be 0 without
     *  offload_admission (create returns KVBM_ERR_INVALID_ARG). */
    double admission_keep_ratio;
    /**
     * Optional, borrowed: where the events for routers go
     * (kvbm/event_record.h): a batcher over any sink
     * (kvbm_event_batcher_create), or a publisher's
     * (kvbm_publisher_batcher_create) for vLLM's wire format. The cache
     * adds each call's records to it and flushes it at the end of every
     * call that changed what a tier holds, with the cache lock held (its
     * sink must not call back into the cache): one batch per call, the
     * records of both tiers in the order things happened. Nothing else may
     * use the batcher while the cache lives; it must outlive the cache. G1 records say GPU, G2
     * CPU, G3 DISK. A hash is removed from a tier when the tier no longer has it: a G1 eviction
     * offloaded to G2 is removed(GPU) when evicted, then stored(CPU) once its copy completed (the
     * call that processes the copy); a G2 victim written to G3 is removed(CPU), then
     * stored(DISK) once its write completed. Blocks a G3 finds in its file at create are
     * stored(DISK) before create returns. Stored runs carry the parent, and the tokens, block size
     * and LoRA fields given at registration (kvbm_register_opts_t); a block stored in G2 by an
     * offload carries its parent but no tokens (the cache does not keep them). kvbm_cache_clear()
     * sends AllBlocksCleared. Records carry no block ids.
     */
    kvbm_event_batcher_t *events_batcher;
} kvbm_cache_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_CACHE_CONFIG_DEFAULTS(X, P)                                                           \
    X(P, struct_size, sizeof(kvbm_cache_config_t))                                                 \
    X(P, version, KVBM_CACHE_CONFIG_VERSION)                                                       \
    KVBM_LAYOUT_CONFIG_DEFAULTS(X, P layout.)                                                      \
    KVBM_POLICY_CONFIG_DEFAULTS(X, P policy_config.)

#ifdef __cplusplus
#define KVBM_CACHE_CONFIG_INIT KVBM_CONFIG_INIT_CXX(kvbm_cache_config_t, kvbm_cache_config_init)
#else
#define KVBM_CACHE_CONFIG_INIT                                                                     \
    {                                                                                              \
        KVBM_CACHE_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                        \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_CACHE_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_cache_config_init(kvbm_cache_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_CACHE_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/* X(field, prometheus type, help) */
#define KVBM_CACHE_METRICS_LIST(X)                                                                 \
    X(offloads, counter, "blocks copied G1 to G2 and registered in G2")                            \
    X(offload_bytes, counter, "bytes copied G1 to G2 by successful offloads")                      \
    X(offload_skipped, counter, "evicted blocks not offloaded: no G2 block or no memory for it")   \
    X(offload_refused, counter, "evicted blocks not offloaded: the G2 admission filter refused")   \
    X(onboards, counter, "blocks copied G2 to G1 successfully")                                    \
    X(onboard_bytes, counter, "bytes copied G2 to G1 by successful onboards")                      \
    X(g2_hits, counter, "blocks found in G2 by match (onboardings started)")                       \
    X(failed_copies, counter, "blocks whose offload or onboard copy failed")                       \
    X(copy_batches, counter, "batched copy calls issued")                                          \
    X(copies_in_flight, gauge, "blocks in copies not yet completed and processed")                 \
    X(g3_offloads, counter, "blocks written G2 to G3 and registered in G3")                        \
    X(g3_offload_bytes, counter, "bytes written G2 to G3 by successful offloads")                  \
    X(g3_offload_skipped, counter, "G2 victims not written: G3 had no block to give")              \
    X(g3_hits, counter, "blocks found in G3 by match (onboardings started)")                       \
    X(g3_hits_from_file, counter, "G3 hits on blocks the file held when the cache was created")    \
    X(g3_onboards, counter, "blocks read from G3, verified and copied into G1")                    \
    X(g3_onboard_bytes, counter, "bytes copied G3 to G1 by successful onboards")                   \
    X(g3_failed_loads, counter, "G3 hits whose read failed or did not verify (never served)")

typedef struct kvbm_cache_metrics {
#define KVBM_CACHE_METRICS_FIELD(field, type, help) uint64_t field;
    KVBM_CACHE_METRICS_LIST(KVBM_CACHE_METRICS_FIELD)
#undef KVBM_CACHE_METRICS_FIELD
} kvbm_cache_metrics_t;

/**
 * What a match found: ids[0, g1) were cached in G1, ids[g1, g1 + onboarded)
 * are onboarded, from G2 first, then (the last @c g3 of them) from G3.
 */
typedef struct kvbm_cache_match_result {
    size_t g1;
    size_t onboarded;
    size_t g3; /**< of the onboarded blocks, how many come from G3 */
} kvbm_cache_match_result_t;

/**
 * @brief Create a cache: allocates the G1 device pool, the G2 host pool and
 *        the copy streams from the backend, and opens the G3 file (warm
 *        when it holds blocks of the same namespace and geometry).
 * @param[out] cache_out set only on success; free with kvbm_cache_destroy().
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (also g1_memory too small or
 *         misaligned, or a G3 without G2); KVBM_ERR_VERSION; layout errors;
 *         KVBM_ERR_NO_MEMORY; KVBM_ERR_DEVICE; G3: KVBM_ERR_BUSY (the file
 *         is open elsewhere), KVBM_ERR_IO, KVBM_ERR_UNSUPPORTED (io_uring
 *         asked for and unavailable).
 */
KVBM_API kvbm_status_t kvbm_cache_create(const kvbm_cache_config_t *config,
                                         kvbm_cache_t **cache_out);

/** @brief Wait for every copy and disk write, then free everything (the G3
 *         file stays on disk). NULL is a no-op. */
KVBM_API void kvbm_cache_destroy(kvbm_cache_t *cache);

/**
 * @brief Allocate @p count mutable G1 blocks (all or nothing), offloading the
 *        cached blocks this evicts (write-back).
 * @param[out] ids_out @p count ids, each with one reference.
 * @param[in]  ready   optional caller-owned fence, recorded so that it
 *                     completes once the slabs may be written.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_BLOCKS (nothing changes).
 */
KVBM_API kvbm_status_t kvbm_cache_allocate(kvbm_cache_t *cache, size_t count, uint32_t *ids_out,
                                           kvbm_fence_t *ready);

/**
 * @brief Longest prefix of @p hashes held in G1 then G2, acquired in G1;
 *        the G2 part is onboarded into new G1 blocks.
 * @param[out] ids_out   room for @p count ids.
 * @param[out] result_out how many came from each tier.
 * @param[in]  ready     optional fence completing once the data is in place.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_BLOCKS (G1 could not
 *         take the G2 hits; checked before anything is taken, so nothing
 *         changes).
 */
KVBM_API kvbm_status_t kvbm_cache_match(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                        uint32_t *ids_out, kvbm_cache_match_result_t *result_out,
                                        kvbm_fence_t *ready);

/**
 * @brief A whole request in one call: match (G1, then G2 with onboarding),
 *        then allocate the rest, all in one G1 allocation (the order of the
 *        replay contract). ids_out[result.g1 + result.onboarded, count) are
 *        mutable blocks to fill and register.
 * @return as kvbm_cache_match(); KVBM_ERR_NO_BLOCKS changes nothing.
 */
KVBM_API kvbm_status_t kvbm_cache_acquire(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                          uint32_t *ids_out, kvbm_cache_match_result_t *result_out,
                                          kvbm_fence_t *ready);

/** @brief kvbm_manager_register() on G1; in write-through mode also offloads. */
KVBM_API kvbm_status_t kvbm_cache_register(kvbm_cache_t *cache, const uint32_t *ids,
                                           const uint64_t *hashes, size_t count,
                                           const kvbm_register_opts_t *opts, uint32_t *ids_out);

/** @brief kvbm_manager_release() on G1. */
KVBM_API kvbm_status_t kvbm_cache_release(kvbm_cache_t *cache, const uint32_t *ids, size_t count);

/** @brief kvbm_manager_scan() on G1 (no onboarding). */
KVBM_API kvbm_status_t kvbm_cache_scan(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                       bool touch, uint32_t *ids_out, size_t *n_found_out);

/**
 * @brief Wait until the copies that load the given G1 blocks have completed
 *        and report whether their data is good.
 * @return KVBM_OK; KVBM_ERR_COPY_FAILED (a block's onboarding failed: do not
 *         use its data); KVBM_ERR_OUT_OF_RANGE; KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_cache_check(kvbm_cache_t *cache, const uint32_t *ids, size_t count);

/**
 * @brief Drop every cached block of both tiers, after waiting for the copies
 *        in flight; the event sink gets one AllBlocksCleared event.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_BUSY (a G1 block is still
 *         held: nothing is dropped, though the copies were waited for).
 */
KVBM_API kvbm_status_t kvbm_cache_clear(kvbm_cache_t *cache);

/**
 * @brief Resynchronise routers: one batch of AllBlocksCleared, then a
 *        stored event for every hash each tier holds (kvbm_manager_announce;
 *        parents before children, no tokens). Call it when events were lost
 *        before reaching the wire (kvbm_publisher_resync_needed()). Nothing
 *        changes in the tiers; without an event batcher nothing is sent.
 *        Blocks in copies or disk writes not processed yet are stored later,
 *        as usual.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_MEMORY (nothing sent).
 */
KVBM_API kvbm_status_t kvbm_cache_announce(kvbm_cache_t *cache);

/** @brief Process completed copies without waiting. */
KVBM_API kvbm_status_t kvbm_cache_progress(kvbm_cache_t *cache);

/** @brief Wait for every copy in flight and process it. */
KVBM_API kvbm_status_t kvbm_cache_sync(kvbm_cache_t *cache);

/**
 * @brief Address of G1 block @p id's chunk (layer, outer) in the device pool.
 * @return KVBM_OK; KVBM_ERR_OUT_OF_RANGE; KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_cache_block_address(kvbm_cache_t *cache, uint32_t id, uint32_t layer,
                                                uint32_t outer, void **addr_out);

/** @brief The pool of a tier (G2 is NULL without a host tier; G3 has none). */
KVBM_API kvbm_pool_t *kvbm_cache_pool(kvbm_cache_t *cache, kvbm_tier_t tier);

/** @brief The layout of a tier's pool (G3: NULL). */
KVBM_API const kvbm_layout_t *kvbm_cache_layout(kvbm_cache_t *cache, kvbm_tier_t tier);

/**
 * @brief The manager of a tier, for counts, metrics, contains() and
 *        match_length() (NULL for a tier the cache does not have). Calls that change
 *        a tier must go through the cache, which keeps both tiers and the
 *        copies consistent.
 */
KVBM_API kvbm_manager_t *kvbm_cache_manager(kvbm_cache_t *cache, kvbm_tier_t tier);

/** @brief Snapshot of the cache's counters. */
KVBM_API void kvbm_cache_metrics(kvbm_cache_t *cache, kvbm_cache_metrics_t *metrics_out);

/**
 * @brief Snapshot of the disk tier's store metrics.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, or no G3).
 */
KVBM_API kvbm_status_t kvbm_cache_disk_metrics(kvbm_cache_t *cache,
                                               kvbm_disk_metrics_t *metrics_out);

/**
 * @brief The disk tier's I/O engine, chosen when the cache was created:
 *        "io_uring+direct", "threads+buffered", ...; NULL without G3.
 */
KVBM_API const char *kvbm_cache_g3_engine(const kvbm_cache_t *cache);

/**
 * @brief Write the cache's metrics, then every tier's manager metrics
 *        (labelled "g1", "g2", "g3"), then the disk tier's, as Prometheus text.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_IO.
 */
KVBM_API kvbm_status_t kvbm_cache_metrics_prometheus(kvbm_cache_t *cache, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_CACHE_H */
