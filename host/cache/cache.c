/*
 * The tiered cache's calls; see include/kvbm/cache.h for the behaviour and
 * batch.c for the copies in flight.
 *
 * Locking: cache->lock for the whole of each call (never while waiting for
 * a fence); inside it the G1 and G2 managers take their own locks.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/config.h"
#include "core/error.h"
#include "core/event_batch.h"
#include "core/prometheus.h"
#include "internal.h"

#define SCRATCH_ON_STACK 64

static kvbm_status_t create_manager(kvbm_cache_t *cache, const kvbm_cache_config_t *config,
                                    kvbm_tier_t tier, uint32_t blocks, kvbm_manager_t **out)
{
    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = blocks;
    mc.duplication = KVBM_DUPLICATION_REJECT;
    mc.policy = tier == KVBM_TIER_G1 ? config->g1_policy : config->g2_policy;
    mc.policy_config = config->policy_config;
    mc.name = tier == KVBM_TIER_G1 ? "g1" : "g2";
    mc.medium = tier == KVBM_TIER_G1 ? KVBM_MEDIUM_GPU : KVBM_MEDIUM_CPU;
    if (cache->events != NULL) { /* the managers' records join the call's batch */
        mc.on_events = kvbm_event_batcher_sink;
        mc.events_ctx = cache->events;
    }
    return kvbm_manager_create(&mc, out);
}

/* G1's pool: the engine's own KV memory when given (bound, not allocated),
 * else a device pool of the layout's size. */
static kvbm_status_t g1_pool_create(kvbm_cache_t *cache, const kvbm_cache_config_t *config)
{
    size_t g1_bytes = kvbm_layout_total_bytes(cache->g1_layout);
    if (config->g1_memory == NULL)
        return kvbm_pool_create(cache->backend, KVBM_MEM_DEVICE, g1_bytes, &cache->g1_pool);
    if (config->g1_memory_bytes < g1_bytes ||
        (uintptr_t)config->g1_memory % config->layout.alignment != 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "cache config: g1_memory holds %zu bytes at %p, the layout needs %zu "
                          "bytes aligned to %zu",
                          config->g1_memory_bytes, config->g1_memory, g1_bytes,
                          config->layout.alignment);
    return kvbm_pool_wrap(cache->backend, KVBM_MEM_DEVICE, config->g1_memory,
                          config->g1_memory_bytes, &cache->g1_pool);
}

/* G2: the same geometry over g2_blocks of pinned host memory, and its
 * manager. On error nothing of G2 is left. */
static kvbm_status_t g2_tier_create(kvbm_cache_t *cache, const kvbm_cache_config_t *config)
{
    kvbm_layout_config_t g2_config = config->layout;
    g2_config.num_blocks = config->g2_blocks;
    kvbm_status_t status = kvbm_layout_create(&g2_config, &cache->g2_layout);
    if (status != KVBM_OK)
        return status;
    status = kvbm_pool_create(cache->backend, KVBM_MEM_HOST,
                              kvbm_layout_total_bytes(cache->g2_layout), &cache->g2_pool);
    if (status != KVBM_OK)
        goto err_destroy_layout;
    status = create_manager(cache, config, KVBM_TIER_G2, config->g2_blocks, &cache->g2);
    if (status != KVBM_OK)
        goto err_destroy_pool;
    /* These policies evict inactive blocks in release order (lineage and
     * priority among blocks of one priority and no parent, as G2's are: the
     * parents of offloads are for their events only), so the blocks an
     * offload call has pending are never the victim the contract's
     * one-by-one offloads would have chosen (take_g2_block). */
    const kvbm_policy_ops_t *policy = config->g2_policy;
    cache->g2_release_ordered = policy == NULL || policy == kvbm_policy_lru() ||
                                policy == kvbm_policy_lineage() || policy == kvbm_policy_priority();
    return KVBM_OK;

err_destroy_pool:
    kvbm_pool_destroy(cache->g2_pool);
    cache->g2_pool = NULL;
err_destroy_layout:
    kvbm_layout_destroy(cache->g2_layout);
    cache->g2_layout = NULL;
    return status;
}

static void g2_tier_destroy(kvbm_cache_t *cache)
{
    kvbm_manager_destroy(cache->g2);
    kvbm_pool_destroy(cache->g2_pool);
    kvbm_layout_destroy(cache->g2_layout);
}

/* sizeof(kvbm_cache_config_t) at each published version (core/config.h):
 * version 2 appended g3. */
#define CACHE_CONFIG_V1_SIZE 176u
_Static_assert(offsetof(kvbm_cache_config_t, g3) == CACHE_CONFIG_V1_SIZE,
               "version 2 fields start at version 1's size");
#define CACHE_CONFIG_V2_SIZE 184u
_Static_assert(offsetof(kvbm_cache_config_t, offload_admission) == CACHE_CONFIG_V2_SIZE,
               "version 3 fields (G2 admission) start at version 2's size");
#define CACHE_CONFIG_V3_SIZE 200u
_Static_assert(offsetof(kvbm_cache_config_t, events_batcher) == CACHE_CONFIG_V3_SIZE,
               "version 4 fields (the event batcher) start at version 3's size");
static const size_t cache_config_sizes[] = {CACHE_CONFIG_V1_SIZE, CACHE_CONFIG_V2_SIZE,
                                            CACHE_CONFIG_V3_SIZE, sizeof(kvbm_cache_config_t)};

/* The G2 admission filter, when the config asks for it (write-back with a
 * G2 tier); cache->admission stays NULL otherwise. */
static kvbm_status_t admission_create(kvbm_cache_t *cache, const kvbm_cache_config_t *config)
{
    if (!config->offload_admission || config->g2_blocks == 0)
        return KVBM_OK;
    kvbm_admission_config_t ac = KVBM_ADMISSION_CONFIG_INIT;
    ac.g1_blocks = cache->g1_blocks;
    ac.g2_blocks = config->g2_blocks;
    if (config->admission_keep_ratio != 0.0)
        ac.keep_ratio = config->admission_keep_ratio;
    return kvbm_admission_create(&ac, &cache->admission);
}

