/*
 * The multi-thread soak: 16 threads (KVBM_SOAK_THREADS) on one manager, for
 * every policy, and on one tiered cache with copy faults injected, for both
 * layouts, every policy and both offload modes, each configuration for
 * KVBM_SOAK_SECONDS (0.25 by default: the CI run; scripts/soak.sh runs it
 * long). Each configuration prints its operations, verified reads, injected
 * faults, wrong bytes and lost blocks; the test fails on any wrong byte, any
 * lost block, or a held block found carrying anything but its hash.
 *
 * Manager: each thread matches a document's prefix, allocates and registers
 * the rest, then checks with a scan that every hash it holds still names
 * the block it holds (a held block is never evicted or handed to anyone
 * else), and releases. Cache: each thread acquires a document (G1 hits, G2
 * onboarding, fresh blocks), checks every byte served, has the shared
 * engine stream write the rest, registers and releases, while one copy call
 * in KVBM_SOAK_FAULT_ONE_IN on the cache's own streams fails. At the end
 * nothing is held, the pools add up, and every hash G2 holds carries its
 * own bytes.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cache_test_util.h"
#include "kvbm_test.h"
#include "mem/fault.h"

#define MAX_THREADS    64
#define DOCUMENTS      120
#define MAX_DOC_BLOCKS 8
#define FAULT_ONE_IN   40

typedef struct totals {
    uint64_t operations; /* library calls made */
    uint64_t
        verified_reads; /* blocks served and checked (cache), held mappings checked (manager) */
    uint64_t injected_faults; /* copy calls made to fail */
    uint64_t wrong_bytes;     /* served or G2 bytes that were not the block's */
    uint64_t wrong_blocks;    /* held blocks whose hash named another block */
    uint64_t lost_blocks;     /* blocks still held, or missing from the pools, at the end */
    uint64_t refused;         /* requests refused for lack of blocks (other threads hold them) */
} totals_t;

static totals_t grand;
static double soak_seconds = 0.25;
static int soak_threads = 16;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t next_rand(uint64_t *s, uint32_t bound)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s % bound);
}

static uint64_t next_use_by_hash(void *ctx, uint64_t hash)
{
    (void)ctx;
    return (hash * 0x9e3779b97f4a7c15ULL) >> 40;
}

static void add_totals(totals_t *into, const totals_t *from)
{
    into->operations += from->operations;
    into->verified_reads += from->verified_reads;
    into->injected_faults += from->injected_faults;
    into->wrong_bytes += from->wrong_bytes;
    into->wrong_blocks += from->wrong_blocks;
    into->lost_blocks += from->lost_blocks;
    into->refused += from->refused;
}

static void report(const char *what, const totals_t *t)
{
    printf("soak %-42s %12llu operations %11llu verified reads %8llu injected faults "
           "%llu wrong bytes %llu wrong blocks %llu lost blocks (%llu refused)\n",
           what, (unsigned long long)t->operations, (unsigned long long)t->verified_reads,
           (unsigned long long)t->injected_faults, (unsigned long long)t->wrong_bytes,
           (unsigned long long)t->wrong_blocks, (unsigned long long)t->lost_blocks,
           (unsigned long long)t->refused);
    fflush(stdout);
}

/* Blocks missing from a tier's pools or still held once every thread is done. */
static uint64_t lost_in(kvbm_manager_t *manager)
{
    kvbm_pool_counts_t c;
    kvbm_manager_counts(manager, &c);
    uint64_t accounted = c.reset + c.active + c.inactive;
    return c.active + (accounted > c.total ? accounted - c.total : c.total - accounted);
}

/* ------------------------------------------------------------------ manager */

typedef struct manager_worker {
    kvbm_manager_t *manager;
    uint64_t rng;
    double deadline;
    totals_t t;
} manager_worker_t;

