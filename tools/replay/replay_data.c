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
 * 8 bytes of each region), and every block served is checked.
 */
#include <stdlib.h>
#include <string.h>

#include "replay_internal.h"

#define LAYERS 4u
#define OUTER  2u
#define TOKENS 16
#define ELEM   2

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
    cc.on_events = config->on_events;
    cc.events_ctx = config->events_ctx;
    status = kvbm_cache_create(&cc, &replay->cache);
    if (status != KVBM_OK)
        goto err_destroy_backend;
    status = kvbm_fence_create(replay->backend, &replay->ready);
    if (status != KVBM_OK)
        goto err_destroy_cache;
    replay->g1 = kvbm_cache_manager(replay->cache, KVBM_TIER_G1);
    replay->g2 = kvbm_cache_manager(replay->cache, KVBM_TIER_G2);
    /* Stamps are written and read from the host: only where the device pool
     * is host memory (the CPU backend). */
    replay->verify = config->verify && kvbm_backend_kind(replay->backend) == KVBM_BACKEND_CPU;
    return KVBM_OK;

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
    kvbm_fence_destroy(replay->ready);
    kvbm_cache_destroy(replay->cache);
    kvbm_backend_destroy(replay->backend);
}

/* Stamps (or checks) the hash at the start of every region of a G1 block. */
static bool stamp(replay_t *replay, uint32_t id, uint64_t hash, bool write)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(replay->cache, KVBM_TIER_G1);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(replay->cache, KVBM_TIER_G1));
    kvbm_region_t regions[(size_t)LAYERS * OUTER];
    size_t n = 0;
    if (kvbm_layout_block_regions(layout, id, regions, (size_t)LAYERS * OUTER, &n) != KVBM_OK)
        return false;
    bool same = true;
    for (size_t r = 0; r < n; r++) {
        if (write)
            memcpy(base + regions[r].offset, &hash, sizeof(hash));
        else
            same &= memcmp(base + regions[r].offset, &hash, sizeof(hash)) == 0;
    }
    return same;
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
    if (replay->verify && copies == KVBM_OK) {
        for (size_t i = 0; i < served; i++)
            replay->counts.wrong_blocks += !stamp(replay, ids[i], hashes[i], false);
    }
    for (size_t i = served; i < count; i++) {
        replay->fresh_ids[i] = ids[i];
        if (replay->verify)
            stamp(replay, ids[i], hashes[i], true);
    }
    if (count > served) {
        kvbm_register_opts_t opts = {.has_parent = served > 0,
                                     .parent_hash = served > 0 ? hashes[served - 1] : 0,
                                     .priority = 50,
                                     .block_size = REPLAY_BLOCK_TOKENS};
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