/* What create checks beyond the importer: a backend, a known offload mode,
 * G3 only below a G2, and G2 admission only with write-back and a G2
 * (write-through copies at registration, so a filter on evictions would do
 * nothing, as it would with no G2 to offload to), and a keep ratio only
 * with admission (it would be ignored). */
static kvbm_status_t config_check(const kvbm_cache_config_t *config)
{
    if (config->backend == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "cache config: backend is NULL");
    if (config->offload_mode != KVBM_OFFLOAD_WRITE_BACK &&
        config->offload_mode != KVBM_OFFLOAD_WRITE_THROUGH)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "cache config: unknown offload_mode %d",
                          (int)config->offload_mode);
    if (config->g3 != NULL && config->g2_blocks == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "cache config: a G3 tier needs a G2 (g2_blocks 0)");
    if (config->offload_admission && config->offload_mode != KVBM_OFFLOAD_WRITE_BACK)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "cache config: offload_admission needs offload_mode write-back");
    if (config->offload_admission && config->g2_blocks == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "cache config: offload_admission needs a G2 (g2_blocks 0)");
    if (!config->offload_admission && config->admission_keep_ratio != 0.0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "cache config: admission_keep_ratio %g without offload_admission",
                          config->admission_keep_ratio);
    if (config->retired_on_events != NULL || config->retired_events_ctx != NULL)
        return kvbm__fail(KVBM_ERR_UNSUPPORTED,
                          "cache config: the per-tier event callback of versions 1-3 is retired; "
                          "use events_batcher (version 4)");
    return KVBM_OK;
}

/* The copy streams, the per-block tables, the disk tier and the lock: what
 * the calls need beyond the tiers' memory. On error nothing of it is left. */
static kvbm_status_t runtime_create(kvbm_cache_t *cache, const kvbm_cache_config_t *config)
{
    kvbm_status_t status = kvbm_stream_create(cache->backend, &cache->d2h);
    if (status != KVBM_OK)
        return status;
    status = kvbm_stream_create(cache->backend, &cache->h2d);
    if (status != KVBM_OK)
        goto err_destroy_d2h;
    status = KVBM_ERR_NO_MEMORY;
    cache->loading_seq = kvbm__calloc(cache->g1_blocks, sizeof(uint64_t));
    cache->load_failed = kvbm__calloc(cache->g1_blocks, 1);
    if (cache->loading_seq == NULL || cache->load_failed == NULL)
        goto err_free_tables;
    status = config->g3 != NULL ? kvbm__cache_g3_open(cache, config) : KVBM_OK;
    if (status != KVBM_OK)
        goto err_free_tables;
    status = admission_create(cache, config);
    if (status != KVBM_OK)
        goto err_close_g3;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&cache->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_admission;
    return KVBM_OK;

err_destroy_admission:
    kvbm_admission_destroy(cache->admission);
    cache->admission = NULL;
err_close_g3:
    kvbm__cache_g3_close(cache);
err_free_tables:
    kvbm__free(cache->loading_seq);
    kvbm__free(cache->load_failed);
    kvbm_stream_destroy(cache->h2d);
err_destroy_d2h:
    kvbm_stream_destroy(cache->d2h);
    return status;
}

kvbm_status_t kvbm_cache_create(const kvbm_cache_config_t *caller_config, kvbm_cache_t **cache_out)
{
    KVBM_REQUIRE_ARG(caller_config != NULL && cache_out != NULL);
    const kvbm_cache_config_t defaults = KVBM_CACHE_CONFIG_INIT;
    kvbm_cache_config_t imported;
    kvbm_status_t status =
        KVBM__CONFIG_IMPORT(caller_config, cache_config_sizes, &defaults, &imported);
    if (status != KVBM_OK)
        return status;
    const kvbm_cache_config_t *config = &imported;
    status = config_check(config);
    if (status != KVBM_OK)
        return status;
    kvbm_cache_t *cache = kvbm__calloc(1, sizeof(*cache));
    if (cache == NULL)
        return KVBM_ERR_NO_MEMORY;
    cache->backend = config->backend;
    cache->engine = config->engine_stream;
    cache->mode = config->offload_mode;
    cache->events = config->events_batcher;
    cache->next_seq = 1;

    status = kvbm_layout_create(&config->layout, &cache->g1_layout);
    if (status != KVBM_OK)
        goto err_free_cache;
    cache->g1_blocks = config->layout.num_blocks;
    cache->block_bytes = kvbm_layout_block_bytes(cache->g1_layout);
    status = g1_pool_create(cache, config);
    if (status != KVBM_OK)
        goto err_destroy_g1_layout;
    status = create_manager(cache, config, KVBM_TIER_G1, cache->g1_blocks, &cache->g1);
    if (status != KVBM_OK)
        goto err_destroy_g1_pool;
    if (config->g2_blocks > 0) {
        status = g2_tier_create(cache, config);
        if (status != KVBM_OK)
            goto err_destroy_g1;
    }
    status = runtime_create(cache, config);
    if (status != KVBM_OK)
        goto err_destroy_g2;
    if (cache->events != NULL) /* G3's blocks found in its file are stored(DISK) */
        kvbm_event_batcher_flush(cache->events);
    *cache_out = cache;
    return KVBM_OK;

err_destroy_g2:
    g2_tier_destroy(cache);
err_destroy_g1:
    kvbm_manager_destroy(cache->g1);
err_destroy_g1_pool:
    kvbm_pool_destroy(cache->g1_pool);
err_destroy_g1_layout:
    kvbm_layout_destroy(cache->g1_layout);
err_free_cache:
    if (cache->events != NULL) /* what a G3 opened before the failure announced */
        kvbm__event_batcher_discard(cache->events);
    kvbm__free(cache);
    return status;
}

