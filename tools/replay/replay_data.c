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

#include "replay_mode.h"

#define LAYERS 4u
#define OUTER  2u
#define TOKENS 16
#define ELEM   2

typedef struct data {
    kvbm_backend_t *backend;
    kvbm_cache_t *cache;
    kvbm_fence_t *ready;
    kvbm_manager_t *g1, *g2; /* the cache's */
    bool verify;
    /* Verify: stamps travel by copies between this pinned staging pool and
     * G1, one 8-byte slot per region of the largest request (g1_blocks). */
    kvbm_pool_t *stamps;
    kvbm_stream_t *stamp_stream;
    kvbm_fence_t *stamp_fence;
    kvbm_copy_t *stamp_copies;
    size_t stamp_regions; /* regions per G1 block */
    replay_scratch_t scratch;
} data_t;

static kvbm_status_t stamps_open(data_t *data, uint32_t g1_blocks)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(data->cache, KVBM_TIER_G1);
    data->stamp_regions = kvbm_layout_regions_per_block(layout);
    size_t slots = (size_t)g1_blocks * data->stamp_regions;
    data->stamp_copies = malloc(slots * sizeof(kvbm_copy_t));
    if (data->stamp_copies == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t status =
        kvbm_pool_create(data->backend, KVBM_MEM_HOST, slots * sizeof(uint64_t), &data->stamps);
    if (status != KVBM_OK)
        goto err_free_copies;
    status = kvbm_stream_create(data->backend, &data->stamp_stream);
    if (status != KVBM_OK)
        goto err_destroy_pool;
    status = kvbm_fence_create(data->backend, &data->stamp_fence);
    if (status != KVBM_OK)
        goto err_destroy_stream;
    return KVBM_OK;

err_destroy_stream:
    kvbm_stream_destroy(data->stamp_stream);
    data->stamp_stream = NULL;
err_destroy_pool:
    kvbm_pool_destroy(data->stamps);
    data->stamps = NULL;
err_free_copies:
    free(data->stamp_copies);
    data->stamp_copies = NULL;
    return status;
}

static void stamps_close(data_t *data)
{
    kvbm_fence_destroy(data->stamp_fence);
    kvbm_stream_destroy(data->stamp_stream);
    kvbm_pool_destroy(data->stamps);
    free(data->stamp_copies);
}

static kvbm_status_t data_open(const replay_config_t *config, void **state_out)
{
    data_t *data = calloc(1, sizeof(*data));
    if (data == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = config->backend_kind;
    kvbm_status_t status = kvbm_backend_create(&bc, &data->backend);
    if (status != KVBM_OK)
        goto err_free;
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = data->backend;
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
    cc.events_batcher = config->events;
    status = kvbm_cache_create(&cc, &data->cache);
    if (status != KVBM_OK)
        goto err_destroy_backend;
    status = kvbm_fence_create(data->backend, &data->ready);
    if (status != KVBM_OK)
        goto err_destroy_cache;
    data->g1 = kvbm_cache_manager(data->cache, KVBM_TIER_G1);
    data->g2 = kvbm_cache_manager(data->cache, KVBM_TIER_G2);
    data->verify = config->verify;
    if (data->verify) {
        status = stamps_open(data, config->g1_blocks);
        if (status != KVBM_OK)
            goto err_destroy_ready;
    }
    *state_out = data;
    return KVBM_OK;

err_destroy_ready:
    kvbm_fence_destroy(data->ready);
err_destroy_cache:
    kvbm_cache_destroy(data->cache);
err_destroy_backend:
    kvbm_backend_destroy(data->backend);
err_free:
    free(data);
    return status;
}

static void data_close(void *state)
{
    data_t *data = state;
    stamps_close(data);
    kvbm_fence_destroy(data->ready);
    kvbm_cache_destroy(data->cache);
    kvbm_backend_destroy(data->backend);
    replay_scratch_free(&data->scratch);
    free(data);
}

/*
 * Writes (or reads back) the hash stamp at the start of every region of the
 * G1 blocks ids[0..n), in one batch through the staging pool, and waits for
 * it. Reading, counts the blocks whose stamps are not their hashes in
 * @p wrong_out.
 */
static kvbm_status_t stamps_move(data_t *data, const uint32_t *ids, const uint64_t *hashes,
                                 size_t n, bool write, uint64_t *wrong_out)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(data->cache, KVBM_TIER_G1);
    char *g1 = kvbm_pool_ptr(kvbm_cache_pool(data->cache, KVBM_TIER_G1));
    uint64_t *slot = kvbm_pool_ptr(data->stamps);
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
                data->stamp_copies[k] = (kvbm_copy_t){&slot[k], at, sizeof(uint64_t)};
            } else {
                data->stamp_copies[k] = (kvbm_copy_t){at, &slot[k], sizeof(uint64_t)};
            }
        }
    }
    kvbm_status_t status =
        kvbm_backend_copy(data->backend, data->stamp_stream, data->stamp_copies, k,
                          write ? KVBM_COPY_H2D : KVBM_COPY_D2H, data->stamp_fence);
    if (status == KVBM_OK)
        status = kvbm_fence_wait(data->stamp_fence);
    if (status != KVBM_OK || write)
        return status;
    uint64_t wrong = 0;
    for (size_t i = 0, at = 0; i < n; i++) {
        bool same = true;
        for (size_t r = 0; r < data->stamp_regions; r++, at++)
            same &= slot[at] == hashes[i];
        wrong += !same;
    }
    *wrong_out = wrong;
    return KVBM_OK;
}

