/*
 * Copies in flight for the tiered cache: building batches, issuing them on
 * the right stream after the waits the ordering rules need, and processing
 * them, strictly in submission order, once their fences complete.
 */
#include <assert.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/check.h"
#include "internal.h"

/* The arrays only the G3 kinds use, and a G3 write's disk batch. */
static kvbm_status_t alloc_g3_parts(kvbm_cache_t *cache, cache_batch_t *batch, size_t cap)
{
    batch->g3_ids = kvbm__alloc(cap, sizeof(uint32_t));
    batch->staging = kvbm__alloc(cap, sizeof(uint32_t));
    batch->copy_staging = kvbm__alloc(cap, sizeof(uint32_t));
    if (batch->g3_ids == NULL || batch->staging == NULL || batch->copy_staging == NULL)
        return KVBM_ERR_NO_MEMORY;
    if (batch->kind != BATCH_G3_WRITE)
        return KVBM_OK;
    return kvbm__disk_batch_create(cache->g3_store, cap, &batch->disk);
}

kvbm_status_t kvbm__cache_batch_new(kvbm_cache_t *cache, cache_batch_kind_t kind, size_t n,
                                    cache_batch_t **batch_out)
{
    cache_batch_t *batch = kvbm__calloc(1, sizeof(*batch));
    if (batch == NULL)
        return KVBM_ERR_NO_MEMORY;
    batch->kind = kind;
    batch->refs = 1;
    size_t cap = n > 0 ? n : 1;
    batch->g1_ids = kvbm__alloc(cap, sizeof(uint32_t));
    batch->g2_ids = kvbm__alloc(cap, sizeof(uint32_t));
    batch->copy_g2 = kvbm__alloc(cap, sizeof(uint32_t));
    batch->hashes = kvbm__alloc(cap, sizeof(uint64_t));
    batch->parents = kvbm__alloc(cap, sizeof(uint64_t));
    batch->has_parent = kvbm__calloc(cap, 1);
    batch->poisoned = kvbm__calloc(cap, 1);
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    if (batch->g1_ids == NULL || batch->g2_ids == NULL || batch->copy_g2 == NULL ||
        batch->hashes == NULL || batch->parents == NULL || batch->has_parent == NULL ||
        batch->poisoned == NULL)
        goto err_free;
    if (kind == BATCH_G3_WRITE || kind == BATCH_G3_ONBOARD) {
        status = alloc_g3_parts(cache, batch, cap);
        if (status != KVBM_OK)
            goto err_free;
    }
    status = kvbm_fence_create(cache->backend, &batch->fence);
    if (status != KVBM_OK)
        goto err_free;
    if (cache->engine != NULL) {
        status = kvbm_fence_create(cache->backend, &batch->engine_fence);
        if (status != KVBM_OK)
            goto err_free;
    }
    *batch_out = batch;
    return KVBM_OK;

err_free:
    batch->refs = 0;
    kvbm__cache_batch_unref(cache, batch);
    return status;
}

void kvbm__cache_batch_unref(kvbm_cache_t *cache, cache_batch_t *batch)
{
    (void)cache;
    if (batch == NULL || --batch->refs > 0)
        return;
    kvbm_fence_destroy(batch->fence);
    kvbm_fence_destroy(batch->engine_fence);
    kvbm__disk_batch_destroy(batch->disk);
    kvbm__free(batch->g1_ids);
    kvbm__free(batch->g2_ids);
    kvbm__free(batch->copy_g2);
    kvbm__free(batch->hashes);
    kvbm__free(batch->parents);
    kvbm__free(batch->has_parent);
    kvbm__free(batch->poisoned);
    kvbm__free(batch->g3_ids);
    kvbm__free(batch->staging);
    kvbm__free(batch->copy_staging);
    kvbm__free(batch);
}

/* Rule 1: a batch touches G1 slabs only after the engine's work already
 * enqueued, which may still be writing them: an offload reads slabs the
 * engine filled, and an onboard writes slabs whose previous holder's writes
 * may still be queued (a block freed by a deduplicated registration goes
 * back to the reset pool while the engine is still writing it). */
static kvbm_status_t wait_for_engine(kvbm_cache_t *cache, cache_batch_t *batch,
                                     kvbm_stream_t *stream)
{
    if (cache->engine == NULL || (cache->unsafe & KVBM__CACHE_UNSAFE_NO_ENGINE_ORDER))
        return KVBM_OK;
    kvbm_status_t status = kvbm_fence_record(batch->engine_fence, cache->engine);
    if (status == KVBM_OK)
        status = kvbm_stream_wait_fence(stream, batch->engine_fence);
    return status;
}