void kvbm_cache_destroy(kvbm_cache_t *cache)
{
    if (cache == NULL)
        return;
    kvbm_cache_sync(cache);
    kvbm__cache_g3_close(cache);
    kvbm_stream_destroy(cache->h2d);
    kvbm_stream_destroy(cache->d2h);
    g2_tier_destroy(cache);
    kvbm_manager_destroy(cache->g1);
    kvbm_pool_destroy(cache->g1_pool);
    kvbm_layout_destroy(cache->g1_layout);
    kvbm_admission_destroy(cache->admission);
    kvbm__free(cache->loading_seq);
    kvbm__free(cache->load_failed);
    kvbm__mutex_destroy(&cache->lock);
    kvbm__free(cache);
}

void kvbm__cache_unlock(kvbm_cache_t *cache)
{
    if (cache->events != NULL)
        kvbm_event_batcher_flush(cache->events);
    kvbm__mutex_unlock(&cache->lock);
}

/* ------------------------------------------------------------------ offload */

/* Issues what the call gathered. Copies that cannot be issued give their G2
 * blocks back; the hashes are simply not cached. */
static void submit_parts(kvbm_cache_t *cache, cache_offload_t *off)
{
    kvbm__cache_g3_flush(cache, off);
    cache_batch_t *batch = off->copies;
    off->copies = NULL;
    if (batch == NULL)
        return;
    if (batch->n > 0 && kvbm__cache_batch_submit(cache, batch) == KVBM_OK) {
        off->copies_issued = true;
        return;
    }
    if (batch->n > 0) {
        cache->metrics.failed_copies += batch->n;
        kvbm_manager_release(cache->g2, batch->g2_ids, batch->n);
    }
    kvbm__cache_batch_unref(cache, batch);
}

/*
 * A G2 block for one offload, or KVBM_BLOCK_NONE when G2 has none to give.
 * The G2 blocks of this call's offloads are held until their copies are
 * processed, where the contract's one-by-one offloads would already have
 * released them: so when G2 has none while this call has offloads pending,
 * those are issued and processed first (the call waits, the lock released)
 * and the take is tried again. Offloads are issued in parts rather than
 * skipped. With a G3, the G2 victim the take evicts is written to G3 before
 * its block is reused.
 */
static void process_pending(kvbm_cache_t *cache, cache_offload_t *off)
{
    submit_parts(cache, off);
    kvbm__cache_wait_processed(cache, cache->next_seq - 1);
    off->copies_issued = false; /* all processed */
}

/* Whether taking a G2 block now would evict one (no free block left). */
static bool g2_take_evicts(kvbm_cache_t *cache)
{
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(cache->g2, &counts);
    return counts.reset == 0;
}

static uint32_t take_g2_block(kvbm_cache_t *cache, cache_offload_t *off)
{
    uint32_t block;
    kvbm_evicted_t victim;
    size_t n_victims = 0;
    bool pending = off->copies_issued || (off->copies != NULL && off->copies->n > 0);
    /* The contract's one-by-one offloads would have put the pending blocks
     * in G2's policy before this take chooses its victim. A policy that may
     * evict a block released after older inactive ones could choose one of
     * them, so they are processed first. */
    if (pending && !cache->g2_release_ordered && g2_take_evicts(cache)) {
        process_pending(cache, off);
        pending = false;
    }
    kvbm_status_t status = kvbm_manager_allocate(cache->g2, 1, &block, &victim, &n_victims);
    if (status == KVBM_ERR_NO_BLOCKS && pending) {
        process_pending(cache, off);
        status = kvbm_manager_allocate(cache->g2, 1, &block, &victim, &n_victims);
    }
    if (status != KVBM_OK)
        return KVBM_BLOCK_NONE;
    if (n_victims > 0 && cache->g3 != NULL)
        kvbm__cache_g3_offload(cache,
                               &(kvbm_evicted_t){.block_id = block,
                                                 .seq_hash = victim.seq_hash,
                                                 .parent_hash = victim.parent_hash,
                                                 .has_parent = victim.has_parent},
                               off);
    return block;
}

/* Queues one G1 -> G2 copy of @p block (G1 block, hash and parent) in the
 * parts' current batch (made on first use). */
static bool queue_copy(kvbm_cache_t *cache, cache_offload_t *off, const kvbm_evicted_t *block,
                       uint32_t g2_block)
{
    if (off->copies == NULL &&
        kvbm__cache_batch_new(cache, BATCH_OFFLOAD, off->capacity, &off->copies) != KVBM_OK)
        return false;
    cache_batch_t *batch = off->copies;
    batch->g1_ids[batch->n] = block->block_id;
    batch->g2_ids[batch->n] = g2_block;
    batch->hashes[batch->n] = block->seq_hash;
    batch->parents[batch->n] = block->parent_hash;
    batch->has_parent[batch->n] = block->has_parent;
    batch->n++;
    return true;
}

/* Copies G1 blocks to G2 for the hashes G2 lacks (inclusive tier): @p blocks
 * are (G1 block, hash, parent), as allocate reports its evictions. With the
 * lock held, which it drops only to issue offloads in parts. */
static void offload_blocks(kvbm_cache_t *cache, const kvbm_evicted_t *blocks, size_t count)
{
    if (cache->g2 == NULL || count == 0)
        return;
    cache_offload_t off = {.capacity = count};
    for (size_t i = 0; i < count; i++) {
        bool in_g2 = kvbm_manager_contains(cache->g2, blocks[i].seq_hash);
        if (cache->admission != NULL &&
            !kvbm_admission_evicted(cache->admission, blocks[i].block_id, blocks[i].seq_hash,
                                    in_g2) &&
            !in_g2) {
            cache->metrics.offload_refused++;
            continue;
        }
        if (in_g2)
            continue;
        uint32_t g2_block = take_g2_block(cache, &off);
        if (g2_block == KVBM_BLOCK_NONE) {
            cache->metrics.offload_skipped++;
            continue;
        }
        if (!queue_copy(cache, &off, &blocks[i], g2_block)) {
            cache->metrics.offload_skipped++;
            kvbm_manager_release(cache->g2, &g2_block, 1);
        }
    }
    submit_parts(cache, &off);
}