static void manager_request(manager_worker_t *w)
{
    uint64_t doc = next_rand(&w->rng, DOCUMENTS);
    size_t n = 1 + next_rand(&w->rng, MAX_DOC_BLOCKS);
    uint64_t hashes[MAX_DOC_BLOCKS];
    uint32_t ids[MAX_DOC_BLOCKS], fresh[MAX_DOC_BLOCKS], seen[MAX_DOC_BLOCKS];
    uint32_t reversed[MAX_DOC_BLOCKS];
    for (size_t i = 0; i < n; i++)
        hashes[i] = doc * 100 + i;
    size_t k = 0;
    assert_kvbm_ok(kvbm_manager_match(w->manager, hashes, n, ids, &k));
    w->t.operations++;
    if (k < n) {
        kvbm_status_t status = kvbm_manager_allocate(w->manager, n - k, fresh, NULL, NULL);
        w->t.operations++;
        if (status == KVBM_ERR_NO_BLOCKS) {
            w->t.refused++;
            if (k > 0)
                assert_kvbm_ok(kvbm_manager_release(w->manager, ids, k));
            w->t.operations += k > 0;
            return;
        }
        assert_kvbm_ok(status);
        kvbm_register_opts_t opts = {.has_parent = k > 0,
                                     .parent_hash = k > 0 ? hashes[k - 1] : 0,
                                     .priority = (uint8_t)next_rand(&w->rng, 101)};
        assert_kvbm_ok(kvbm_manager_register(w->manager, fresh, hashes + k, n - k, &opts, ids + k));
        w->t.operations++;
    }
    /* Every hash held names the block held: nothing held was evicted or
     * given to another thread meanwhile. */
    size_t found = 0;
    assert_kvbm_ok(
        kvbm_manager_scan(w->manager, hashes, n, next_rand(&w->rng, 2) == 0, seen, &found));
    w->t.operations++;
    for (size_t i = 0; i < n; i++) {
        w->t.verified_reads++;
        w->t.wrong_blocks += seen[i] != ids[i];
    }
    if (found > 0) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (seen[i] != KVBM_BLOCK_NONE)
                seen[m++] = seen[i];
        assert_kvbm_ok(kvbm_manager_release(w->manager, seen, m));
        w->t.operations++;
    }
    for (size_t i = 0; i < n; i++)
        reversed[i] = ids[n - 1 - i];
    assert_kvbm_ok(kvbm_manager_release(w->manager, reversed, n));
    w->t.operations++;
    if (next_rand(&w->rng, 64) == 0) {
        kvbm_pool_counts_t c;
        kvbm_manager_counts(w->manager, &c);
        w->t.operations++;
        w->t.lost_blocks += c.reset + c.active + c.inactive != c.total;
    }
}

static void *manager_worker_main(void *arg)
{
    manager_worker_t *w = arg;
    do { /* at least one round, however late the thread starts */
        for (int i = 0; i < 32; i++)
            manager_request(w);
    } while (now_s() < w->deadline);
    return NULL;
}

static void soak_manager(const char *policy_name)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 256;
    config.policy = kvbm_policy_find(policy_name);
    config.policy_config.next_use = next_use_by_hash;
    assert_non_null(config.policy);
    kvbm_manager_t *manager = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &manager));
    manager_worker_t workers[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    double deadline = now_s() + soak_seconds;
    for (int i = 0; i < soak_threads; i++) {
        workers[i] = (manager_worker_t){.manager = manager,
                                        .rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1),
                                        .deadline = deadline};
        assert_int_equal(pthread_create(&threads[i], NULL, manager_worker_main, &workers[i]), 0);
    }
    totals_t t = {0};
    for (int i = 0; i < soak_threads; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        add_totals(&t, &workers[i].t);
    }
    t.lost_blocks += lost_in(manager);
    char what[64];
    snprintf(what, sizeof(what), "manager %s", policy_name);
    report(what, &t);
    add_totals(&grand, &t);
    kvbm_manager_destroy(manager);
    assert_int_equal(t.wrong_blocks, 0);
    assert_int_equal(t.lost_blocks, 0);
    assert_true(t.verified_reads > 0);
}

