/*
 * The disk tier (G3) in the tiered cache: G2 victims written to G3 through
 * pinned staging buffers, G3 hits read back into staging, verified,
 * registered in G1 and copied in on the onboard stream.
 *
 * Everything here runs with the cache lock held. It is dropped only to wait:
 * for disk reads (the G3 blocks being read and the fresh G1 blocks are held,
 * so nothing they protect can change), and to let batches in flight be
 * processed when staging buffers or G3 blocks run out (then G3 writes are
 * issued in parts, as the contract's one-by-one offloads would have freed
 * those blocks already).
 *
 * The G3 write and onboard batches go through the cache's one FIFO, so they
 * are processed in the order they were issued: the writes of a call (G2
 * victims, registered in G3 when written) before the release of the G3 hits
 * it onboarded, as the contract orders them.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "internal.h"

#define DEFAULT_STAGING_BLOCKS 256u

static unsigned char *staging_buffer(const kvbm_cache_t *cache, uint32_t slot)
{
    return cache->staging_base + (size_t)slot * cache->slot_bytes;
}

static kvbm_status_t open_staging(kvbm_cache_t *cache, uint32_t blocks)
{
    cache->staging_blocks = blocks > 0 ? blocks : DEFAULT_STAGING_BLOCKS;
    cache->slot_bytes = kvbm__disk_store_geometry(cache->g3_store)->slot_bytes;
    size_t bytes;
    if (__builtin_mul_overflow(cache->slot_bytes, (size_t)cache->staging_blocks, &bytes))
        return KVBM_ERR_OVERFLOW;
    /* Pinned, so host-to-device copies out of it are asynchronous; aligned
     * to at least 4096 bytes, as direct I/O wants. */
    kvbm_status_t status =
        kvbm_pool_create(cache->backend, KVBM_MEM_HOST, bytes, &cache->staging_pool);
    if (status != KVBM_OK)
        return status;
    cache->staging_base = kvbm_pool_ptr(cache->staging_pool);
    cache->staging_free = kvbm__alloc(cache->staging_blocks, sizeof(uint32_t));
    if (cache->staging_free == NULL) {
        kvbm_pool_destroy(cache->staging_pool);
        cache->staging_pool = NULL;
        return KVBM_ERR_NO_MEMORY;
    }
    kvbm_status_t cond_status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&cache->staging_freed, NULL), cond_status);
    if (cond_status != KVBM_OK) {
        kvbm__free(cache->staging_free);
        kvbm_pool_destroy(cache->staging_pool);
        cache->staging_pool = NULL;
        return cond_status;
    }
    for (uint32_t i = 0; i < cache->staging_blocks; i++)
        cache->staging_free[i] = cache->staging_blocks - 1 - i;
    cache->n_staging_free = cache->staging_blocks;
    return KVBM_OK;
}

kvbm_status_t kvbm__cache_g3_open(kvbm_cache_t *cache, const kvbm_cache_config_t *config)
{
    kvbm__disk_tier_config_t tc = {.disk = config->g3,
                                   .layout = &config->layout,
                                   .payload_bytes = cache->block_bytes,
                                   .policy_config = config->policy_config,
                                   .events = cache->events};
    kvbm_status_t status = kvbm__disk_tier_open(&tc, &cache->g3);
    if (status != KVBM_OK)
        return status;
    cache->g3_manager = kvbm__disk_tier_manager(cache->g3);
    cache->g3_store = kvbm__disk_tier_store(cache->g3);
    status = open_staging(cache, config->g3->staging_blocks);
    if (status != KVBM_OK) {
        kvbm__disk_tier_close(cache->g3);
        cache->g3 = NULL;
        cache->g3_manager = NULL;
        cache->g3_store = NULL;
    }
    return status;
}

void kvbm__cache_g3_close(kvbm_cache_t *cache)
{
    if (cache->g3 == NULL)
        return;
    kvbm__disk_tier_close(cache->g3);
    kvbm_pool_destroy(cache->staging_pool);
    kvbm__free(cache->staging_free);
    kvbm__cond_destroy(&cache->staging_freed);
}

