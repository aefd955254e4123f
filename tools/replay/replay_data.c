/*
 * Data mode: the contract's steps through the tiered cache, with real copies
 * on a memory backend (the CPU fallback here, CUDA where a GPU is present).
 * Each step of the contract maps onto the cache:
 *   2-4  kvbm_cache_acquire: G1 match, G2 match, G3 match, one G1
 *        allocation whose evictions are offloaded (G2 victims written to
 *        G3), the G2 then the G3 hits onboarded and registered in G1 (first,
 *        as in step 5);
 *   5    kvbm_cache_register for the newly computed blocks;
 *   6    kvbm_cache_sync: waits for the copies and disk writes; offloaded
 *        blocks are then registered in G2 and G3, the onboarded G3 and G2
 *        blocks released, last first;
 *   7    kvbm_cache_release of all G1 blocks, last first.
 * With verify, every byte of every block written is filled with a pattern
 * derived from its hash, and every byte of every block served is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay_internal.h"

#define LAYERS 4u
#define OUTER  2u
#define TOKENS 16
#define ELEM   2

/* The G3 file of a run; an earlier run's file is removed unless kept. */
static kvbm_status_t g3_file(replay_t *replay, const replay_config_t *config)
{
    const char *dir = config->g3_dir != NULL ? config->g3_dir : "/tmp";
    size_t length = strlen(dir) + sizeof("/kvbm-replay-g3.bin");
    replay->g3_path = malloc(length);
    if (replay->g3_path == NULL)
        return KVBM_ERR_NO_MEMORY;
    snprintf(replay->g3_path, length, "%s/kvbm-replay-g3.bin", dir);
    replay->g3_keep = config->g3_keep;
    if (!config->g3_keep)
        unlink(replay->g3_path);
    return KVBM_OK;
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
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    if (config->g3_blocks > 0) {
        status = g3_file(replay, config);
        if (status != KVBM_OK)
            goto err_destroy_backend;
        disk.path = replay->g3_path;
        disk.capacity_blocks = config->g3_blocks;
        disk.min_free_bytes = config->g3_min_free_bytes;
        disk.model_id = "kvbm-replay";
        disk.policy = config->g3_policy != NULL ? config->g3_policy : config->g2_policy;
        cc.g3 = &disk;
    }
    status = kvbm_cache_create(&cc, &replay->cache);
    if (status != KVBM_OK)
        goto err_destroy_backend;
    status = kvbm_fence_create(replay->backend, &replay->ready);
    if (status != KVBM_OK)
        goto err_destroy_cache;
    replay->g1 = kvbm_cache_manager(replay->cache, KVBM_TIER_G1);
    replay->g2 = kvbm_cache_manager(replay->cache, KVBM_TIER_G2);
    replay->g3 = kvbm_cache_manager(replay->cache, KVBM_TIER_G3);
    /* Patterns are written and read from the host: only where the device
     * pool is host memory (the CPU backend). */
    replay->verify = config->verify && kvbm_backend_kind(replay->backend) == KVBM_BACKEND_CPU;
    return KVBM_OK;

err_destroy_cache:
    kvbm_cache_destroy(replay->cache);
    replay->cache = NULL;
err_destroy_backend:
    kvbm_backend_destroy(replay->backend);
    replay->backend = NULL;
    free(replay->g3_path);
    replay->g3_path = NULL;
    return status;
}

void replay__data_close(replay_t *replay)
{
    kvbm_fence_destroy(replay->ready);
    kvbm_cache_destroy(replay->cache);
    kvbm_backend_destroy(replay->backend);
    if (replay->g3_path != NULL && !replay->g3_keep)
        unlink(replay->g3_path);
    free(replay->g3_path);
}

/* The pattern word @p k of the block for @p hash (a splitmix64 step). */
static uint64_t pattern_word(uint64_t hash, uint64_t k)
{
    uint64_t z = hash * 0x9e3779b97f4a7c15ull + k * 0xbf58476d1ce4e5b9ull + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills (or checks) every byte of a G1 block with its hash's pattern. */
static bool pattern(replay_t *replay, uint32_t id, uint64_t hash, bool write)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(replay->cache, KVBM_TIER_G1);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(replay->cache, KVBM_TIER_G1));
    kvbm_region_t regions[(size_t)LAYERS * OUTER];
    size_t n = 0;
    if (kvbm_layout_block_regions(layout, id, regions, (size_t)LAYERS * OUTER, &n) != KVBM_OK)
        return false;
    bool same = true;
    uint64_t k = 0;
    for (size_t r = 0; r < n && same; r++) {
        unsigned char *at = base + regions[r].offset;
        for (size_t off = 0; off < regions[r].bytes; off += sizeof(uint64_t), k++) {
            uint64_t word = pattern_word(hash, k);
            size_t bytes = regions[r].bytes - off < 8 ? regions[r].bytes - off : 8;
            if (write)
                memcpy(at + off, &word, bytes);
            else if (memcmp(at + off, &word, bytes) != 0)
                same = false;
        }
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
            replay->counts.wrong_blocks += !pattern(replay, ids[i], hashes[i], false);
    }
    for (size_t i = served; i < count; i++) {
        replay->fresh_ids[i] = ids[i];
        if (replay->verify)
            pattern(replay, ids[i], hashes[i], true);
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
    replay->counts.g2_hits += r.onboarded - r.g3;
    replay->counts.g3_hits += r.g3;
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
    counts->onboards = cm.onboards + cm.g3_onboards;
    counts->offload_skipped = cm.offload_skipped;
    counts->g1_evictions = g1.evictions;
    counts->g2_evictions = g2.evictions;
    counts->bytes_moved =
        cm.offload_bytes + cm.onboard_bytes + cm.g3_offload_bytes + cm.g3_onboard_bytes;
    counts->failed_copies = cm.failed_copies + cm.g3_failed_loads;
    if (replay->g3 != NULL) {
        kvbm_manager_metrics_t g3;
        kvbm_manager_metrics(replay->g3, &g3);
        counts->g3_offloads = cm.g3_offloads;
        counts->g3_offload_skipped = cm.g3_offload_skipped;
        counts->g3_evictions = g3.evictions;
        counts->g3_hits_from_file = cm.g3_hits_from_file;
    }
}