/*
 * Rule 2 for the engine stream, and the caller's ready fence. A block handed
 * out may still be read by an offload in flight, and not only one this call
 * issued: a block evicted earlier can come back through the reset pool (a
 * registration deduplicated it) before its offload has run. So the engine
 * waits for the newest offload in flight, which on the in-order offload
 * stream covers all of them.
 *
 * This runs after the call has taken its blocks, so it must not fail: if the
 * backend cannot enqueue a wait or record the fence (out of memory), the
 * call waits on the host instead until every copy in flight has been
 * processed, which orders whatever the caller does next after them. The
 * lock is dropped while waiting; @p onboard is not used after that.
 */
static void order_engine(kvbm_cache_t *cache, bool handed_out, const cache_batch_t *onboard,
                         kvbm_fence_t *ready)
{
    bool reuse_order = !(cache->unsafe & KVBM__CACHE_UNSAFE_NO_REUSE_ORDER);
    kvbm_status_t status = KVBM_OK;
    if (cache->engine != NULL && handed_out && cache->last_offload != NULL && reuse_order)
        status = kvbm_stream_wait_fence(cache->engine, cache->last_offload->fence);
    if (status == KVBM_OK && cache->engine != NULL && onboard != NULL)
        status = kvbm_stream_wait_fence(cache->engine, onboard->fence);
    if (status == KVBM_OK && ready != NULL) {
        /* The ready fence is recorded on the onboard stream after it waited
         * for every offload issued so far, so it covers both directions. */
        if (cache->last_offload != NULL && reuse_order)
            status = kvbm_stream_wait_fence(cache->h2d, cache->last_offload->fence);
        if (status == KVBM_OK)
            status = kvbm_fence_record(ready, cache->h2d);
    }
    if (status != KVBM_OK) {
        kvbm__cache_wait_processed(cache, cache->next_seq - 1);
        return;
    }
    if (cache->engine == NULL && ready == NULL && handed_out && cache->last_offload != NULL &&
        reuse_order) {
        /* Nothing orders the caller's writes after the offloads still reading
         * these slabs, so the call itself waits for them (the lock is dropped
         * meanwhile). Engines avoid this wait with an engine stream or a
         * ready fence. */
        kvbm__cache_wait_processed(cache, cache->last_offload->seq);
    }
}

/* Clears what the cache remembered about blocks handed out anew. */
static void forget_blocks(kvbm_cache_t *cache, const uint32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        cache->loading_seq[ids[i]] = 0;
        cache->load_failed[ids[i]] = 0;
    }
}

/* G1 allocation plus the offload of what it evicted, into @p evicted (room
 * for @p count, taken by the caller before anything changed). Fails only as
 * the G1 allocation does (KVBM_ERR_NO_BLOCKS), changing nothing. */
static kvbm_status_t allocate_locked(kvbm_cache_t *cache, size_t count, uint32_t *ids_out,
                                     kvbm_evicted_t *evicted)
{
    size_t n_evicted = 0;
    kvbm_status_t status = kvbm_manager_allocate(cache->g1, count, ids_out, evicted, &n_evicted);
    if (status != KVBM_OK)
        return status;
    forget_blocks(cache, ids_out, count);
    if (cache->mode == KVBM_OFFLOAD_WRITE_BACK)
        offload_blocks(cache, evicted, n_evicted);
    return KVBM_OK;
}

kvbm_status_t kvbm_cache_allocate(kvbm_cache_t *cache, size_t count, uint32_t *ids_out,
                                  kvbm_fence_t *ready)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids_out != NULL);
    /* More than G1 holds can never be given (and bounds the size below). */
    if (count > cache->g1_blocks)
        return KVBM_ERR_NO_BLOCKS;
    kvbm_evicted_t stack_evicted[SCRATCH_ON_STACK];
    kvbm_evicted_t *evicted =
        count <= SCRATCH_ON_STACK ? stack_evicted : kvbm__alloc(count, sizeof(kvbm_evicted_t));
    if (evicted == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = allocate_locked(cache, count, ids_out, evicted);
    if (status == KVBM_OK)
        order_engine(cache, count > 0, NULL, ready);
    kvbm__cache_unlock(cache);
    if (evicted != stack_evicted)
        kvbm__free(evicted);
    return status;
}

/* ------------------------------------------------------------------ match and onboarding */

void kvbm__cache_admission_registered(kvbm_cache_t *cache, const uint32_t *ids,
                                      const uint64_t *hashes, const uint32_t *ids_out, size_t count,
                                      uint32_t request_blocks, uint32_t first_position)
{
    if (cache->admission == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        if (ids_out[i] == ids[i])
            kvbm_admission_registered(cache->admission, ids[i], hashes[i], request_blocks,
                                      first_position + (uint32_t)i);
        else
            kvbm_admission_hit(cache->admission, ids_out[i]);
    }
}

/* Registers the G2 hits in G1 on their new blocks and copies their data in.
 * Fails (changing nothing) only if the G1 registration itself fails (out of
 * memory). If the copy cannot be issued, the blocks stay registered but are
 * withdrawn and marked failed for kvbm_cache_check(), and *batch_out is NULL. */