/* ------------------------------------------------------------------ writes */

/* Issues the queued writes, then waits until everything in flight has been
 * processed (the lock dropped meanwhile): staging buffers and G3 blocks held
 * by earlier batches are free again. */
static void drain(kvbm_cache_t *cache, cache_offload_t *off)
{
    kvbm__cache_g3_flush(cache, off);
    kvbm__cache_wait_processed(cache, cache->next_seq - 1);
    off->writes_issued = false; /* all processed */
}

/* Waits until @p n staging buffers are free: batches in flight hold them
 * until processed (then this call processes them), other calls while they
 * read from G3 or gather writes (then it waits for staging_freed, which they
 * signal when they free buffers or hand them to a batch). */
static void wait_for_staging(kvbm_cache_t *cache, cache_offload_t *off, size_t n)
{
    while (cache->n_staging_free < n) {
        if (cache->head != NULL || off->g3_writes != NULL)
            drain(cache, off);
        else
            kvbm__cond_wait(&cache->staging_freed, &cache->lock);
    }
}

static uint32_t take_staging(kvbm_cache_t *cache, cache_offload_t *off)
{
    wait_for_staging(cache, off, 1);
    return cache->staging_free[--cache->n_staging_free];
}

static void give_staging(kvbm_cache_t *cache, const uint32_t *slots, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cache->staging_free[cache->n_staging_free++] = slots[i];
    assert(cache->n_staging_free <= cache->staging_blocks);
    if (n > 0)
        kvbm__cond_broadcast(&cache->staging_freed);
}

/* A G3 block to write into. This call's writes hold their G3 blocks until
 * processed, where the contract would have released them already: when G3
 * has none to give while this call has writes pending, those are issued and
 * processed first and the take is retried. */
static kvbm_status_t take_g3_block(kvbm_cache_t *cache, cache_offload_t *off, uint32_t *id_out)
{
    bool evicted;
    kvbm_status_t status = kvbm__disk_tier_take(cache->g3, id_out, &evicted);
    if (status == KVBM_ERR_NO_BLOCKS && (off->writes_issued || off->g3_writes != NULL)) {
        drain(cache, off);
        status = kvbm__disk_tier_take(cache->g3, id_out, &evicted);
    }
    return status;
}

/* Copies a G2 block's bytes (its regions back to back) into a staging
 * payload; false (nothing usable) only when the region list cannot be had. */
static bool gather_g2_block(kvbm_cache_t *cache, uint32_t g2_block, unsigned char *payload)
{
    const unsigned char *base = kvbm_pool_ptr(cache->g2_pool);
    size_t n = kvbm_layout_regions_per_block(cache->g2_layout), got = 0, done = 0;
    kvbm_region_t stack_regions[64];
    kvbm_region_t *regions = n <= 64 ? stack_regions : kvbm__alloc(n, sizeof(kvbm_region_t));
    if (regions == NULL ||
        kvbm_layout_block_regions(cache->g2_layout, g2_block, regions, n, &got) != KVBM_OK)
        got = 0;
    for (size_t r = 0; r < got; r++) {
        memcpy(payload + done, base + regions[r].offset, regions[r].bytes);
        done += regions[r].bytes;
    }
    if (regions != stack_regions)
        kvbm__free(regions);
    return done == cache->block_bytes;
}

/* Queues the write of @p victim (a G2 block, its hash and parent) into G3
 * block @p id from staging slot @p slot. */
