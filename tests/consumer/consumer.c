/*
 * A program built against an installed kvbm, the way its users build one:
 * scripts/consumer-test.sh compiles this file as C (find_package, pkg-config
 * shared, pkg-config --static) and as C++17 with -Wall -Wextra -Werror
 * (find_package), so it is written in the common subset of C11 and C++17.
 *
 * It creates a manager and a tiered cache on the CPU backend, moves blocks
 * (G1 -> G2 offload on eviction, G2 -> G1 onboarding on a match) and checks
 * that the data came back and the counts are right. Exit status 0 only then.
 */
#include <stdio.h>
#include <string.h>

#include <kvbm/kvbm.h>

#define BLOCKS 4 /* G1 capacity, and blocks per request */

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "consumer: %s: %s (%s)\n", #call, kvbm_status_name(s_),                \
                    kvbm_last_error());                                                            \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "consumer: expected %s\n", #cond);                                     \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int manager_reuses_a_prefix(void)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 8;
    kvbm_manager_t *manager = NULL;
    CHECK(kvbm_manager_create(&config, &manager));
    uint32_t tokens[4 * 16];
    for (uint32_t i = 0; i < 4 * 16; i++)
        tokens[i] = 100 + i;
    uint64_t hashes[4];
    size_t n = 0;
    CHECK(kvbm_hash_tokens(tokens, 4 * 16, 16, 0, hashes, &n));
    EXPECT(n == 4);
    uint32_t ids[4];
    CHECK(kvbm_manager_allocate(manager, n, ids, NULL, NULL));
    CHECK(kvbm_manager_register(manager, ids, hashes, n, NULL, ids));
    CHECK(kvbm_manager_release(manager, ids, n));
    uint32_t matched_ids[4];
    size_t matched = 0;
    CHECK(kvbm_manager_match(manager, hashes, n, matched_ids, &matched));
    EXPECT(matched == 4 && memcmp(matched_ids, ids, sizeof(ids)) == 0);
    CHECK(kvbm_manager_release(manager, matched_ids, matched));
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(manager, &counts);
    EXPECT(counts.inactive == 4 && counts.reset == 4);
    kvbm_manager_destroy(manager);

    /* A bad argument is refused with a reason. */
    kvbm_manager_config_t bad;
    kvbm_manager_config_init(&bad);
    EXPECT(kvbm_manager_create(&bad, &manager) == KVBM_ERR_INVALID_ARG);
    EXPECT(strlen(kvbm_last_error()) > 0);
    return 0;
}

/* Each block's first chunk gets a byte pattern from its hash. */
static int stamp(kvbm_cache_t *cache, const uint32_t *ids, const uint64_t *hashes, size_t n,
                 size_t chunk_bytes, int check)
{
    for (size_t i = 0; i < n; i++) {
        void *addr = NULL;
        CHECK(kvbm_cache_block_address(cache, ids[i], 0, 0, &addr));
        unsigned char *bytes = (unsigned char *)addr;
        for (size_t b = 0; b < chunk_bytes; b++) {
            unsigned char want = (unsigned char)(hashes[i] >> (8 * (b % 8)));
            if (check)
                EXPECT(bytes[b] == want);
            else
                bytes[b] = want;
        }
    }
    return 0;
}

/* One request through the cache: reuse what is cached, stamp the rest. */
static int serve(kvbm_cache_t *cache, const uint64_t *hashes, size_t chunk_bytes,
                 kvbm_cache_match_result_t *result_out)
{
    uint32_t ids[BLOCKS];
    kvbm_cache_match_result_t r;
    CHECK(kvbm_cache_acquire(cache, hashes, BLOCKS, ids, &r, NULL));
    size_t served = r.g1 + r.onboarded;
    CHECK(kvbm_cache_check(cache, ids, served));
    if (stamp(cache, ids, hashes, served, chunk_bytes, 1) != 0)
        return 1;
    if (stamp(cache, ids + served, hashes + served, BLOCKS - served, chunk_bytes, 0) != 0)
        return 1;
    if (served < BLOCKS)
        CHECK(kvbm_cache_register(cache, ids + served, hashes + served, BLOCKS - served, NULL,
                                  ids + served));
    CHECK(kvbm_cache_release(cache, ids, BLOCKS));
    CHECK(kvbm_cache_sync(cache));
    *result_out = r;
    return 0;
}

static int cache_offloads_and_onboards(void)
{
    kvbm_backend_config_t backend_config = KVBM_BACKEND_CONFIG_INIT;
    backend_config.kind = KVBM_BACKEND_CPU;
    kvbm_backend_t *backend = NULL;
    CHECK(kvbm_backend_create(&backend_config, &backend));
    EXPECT(strcmp(kvbm_backend_name(backend), "cpu") == 0);

    kvbm_cache_config_t config;
    kvbm_cache_config_init(&config);
    config.backend = backend;
    config.layout.num_blocks = BLOCKS;
    config.layout.num_layers = 2;
    config.layout.tokens_per_block = 16;
    config.layout.inner_dim = 64;
    config.g2_blocks = 2 * BLOCKS;
    kvbm_cache_t *cache = NULL;
    CHECK(kvbm_cache_create(&config, &cache));
    size_t chunk = kvbm_layout_chunk_bytes(kvbm_cache_layout(cache, KVBM_TIER_G1));

    uint64_t first[BLOCKS], other[BLOCKS];
    for (uint64_t i = 0; i < BLOCKS; i++) {
        first[i] = 0x1111000000000000ull + i;
        other[i] = 0x2222000000000000ull + i;
    }
    kvbm_cache_match_result_t r;
    if (serve(cache, first, chunk, &r) != 0)
        return 1;
    EXPECT(r.g1 == 0 && r.onboarded == 0);
    if (serve(cache, other, chunk, &r) != 0) /* evicts `first` from G1 into G2 */
        return 1;
    if (serve(cache, first, chunk, &r) != 0) /* back from G2, data checked */
        return 1;
    EXPECT(r.g1 == 0 && r.onboarded == BLOCKS);

    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(cache, &m);
    EXPECT(m.onboards == BLOCKS && m.failed_copies == 0 && m.offloads >= BLOCKS);
    kvbm_cache_destroy(cache);
    kvbm_backend_destroy(backend);
    return 0;
}

int main(void)
{
    if (kvbm_version_code() != KVBM_VERSION_CODE) {
        fprintf(stderr, "consumer: header version %d, library %s\n", KVBM_VERSION_CODE,
                kvbm_version());
        return 1;
    }
    if (manager_reuses_a_prefix() != 0 || cache_offloads_and_onboards() != 0)
        return 1;
    printf("consumer: kvbm %s: manager and cache on the CPU backend, blocks moved and checked\n",
           kvbm_version());
    return 0;
}