static kvbm_status_t onboard_locked(kvbm_cache_t *cache, const uint64_t *hashes, size_t k1,
                                    size_t k2, const uint32_t *g2_ids, const uint32_t *fresh,
                                    uint32_t *ids_out, cache_batch_t **batch_out)
{
    *batch_out = NULL;
    /* The request being acquired is hashes[0..request_blocks): its length
     * and positions are the registration hints. */
    kvbm_register_opts_t opts = {.has_parent = k1 > 0,
                                 .parent_hash = k1 > 0 ? hashes[k1 - 1] : 0,
                                 .priority = 50,
                                 .request_blocks = cache->request_blocks,
                                 .first_position = (uint32_t)k1};
    kvbm_status_t status =
        kvbm_manager_register(cache->g1, fresh, hashes + k1, k2, &opts, ids_out + k1);
    if (status != KVBM_OK)
        return status;
    kvbm__cache_admission_registered(cache, fresh, hashes + k1, ids_out + k1, k2,
                                     opts.request_blocks, opts.first_position);
    cache->metrics.g2_hits += k2;
    cache_batch_t *batch = NULL;
    if (kvbm__cache_batch_new(cache, BATCH_ONBOARD, k2, &batch) != KVBM_OK) {
        kvbm__cache_onboard_failed(cache, fresh, k2, NULL);
        kvbm_manager_release(cache->g2, g2_ids, k2);
        return KVBM_OK;
    }
    memcpy(batch->g2_ids, g2_ids, sizeof(uint32_t) * k2);
    batch->n = k2;
    for (size_t j = 0; j < k2; j++) {
        if (ids_out[k1 + j] != fresh[j])
            continue; /* G1 had the hash after all (dedup): nothing to copy */
        batch->copy_g2[batch->n_copy] = g2_ids[j];
        batch->g1_ids[batch->n_copy] = fresh[j];
        batch->hashes[batch->n_copy] = hashes[k1 + j];
        batch->n_copy++;
    }
    if (kvbm__cache_batch_submit(cache, batch) != KVBM_OK) {
        kvbm__cache_onboard_failed(cache, batch->g1_ids, batch->n_copy, NULL);
        kvbm_manager_release(cache->g2, g2_ids, k2);
        kvbm__cache_batch_unref(cache, batch);
        return KVBM_OK;
    }
    for (size_t j = 0; j < batch->n_copy; j++)
        cache->loading_seq[batch->g1_ids[j]] = batch->seq;
    if (cache->unsafe & KVBM__CACHE_UNSAFE_EARLY_G2_RELEASE)
        kvbm_manager_release(cache->g2, g2_ids, k2); /* breaks rule 3, tests only */
    *batch_out = batch;
    return KVBM_OK;
}

/*
 * Refuses before taking anything if G1 could not hold what the call would
 * allocate: a match moves blocks out of the evictable pool, and releasing
 * them again would change the eviction order. (Only calls through this cache
 * change its managers, and they hold the cache lock, so the peek stays true
 * until the G1 allocation.)
 */
static kvbm_status_t check_fits(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                bool allocate_rest, size_t *k1_out)
{
    size_t k1 = 0, k1_inactive = 0, k2 = 0, k3 = 0;
    kvbm_status_t status = kvbm_manager_match_length(cache->g1, hashes, count, &k1, &k1_inactive);
    if (status == KVBM_OK && cache->g2 != NULL && !allocate_rest)
        status = kvbm_manager_match_length(cache->g2, hashes + k1, count - k1, &k2, NULL);
    if (status == KVBM_OK && cache->g3 != NULL && !allocate_rest)
        status = kvbm_manager_match_length(cache->g3_manager, hashes + k1 + k2, count - k1 - k2,
                                           &k3, NULL);
    if (status != KVBM_OK)
        return status;
    kvbm_pool_counts_t g1_counts;
    kvbm_manager_counts(cache->g1, &g1_counts);
    assert(k1_inactive <= g1_counts.inactive);
    size_t need = allocate_rest ? count - k1 : k2 + k3;
    if (need > g1_counts.reset + g1_counts.inactive - k1_inactive)
        return KVBM_ERR_NO_BLOCKS;
    *k1_out = k1;
    return KVBM_OK;
}

/* What one call found below G1 and the G1 blocks it allocated: fresh[0, k2)
 * take the G2 hits, fresh[k2, k2 + k3) the G3 hits, the rest are new. The
 * arrays (and room for what the G1 allocation evicts) are taken before the
 * call changes anything, sized by the rest of the request after the G1
 * prefix measured (at most G1's size, check_fits() saw to that); small
 * calls use the stack. */
typedef struct lower_hits {
    uint32_t *g2_ids;
    uint32_t *g3_ids;
    uint32_t *fresh;
    kvbm_evicted_t *evicted;
    size_t k2, k3;
    void *heap; /* one allocation behind the arrays, or NULL */
    kvbm_evicted_t stack_evicted[SCRATCH_ON_STACK];
    uint32_t stack_ids[3 * SCRATCH_ON_STACK];
} lower_hits_t;

static kvbm_status_t open_lower(lower_hits_t *hits, size_t rest)
{
    hits->k2 = hits->k3 = 0;
    hits->heap = NULL;
    if (rest <= SCRATCH_ON_STACK) {
        hits->evicted = hits->stack_evicted;
        hits->g2_ids = hits->stack_ids;
    } else {
        /* Widest elements first, so every array stays aligned. */
        unsigned char *heap = kvbm__alloc(rest, sizeof(kvbm_evicted_t) + 3 * sizeof(uint32_t));
        if (heap == NULL)
            return KVBM_ERR_NO_MEMORY;
        hits->heap = heap;
        hits->evicted = (kvbm_evicted_t *)heap;
        hits->g2_ids = (uint32_t *)(heap + rest * sizeof(kvbm_evicted_t));
    }
    size_t room = rest <= SCRATCH_ON_STACK ? SCRATCH_ON_STACK : rest;
    hits->g3_ids = hits->g2_ids + room;
    hits->fresh = hits->g3_ids + room;
    return KVBM_OK;
}