static kvbm_status_t data_request(void *state, const uint64_t *hashes, size_t count,
                                  replay_counts_t *counts)
{
    data_t *data = state;
    replay_scratch_t *s = &data->scratch;
    kvbm_status_t status = replay_scratch_reserve(s, count);
    if (status != KVBM_OK)
        return status;
    uint32_t *ids = s->g1_ids;
    kvbm_cache_match_result_t r;
    status = kvbm_cache_acquire(data->cache, hashes, count, ids, &r, data->ready);
    if (status != KVBM_OK)
        return status;
    /* The engine would wait on its stream; the replay waits on the host. */
    kvbm_status_t copies = kvbm_fence_wait(data->ready);
    size_t served = r.g1 + r.onboarded;
    if (served > 0 && (copies != KVBM_OK || data->verify))
        copies = kvbm_cache_check(data->cache, ids, served);
    if (data->verify && copies == KVBM_OK && served > 0) {
        uint64_t wrong = 0;
        status = stamps_move(data, ids, hashes, served, false, &wrong);
        if (status != KVBM_OK)
            return status;
        counts->wrong_blocks += wrong;
        counts->verified_blocks += served;
    }
    for (size_t i = served; i < count; i++)
        s->fresh_ids[i] = ids[i];
    if (data->verify && count > served) {
        status = stamps_move(data, ids + served, hashes + served, count - served, true, NULL);
        if (status != KVBM_OK)
            return status;
    }
    if (count > served) {
        kvbm_register_opts_t opts = {.has_parent = served > 0,
                                     .parent_hash = served > 0 ? hashes[served - 1] : 0,
                                     .priority = 50,
                                     .block_size = REPLAY_BLOCK_TOKENS};
        status = kvbm_cache_register(data->cache, ids + served, hashes + served, count - served,
                                     &opts, ids + served);
        if (status != KVBM_OK)
            return status;
        for (size_t i = served; i < count; i++)
            counts->dedup += ids[i] != s->fresh_ids[i];
    }
    status = kvbm_cache_sync(data->cache);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < count; i++)
        s->release_ids[i] = ids[count - 1 - i];
    status = kvbm_cache_release(data->cache, s->release_ids, count);
    if (status != KVBM_OK)
        return status;
    counts->g1_hits += r.g1;
    counts->g2_hits += r.onboarded;
    counts->misses += count - served;
    return KVBM_OK;
}

static void data_counts(const void *state, replay_counts_t *counts)
{
    const data_t *data = state;
    kvbm_cache_metrics_t cm;
    kvbm_cache_metrics(data->cache, &cm);
    kvbm_manager_metrics_t g1, g2;
    kvbm_manager_metrics(data->g1, &g1);
    kvbm_manager_metrics(data->g2, &g2);
    counts->offloads = cm.offloads;
    counts->onboards = cm.onboards;
    counts->offload_skipped = cm.offload_skipped;
    counts->g1_evictions = g1.evictions;
    counts->g2_evictions = g2.evictions;
    counts->bytes_moved = cm.offload_bytes + cm.onboard_bytes;
    counts->failed_copies = cm.failed_copies;
}

static const char *data_backend_name(const void *state)
{
    const data_t *data = state;
    return kvbm_backend_name(data->backend);
}

static kvbm_manager_t *data_manager(const void *state, kvbm_medium_t medium)
{
    const data_t *data = state;
    return medium == KVBM_MEDIUM_GPU ? data->g1 : medium == KVBM_MEDIUM_CPU ? data->g2 : NULL;
}

const replay_mode_ops_t replay_data_mode = {
    .open = data_open,
    .close = data_close,
    .request = data_request,
    .counts = data_counts,
    .backend_name = data_backend_name,
    .manager = data_manager,
};