static kvbm_status_t submit_offload(kvbm_cache_t *cache, cache_batch_t *batch)
{
    kvbm_status_t status = wait_for_engine(cache, batch, cache->d2h);
    if (status != KVBM_OK)
        return status;
    /* A slab still being onboarded is read only after its data has landed.
     * (Only then: offloads do not queue behind unrelated onboards, so the
     * two directions overlap, and a G2 block being read by an onboard is
     * protected by being held, rule 3, not by this wait.) */
    bool reads_loading_slab = false;
    for (size_t i = 0; i < batch->n && !reads_loading_slab; i++)
        reads_loading_slab = cache->loading_seq[batch->g1_ids[i]] > cache->processed_seq;
    if (reads_loading_slab && cache->last_onboard != NULL) {
        status = kvbm_stream_wait_fence(cache->d2h, cache->last_onboard->fence);
        if (status != KVBM_OK)
            return status;
    }
    return kvbm_backend_copy_blocks_between(
        cache->backend, cache->d2h, cache->g1_layout, cache->g1_pool, batch->g1_ids,
        cache->g2_layout, cache->g2_pool, batch->g2_ids, batch->n, KVBM_COPY_D2H, batch->fence);
}

/* Before an onboard writes G1 slabs: the engine's queued work (rule 1), and
 * the newest offload, since the new G1 blocks may be slabs just evicted that
 * it has yet to read. */
static kvbm_status_t wait_before_onboard(kvbm_cache_t *cache, cache_batch_t *batch)
{
    kvbm_status_t status = wait_for_engine(cache, batch, cache->h2d);
    if (status == KVBM_OK && cache->last_offload != NULL)
        status = kvbm_stream_wait_fence(cache->h2d, cache->last_offload->fence);
    return status;
}

static kvbm_status_t submit_onboard(kvbm_cache_t *cache, cache_batch_t *batch)
{
    kvbm_status_t status = wait_before_onboard(cache, batch);
    if (status != KVBM_OK)
        return status;
    return kvbm_backend_copy_blocks_between(cache->backend, cache->h2d, cache->g2_layout,
                                            cache->g2_pool, batch->copy_g2, cache->g1_layout,
                                            cache->g1_pool, batch->g1_ids, batch->n_copy,
                                            KVBM_COPY_H2D, batch->fence);
}

static kvbm_status_t submit_by_kind(kvbm_cache_t *cache, cache_batch_t *batch)
{
    switch (batch->kind) {
    case BATCH_OFFLOAD:
        return submit_offload(cache, batch);
    case BATCH_ONBOARD:
        return submit_onboard(cache, batch);
    case BATCH_G3_WRITE:
        /* The bytes are already in staging: nothing to order with the streams. */
        return kvbm__disk_store_write(cache->g3_store, batch->disk);
    default: {
        kvbm_status_t status = wait_before_onboard(cache, batch);
        return status == KVBM_OK ? kvbm__cache_g3_copy_in(cache, batch) : status;
    }
    }
}

/* Blocks a batch counts in copies_in_flight. */
static size_t blocks_in_flight(const cache_batch_t *batch)
{
    return batch->kind == BATCH_OFFLOAD || batch->kind == BATCH_G3_WRITE ? batch->n : batch->n_copy;
}

kvbm_status_t kvbm__cache_batch_submit(kvbm_cache_t *cache, cache_batch_t *batch)
{
    kvbm_status_t status = submit_by_kind(cache, batch);
    if (status != KVBM_OK)
        return status;
    batch->seq = cache->next_seq++;
    batch->next = NULL;
    if (cache->tail != NULL)
        cache->tail->next = batch;
    else
        cache->head = batch;
    cache->tail = batch;
    if (batch->kind == BATCH_OFFLOAD)
        cache->last_offload = batch;
    else if (batch->kind == BATCH_ONBOARD || batch->kind == BATCH_G3_ONBOARD)
        cache->last_onboard = batch;
    cache->metrics.copy_batches += batch->kind != BATCH_G3_WRITE;
    cache->metrics.copies_in_flight += blocks_in_flight(batch);
    return KVBM_OK;
}

void kvbm__cache_onboard_failed(kvbm_cache_t *cache, const uint32_t *g1_ids, size_t n,
                                cache_batch_t *later)
{
    kvbm_manager_invalidate(cache->g1, g1_ids, n);
    for (size_t i = 0; i < n; i++)
        cache->load_failed[g1_ids[i]] = 1;
    for (; later != NULL; later = later->next) {
        if (later->kind != BATCH_OFFLOAD)
            continue;
        for (size_t j = 0; j < later->n; j++)
            for (size_t i = 0; i < n; i++)
                if (later->g1_ids[j] == g1_ids[i])
                    later->poisoned[j] = 1;
    }
    cache->metrics.failed_copies += n;
}