static kvbm_status_t queue_write(kvbm_cache_t *cache, cache_offload_t *off, uint32_t id,
                                 const kvbm_evicted_t *victim, uint32_t slot)
{
    if (off->g3_writes == NULL) {
        kvbm_status_t status =
            kvbm__cache_batch_new(cache, BATCH_G3_WRITE, cache->staging_blocks, &off->g3_writes);
        if (status != KVBM_OK)
            return status;
    }
    cache_batch_t *batch = off->g3_writes;
    kvbm_status_t status = kvbm__disk_batch_add(batch->disk, kvbm__disk_tier_slot(cache->g3, id),
                                                victim->seq_hash, staging_buffer(cache, slot));
    if (status != KVBM_OK)
        return status;
    batch->g3_ids[batch->n] = id;
    batch->hashes[batch->n] = victim->seq_hash;
    batch->parents[batch->n] = victim->parent_hash;
    batch->has_parent[batch->n] = victim->has_parent;
    batch->staging[batch->n] = slot;
    batch->n++;
    batch->n_staging = batch->n;
    return KVBM_OK;
}

void kvbm__cache_g3_offload(kvbm_cache_t *cache, const kvbm_evicted_t *victim, cache_offload_t *off)
{
    if (kvbm_manager_contains(cache->g3_manager, victim->seq_hash))
        return; /* inclusive: G3 has it */
    if (!kvbm__disk_store_reserve_space(cache->g3_store, 1))
        return; /* at the filesystem's floor: counted by the store */
    uint32_t slot = take_staging(cache, off), id;
    if (!gather_g2_block(cache, victim->block_id,
                         staging_buffer(cache, slot) + KVBM__DISK_HEADER_BYTES) ||
        take_g3_block(cache, off, &id) != KVBM_OK) {
        give_staging(cache, &slot, 1);
        cache->metrics.g3_offload_skipped++;
        return;
    }
    if (queue_write(cache, off, id, victim, slot) != KVBM_OK) {
        kvbm_manager_release(cache->g3_manager, &id, 1); /* mutable: back to reset */
        give_staging(cache, &slot, 1);
        cache->metrics.g3_offload_skipped++;
    }
}

void kvbm__cache_g3_flush(kvbm_cache_t *cache, cache_offload_t *off)
{
    cache_batch_t *batch = off->g3_writes;
    off->g3_writes = NULL;
    if (batch == NULL)
        return;
    if (batch->n > 0 && kvbm__cache_batch_submit(cache, batch) == KVBM_OK) {
        off->writes_issued = true;
        kvbm__cond_broadcast(&cache->staging_freed); /* a waiter can now process it */
        return;
    }
    /* Nothing queued, or the store refused the batch: the G3 blocks go back
     * to reset and the hashes are simply not stored. */
    if (batch->n > 0) {
        kvbm_manager_release(cache->g3_manager, batch->g3_ids, batch->n);
        give_staging(cache, batch->staging, batch->n_staging);
        cache->metrics.g3_offload_skipped += batch->n;
    }
    kvbm__cache_batch_unref(cache, batch);
}

void kvbm__cache_g3_process_write(kvbm_cache_t *cache, cache_batch_t *batch)
{
    size_t stored = kvbm__disk_tier_finish_writes(cache->g3, batch->g3_ids, batch->hashes,
                                                  batch->parents, batch->has_parent, batch->disk);
    cache->metrics.g3_offloads += stored;
    cache->metrics.g3_offload_bytes += (uint64_t)stored * cache->block_bytes;
    give_staging(cache, batch->staging, batch->n_staging);
}

kvbm_status_t kvbm__cache_g3_clear(kvbm_cache_t *cache)
{
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(cache->g3_manager, &counts);
    uint64_t *hashes = kvbm__alloc((counts.total + 1), sizeof(uint64_t));
    uint32_t *ids = kvbm__alloc((counts.total + 1), sizeof(uint32_t));
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    size_t n = 0, found = 0;
    if (hashes != NULL && ids != NULL)
        status = kvbm_manager_registered_hashes(cache->g3_manager, hashes, counts.total, &n);
    /* Every registered block is inactive (the caller checked): the scan
     * holds them all, withdrawing takes their hashes and file slots, and the
     * release sends them to reset. */
    if (status == KVBM_OK)
        status = kvbm_manager_scan(cache->g3_manager, hashes, n, false, ids, &found);
    if (status == KVBM_OK) {
        assert(found == n);
        kvbm__disk_tier_withdraw(cache->g3, ids, n);
        status = kvbm_manager_release(cache->g3_manager, ids, n);
        assert(status == KVBM_OK);
    }
    kvbm__free(ids);
    kvbm__free(hashes);
    return status;
}

