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
 * With verify, every byte of every block written is a pattern derived from
 * its hash, and every byte of every block served is checked. Patterns are
 * copied from and to a pinned staging pool through the backend, so the
 * check works where G1 is device memory (the CUDA backend) as on the CPU;
 * the patterns of fresh blocks land before they are registered, as an
 * engine's writes would (the replay gives the cache no engine stream).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay_mode.h"

#define LAYERS 4u
#define OUTER  2u
#define TOKENS 16
#define ELEM   2

typedef struct data {
    kvbm_backend_t *backend;
    kvbm_cache_t *cache;
    kvbm_fence_t *ready;
    kvbm_manager_t *g1, *g2, *g3; /* the cache's; g3 NULL without a disk tier */
    bool verify;
    bool hints; /* registrations carry the request length and position */
    /* Verify: patterns travel by copies between this pinned staging pool and
     * G1, one block-sized slot per block of the largest request (g1_blocks). */
    kvbm_pool_t *stamps;
    kvbm_stream_t *stamp_stream;
    kvbm_fence_t *stamp_fence;
    kvbm_copy_t *stamp_copies;
    size_t stamp_regions; /* regions per G1 block */
    size_t block_bytes;
    char *g3_path; /* the G3 file, removed at close unless g3_keep */
    bool g3_keep;
    replay_scratch_t scratch;
} data_t;

/* The G3 file of a run; an earlier run's file is removed unless kept. */
static kvbm_status_t g3_file(data_t *data, const replay_config_t *config)
{
    const char *dir = config->g3_dir != NULL ? config->g3_dir : "/tmp";
    size_t length = strlen(dir) + sizeof("/kvbm-replay-g3.bin");
    data->g3_path = malloc(length);
    if (data->g3_path == NULL)
        return KVBM_ERR_NO_MEMORY;
    snprintf(data->g3_path, length, "%s/kvbm-replay-g3.bin", dir);
    data->g3_keep = config->g3_keep;
    if (!config->g3_keep)
        unlink(data->g3_path);
    return KVBM_OK;
}

static kvbm_status_t stamps_open(data_t *data, uint32_t g1_blocks)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(data->cache, KVBM_TIER_G1);
    data->stamp_regions = kvbm_layout_regions_per_block(layout);
    data->block_bytes = kvbm_layout_block_bytes(layout);
    size_t slots = (size_t)g1_blocks * data->stamp_regions;
    data->stamp_copies = malloc(slots * sizeof(kvbm_copy_t));
    if (data->stamp_copies == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t status = kvbm_pool_create(data->backend, KVBM_MEM_HOST,
                                            (size_t)g1_blocks * data->block_bytes, &data->stamps);
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
    cc.offload_admission = config->g2_admission;
    cc.admission_keep_ratio = config->admission_keep_ratio;
    kvbm_disk_config_t disk = KVBM_DISK_CONFIG_INIT;
    if (config->g3_blocks > 0) {
        status = g3_file(data, config);
        if (status != KVBM_OK)
            goto err_destroy_backend;
        disk.path = data->g3_path;
        disk.capacity_blocks = config->g3_blocks;
        disk.min_free_bytes = config->g3_min_free_bytes;
        disk.model_id = "kvbm-replay";
        disk.policy = config->g3_policy != NULL ? config->g3_policy : config->g2_policy;
        cc.g3 = &disk;
    }
    status = kvbm_cache_create(&cc, &data->cache);
    if (status != KVBM_OK)
        goto err_destroy_backend;
    status = kvbm_fence_create(data->backend, &data->ready);
    if (status != KVBM_OK)
        goto err_destroy_cache;
    data->g1 = kvbm_cache_manager(data->cache, KVBM_TIER_G1);
    data->g2 = kvbm_cache_manager(data->cache, KVBM_TIER_G2);
    data->g3 = kvbm_cache_manager(data->cache, KVBM_TIER_G3);
    data->hints = !config->no_hints;
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
    free(data->g3_path);
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
    if (data->g3_path != NULL && !data->g3_keep)
        unlink(data->g3_path);
    free(data->g3_path);
    replay_scratch_free(&data->scratch);
    free(data);
}

/* The pattern of the block for @p hash: word k is seed ^ k * golden, with
 * the seed a splitmix64 of the hash, so blocks differ everywhere and a word
 * moved within a block does not match either. Cheap enough (one multiply a
 * word, vectorised) to fill and check every byte of every block. */