static kvbm_status_t match_lower(kvbm_cache_t *cache, const uint64_t *hashes, size_t k1,
                                 size_t rest, lower_hits_t *hits)
{
    if (rest == 0)
        return KVBM_OK;
    kvbm_status_t status = KVBM_OK;
    if (cache->g2 != NULL)
        status = kvbm_manager_match(cache->g2, hashes + k1, rest, hits->g2_ids, &hits->k2);
    if (status == KVBM_OK && cache->g3 != NULL) {
        status = kvbm_manager_match(cache->g3_manager, hashes + k1 + hits->k2, rest - hits->k2,
                                    hits->g3_ids, &hits->k3);
        if (status != KVBM_OK) {
            kvbm_manager_release(cache->g2, hits->g2_ids, hits->k2);
            hits->k2 = 0;
        }
    }
    return status;
}

static void release_lower(kvbm_cache_t *cache, lower_hits_t *hits)
{
    if (hits->k2 > 0)
        kvbm_manager_release(cache->g2, hits->g2_ids, hits->k2);
    if (hits->k3 > 0)
        kvbm_manager_release(cache->g3_manager, hits->g3_ids, hits->k3);
    hits->k2 = hits->k3 = 0;
}

static void free_lower(lower_hits_t *hits)
{
    kvbm__free(hits->heap);
}

/* Onboards the G2 then the G3 hits into their fresh G1 blocks. Returns the
 * newest onboard batch (with a reference for the caller), or NULL. If the G2
 * hits cannot even be registered (out of memory) both are given up: the new
 * G1 blocks become plain fresh blocks (acquire) or are released (match). */
static cache_batch_t *onboard_lower(kvbm_cache_t *cache, const uint64_t *hashes, size_t k1,
                                    bool allocate_rest, lower_hits_t *hits, size_t *need,
                                    uint32_t *ids_out)
{
    cache_batch_t *g2_batch = NULL, *g3_batch = NULL;
    if (hits->k2 > 0 && onboard_locked(cache, hashes, k1, hits->k2, hits->g2_ids, hits->fresh,
                                       ids_out, &g2_batch) != KVBM_OK) {
        release_lower(cache, hits);
        if (!allocate_rest) {
            kvbm_manager_release(cache->g1, hits->fresh, *need);
            *need = 0;
        }
        return NULL;
    }
    if (g2_batch != NULL)
        g2_batch->refs++; /* the G3 onboarding below may drop the lock */
    if (hits->k3 > 0)
        kvbm__cache_g3_onboard(cache, hashes, k1 + hits->k2, hits->k3, hits->g3_ids,
                               hits->fresh + hits->k2, ids_out, &g3_batch);
    if (g3_batch == NULL)
        return g2_batch;
    kvbm__cache_batch_unref(cache, g2_batch); /* on the same stream, the G3 one covers it */
    return g3_batch;
}

static kvbm_status_t acquire_locked(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                    bool allocate_rest, uint32_t *ids_out,
                                    kvbm_cache_match_result_t *result_out, kvbm_fence_t *ready)
{
    size_t k1 = 0, k1_measured = 0;
    kvbm_status_t status = check_fits(cache, hashes, count, allocate_rest, &k1_measured);
    if (status != KVBM_OK)
        return status;
    lower_hits_t hits;
    status = open_lower(&hits, count - k1_measured);
    if (status == KVBM_OK)
        status = kvbm_manager_match(cache->g1, hashes, count, ids_out, &k1);
    if (status != KVBM_OK)
        goto out_free;
    assert(k1 == k1_measured);
    cache->request_blocks = (uint32_t)count;
    size_t rest = count - k1;
    status = match_lower(cache, hashes, k1, rest, &hits);
    if (status != KVBM_OK)
        goto err_release_g1;
    size_t need = allocate_rest ? rest : hits.k2 + hits.k3;
    status = allocate_locked(cache, need, hits.fresh, hits.evicted);
    if (status != KVBM_OK)
        goto err_release_lower;
    cache_batch_t *onboard = onboard_lower(cache, hashes, k1, allocate_rest, &hits, &need, ids_out);
    size_t onboarded = hits.k2 + hits.k3;
    if (need > onboarded)
        memcpy(ids_out + k1 + onboarded, hits.fresh + onboarded,
               sizeof(uint32_t) * (need - onboarded));
    order_engine(cache, need > 0, onboard, ready);
    kvbm__cache_batch_unref(cache, onboard);
    result_out->g1 = k1;
    result_out->onboarded = onboarded;
    result_out->g3 = hits.k3;
    if (cache->admission != NULL)
        for (size_t i = 0; i < k1; i++)
            kvbm_admission_hit(cache->admission, ids_out[i]);
    free_lower(&hits);
    return KVBM_OK;

err_release_lower:
    release_lower(cache, &hits);
err_release_g1:
    kvbm_manager_release(cache->g1, ids_out, k1);
out_free:
    free_lower(&hits);
    return status;
}

/* The public entry of acquire_locked: checks, lock, completed copies first. */
static kvbm_status_t acquire_call(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                  bool allocate_rest, uint32_t *ids_out,
                                  kvbm_cache_match_result_t *result_out, kvbm_fence_t *ready)
{
    if (cache == NULL || result_out == NULL || (count > 0 && (hashes == NULL || ids_out == NULL)))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "%s: bad argument: needs cache, result_out, and hashes and ids_out "
                          "when count > 0",
                          allocate_rest ? "kvbm_cache_acquire" : "kvbm_cache_match");
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status =
        acquire_locked(cache, hashes, count, allocate_rest, ids_out, result_out, ready);
    kvbm__cache_unlock(cache);
    return status;
}

kvbm_status_t kvbm_cache_match(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                               uint32_t *ids_out, kvbm_cache_match_result_t *result_out,
                               kvbm_fence_t *ready)
{
    return acquire_call(cache, hashes, count, false, ids_out, result_out, ready);
}

kvbm_status_t kvbm_cache_acquire(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                 uint32_t *ids_out, kvbm_cache_match_result_t *result_out,
                                 kvbm_fence_t *ready)
{
    return acquire_call(cache, hashes, count, true, ids_out, result_out, ready);
}