static void sixteen_threads_on_one_manager_for_every_policy(void **state)
{
    for (const char *const *name = kvbm_policy_names(); *name != NULL; name++)
        soak_manager(*name);
}

/* ------------------------------------------------------------------ cache */

typedef struct cache_soak {
    kvbm_backend_t *backend;
    kvbm_stream_t *engine;
    kvbm_cache_t *cache;
} cache_soak_t;

typedef struct cache_worker {
    cache_soak_t *soak;
    uint64_t rng;
    double deadline;
    totals_t t;
} cache_worker_t;

/* Bytes of G1 (or G2) block @p id that are not @p hash's. */
static uint64_t wrong_bytes_in(kvbm_cache_t *cache, kvbm_tier_t tier, uint32_t id, uint64_t hash)
{
    const kvbm_layout_t *layout = kvbm_cache_layout(cache, tier);
    unsigned char *base = kvbm_pool_ptr(kvbm_cache_pool(cache, tier));
    size_t block_bytes = kvbm_layout_block_bytes(layout);
    unsigned char *expected = malloc(block_bytes);
    assert_non_null(expected);
    pattern_fill(expected, block_bytes, hash);
    kvbm_region_t regions[64];
    size_t n = 0, done = 0;
    assert_kvbm_ok(kvbm_layout_block_regions(layout, id, regions, 64, &n));
    uint64_t wrong = 0;
    for (size_t r = 0; r < n; r++) {
        const unsigned char *got = base + regions[r].offset;
        for (size_t b = 0; b < regions[r].bytes; b++)
            wrong += got[b] != expected[done + b];
        done += regions[r].bytes;
    }
    free(expected);
    return wrong;
}

static void cache_request(cache_worker_t *w, test_engine_t *engine)
{
    kvbm_cache_t *cache = w->soak->cache;
    uint64_t doc = next_rand(&w->rng, DOCUMENTS);
    size_t n = 1 + next_rand(&w->rng, MAX_DOC_BLOCKS);
    uint64_t hashes[MAX_DOC_BLOCKS];
    uint32_t ids[MAX_DOC_BLOCKS], registered[MAX_DOC_BLOCKS], reversed[MAX_DOC_BLOCKS];
    for (size_t i = 0; i < n; i++)
        hashes[i] = doc * 100 + i;
    kvbm_fence_t *ready;
    assert_kvbm_ok(kvbm_fence_create(w->soak->backend, &ready));
    kvbm_cache_match_result_t r;
    kvbm_status_t status = kvbm_cache_acquire(cache, hashes, n, ids, &r, ready);
    w->t.operations++;
    if (status == KVBM_ERR_NO_BLOCKS) {
        kvbm_fence_destroy(ready);
        w->t.refused++;
        return;
    }
    assert_kvbm_ok(status);
    kvbm_status_t waited = kvbm_fence_wait(ready);
    kvbm_fence_destroy(ready);
    assert_true(waited == KVBM_OK || waited == KVBM_ERR_COPY_FAILED);
    /* Host reads need the engine's earlier writes to have landed. */
    assert_kvbm_ok(engine_finish(engine));
    size_t served = r.g1 + r.onboarded;
    if (served > 0) {
        kvbm_status_t check = kvbm_cache_check(cache, ids, served);
        w->t.operations++;
        assert_true(check == KVBM_OK || check == KVBM_ERR_COPY_FAILED);
        if (check == KVBM_OK) {
            for (size_t i = 0; i < served; i++) {
                w->t.verified_reads++;
                w->t.wrong_bytes += wrong_bytes_in(cache, KVBM_TIER_G1, ids[i], hashes[i]);
            }
        }
    }
    for (size_t i = served; i < n; i++)
        assert_kvbm_ok(engine_write(engine, cache, ids[i], hashes[i]));
    memcpy(registered, ids, sizeof(ids));
    if (n > served) {
        kvbm_register_opts_t opts = {.has_parent = served > 0,
                                     .parent_hash = served > 0 ? hashes[served - 1] : 0,
                                     .priority = 50,
                                     .request_blocks = (uint32_t)n,
                                     .first_position = (uint32_t)served};
        assert_kvbm_ok(kvbm_cache_register(cache, ids + served, hashes + served, n - served, &opts,
                                           registered + served));
        w->t.operations++;
    }
    for (size_t i = 0; i < n; i++)
        reversed[i] = registered[n - 1 - i];
    assert_kvbm_ok(kvbm_cache_release(cache, reversed, n));
    w->t.operations++;
}

