/*
 * Tiered-cache bookkeeping per offloaded and per onboarded block, apart from
 * the copy itself.
 *
 * A cache with tiny (64-byte) blocks on the CPU backend in synchronous mode
 * (copies run at once in the calling thread, so no thread hand-off is
 * timed) runs requests of B fresh blocks, each evicting B blocks that are
 * offloaded, and requests of B blocks that are found in G2 and onboarded.
 * The same copies are then issued straight to the backend
 * (kvbm_backend_copy_blocks_between, one batch of B) and timed; the
 * difference per block is the cache's own cost: two managers, batch
 * bookkeeping, fences, completion processing.
 *
 *   bench_cache [--batch B]
 * Prints numbers only; nothing passes or fails on time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kvbm/kvbm.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, kvbm_status_str(s_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define G1 8192
#define G2 65536

static uint64_t next_hash = 1;

/* One request of `batch` blocks with the given hashes: acquire, register
 * what was not served, wait for the copies, release. */
static void request(kvbm_cache_t *cache, const uint64_t *hashes, size_t batch, uint32_t *ids,
                    uint32_t *reversed)
{
    kvbm_cache_match_result_t r;
    CHECK(kvbm_cache_acquire(cache, hashes, batch, ids, &r, NULL));
    size_t served = r.g1 + r.onboarded;
    if (batch > served)
        CHECK(kvbm_cache_register(cache, ids + served, hashes + served, batch - served, NULL,
                                  ids + served));
    CHECK(kvbm_cache_sync(cache));
    for (size_t i = 0; i < batch; i++)
        reversed[i] = ids[batch - 1 - i];
    CHECK(kvbm_cache_release(cache, reversed, batch));
}

int main(int argc, char **argv)
{
    size_t batch = 256;
    if (argc == 3 && strcmp(argv[1], "--batch") == 0)
        batch = (size_t)strtoul(argv[2], NULL, 10);
    if (batch == 0 || batch > G1 / 4) {
        fprintf(stderr, "usage: bench_cache [--batch 1..%d]\n", G1 / 4);
        return 2;
    }
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    bc.synchronous = true;
    kvbm_backend_t *backend;
    CHECK(kvbm_backend_create(&bc, &backend));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = backend;
    cc.layout.num_blocks = G1;
    cc.layout.num_layers = 1;
    cc.layout.outer_dim = 1;
    cc.layout.tokens_per_block = 1;
    cc.layout.inner_dim = 32;
    cc.layout.alignment = 64;
    cc.g2_blocks = G2;
    kvbm_cache_t *cache;
    CHECK(kvbm_cache_create(&cc, &cache));

    size_t rounds = (G2 / 2) / batch; /* fresh sequences that all fit in G2 */
    uint64_t *hashes = malloc(sizeof(uint64_t) * rounds * batch);
    uint32_t *ids = malloc(sizeof(uint32_t) * batch), *reversed = malloc(sizeof(uint32_t) * batch);
    for (size_t i = 0; i < rounds * batch; i++)
        hashes[i] = next_hash++;
    /* Fill G1 so every later request evicts. */
    for (size_t r = 0; r < G1 / batch; r++) {
        uint64_t filler[4096];
        for (size_t i = 0; i < batch; i++)
            filler[i] = (1ULL << 40) + next_hash++;
        request(cache, filler, batch, ids, reversed);
    }

    /* Offload: fresh sequences; each evicts `batch` G1 blocks into G2. */
    kvbm_cache_metrics_t m0, m1, m2;
    kvbm_cache_metrics(cache, &m0);
    double t0 = bench_now_ns();
    for (size_t r = 0; r < rounds; r++)
        request(cache, hashes + r * batch, batch, ids, reversed);
    double t1 = bench_now_ns();
    kvbm_cache_metrics(cache, &m1);
    /* Onboard: the same sequences again, oldest first: G1 has moved on, so
     * they come back from G2 (their evictions are already in G2: no copy). */
    double t2 = bench_now_ns();
    for (size_t r = 0; r < rounds; r++)
        request(cache, hashes + r * batch, batch, ids, reversed);
    double t3 = bench_now_ns();
    kvbm_cache_metrics(cache, &m2);
    uint64_t offloads = m1.offloads - m0.offloads;
    uint64_t onboards = m2.onboards - m1.onboards;

    /* The copies alone: the same batches straight to the backend. */
    kvbm_stream_t *stream;
    kvbm_fence_t *fence;
    CHECK(kvbm_stream_create(backend, &stream));
    CHECK(kvbm_fence_create(backend, &fence));
    uint32_t *src = malloc(sizeof(uint32_t) * batch), *dst = malloc(sizeof(uint32_t) * batch);
    uint64_t rng = 12345;
    double copy_ns = 0;
    size_t copied = 0;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < batch; i++) {
            src[i] = (uint32_t)(bench_rand(&rng) % G1);
            dst[i] = (uint32_t)(bench_rand(&rng) % G2);
        }
        double c0 = bench_now_ns();
        CHECK(kvbm_backend_copy_blocks_between(
            backend, stream, kvbm_cache_layout(cache, KVBM_TIER_G1),
            kvbm_cache_pool(cache, KVBM_TIER_G1), src, kvbm_cache_layout(cache, KVBM_TIER_G2),
            kvbm_cache_pool(cache, KVBM_TIER_G2), dst, batch, KVBM_COPY_D2H, fence));
        CHECK(kvbm_fence_wait(fence));
        copy_ns += bench_now_ns() - c0;
        copied += batch;
    }
    double copy_per_block = copy_ns / (double)copied;
    double offload_per_block = (t1 - t0) / (double)offloads;
    double onboard_per_block = (t3 - t2) / (double)onboards;
    printf("kvbm %s tiered-cache bookkeeping (CPU backend, synchronous, 64-byte blocks, "
           "batch %zu)\n",
           kvbm_version(), batch);
    printf("  offload phase: %llu blocks offloaded, %.0f ns per offloaded block (whole request)\n",
           (unsigned long long)offloads, offload_per_block);
    printf("  onboard phase: %llu blocks onboarded, %.0f ns per onboarded block (whole request)\n",
           (unsigned long long)onboards, onboard_per_block);
    printf("  the copies alone: %.0f ns per block (same batch size, straight to the backend)\n",
           copy_per_block);
    printf("  bookkeeping per offloaded block: %.0f ns; per onboarded block: %.0f ns\n",
           offload_per_block - copy_per_block, onboard_per_block - copy_per_block);
    kvbm_fence_destroy(fence);
    kvbm_stream_destroy(stream);
    kvbm_cache_destroy(cache);
    kvbm_backend_destroy(backend);
    free(hashes);
    free(ids);
    free(reversed);
    free(src);
    free(dst);
    return 0;
}