static void process_offload(kvbm_cache_t *cache, cache_batch_t *batch, kvbm_status_t result)
{
    /* Register every good copy in G2, in eviction order, then release them in
     * the same order: the G2 policy sees them as the contract's one-by-one
     * offloads (register, release) would have left them. */
    uint32_t *kept = batch->g2_ids;
    size_t n_kept = 0;
    for (size_t i = 0; i < batch->n; i++) {
        uint32_t block = batch->g2_ids[i], registered = block;
        kvbm_register_opts_t opts = {.parent_for_events_only = true,
                                     .has_parent = batch->has_parent[i] != 0,
                                     .parent_hash = batch->parents[i],
                                     .priority = 50};
        if (result == KVBM_OK && !batch->poisoned[i] &&
            kvbm_manager_register(cache->g2, &block, &batch->hashes[i], 1, &opts, &registered) ==
                KVBM_OK) {
            cache->metrics.offloads++;
            cache->metrics.offload_bytes += cache->block_bytes;
        } else if (result != KVBM_OK) {
            cache->metrics.failed_copies++;
        } else if (!batch->poisoned[i]) {
            /* Copied, but G2 could not register it (out of memory): the
             * hash is not cached after all. */
            cache->metrics.offload_skipped++;
        }
        kept[n_kept++] = registered; /* a failed block is still mutable: released to reset */
    }
    kvbm_status_t status = kvbm_manager_release(cache->g2, kept, n_kept);
    assert(status == KVBM_OK);
    (void)status;
}

static void process_onboard(kvbm_cache_t *cache, cache_batch_t *batch, kvbm_status_t result)
{
    if (result == KVBM_OK) {
        cache->metrics.onboards += batch->n_copy;
        cache->metrics.onboard_bytes += (uint64_t)batch->n_copy * cache->block_bytes;
    } else {
        kvbm__cache_onboard_failed(cache, batch->g1_ids, batch->n_copy, batch->next);
    }
    for (size_t i = 0; i < batch->n_copy; i++)
        if (cache->loading_seq[batch->g1_ids[i]] == batch->seq)
            cache->loading_seq[batch->g1_ids[i]] = 0;
    /* Rule 3: the G2 sources were held until now; release them last first. */
    if (!(cache->unsafe & KVBM__CACHE_UNSAFE_EARLY_G2_RELEASE)) {
        for (size_t i = 0; i < batch->n / 2; i++) {
            uint32_t swap = batch->g2_ids[i];
            batch->g2_ids[i] = batch->g2_ids[batch->n - 1 - i];
            batch->g2_ids[batch->n - 1 - i] = swap;
        }
        kvbm_status_t status = kvbm_manager_release(cache->g2, batch->g2_ids, batch->n);
        assert(status == KVBM_OK);
        (void)status;
    }
}

kvbm_status_t kvbm__cache_batch_query(const cache_batch_t *batch)
{
    if (batch->kind == BATCH_G3_WRITE)
        return kvbm__disk_batch_done(batch->disk) ? KVBM_OK : KVBM_ERR_BUSY;
    return kvbm_fence_query(batch->fence);
}

static void process(kvbm_cache_t *cache, cache_batch_t *batch, kvbm_status_t result)
{
    switch (batch->kind) {
    case BATCH_OFFLOAD:
        process_offload(cache, batch, result);
        break;
    case BATCH_ONBOARD:
        process_onboard(cache, batch, result);
        break;
    case BATCH_G3_WRITE:
        kvbm__cache_g3_process_write(cache, batch);
        break;
    default:
        kvbm__cache_g3_process_onboard(cache, batch, result);
        break;
    }
}

void kvbm__cache_reap(kvbm_cache_t *cache)
{
    while (cache->head != NULL) {
        cache_batch_t *batch = cache->head;
        kvbm_status_t result = kvbm__cache_batch_query(batch);
        if (result == KVBM_ERR_BUSY)
            return;
        process(cache, batch, result);
        cache->metrics.copies_in_flight -= blocks_in_flight(batch);
        cache->processed_seq = batch->seq;
        cache->head = batch->next;
        if (cache->head == NULL)
            cache->tail = NULL;
        if (cache->last_offload == batch)
            cache->last_offload = NULL;
        if (cache->last_onboard == batch)
            cache->last_onboard = NULL;
        kvbm__cache_batch_unref(cache, batch);
    }
}

void kvbm__cache_wait_processed(kvbm_cache_t *cache, uint64_t seq)
{
    for (;;) {
        kvbm__cache_reap(cache);
        if (cache->processed_seq >= seq || cache->head == NULL)
            return;
        cache_batch_t *batch = cache->head;
        batch->refs++; /* keeps its fence alive while we wait unlocked */
        kvbm__mutex_unlock(&cache->lock);
        if (batch->kind == BATCH_G3_WRITE) {
            kvbm__disk_batch_wait(batch->disk);
        } else {
            kvbm_status_t waited = kvbm_fence_wait(batch->fence);
            (void)waited; /* the result is read again by reap under the lock */
        }
        kvbm__mutex_lock(&cache->lock);
        kvbm__cache_batch_unref(cache, batch);
    }
}

void kvbm__cache_set_unsafe(kvbm_cache_t *cache, unsigned flags)
{
    kvbm__mutex_lock(&cache->lock);
    cache->unsafe = flags;
    kvbm__mutex_unlock(&cache->lock);
}
