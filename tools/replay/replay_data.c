/*
 * Data mode: the contract's steps through the tiered cache, with real copies
 * on a memory backend (the CPU fallback here, CUDA where a GPU is present).
 * Each step of the contract maps onto the cache:
 *   2-4  kvbm_cache_acquire: G1 match, G2 match, one G1 allocation whose
 *        evictions are offloaded in one batch, the G2 hits onboarded and
 *        registered in G1 (first, as in step 5);
 *   5    kvbm_cache_register for the newly computed blocks;
 *   6    kvbm_cache_sync: waits for the copies; offloaded blocks are then
 *        registered in G2, the onboarded G2 blocks released, last first;
 *   7    kvbm_cache_release of all G1 blocks, last first.
 * With verify, every block written is stamped with its hash (the first
 * 8 bytes of each region), and every block served is checked. Stamps are
 * copied from and to a pinned staging pool through the backend, so the
 * check works where G1 is device memory (the CUDA backend) as on the CPU;
 * the stamps of fresh blocks land before they are registered, as an
 * engine's writes would (the replay gives the cache no engine stream).
 */
#include <stdlib.h>
#include <string.h>

#include "replay_internal.h"

#define LAYERS 4u
#define OUTER  2u
#define TOKENS 16
#define ELEM   2

/* The staging pool, stream and fence of the stamps: one 8-byte stamp per
 * region of the largest request that is not oversize (g1_blocks blocks). */
static kvbm_status_t stamps_open(replay_t *replay)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(replay->cache, KVBM_TIER_G1);
    replay->stamp_regions = kvbm_layout_regions_per_block(layout);
    size_t slots = (size_t)replay->g1_blocks * replay->stamp_regions;
    replay->stamp_copies = malloc(slots * sizeof(kvbm_copy_t));
    if (replay->stamp_copies == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t status =
        kvbm_pool_create(replay->backend, KVBM_MEM_HOST, slots * sizeof(uint64_t), &replay->stamps);
    if (status != KVBM_OK)
        goto err_free_copies;
    status = kvbm_stream_create(replay->backend, &replay->stamp_stream);
    if (status != KVBM_OK)
        goto err_destroy_pool;
    status = kvbm_fence_create(replay->backend, &replay->stamp_fence);
    if (status != KVBM_OK)
        goto err_destroy_stream;
    return KVBM_OK;

err_destroy_stream:
    kvbm_stream_destroy(replay->stamp_stream);
    replay->stamp_stream = NULL;
err_destroy_pool:
    kvbm_pool_destroy(replay->stamps);
    replay->stamps = NULL;
err_free_copies:
    free(replay->stamp_copies);
    replay->stamp_copies = NULL;
    return status;
}

static void stamps_close(replay_t *replay)
{
    kvbm_fence_destroy(replay->stamp_fence);
    kvbm_stream_destroy(replay->stamp_stream);
    kvbm_pool_destroy(replay->stamps);
    free(replay->stamp_copies);
}

kvbm_status_t replay__data_open(replay_t *replay, const replay_config_t *config)
{
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = config->backend_kind;
    kvbm_status_t status = kvbm_backend_create(&bc, &replay->backend);
    if (status != KVBM_OK)
        return status;
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = replay->backend;
    cc.layout.num_blocks = config->g1_blocks;
    cc.layout.num_layers = LAYERS;
    cc.layout.outer_dim = OUTER;
    cc.layout.tokens_per_block = TOKENS;
    cc.layout.elem_size = ELEM;
    uint32_t kib = config->block_kib > 0 ? config->block_kib : 16;
    cc.layout.inner_dim = kib * 1024u / (LAYERS * OUTER * TOKENS * ELEM);
    if (cc.layout.inner_dim == 0)
        cc.layout.inner_dim = 1;
    cc.g2_blocks = config->g2_blocks;
    cc.g1_policy = config->g1_policy;
    cc.g2_policy = config->g2_policy;
    cc.policy_config = config->policy_config;
    status = kvbm_cache_create(&cc, &replay->cache);
    if (status != KVBM_OK)
        goto err_destroy_backend;
    status = kvbm_fence_create(replay->backend, &replay->ready);
    if (status != KVBM_OK)
        goto err_destroy_cache;
    replay->g1 = kvbm_cache_manager(replay->cache, KVBM_TIER_G1);
    replay->g2 = kvbm_cache_manager(replay->cache, KVBM_TIER_G2);
    replay->verify = config->verify;
    if (replay->verify) {
        status = stamps_open(replay);
        if (status != KVBM_OK)
            goto err_destroy_ready;
    }
    return KVBM_OK;

err_destroy_ready:
    kvbm_fence_destroy(replay->ready);
    replay->ready = NULL;
err_destroy_cache:
    kvbm_cache_destroy(replay->cache);
    replay->cache = NULL;
err_destroy_backend:
    kvbm_backend_destroy(replay->backend);
    replay->backend = NULL;
    return status;
}

void replay__data_close(replay_t *replay)
{
    stamps_close(replay);
    kvbm_fence_destroy(replay->ready);
    kvbm_cache_destroy(replay->cache);
    kvbm_backend_destroy(replay->backend);
}

/*
 * Writes (or reads back) the hash stamp at the start of every region of the
 * G1 blocks ids[0..n), in one batch through the staging pool, and waits for
 * it. Reading, counts the blocks whose stamps are not their hashes in
 * @p wrong_out.
 */
