/*
 * The tiered cache's calls; see include/kvbm/cache.h for the behaviour and
 * batch.c for the copies in flight.
 *
 * Locking: cache->lock for the whole of each call (never while waiting for
 * a fence); inside it the G1 and G2 managers take their own locks.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"
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
        return KVBM_ERR_INVALID_ARG;
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

/* sizeof(kvbm_cache_config_t) at each published version (core/config.h). */
static const size_t cache_config_sizes[] = {sizeof(kvbm_cache_config_t)};

/* Imports the caller's config (any published version), then checks it. */
static kvbm_status_t import_config(const kvbm_cache_config_t *caller, kvbm_cache_config_t *config)
{
    const kvbm_cache_config_t defaults = KVBM_CACHE_CONFIG_INIT;
    kvbm_status_t status = KVBM__CONFIG_IMPORT(caller, cache_config_sizes, &defaults, config);
    if (status != KVBM_OK)
        return status;
    if (config->backend == NULL)
        return KVBM_ERR_INVALID_ARG;
    if (config->offload_mode != KVBM_OFFLOAD_WRITE_BACK &&
        config->offload_mode != KVBM_OFFLOAD_WRITE_THROUGH)
        return KVBM_ERR_INVALID_ARG;
    return KVBM_OK;
}

kvbm_status_t kvbm_cache_create(const kvbm_cache_config_t *caller_config, kvbm_cache_t **cache_out)
{
    if (caller_config == NULL || cache_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_cache_config_t imported;
    kvbm_status_t status = import_config(caller_config, &imported);
    if (status != KVBM_OK)
        return status;
    const kvbm_cache_config_t *config = &imported;
    kvbm_cache_t *cache = calloc(1, sizeof(*cache));
    if (cache == NULL)
        return KVBM_ERR_NO_MEMORY;
    cache->backend = config->backend;
    cache->engine = config->engine_stream;
    cache->mode = config->offload_mode;
    cache->next_seq = 1;

    cache->events = config->events_batcher;
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
    status = kvbm_stream_create(cache->backend, &cache->d2h);
    if (status != KVBM_OK)
        goto err_destroy_g2;
    status = kvbm_stream_create(cache->backend, &cache->h2d);
    if (status != KVBM_OK)
        goto err_destroy_d2h;
    status = KVBM_ERR_NO_MEMORY;
    cache->loading_seq = calloc(cache->g1_blocks, sizeof(uint64_t));
    cache->load_failed = calloc(cache->g1_blocks, 1);
    if (cache->loading_seq == NULL || cache->load_failed == NULL)
        goto err_free_tables;
    status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&cache->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_free_tables;
    *cache_out = cache;
    return KVBM_OK;

err_free_tables:
    free(cache->loading_seq);
    free(cache->load_failed);
    kvbm_stream_destroy(cache->h2d);
err_destroy_d2h:
    kvbm_stream_destroy(cache->d2h);
err_destroy_g2:
    g2_tier_destroy(cache);
err_destroy_g1:
    kvbm_manager_destroy(cache->g1);
err_destroy_g1_pool:
    kvbm_pool_destroy(cache->g1_pool);
err_destroy_g1_layout:
    kvbm_layout_destroy(cache->g1_layout);
err_free_cache:
    free(cache);
    return status;
}

void kvbm_cache_destroy(kvbm_cache_t *cache)
{
    if (cache == NULL)
        return;
    kvbm_cache_sync(cache);
    kvbm_stream_destroy(cache->h2d);
    kvbm_stream_destroy(cache->d2h);
    g2_tier_destroy(cache);
    kvbm_manager_destroy(cache->g1);
    kvbm_pool_destroy(cache->g1_pool);
    kvbm_layout_destroy(cache->g1_layout);
    free(cache->loading_seq);
    free(cache->load_failed);
    kvbm__mutex_destroy(&cache->lock);
    free(cache);
}

void kvbm__cache_unlock(kvbm_cache_t *cache)
{
    if (cache->events != NULL)
        kvbm_event_batcher_flush(cache->events);
    kvbm__mutex_unlock(&cache->lock);
}

/* ------------------------------------------------------------------ offload */

/* A G2 block for one offload, or KVBM_BLOCK_NONE when G2 has none to give. */
static uint32_t take_g2_block(kvbm_cache_t *cache)
{
    uint32_t block;
    if (kvbm_manager_allocate(cache->g2, 1, &block, NULL, NULL) != KVBM_OK)
        return KVBM_BLOCK_NONE;
    return block;
}

/* Copies G1 blocks (block id, hash, parent) to G2 for the hashes G2 lacks
 * (inclusive tier). With the lock held. *batch_out is the batch issued, or
 * NULL if none was needed. */
static void offload_blocks(kvbm_cache_t *cache, const kvbm_evicted_t *blocks, size_t count,
                           cache_batch_t **batch_out)
{
    *batch_out = NULL;
    if (cache->g2 == NULL || count == 0)
        return;
    cache_batch_t *batch = NULL;
    if (kvbm__cache_batch_new(cache, BATCH_OFFLOAD, count, &batch) != KVBM_OK) {
        cache->metrics.offload_skipped += count;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        if (kvbm_manager_contains(cache->g2, blocks[i].seq_hash))
            continue;
        uint32_t g2_block = take_g2_block(cache);
        if (g2_block == KVBM_BLOCK_NONE) {
            cache->metrics.offload_skipped++;
            continue;
        }
        batch->g1_ids[batch->n] = blocks[i].block_id;
        batch->g2_ids[batch->n] = g2_block;
        batch->hashes[batch->n] = blocks[i].seq_hash;
        batch->parents[batch->n] = blocks[i].parent_hash;
        batch->has_parent[batch->n] = blocks[i].has_parent;
        batch->n++;
    }
    if (batch->n > 0 && kvbm__cache_batch_submit(cache, batch) == KVBM_OK) {
        *batch_out = batch;
        return;
    }
    /* Nothing to copy, or the copy could not even be issued: give the G2
     * blocks back; the hashes are simply not cached. */
    if (batch->n > 0) {
        cache->metrics.failed_copies += batch->n;
        kvbm_manager_release(cache->g2, batch->g2_ids, batch->n);
    }
    kvbm__cache_batch_unref(cache, batch);
}

/*
 * Rule 2 for the engine stream, and the caller's ready fence. A block handed
 * out may still be read by an offload in flight, and not only one this call
 * issued: a block evicted earlier can come back through the reset pool (a
 * registration deduplicated it) before its offload has run. So the engine
 * waits for the newest offload in flight, which on the in-order offload
 * stream covers all of them.
 */
static kvbm_status_t order_engine(kvbm_cache_t *cache, bool handed_out,
                                  const cache_batch_t *onboard, kvbm_fence_t *ready)
{
    bool reuse_order = !(cache->unsafe & KVBM__CACHE_UNSAFE_NO_REUSE_ORDER);
    kvbm_status_t status = KVBM_OK;
    if (cache->engine != NULL && handed_out && cache->last_offload != NULL && reuse_order)
        status = kvbm_stream_wait_fence(cache->engine, cache->last_offload->fence);
    if (status == KVBM_OK && cache->engine != NULL && onboard != NULL)
        status = kvbm_stream_wait_fence(cache->engine, onboard->fence);
    if (status == KVBM_OK && cache->engine == NULL && ready == NULL && handed_out &&
        cache->last_offload != NULL && reuse_order) {
        /* Nothing orders the caller's writes after the offloads still reading
         * these slabs, so the call itself waits for them (the lock is dropped
         * meanwhile). Engines avoid this wait with an engine stream or a
         * ready fence. */
        kvbm__cache_wait_processed(cache, cache->last_offload->seq);
    }
    if (status != KVBM_OK || ready == NULL)
        return status;
    /* The ready fence is recorded on the onboard stream after it waited for
     * every offload issued so far, so it covers both directions. */
    if (cache->last_offload != NULL && reuse_order)
        status = kvbm_stream_wait_fence(cache->h2d, cache->last_offload->fence);
    if (status == KVBM_OK)
        status = kvbm_fence_record(ready, cache->h2d);
    return status;
}

/* Clears what the cache remembered about blocks handed out anew. */
static void forget_blocks(kvbm_cache_t *cache, const uint32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        cache->loading_seq[ids[i]] = 0;
        cache->load_failed[ids[i]] = 0;
    }
}