static void *cache_worker_main(void *arg)
{
    cache_worker_t *w = arg;
    test_engine_t engine = {.backend = w->soak->backend, .stream = w->soak->engine};
    if (kvbm_fence_create(w->soak->backend, &engine.done) != KVBM_OK)
        return NULL;
    do { /* at least one round, however late the thread starts */
        for (int i = 0; i < 8; i++)
            cache_request(w, &engine);
    } while (now_s() < w->deadline);
    engine_finish(&engine);
    kvbm_fence_destroy(engine.done);
    return NULL;
}

/* Every hash G2 holds carries its own bytes: nothing wrong was ever cached. */
static uint64_t wrong_bytes_in_g2(kvbm_cache_t *cache)
{
    kvbm_manager_t *g2 = kvbm_cache_manager(cache, KVBM_TIER_G2);
    uint64_t wrong = 0;
    for (uint64_t doc = 0; doc < DOCUMENTS; doc++) {
        for (uint64_t i = 0; i < MAX_DOC_BLOCKS; i++) {
            uint64_t h = doc * 100 + i;
            uint32_t id;
            size_t found;
            assert_kvbm_ok(kvbm_manager_scan(g2, &h, 1, false, &id, &found));
            if (found == 0)
                continue;
            wrong += wrong_bytes_in(cache, KVBM_TIER_G2, id, h);
            assert_kvbm_ok(kvbm_manager_release(g2, &id, 1));
        }
    }
    return wrong;
}