static uint64_t pattern_seed(uint64_t hash)
{
    uint64_t z = hash * 0x9e3779b97f4a7c15ull + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills (or checks) @p bytes (the block's regions back to back) with its
 * hash's pattern; returns whether they matched. */
static bool pattern(unsigned char *block, size_t bytes, uint64_t hash, bool write)
{
    const uint64_t golden = 0x9e3779b97f4a7c15ull, seed = pattern_seed(hash);
    size_t words = bytes / sizeof(uint64_t);
    uint64_t mismatch = 0;
    for (size_t k = 0; k < words; k++) {
        uint64_t expected = seed ^ k * golden, word;
        if (write) {
            memcpy(block + k * sizeof(uint64_t), &expected, sizeof(expected));
        } else {
            memcpy(&word, block + k * sizeof(uint64_t), sizeof(word));
            mismatch |= word ^ expected;
        }
    }
    uint64_t tail = seed ^ words * golden;
    size_t rest = bytes - words * sizeof(uint64_t);
    if (write)
        memcpy(block + words * sizeof(uint64_t), &tail, rest);
    else if (rest > 0 && memcmp(block + words * sizeof(uint64_t), &tail, rest) != 0)
        mismatch = 1;
    return mismatch == 0;
}

/*
 * Writes (or reads back) every byte of the G1 blocks ids[0..n): each block's
 * regions travel, in one batch, to or from its block-sized slot of the
 * staging pool, where the host fills or checks the pattern; waits for it.
 * Reading, counts the blocks that are not their hash's pattern in
 * @p wrong_out.
 */
static kvbm_status_t stamps_move(data_t *data, const uint32_t *ids, const uint64_t *hashes,
                                 size_t n, bool write, uint64_t *wrong_out)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(data->cache, KVBM_TIER_G1);
    char *g1 = kvbm_pool_ptr(kvbm_cache_pool(data->cache, KVBM_TIER_G1));
    unsigned char *staging = kvbm_pool_ptr(data->stamps);
    kvbm_region_t regions[(size_t)LAYERS * OUTER];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char *slot = staging + i * data->block_bytes;
        if (write)
            pattern(slot, data->block_bytes, hashes[i], true);
        size_t got = 0, done = 0;
        kvbm_status_t status =
            kvbm_layout_block_regions(layout, ids[i], regions, (size_t)LAYERS * OUTER, &got);
        if (status != KVBM_OK)
            return status;
        for (size_t r = 0; r < got; r++, k++) {
            char *at = g1 + regions[r].offset;
            data->stamp_copies[k] = write ? (kvbm_copy_t){slot + done, at, regions[r].bytes}
                                          : (kvbm_copy_t){at, slot + done, regions[r].bytes};
            done += regions[r].bytes;
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
    for (size_t i = 0; i < n; i++)
        wrong += !pattern(staging + i * data->block_bytes, data->block_bytes, hashes[i], false);
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
    if (data->verify && count > served) {
        status = stamps_move(data, ids + served, hashes + served, count - served, true, NULL);
        if (status != KVBM_OK)
            return status;
    }
    if (count > served) {
        kvbm_register_opts_t opts = {.has_parent = served > 0,
                                     .parent_hash = served > 0 ? hashes[served - 1] : 0,
                                     .priority = 50,
                                     .block_size = REPLAY_BLOCK_TOKENS,
                                     .request_blocks = data->hints ? (uint32_t)count : 0,
                                     .first_position = data->hints ? (uint32_t)served : 0};
        status = kvbm_cache_register(data->cache, ids + served, hashes + served, count - served,
                                     &opts, ids + served);
        if (status != KVBM_OK)
            return status;
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
    counts->g2_hits += r.onboarded - r.g3;
    counts->g3_hits += r.g3;
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
    /* The contract's onboards are its G2 and G3 hits, copied or not: a hit
     * that G1 turns out to hold already (a dedup when it is registered)
     * costs no copy here, but counts as in the logical model. Dedups are
     * counted by G1 itself, over the onboarded and the fresh blocks alike. */
    counts->onboards = counts->g2_hits + counts->g3_hits;
    counts->dedup = g1.dedups;
    counts->offload_skipped = cm.offload_skipped;
    counts->offload_refused = cm.offload_refused;
    counts->g1_evictions = g1.evictions;
    counts->g2_evictions = g2.evictions;
    counts->bytes_moved =
        cm.offload_bytes + cm.onboard_bytes + cm.g3_offload_bytes + cm.g3_onboard_bytes;
    counts->failed_copies = cm.failed_copies + cm.g3_failed_loads;
    if (data->g3 != NULL) {
        kvbm_manager_metrics_t g3;
        kvbm_manager_metrics(data->g3, &g3);
        counts->g3_offloads = cm.g3_offloads;
        counts->g3_offload_skipped = cm.g3_offload_skipped;
        counts->g3_evictions = g3.evictions;
        counts->g3_hits_from_file = cm.g3_hits_from_file;
    }
}

static const char *data_backend_name(const void *state)
{
    const data_t *data = state;
    return kvbm_backend_name(data->backend);
}

static kvbm_manager_t *data_manager(const void *state, kvbm_medium_t medium)
{
    const data_t *data = state;
    switch (medium) {
    case KVBM_MEDIUM_GPU:
        return data->g1;
    case KVBM_MEDIUM_CPU:
        return data->g2;
    case KVBM_MEDIUM_DISK:
        return kvbm_cache_manager(data->cache, KVBM_TIER_G3);
    }
    return NULL;
}

static kvbm_status_t data_announce(void *state)
{
    data_t *data = state;
    return kvbm_cache_announce(data->cache);
}

static const char *data_g3_engine(const void *state)
{
    const data_t *data = state;
    return kvbm_cache_g3_engine(data->cache);
}

const replay_mode_ops_t replay_data_mode = {
    .open = data_open,
    .close = data_close,
    .request = data_request,
    .counts = data_counts,
    .backend_name = data_backend_name,
    .manager = data_manager,
    .announce = data_announce,
    .g3_engine = data_g3_engine,
};