/* G1 allocation plus the offload of what it evicted. */
static kvbm_status_t allocate_locked(kvbm_cache_t *cache, size_t count, uint32_t *ids_out,
                                     cache_batch_t **offload_out)
{
    kvbm_evicted_t stack_evicted[SCRATCH_ON_STACK];
    kvbm_evicted_t *evicted =
        count <= SCRATCH_ON_STACK ? stack_evicted : malloc(sizeof(kvbm_evicted_t) * count);
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    *offload_out = NULL;
    if (evicted == NULL)
        goto out;
    size_t n_evicted = 0;
    status = kvbm_manager_allocate(cache->g1, count, ids_out, evicted, &n_evicted);
    if (status != KVBM_OK)
        goto out;
    forget_blocks(cache, ids_out, count);
    if (cache->mode == KVBM_OFFLOAD_WRITE_BACK)
        offload_blocks(cache, evicted, n_evicted, offload_out);
out:
    if (evicted != stack_evicted)
        free(evicted);
    return status;
}

kvbm_status_t kvbm_cache_allocate(kvbm_cache_t *cache, size_t count, uint32_t *ids_out,
                                  kvbm_fence_t *ready)
{
    if (cache == NULL || (count > 0 && ids_out == NULL))
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    cache_batch_t *offload = NULL;
    kvbm_status_t status = allocate_locked(cache, count, ids_out, &offload);
    if (status == KVBM_OK)
        status = order_engine(cache, count > 0, NULL, ready);
    kvbm__cache_unlock(cache);
    return status;
}