static kvbm_status_t stamps_move(replay_t *replay, const uint32_t *ids, const uint64_t *hashes,
                                 size_t n, bool write, uint64_t *wrong_out)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(replay->cache, KVBM_TIER_G1);
    char *g1 = kvbm_pool_ptr(kvbm_cache_pool(replay->cache, KVBM_TIER_G1));
    uint64_t *slot = kvbm_pool_ptr(replay->stamps);
    kvbm_region_t regions[(size_t)LAYERS * OUTER];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t got = 0;
        kvbm_status_t status =
            kvbm_layout_block_regions(layout, ids[i], regions, (size_t)LAYERS * OUTER, &got);
        if (status != KVBM_OK)
            return status;
        for (size_t r = 0; r < got; r++, k++) {
            char *at = g1 + regions[r].offset;
            if (write) {
                slot[k] = hashes[i];
                replay->stamp_copies[k] = (kvbm_copy_t){&slot[k], at, sizeof(uint64_t)};
            } else {
                replay->stamp_copies[k] = (kvbm_copy_t){at, &slot[k], sizeof(uint64_t)};
            }
        }
    }
    kvbm_status_t status =
        kvbm_backend_copy(replay->backend, replay->stamp_stream, replay->stamp_copies, k,
                          write ? KVBM_COPY_H2D : KVBM_COPY_D2H, replay->stamp_fence);
    if (status == KVBM_OK)
        status = kvbm_fence_wait(replay->stamp_fence);
    if (status != KVBM_OK || write)
        return status;
    uint64_t wrong = 0;
    for (size_t i = 0, at = 0; i < n; i++) {
        bool same = true;
        for (size_t r = 0; r < replay->stamp_regions; r++, at++)
            same &= slot[at] == hashes[i];
        wrong += !same;
    }
    *wrong_out = wrong;
    return KVBM_OK;
}

kvbm_status_t replay__data_request(replay_t *replay, const uint64_t *hashes, size_t count)
{
    kvbm_status_t status = replay__ensure_scratch(replay, count);
    if (status != KVBM_OK)
        return status;
    double start = replay__now_ns();
    replay->counts.requests++;
    replay->counts.blocks += count;
    if (count > replay->g1_blocks) {
        replay->counts.oversize++;
        replay->counts.misses += count;
        replay->counts.core_ns += replay__now_ns() - start;
        return KVBM_OK;
    }
    uint32_t *ids = replay->g1_ids;
    kvbm_cache_match_result_t r;
    status = kvbm_cache_acquire(replay->cache, hashes, count, ids, &r, replay->ready);
    if (status != KVBM_OK)
        return status;
    /* The engine would wait on its stream; the replay waits on the host. */
    kvbm_status_t copies = kvbm_fence_wait(replay->ready);
    size_t served = r.g1 + r.onboarded;
    if (served > 0 && (copies != KVBM_OK || replay->verify))
        copies = kvbm_cache_check(replay->cache, ids, served);
    if (replay->verify && copies == KVBM_OK && served > 0) {
        uint64_t wrong = 0;
        status = stamps_move(replay, ids, hashes, served, false, &wrong);
        if (status != KVBM_OK)
            return status;
        replay->counts.wrong_blocks += wrong;
        replay->counts.verified_blocks += served;
    }
    for (size_t i = served; i < count; i++)
        replay->fresh_ids[i] = ids[i];
    if (replay->verify && count > served) {
        status = stamps_move(replay, ids + served, hashes + served, count - served, true, NULL);
        if (status != KVBM_OK)
            return status;
    }
    if (count > served) {
        kvbm_register_opts_t opts = {.has_parent = served > 0,
                                     .parent_hash = served > 0 ? hashes[served - 1] : 0,
                                     .priority = 50};
        status = kvbm_cache_register(replay->cache, ids + served, hashes + served, count - served,
                                     &opts, ids + served);
        if (status != KVBM_OK)
            return status;
        for (size_t i = served; i < count; i++)
            replay->counts.dedup += ids[i] != replay->fresh_ids[i];
    }
    status = kvbm_cache_sync(replay->cache);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < count; i++)
        replay->release_ids[i] = ids[count - 1 - i];
    status = kvbm_cache_release(replay->cache, replay->release_ids, count);
    if (status != KVBM_OK)
        return status;
    replay->counts.g1_hits += r.g1;
    replay->counts.g2_hits += r.onboarded;
    replay->counts.misses += count - served;
    replay->counts.core_ns += replay__now_ns() - start;
    return KVBM_OK;
}

void replay__data_counts(const replay_t *replay, replay_counts_t *counts)
{
    kvbm_cache_metrics_t cm;
    kvbm_cache_metrics(replay->cache, &cm);
    kvbm_manager_metrics_t g1, g2;
    kvbm_manager_metrics(replay->g1, &g1);
    kvbm_manager_metrics(replay->g2, &g2);
    counts->offloads = cm.offloads;
    counts->onboards = cm.onboards;
    counts->offload_skipped = cm.offload_skipped;
    counts->g1_evictions = g1.evictions;
    counts->g2_evictions = g2.evictions;
    counts->bytes_moved = cm.offload_bytes + cm.onboard_bytes;
    counts->failed_copies = cm.failed_copies;
}
