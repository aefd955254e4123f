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
    replay_scratch_t scratch;
} data_t;

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
    cc.on_events = config->on_events;
    cc.events_ctx = config->events_ctx;
    status = kvbm_cache_create(&cc, &data->cache);
    if (status != KVBM_OK)
        goto err_destroy_backend;
    status = kvbm_fence_create(data->backend, &data->ready);
    if (status != KVBM_OK)
        goto err_destroy_cache;
    data->g1 = kvbm_cache_manager(data->cache, KVBM_TIER_G1);
    data->g2 = kvbm_cache_manager(data->cache, KVBM_TIER_G2);
    /* Stamps are written and read from the host: only where the device pool
     * is host memory (the CPU backend). */
    data->verify = config->verify && kvbm_backend_kind(data->backend) == KVBM_BACKEND_CPU;
    *state_out = data;
    return KVBM_OK;

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
    kvbm_fence_destroy(data->ready);
    kvbm_cache_destroy(data->cache);
    kvbm_backend_destroy(data->backend);
    replay_scratch_free(&data->scratch);
    free(data);
}

/* Stamps (or checks) the hash at the start of every region of a G1 block. */
static bool stamp(data_t *data, uint32_t id, uint64_t hash, bool write)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(data->cache, KVBM_TIER_G1);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(data->cache, KVBM_TIER_G1));
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
    if (data->verify && copies == KVBM_OK) {
        for (size_t i = 0; i < served; i++)
            counts->wrong_blocks += !stamp(data, ids[i], hashes[i], false);
    }
    for (size_t i = served; i < count; i++) {
        s->fresh_ids[i] = ids[i];
        if (data->verify)
            stamp(data, ids[i], hashes[i], true);
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