/* ------------------------------------------------------------------ onboarding */

/* One chunk of G3 hits, at most staging_blocks of them: hashes[pos, pos + n). */
typedef struct chunk {
    size_t pos;
    size_t n;
    const uint32_t *g3_ids;
    const uint32_t *fresh;
    uint32_t *staging;
    uint8_t *ok; /* read, verified and registered */
} chunk_t;

static void reserve_staging(kvbm_cache_t *cache, chunk_t *c)
{
    cache_offload_t no_writes = {0};
    wait_for_staging(cache, &no_writes, c->n);
    for (size_t j = 0; j < c->n; j++)
        c->staging[j] = cache->staging_free[--cache->n_staging_free];
}

/* Reads the chunk's blocks into staging and waits for them with the lock
 * dropped; ok[j] says which arrived whole and verified. */
static kvbm_status_t read_chunk(kvbm_cache_t *cache, const uint64_t *hashes, chunk_t *c)
{
    kvbm__disk_batch_t *reads = NULL;
    kvbm_status_t status = kvbm__disk_batch_create(cache->g3_store, c->n, &reads);
    for (size_t j = 0; j < c->n && status == KVBM_OK; j++)
        status = kvbm__disk_batch_add(reads, kvbm__disk_tier_slot(cache->g3, c->g3_ids[j]),
                                      hashes[c->pos + j], staging_buffer(cache, c->staging[j]));
    if (status == KVBM_OK)
        status = kvbm__disk_store_read(cache->g3_store, reads);
    if (status == KVBM_OK) {
        kvbm__mutex_unlock(&cache->lock);
        kvbm__disk_batch_wait(reads);
        kvbm__mutex_lock(&cache->lock);
    }
    for (size_t j = 0; j < c->n; j++)
        c->ok[j] = status == KVBM_OK && kvbm__disk_batch_outcome(reads, j) == KVBM__DISK_DONE;
    kvbm__disk_batch_destroy(reads);
    return status;
}

/* A G3 hit that failed: never registered in G1 (its block stays mutable,
 * marked failed for kvbm_cache_check()), and withdrawn from G3. */
static void load_failed(kvbm_cache_t *cache, chunk_t *c, size_t j, uint32_t *ids_out)
{
    c->ok[j] = 0;
    ids_out[c->pos + j] = c->fresh[j];
    cache->load_failed[c->fresh[j]] = 1;
    cache->metrics.g3_failed_loads++;
    kvbm__disk_tier_withdraw(cache->g3, &c->g3_ids[j], 1);
}

/* Registers the verified blocks in G1, one run of consecutive ones at a time. */
static void register_chunk(kvbm_cache_t *cache, const uint64_t *hashes, chunk_t *c,
                           uint32_t *ids_out)
{
    for (size_t j = 0; j < c->n;) {
        if (!c->ok[j]) {
            load_failed(cache, c, j++, ids_out);
            continue;
        }
        size_t run = 1;
        while (j + run < c->n && c->ok[j + run])
            run++;
        size_t pos = c->pos + j;
        kvbm_register_opts_t opts = {.has_parent = pos > 0,
                                     .parent_hash = pos > 0 ? hashes[pos - 1] : 0,
                                     .priority = 50,
                                     .request_blocks = cache->request_blocks,
                                     .first_position = (uint32_t)pos};
        if (kvbm_manager_register(cache->g1, c->fresh + j, hashes + pos, run, &opts,
                                  ids_out + pos) != KVBM_OK)
            for (size_t k = j; k < j + run; k++)
                load_failed(cache, c, k, ids_out); /* out of memory */
        else
            kvbm__cache_admission_registered(cache, c->fresh + j, hashes + pos, ids_out + pos, run,
                                             opts.request_blocks, opts.first_position);
        j += run;
    }
}