/* ------------------------------------------------------------------ match and onboarding */

/* Registers the G2 hits in G1 on their new blocks and copies their data in.
 * Fails (changing nothing) only if the G1 registration itself fails (out of
 * memory). If the copy cannot be issued, the blocks stay registered but are
 * withdrawn and marked failed for kvbm_cache_check(), and *batch_out is NULL. */
static kvbm_status_t onboard_locked(kvbm_cache_t *cache, const uint64_t *hashes, size_t k1,
                                    size_t k2, const uint32_t *g2_ids, const uint32_t *fresh,
                                    uint32_t *ids_out, cache_batch_t **batch_out)
{
    *batch_out = NULL;
    kvbm_register_opts_t opts = {
        .has_parent = k1 > 0, .parent_hash = k1 > 0 ? hashes[k1 - 1] : 0, .priority = 50};
    kvbm_status_t status =
        kvbm_manager_register(cache->g1, fresh, hashes + k1, k2, &opts, ids_out + k1);
    if (status != KVBM_OK)
        return status;
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

static kvbm_status_t acquire_locked(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                    bool allocate_rest, uint32_t *ids_out,
                                    kvbm_cache_match_result_t *result_out, kvbm_fence_t *ready)
{
    size_t k1 = 0, k2 = 0;
    /* Refuse before taking anything if G1 could not hold the request: a
     * match moves blocks out of the evictable pool, and releasing them again
     * would change the eviction order. (Only calls through this cache change
     * its managers, and they hold the cache lock, so the peek stays true.) */
    size_t k1_peek = 0, k1_inactive = 0, k2_peek = 0;
    kvbm_status_t status =
        kvbm_manager_match_length(cache->g1, hashes, count, &k1_peek, &k1_inactive);
    if (status == KVBM_OK && cache->g2 != NULL && !allocate_rest)
        status =
            kvbm_manager_match_length(cache->g2, hashes + k1_peek, count - k1_peek, &k2_peek, NULL);
    if (status != KVBM_OK)
        return status;
    kvbm_pool_counts_t g1_counts;
    kvbm_manager_counts(cache->g1, &g1_counts);
    size_t need_peek = allocate_rest ? count - k1_peek : k2_peek;
    if (need_peek > g1_counts.reset + g1_counts.inactive - k1_inactive)
        return KVBM_ERR_NO_BLOCKS;
    status = kvbm_manager_match(cache->g1, hashes, count, ids_out, &k1);
    if (status != KVBM_OK)
        return status;
    uint32_t *g2_ids = NULL, *fresh = NULL;
    size_t rest = count - k1;
    status = KVBM_ERR_NO_MEMORY;
    if (rest > 0) {
        g2_ids = malloc(sizeof(uint32_t) * rest);
        fresh = malloc(sizeof(uint32_t) * rest);
        if (g2_ids == NULL || fresh == NULL)
            goto err_release_g1;
    }
    if (cache->g2 != NULL && rest > 0) {
        status = kvbm_manager_match(cache->g2, hashes + k1, rest, g2_ids, &k2);
        if (status != KVBM_OK)
            goto err_release_g1;
    }
    size_t need = allocate_rest ? rest : k2;
    cache_batch_t *offload = NULL;
    status = allocate_locked(cache, need, fresh, &offload);
    if (status != KVBM_OK)
        goto err_release_g2;
    cache_batch_t *onboard = NULL;
    if (k2 > 0) {
        if (onboard_locked(cache, hashes, k1, k2, g2_ids, fresh, ids_out, &onboard) != KVBM_OK) {
            /* Not registered: the G2 hits are given up; the new G1 blocks
             * become plain fresh blocks (acquire) or are released (match). */
            kvbm_manager_release(cache->g2, g2_ids, k2);
            k2 = 0;
            if (!allocate_rest) {
                kvbm_manager_release(cache->g1, fresh, need);
                need = 0;
            }
        }
    }
    if (need > k2)
        memcpy(ids_out + k1 + k2, fresh + k2, sizeof(uint32_t) * (need - k2));
    status = order_engine(cache, need > 0, onboard, ready);
    free(g2_ids);
    free(fresh);
    result_out->g1 = k1;
    result_out->onboarded = k2;
    return status;

err_release_g2:
    if (k2 > 0)
        kvbm_manager_release(cache->g2, g2_ids, k2);
err_release_g1:
    kvbm_manager_release(cache->g1, ids_out, k1);
    free(g2_ids);
    free(fresh);
    return status;
}

/* The public entry of acquire_locked: checks, lock, completed copies first. */
static kvbm_status_t acquire_call(kvbm_cache_t *cache, const uint64_t *hashes, size_t count,
                                  bool allocate_rest, uint32_t *ids_out,
                                  kvbm_cache_match_result_t *result_out, kvbm_fence_t *ready)
{
    if (cache == NULL || result_out == NULL || (count > 0 && (hashes == NULL || ids_out == NULL)))
        return KVBM_ERR_INVALID_ARG;
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
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = kvbm_manager_register(cache->g1, ids, hashes, count, opts, ids_out);
    if (status == KVBM_OK && cache->mode == KVBM_OFFLOAD_WRITE_THROUGH && count > 0) {
        /* Only blocks that now carry their hash (not dedups) are copied. */
        kvbm_evicted_t *copies = malloc(sizeof(kvbm_evicted_t) * count);
        if (copies != NULL) {
            size_t n = 0;
            for (size_t i = 0; i < count; i++) {
                if (ids_out[i] != ids[i])
                    continue;
                bool has_parent = i > 0 || (opts != NULL && opts->has_parent);
                uint64_t parent = i > 0 ? hashes[i - 1] : (opts != NULL ? opts->parent_hash : 0);
                copies[n++] = (kvbm_evicted_t){.block_id = ids[i],
                                               .seq_hash = hashes[i],
                                               .parent_hash = parent,
                                               .has_parent = has_parent};
            }
            cache_batch_t *offload = NULL;
            offload_blocks(cache, copies, n, &offload);
        } else {
            cache->metrics.offload_skipped += count;
        }
        free(copies);
    }
    kvbm__cache_unlock(cache);
    return status;
}

kvbm_status_t kvbm_cache_release(kvbm_cache_t *cache, const uint32_t *ids, size_t count)
{
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = kvbm_manager_release(cache->g1, ids, count);
    kvbm__cache_unlock(cache);
    return status;
}

kvbm_status_t kvbm_cache_scan(kvbm_cache_t *cache, const uint64_t *hashes, size_t count, bool touch,
                              uint32_t *ids_out, size_t *n_found_out)
{
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm_status_t status = kvbm_manager_scan(cache->g1, hashes, count, touch, ids_out, n_found_out);
    kvbm__cache_unlock(cache);
    return status;
}

/* ------------------------------------------------------------------ completion */

kvbm_status_t kvbm_cache_check(kvbm_cache_t *cache, const uint32_t *ids, size_t count)
{
    if (cache == NULL || (count > 0 && ids == NULL))
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    uint64_t newest = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] >= cache->g1_blocks) {
            kvbm__cache_unlock(cache);
            return KVBM_ERR_OUT_OF_RANGE;
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

kvbm_status_t kvbm_cache_clear(kvbm_cache_t *cache)
{
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    /* Copies in flight hold G2 blocks (rule 3) and register offloads when
     * processed: let them all finish first. */
    kvbm__cache_wait_processed(cache, cache->next_seq - 1);
    kvbm_pool_counts_t g1, g2 = {0};
    kvbm_manager_counts(cache->g1, &g1);
    if (cache->g2 != NULL)
        kvbm_manager_counts(cache->g2, &g2);
    if (g1.active > 0 || g2.active > 0) {
        kvbm__cache_unlock(cache);
        return KVBM_ERR_BUSY;
    }
    /* Nothing is active, so neither reset can refuse. One AllBlocksCleared
     * says it all: the managers' removals, and what this call gathered
     * before them, are dropped (the clear supersedes them). */
    kvbm_status_t status = kvbm_manager_reset_inactive(cache->g1);
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

kvbm_status_t kvbm_cache_progress(kvbm_cache_t *cache)
{
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_reap(cache);
    kvbm__cache_unlock(cache);
    return KVBM_OK;
}

kvbm_status_t kvbm_cache_sync(kvbm_cache_t *cache)
{
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm__mutex_lock(&cache->lock);
    kvbm__cache_wait_processed(cache, cache->next_seq - 1);
    kvbm__cache_unlock(cache);
    return KVBM_OK;
}

/* ------------------------------------------------------------------ accessors */

kvbm_status_t kvbm_cache_block_address(kvbm_cache_t *cache, uint32_t id, uint32_t layer,
                                       uint32_t outer, void **addr_out)
{
    if (cache == NULL)
        return KVBM_ERR_INVALID_ARG;
    return kvbm_layout_address(cache->g1_layout, kvbm_pool_ptr(cache->g1_pool), id, layer, outer,
                               addr_out);
}

kvbm_pool_t *kvbm_cache_pool(kvbm_cache_t *cache, kvbm_tier_t tier)
{
    return cache == NULL ? NULL : tier == KVBM_TIER_G1 ? cache->g1_pool : cache->g2_pool;
}

const kvbm_layout_t *kvbm_cache_layout(kvbm_cache_t *cache, kvbm_tier_t tier)
{
    return cache == NULL ? NULL : tier == KVBM_TIER_G1 ? cache->g1_layout : cache->g2_layout;
}

kvbm_manager_t *kvbm_cache_manager(kvbm_cache_t *cache, kvbm_tier_t tier)
{
    return cache == NULL ? NULL : tier == KVBM_TIER_G1 ? cache->g1 : cache->g2;
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
    if (cache == NULL || out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(cache, &m);
    int rc = 0;
#define KVBM_CACHE_PROM_LINE(field, type, help)                                                    \
    if (rc >= 0)                                                                                   \
        rc = kvbm__prometheus_write(out, "cache_" #field, #type, help, NULL, m.field);
    KVBM_CACHE_METRICS_LIST(KVBM_CACHE_PROM_LINE)
#undef KVBM_CACHE_PROM_LINE
    if (rc < 0)
        return KVBM_ERR_IO;
    kvbm_status_t status = kvbm_manager_metrics_prometheus(cache->g1, out);
    if (status == KVBM_OK && cache->g2 != NULL)
        status = kvbm_manager_metrics_prometheus(cache->g2, out);
    return status;
}