static void soak_cache(kvbm_layout_kind_t kind, const char *policy, kvbm_offload_mode_t mode,
                       bool admission)
{
    cache_soak_t soak;
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    assert_kvbm_ok(kvbm_backend_create(&bc, &soak.backend));
    assert_kvbm_ok(kvbm_stream_create(soak.backend, &soak.engine));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = soak.backend;
    cc.layout.kind = kind;
    cc.layout.num_blocks = 96;
    cc.layout.num_layers = 3;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 16;
    cc.g2_blocks = 256;
    cc.g1_policy = kvbm_policy_find(policy);
    cc.g2_policy = cc.g1_policy;
    cc.policy_config.next_use = next_use_by_hash;
    cc.offload_mode = mode;
    cc.offload_admission = admission;
    cc.engine_stream = soak.engine;
    assert_kvbm_ok(kvbm_cache_create(&cc, &soak.cache));
    /* The engine's own writes are spared: a failed one would be the
     * engine's to see, not the cache's. */
    assert_kvbm_ok(kvbm__backend_fail_copies(soak.backend, FAULT_ONE_IN, soak.engine));

    cache_worker_t workers[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    double deadline = now_s() + soak_seconds;
    for (int i = 0; i < soak_threads; i++) {
        workers[i] = (cache_worker_t){
            .soak = &soak, .rng = 0x2545f4914f6cdd1dULL * (uint64_t)(i + 1), .deadline = deadline};
        assert_int_equal(pthread_create(&threads[i], NULL, cache_worker_main, &workers[i]), 0);
    }
    totals_t t = {0};
    for (int i = 0; i < soak_threads; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        add_totals(&t, &workers[i].t);
    }
    assert_kvbm_ok(kvbm_cache_sync(soak.cache));
    t.injected_faults = kvbm__backend_faults_injected(soak.backend);
    t.lost_blocks += lost_in(kvbm_cache_manager(soak.cache, KVBM_TIER_G1));
    t.lost_blocks += lost_in(kvbm_cache_manager(soak.cache, KVBM_TIER_G2));
    t.wrong_bytes += wrong_bytes_in_g2(soak.cache);
    kvbm_cache_metrics_t m;
    kvbm_cache_metrics(soak.cache, &m);
    char what[80];
    snprintf(what, sizeof(what), "cache %s %s %s%s",
             kind == KVBM_LAYOUT_FULLY_CONTIGUOUS ? "contiguous" : "layer-separate", policy,
             mode == KVBM_OFFLOAD_WRITE_BACK ? "write-back" : "write-through",
             admission ? "+admission" : "");
    report(what, &t);
    add_totals(&grand, &t);
    kvbm_cache_destroy(soak.cache);
    kvbm_stream_destroy(soak.engine);
    kvbm_backend_destroy(soak.backend);
    assert_int_equal(t.wrong_bytes, 0);
    assert_int_equal(t.lost_blocks, 0);
    assert_true(t.verified_reads > 0);
    assert_true(m.offloads > 0);
}

static void sixteen_threads_on_one_cache_with_copy_faults(void **state)
{
    const kvbm_layout_kind_t kinds[2] = {KVBM_LAYOUT_FULLY_CONTIGUOUS, KVBM_LAYOUT_LAYER_SEPARATE};
    const kvbm_offload_mode_t modes[2] = {KVBM_OFFLOAD_WRITE_BACK, KVBM_OFFLOAD_WRITE_THROUGH};
    for (int k = 0; k < 2; k++)
        for (const char *const *name = kvbm_policy_names(); *name != NULL; name++)
            for (int m = 0; m < 2; m++)
                soak_cache(kinds[k], *name, modes[m], false);
    /* Over the whole cache soak, faults were really met. */
    assert_true(grand.injected_faults > 0);
}

static void sixteen_threads_on_one_cache_with_g2_admission(void **state)
{
    /* The admission filter's state is the cache's, under its lock: the same
     * soak with it on (write-back, registration hints) for the default
     * policy and the one that reads the hints. */
    const kvbm_layout_kind_t kinds[2] = {KVBM_LAYOUT_FULLY_CONTIGUOUS, KVBM_LAYOUT_LAYER_SEPARATE};
    const char *const policies[2] = {"lru", "adaptive"};
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 2; p++)
            soak_cache(kinds[k], policies[p], KVBM_OFFLOAD_WRITE_BACK, true);
}

int main(void)
{
    const char *seconds = getenv("KVBM_SOAK_SECONDS");
    const char *threads = getenv("KVBM_SOAK_THREADS");
    if (seconds != NULL)
        soak_seconds = strtod(seconds, NULL);
    if (threads != NULL)
        soak_threads = atoi(threads);
    if (soak_threads < 1 || soak_threads > MAX_THREADS || !(soak_seconds > 0)) {
        fprintf(stderr, "test_soak: KVBM_SOAK_THREADS 1..%d, KVBM_SOAK_SECONDS > 0\n", MAX_THREADS);
        return 2;
    }
    printf("soak: %d threads, %.2f s per configuration, one copy call in %d failing\n",
           soak_threads, soak_seconds, FAULT_ONE_IN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sixteen_threads_on_one_manager_for_every_policy),
        cmocka_unit_test(sixteen_threads_on_one_cache_with_copy_faults),
        cmocka_unit_test(sixteen_threads_on_one_cache_with_g2_admission),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    report("total", &grand);
    return failed;
}