/* The chunk's onboard batch: copies of the verified blocks G1 did not
 * already hold (dedup), the chunk's staging buffers, and with the last chunk
 * every G3 hit of the call, to release last first once processed. */
static kvbm_status_t build_onboard(kvbm_cache_t *cache, const chunk_t *c, const uint32_t *ids_out,
                                   const uint32_t *all_g3, size_t k3, bool last,
                                   cache_batch_t **batch_out)
{
    cache_batch_t *batch = NULL;
    kvbm_status_t status =
        kvbm__cache_batch_new(cache, BATCH_G3_ONBOARD, c->n > k3 ? c->n : k3, &batch);
    if (status != KVBM_OK)
        return status;
    for (size_t j = 0; j < c->n; j++) {
        batch->staging[j] = c->staging[j];
        if (!c->ok[j] || ids_out[c->pos + j] != c->fresh[j])
            continue;
        batch->g1_ids[batch->n_copy] = c->fresh[j];
        batch->copy_staging[batch->n_copy++] = c->staging[j];
    }
    batch->n_staging = c->n;
    if (last) {
        for (size_t j = 0; j < k3; j++)
            batch->g3_ids[j] = all_g3[k3 - 1 - j];
        batch->n_g3 = k3;
    }
    *batch_out = batch;
    return KVBM_OK;
}

/* The chunk's batch could not be made or issued: the registered blocks'
 * data never arrives, so they are withdrawn as after a failed copy; the G3
 * hits (with the last chunk) and the staging buffers are given back. */
static void onboard_not_issued(kvbm_cache_t *cache, const chunk_t *c, const uint32_t *ids_out,
                               const uint32_t *all_g3, size_t k3, bool last)
{
    for (size_t j = 0; j < c->n; j++)
        if (c->ok[j] && ids_out[c->pos + j] == c->fresh[j])
            kvbm__cache_onboard_failed(cache, &c->fresh[j], 1, NULL);
    for (size_t j = 0; last && j < k3; j++)
        kvbm_manager_release(cache->g3_manager, &all_g3[k3 - 1 - j], 1);
    give_staging(cache, c->staging, c->n);
}

static cache_batch_t *onboard_chunk(kvbm_cache_t *cache, const uint64_t *hashes, chunk_t *c,
                                    uint32_t *ids_out, const uint32_t *all_g3, size_t k3, bool last)
{
    reserve_staging(cache, c);
    read_chunk(cache, hashes, c);
    register_chunk(cache, hashes, c, ids_out);
    cache_batch_t *batch = NULL;
    if (build_onboard(cache, c, ids_out, all_g3, k3, last, &batch) != KVBM_OK) {
        onboard_not_issued(cache, c, ids_out, all_g3, k3, last);
        return NULL;
    }
    if (kvbm__cache_batch_submit(cache, batch) != KVBM_OK) {
        batch->n_g3 = batch->n_staging = 0; /* given back below, not by the batch */
        kvbm__cache_batch_unref(cache, batch);
        onboard_not_issued(cache, c, ids_out, all_g3, k3, last);
        return NULL;
    }
    for (size_t i = 0; i < batch->n_copy; i++)
        cache->loading_seq[batch->g1_ids[i]] = batch->seq;
    kvbm__cond_broadcast(&cache->staging_freed); /* a waiter can now process it */
    return batch;
}

/* Out of memory before any read: every hit is a failed load (the G3 blocks
 * are fine and simply released), nothing is registered. */
static void onboard_none(kvbm_cache_t *cache, size_t start, size_t k3, const uint32_t *g3_ids,
                         const uint32_t *fresh, uint32_t *ids_out)
{
    for (size_t j = 0; j < k3; j++) {
        ids_out[start + j] = fresh[j];
        cache->load_failed[fresh[j]] = 1;
    }
    cache->metrics.g3_failed_loads += k3;
    kvbm_manager_release(cache->g3_manager, g3_ids, k3);
}

