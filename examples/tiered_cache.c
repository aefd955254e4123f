/*
 * The tiered cache end to end, as an engine would drive it: a small device
 * tier (G1) and a larger pinned-host tier (G2) on the backend kvbm picks (CUDA
 * with a GPU, the CPU fallback without). Two conversations share a system
 * prompt; a burst of unrelated requests pushes them out of G1 into G2; the
 * second conversation then gets its prefix back from G2 (onboarded).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "kvbm/kvbm.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "%s failed: %s\n", #call, kvbm_status_str(s_));                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define BLOCK_TOKENS 16
#define MAX_BLOCKS   16

/* One request: reuse what is cached (G1, then G2), compute the rest. */
static void serve(kvbm_cache_t *cache, kvbm_backend_t *backend, kvbm_stream_t *engine,
                  const char *name, const uint32_t *tokens, size_t n_tokens)
{
    uint64_t hashes[MAX_BLOCKS];
    uint32_t ids[MAX_BLOCKS];
    size_t n;
    CHECK(kvbm_hash_tokens(tokens, n_tokens, BLOCK_TOKENS, 0, hashes, &n));
    kvbm_fence_t *ready;
    CHECK(kvbm_fence_create(backend, &ready));
    kvbm_cache_match_result_t r;
    CHECK(kvbm_cache_acquire(cache, hashes, n, ids, &r, ready));
    /* The engine's kernels would run on its stream after `ready`. */
    CHECK(kvbm_stream_wait_fence(engine, ready));
    size_t served = r.g1 + r.onboarded;
    CHECK(kvbm_cache_check(cache, ids, served));
    printf("%-34s %2zu blocks: %2zu cached in G1, %2zu onboarded from G2, %2zu computed\n", name, n,
           r.g1, r.onboarded, n - served);
    if (n > served)
        CHECK(kvbm_cache_register(cache, ids + served, hashes + served, n - served, NULL,
                                  ids + served));
    uint32_t reversed[MAX_BLOCKS];
    for (size_t i = 0; i < n; i++)
        reversed[i] = ids[n - 1 - i];
    CHECK(kvbm_cache_release(cache, reversed, n));
    kvbm_fence_destroy(ready);
    /* Offloaded blocks join G2 once their copies complete. An engine lets
     * that happen in the background (every cache call processes what has
     * completed); the example waits, so what it prints is deterministic. */
    CHECK(kvbm_cache_sync(cache));
}

int main(void)
{
    kvbm_backend_t *backend;
    CHECK(kvbm_backend_create(NULL, &backend)); /* AUTO: CUDA with a GPU, else CPU */
    kvbm_stream_t *engine;
    CHECK(kvbm_stream_create(backend, &engine));
    kvbm_cache_config_t config = KVBM_CACHE_CONFIG_INIT;
    config.backend = backend;
    config.layout.num_blocks = 8; /* G1: device */
    config.layout.num_layers = 4; /* 4 layers x K/V x 16 tokens x 128 x fp16 */
    config.layout.tokens_per_block = BLOCK_TOKENS;
    config.layout.inner_dim = 128;
    config.g2_blocks = 32; /* G2: pinned host */
    config.engine_stream = engine;
    kvbm_cache_t *cache;
    CHECK(kvbm_cache_create(&config, &cache));
    printf("kvbm %s tiered cache on the %s backend: G1 8 blocks, G2 32 blocks\n", kvbm_version(),
           kvbm_backend_name(backend));

    uint32_t first[96], second[96], other[128];
    for (uint32_t i = 0; i < 96; i++) {
        first[i] = i < 64 ? 1000 + i : 5000 + i;  /* system prompt, then its own turn */
        second[i] = i < 64 ? 1000 + i : 7000 + i; /* same system prompt */
    }
    serve(cache, backend, engine, "conversation 1", first, 96);
    for (uint32_t burst = 0; burst < 2; burst++) {
        for (uint32_t i = 0; i < 128; i++)
            other[i] = 100000 * (burst + 1) + i;
        serve(cache, backend, engine, "unrelated request", other, 128);
    }
    serve(cache, backend, engine, "conversation 2 (same prompt)", second, 96);

    CHECK(kvbm_cache_sync(cache));
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(cache, &m);
    printf("offloads %" PRIu64 " (%" PRIu64 " bytes), onboards %" PRIu64 " (%" PRIu64
           " bytes), failed copies %" PRIu64 "\n",
           m.offloads, m.offload_bytes, m.onboards, m.onboard_bytes, m.failed_copies);
    kvbm_cache_destroy(cache);
    kvbm_stream_destroy(engine);
    kvbm_backend_destroy(backend);
    return m.onboards > 0 && m.failed_copies == 0 ? 0 : 1;
}
