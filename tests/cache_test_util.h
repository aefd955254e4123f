/*
 * Helpers for the tiered-cache tests: block contents derived from the hash,
 * an "engine" that writes blocks through its own stream like a kernel would,
 * and direct checks of pool bytes (the CPU backend's pools, and the CUDA
 * stand-in's, are host memory).
 */
#ifndef KVBM_TESTS_CACHE_TEST_UTIL_H
#define KVBM_TESTS_CACHE_TEST_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "kvbm/kvbm.h"

/*
 * The backend the cache tests run on: the asynchronous CPU backend, or, in
 * the *_standin builds (tests/cuda), the real CUDA backend code on the CUDA
 * runtime stand-in, whose streams are held through the stand-in itself
 * (real CUDA streams cannot be held; kvbm_stream_hold says so).
 */
#if defined(KVBM_TEST_STANDIN)
#include "standin.h"
#define TEST_BACKEND_KIND KVBM_BACKEND_CUDA
static inline kvbm_status_t test_stream_hold(kvbm_stream_t *stream, bool hold)
{
    standin_stream_hold((cudaStream_t)kvbm_stream_native(stream), hold);
    return KVBM_OK;
}
#else
#define TEST_BACKEND_KIND KVBM_BACKEND_CPU
static inline kvbm_status_t test_stream_hold(kvbm_stream_t *stream, bool hold)
{
    return kvbm_stream_hold(stream, hold);
}
#endif

static inline uint64_t pattern_word(uint64_t hash, size_t word)
{
    uint64_t z = hash * 0x9e3779b97f4a7c15ULL + (uint64_t)word * 0xbf58476d1ce4e5b9ULL + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Fills @p buffer (block_bytes, the block's regions back to back) for @p hash. */
static inline void pattern_fill(unsigned char *buffer, size_t bytes, uint64_t hash)
{
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t w = pattern_word(hash, i / 8);
        memcpy(buffer + i, &w, bytes - i < 8 ? bytes - i : 8);
    }
}

/* Whether block @p id of a tier holds the pattern of @p hash. */
static inline bool block_holds(kvbm_cache_t *cache, kvbm_tier_t tier, uint32_t id, uint64_t hash)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(cache, tier);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(cache, tier));
    size_t block_bytes = kvbm_layout_block_bytes(layout);
    unsigned char *expected = malloc(block_bytes);
    pattern_fill(expected, block_bytes, hash);
    kvbm_region_t regions[64];
    size_t n = 0, done = 0;
    bool same = kvbm_layout_block_regions(layout, id, regions, 64, &n) == KVBM_OK;
    for (size_t r = 0; same && r < n; r++) {
        same = memcmp(base + regions[r].offset, expected + done, regions[r].bytes) == 0;
        done += regions[r].bytes;
    }
    free(expected);
    return same;
}

/* The engine: writes blocks with their patterns through copies on its own
 * stream, from staging memory it keeps until engine_finish(). */
typedef struct test_engine {
    kvbm_backend_t *backend;
    kvbm_stream_t *stream;
    kvbm_fence_t *done;
    unsigned char *staging[256];
    size_t n_staging;
} test_engine_t;

static inline kvbm_status_t engine_write(test_engine_t *engine, kvbm_cache_t *cache, uint32_t id,
                                         uint64_t hash)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(cache, KVBM_TIER_G1);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(cache, KVBM_TIER_G1));
    size_t block_bytes = kvbm_layout_block_bytes(layout);
    if (engine->n_staging == 256)
        return KVBM_ERR_NO_MEMORY;
    unsigned char *staging = malloc(block_bytes);
    if (staging == NULL)
        return KVBM_ERR_NO_MEMORY;
    engine->staging[engine->n_staging++] = staging;
    pattern_fill(staging, block_bytes, hash);
    kvbm_region_t regions[64];
    kvbm_copy_t copies[64];
    size_t n = 0, done = 0;
    kvbm_status_t status = kvbm_layout_block_regions(layout, id, regions, 64, &n);
    for (size_t r = 0; status == KVBM_OK && r < n; r++) {
        copies[r] = (kvbm_copy_t){staging + done, base + regions[r].offset, regions[r].bytes};
        done += regions[r].bytes;
    }
    if (status != KVBM_OK)
        return status;
    return kvbm_backend_copy(engine->backend, engine->stream, copies, n, KVBM_COPY_H2D, NULL);
}

/* Waits for the engine's writes and frees its staging memory. If the wait
 * cannot even be enqueued, the copies may still be reading the staging
 * memory: it is kept for the next call that succeeds. */
static inline kvbm_status_t engine_finish(test_engine_t *engine)
{
    kvbm_status_t status = kvbm_fence_record(engine->done, engine->stream);
    if (status != KVBM_OK)
        return status;
    status = kvbm_fence_wait(engine->done);
    for (size_t i = 0; i < engine->n_staging; i++)
        free(engine->staging[i]);
    engine->n_staging = 0;
    return status;
}

#endif /* KVBM_TESTS_CACHE_TEST_UTIL_H */