void kvbm__cache_g3_onboard(kvbm_cache_t *cache, const uint64_t *hashes, size_t start, size_t k3,
                            const uint32_t *g3_ids, const uint32_t *fresh, uint32_t *ids_out,
                            cache_batch_t **last_out)
{
    *last_out = NULL;
    cache->metrics.g3_hits += k3;
    for (size_t j = 0; j < k3; j++)
        cache->metrics.g3_hits_from_file += kvbm__disk_tier_from_file(cache->g3, g3_ids[j]);
    size_t max_chunk = cache->staging_blocks;
    uint32_t *staging = kvbm__alloc(max_chunk, sizeof(uint32_t));
    uint8_t *ok = kvbm__alloc(max_chunk, 1);
    if (staging == NULL || ok == NULL) {
        onboard_none(cache, start, k3, g3_ids, fresh, ids_out);
        k3 = 0;
    }
    for (size_t done = 0; done < k3;) {
        size_t n = k3 - done < max_chunk ? k3 - done : max_chunk;
        chunk_t c = {.pos = start + done,
                     .n = n,
                     .g3_ids = g3_ids + done,
                     .fresh = fresh + done,
                     .staging = staging,
                     .ok = ok};
        bool last = done + n == k3;
        cache_batch_t *batch = onboard_chunk(cache, hashes, &c, ids_out, g3_ids, k3, last);
        if (last && batch != NULL) {
            batch->refs++; /* the caller's, for the engine's fence */
            *last_out = batch;
        }
        done += n;
    }
    kvbm__free(staging);
    kvbm__free(ok);
}

kvbm_status_t kvbm__cache_g3_copy_in(kvbm_cache_t *cache, cache_batch_t *batch)
{
    size_t per_block = kvbm_layout_regions_per_block(cache->g1_layout);
    kvbm_copy_t *copies = kvbm__alloc(batch->n_copy * per_block + 1, sizeof(kvbm_copy_t));
    kvbm_region_t *regions = kvbm__alloc(per_block, sizeof(kvbm_region_t));
    kvbm_status_t status = copies != NULL && regions != NULL ? KVBM_OK : KVBM_ERR_NO_MEMORY;
    unsigned char *g1_base = kvbm_pool_ptr(cache->g1_pool);
    size_t n = 0;
    for (size_t i = 0; i < batch->n_copy && status == KVBM_OK; i++) {
        size_t got = 0, done = 0;
        status =
            kvbm_layout_block_regions(cache->g1_layout, batch->g1_ids[i], regions, per_block, &got);
        const unsigned char *src =
            staging_buffer(cache, batch->copy_staging[i]) + KVBM__DISK_HEADER_BYTES;
        for (size_t r = 0; r < got && status == KVBM_OK; r++) {
            copies[n++] = (kvbm_copy_t){
                .src = src + done, .dst = g1_base + regions[r].offset, .bytes = regions[r].bytes};
            done += regions[r].bytes;
        }
    }
    if (status == KVBM_OK)
        status =
            kvbm_backend_copy(cache->backend, cache->h2d, copies, n, KVBM_COPY_H2D, batch->fence);
    kvbm__free(copies);
    kvbm__free(regions);
    return status;
}

void kvbm__cache_g3_process_onboard(kvbm_cache_t *cache, cache_batch_t *batch, kvbm_status_t result)
{
    if (result == KVBM_OK) {
        cache->metrics.g3_onboards += batch->n_copy;
        cache->metrics.g3_onboard_bytes += (uint64_t)batch->n_copy * cache->block_bytes;
    } else {
        kvbm__cache_onboard_failed(cache, batch->g1_ids, batch->n_copy, batch->next);
    }
    for (size_t i = 0; i < batch->n_copy; i++)
        if (cache->loading_seq[batch->g1_ids[i]] == batch->seq)
            cache->loading_seq[batch->g1_ids[i]] = 0;
    if (batch->n_g3 > 0) {
        kvbm_status_t status = kvbm_manager_release(cache->g3_manager, batch->g3_ids, batch->n_g3);
        assert(status == KVBM_OK);
        (void)status;
    }
    give_staging(cache, batch->staging, batch->n_staging);
}