/* ------------------------------------------------------------------ register, release, scan */

kvbm_status_t kvbm_cache_register(kvbm_cache_t *cache, const uint32_t *ids, const uint64_t *hashes,
                                  size_t count, const kvbm_register_opts_t *opts, uint32_t *ids_out)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    KVBM_REQUIRE_ARG(count == 0 || (ids != NULL && hashes != NULL && ids_out != NULL));
    /* Write-through copies, and the admission filter records, only the
     * blocks that end up carrying their hash (not dedups, and a hash
     * repeated in the call once). ids_out may alias ids, so the ids are kept
     * aside first, in memory taken before anything changes. More blocks than
     * G1 holds cannot all be mutable, and the manager refuses them without
     * the copy. */
    bool write_through = cache->mode == KVBM_OFFLOAD_WRITE_THROUGH;
    bool keep_ids =
        (write_through || cache->admission != NULL) && count > 0 && count <= cache->g1_blocks;
    kvbm_evicted_t stack_copies[SCRATCH_ON_STACK];
    kvbm_evicted_t *copies = NULL;
    if (keep_ids) {
        copies =
            count <= SCRATCH_ON_STACK ? stack_copies : kvbm__alloc(count, sizeof(kvbm_evicted_t));
        if (copies == NULL)
            return KVBM_ERR_NO_MEMORY;
        for (size_t i = 0; i < count; i++) /* with its parent, for G2's stored event */
            copies[i] = (kvbm_evicted_t){
                .block_id = ids[i],
                .seq_hash = hashes[i],
                .parent_hash = i > 0 ? hashes[i - 1] : (opts != NULL ? opts->parent_hash : 0),
                .has_parent = i > 0 || (opts != NULL && opts->has_parent)};
    }
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = kvbm_manager_register(cache->g1, ids, hashes, count, opts, ids_out);
    if (status == KVBM_OK && copies != NULL) {
        /* A block registered anew is one whose id came back unchanged. */
        for (size_t i = 0; i < count; i++)
            kvbm__cache_admission_registered(cache, &copies[i].block_id, &hashes[i], &ids_out[i], 1,
                                             opts != NULL ? opts->request_blocks : 0,
                                             (opts != NULL ? opts->first_position : 0) +
                                                 (uint32_t)i);
    }
    if (status == KVBM_OK && copies != NULL && write_through) {
        size_t n = 0;
        for (size_t i = 0; i < count; i++)
            if (ids_out[i] == copies[i].block_id)
                copies[n++] = copies[i];
        offload_blocks(cache, copies, n);
    }
    kvbm__cache_unlock(cache);
    if (copies != stack_copies)
        kvbm__free(copies);
    return status;
}

kvbm_status_t kvbm_cache_release(kvbm_cache_t *cache, const uint32_t *ids, size_t count)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = kvbm_manager_release(cache->g1, ids, count);
    kvbm__cache_unlock(cache);
    return status;
}

kvbm_status_t kvbm_cache_scan(kvbm_cache_t *cache, const uint64_t *hashes, size_t count, bool touch,
                              uint32_t *ids_out, size_t *n_found_out)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = kvbm_manager_scan(cache->g1, hashes, count, touch, ids_out, n_found_out);
    kvbm__cache_unlock(cache);
    return status;
}

/* ------------------------------------------------------------------ completion */

kvbm_status_t kvbm_cache_check(kvbm_cache_t *cache, const uint32_t *ids, size_t count)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids != NULL);
    kvbm__mutex_lock(&cache->lock);
    uint64_t newest = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] >= cache->g1_blocks) {
            kvbm__cache_unlock(cache);
            return kvbm__fail(KVBM_ERR_OUT_OF_RANGE, "block id %u is not below %u", ids[i],
                              cache->g1_blocks);
        }
        if (cache->loading_seq[ids[i]] > newest)
            newest = cache->loading_seq[ids[i]];
    }
    if (newest > 0)
        kvbm__cache_wait_processed(cache, newest);
    kvbm_status_t status = KVBM_OK;
    for (size_t i = 0; i < count; i++)
        if (cache->load_failed[ids[i]])
            status = KVBM_ERR_COPY_FAILED;
    kvbm__cache_unlock(cache);
    return status;
}

/* Whether any tier has a block held (by a caller, or by a G3 read). */
static bool any_block_active(kvbm_cache_t *cache)
{
    kvbm_manager_t *tiers[] = {cache->g1, cache->g2, cache->g3_manager};
    for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
        kvbm_pool_counts_t c = {0};
        if (tiers[i] != NULL)
            kvbm_manager_counts(tiers[i], &c);
        if (c.active > 0)
            return true;
    }
    return false;
}

kvbm_status_t kvbm_cache_clear(kvbm_cache_t *cache)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    kvbm__mutex_lock(&cache->lock);
    /* Copies and G3 writes in flight hold blocks (rule 3) and register
     * them when processed: let them all finish first. */
    kvbm__cache_wait_processed(cache, cache->next_seq - 1);
    if (any_block_active(cache)) {
        kvbm__cache_unlock(cache);
        return KVBM_ERR_BUSY;
    }
    kvbm_status_t status = cache->g3 != NULL ? kvbm__cache_g3_clear(cache) : KVBM_OK;
    if (status != KVBM_OK) {
        kvbm__cache_unlock(cache);
        return status;
    }
    /* Nothing is active, so neither reset can refuse. One AllBlocksCleared
     * says it all: the managers' removals, and what this call gathered
     * before them, are dropped (the clear supersedes them). */
    status = kvbm_manager_reset_inactive(cache->g1);
    assert(status == KVBM_OK);
    if (cache->g2 != NULL) {
        status = kvbm_manager_reset_inactive(cache->g2);
        assert(status == KVBM_OK);
    }
    (void)status;
    if (cache->events != NULL) {
        const kvbm_event_record_t cleared = {.kind = KVBM_EVENT_CLEARED};
        kvbm__event_batcher_discard(cache->events);
        kvbm_event_batcher_sink(cache->events, &cleared, 1);
    }
    kvbm__cache_unlock(cache);
    return KVBM_OK;
}

kvbm_status_t kvbm_cache_announce(kvbm_cache_t *cache)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    kvbm__mutex_lock(&cache->lock);
    if (cache->events == NULL) {
        kvbm__mutex_unlock(&cache->lock);
        return KVBM_OK;
    }
    /* What the batcher holds (another call's, gathered before it dropped the
     * lock to wait) has happened in the tiers: the snapshot covers it. */
    kvbm__event_batcher_discard(cache->events);
    const kvbm_event_record_t cleared = {.kind = KVBM_EVENT_CLEARED};
    kvbm_event_batcher_sink(cache->events, &cleared, 1);
    kvbm_manager_t *tiers[] = {cache->g1, cache->g2, cache->g3_manager};
    kvbm_status_t status = KVBM_OK;
    for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]) && status == KVBM_OK; i++)
        if (tiers[i] != NULL)
            status = kvbm_manager_announce(tiers[i]);
    if (status != KVBM_OK) /* a partial snapshot would say blocks are gone */
        kvbm__event_batcher_discard(cache->events);
    kvbm__cache_unlock(cache);
    return status;
}

kvbm_status_t kvbm_cache_progress(kvbm_cache_t *cache)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm__cache_unlock(cache);
    return KVBM_OK;
}

kvbm_status_t kvbm_cache_sync(kvbm_cache_t *cache)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_wait_processed(cache, cache->next_seq - 1);
    kvbm__cache_unlock(cache);
    return KVBM_OK;
}

/* ------------------------------------------------------------------ accessors */

kvbm_status_t kvbm_cache_block_address(kvbm_cache_t *cache, uint32_t id, uint32_t layer,
                                       uint32_t outer, void **addr_out)
{
    KVBM_REQUIRE_ARG(cache != NULL);
    return kvbm_layout_address(cache->g1_layout, kvbm_pool_ptr(cache->g1_pool), id, layer, outer,
                               addr_out);
}

kvbm_pool_t *kvbm_cache_pool(kvbm_cache_t *cache, kvbm_tier_t tier)
{
    if (cache == NULL)
        return NULL;
    return tier == KVBM_TIER_G1 ? cache->g1_pool : tier == KVBM_TIER_G2 ? cache->g2_pool : NULL;
}

const kvbm_layout_t *kvbm_cache_layout(kvbm_cache_t *cache, kvbm_tier_t tier)
{
    if (cache == NULL)
        return NULL;
    return tier == KVBM_TIER_G1 ? cache->g1_layout : tier == KVBM_TIER_G2 ? cache->g2_layout : NULL;
}

kvbm_manager_t *kvbm_cache_manager(kvbm_cache_t *cache, kvbm_tier_t tier)
{
    if (cache == NULL)
        return NULL;
    switch (tier) {
    case KVBM_TIER_G1:
        return cache->g1;
    case KVBM_TIER_G2:
        return cache->g2;
    case KVBM_TIER_G3:
        return cache->g3_manager;
    default:
        return NULL;
    }
}

kvbm_status_t kvbm_cache_disk_metrics(kvbm_cache_t *cache, kvbm_disk_metrics_t *metrics_out)
{
    KVBM_REQUIRE_ARG(cache != NULL && metrics_out != NULL);
    if (cache->g3 == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_cache_disk_metrics: the cache has no G3");
    kvbm__disk_store_metrics(cache->g3_store, metrics_out);
    return KVBM_OK;
}

const char *kvbm_cache_g3_engine(const kvbm_cache_t *cache)
{
    return cache == NULL || cache->g3 == NULL ? NULL : kvbm__disk_store_engine(cache->g3_store);
}

void kvbm_cache_metrics(kvbm_cache_t *cache, kvbm_cache_metrics_t *metrics_out)
{
    if (cache == NULL || metrics_out == NULL)
        return;
    kvbm__mutex_lock(&cache->lock);
    *metrics_out = cache->metrics;
    kvbm__cache_unlock(cache);
}

kvbm_status_t kvbm_cache_metrics_prometheus(kvbm_cache_t *cache, FILE *out)
{
    KVBM_REQUIRE_ARG(cache != NULL && out != NULL);
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(cache, &m);
    int rc = 0;
#define KVBM_CACHE_PROM_LINE(field, type, help)                                                    \
    if (rc >= 0)                                                                                   \
        rc = kvbm__prometheus_write(out, "cache_" #field, #type, help, NULL, m.field);
    KVBM_CACHE_METRICS_LIST(KVBM_CACHE_PROM_LINE)
#undef KVBM_CACHE_PROM_LINE
    if (rc < 0)
        return kvbm__fail(KVBM_ERR_IO, "writing the cache metrics: %s", strerror(errno));
    kvbm_status_t status = kvbm_manager_metrics_prometheus(cache->g1, out);
    if (status == KVBM_OK && cache->g2 != NULL)
        status = kvbm_manager_metrics_prometheus(cache->g2, out);
    if (status == KVBM_OK && cache->g3 != NULL)
        status = kvbm_manager_metrics_prometheus(cache->g3_manager, out);
    if (status != KVBM_OK || cache->g3 == NULL)
        return status;
    kvbm_disk_metrics_t d;
    kvbm__disk_store_metrics(cache->g3_store, &d);
#define KVBM_DISK_PROM_LINE(field, type, help)                                                     \
    if (rc >= 0)                                                                                   \
        rc = kvbm__prometheus_write(out, "disk_" #field, #type, help, "tier=\"g3\"", d.field);
    KVBM_DISK_METRICS_LIST(KVBM_DISK_PROM_LINE)
#undef KVBM_DISK_PROM_LINE
    return rc < 0 ? KVBM_ERR_IO : KVBM_OK;
}
