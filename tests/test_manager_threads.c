/*
 * Concurrency: several threads allocate, register, match, scan and release
 * against one manager. Checks that no mutable block is ever handed to two
 * holders at once, that matched blocks carry the hash asked for, and that
 * the pools add up at the end. Run under TSan by `scripts/test.sh thread`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include <cmocka.h>

#include "kvbm_test.h"

#define THREADS  4
#define BLOCKS   256
#define ROUNDS   8000
#define PREFIXES 64
#define MAX_LEN  8

typedef struct shared {
    kvbm_manager_t *manager;
    /* Which thread holds each block as mutable (0: none); relaxed is enough,
     * the manager's lock orders the hand-overs. */
    atomic_uint mutable_owner[BLOCKS];
    atomic_uint violations;
} shared_t;

typedef struct worker {
    shared_t *shared;
    unsigned index;
    uint64_t rng;
} worker_t;

static uint32_t worker_rand(worker_t *w, uint32_t bound)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return (uint32_t)(w->rng % bound);
}

/* Prefix p's block i has hash (p << 8) | i: requests share prefixes. */
static uint64_t prefix_hash(uint32_t prefix, uint32_t index)
{
    return ((uint64_t)prefix << 8) | index;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    shared_t *s = w->shared;
    kvbm_manager_t *m = s->manager;
    unsigned me = w->index + 1;
    for (int round = 0; round < ROUNDS; round++) {
        uint32_t prefix = worker_rand(w, PREFIXES);
        uint32_t len = 1 + worker_rand(w, MAX_LEN);
        uint64_t hashes[MAX_LEN];
        for (uint32_t i = 0; i < len; i++)
            hashes[i] = prefix_hash(prefix, i);

        uint32_t held[MAX_LEN];
        size_t matched = 0;
        if (worker_rand(w, 4) == 0) {
            uint32_t found[MAX_LEN];
            size_t n_found;
            if (kvbm_manager_scan(m, hashes, len, worker_rand(w, 2), found, &n_found) != KVBM_OK)
                atomic_fetch_add(&s->violations, 1);
            size_t kept = 0;
            uint32_t to_release[MAX_LEN];
            for (uint32_t i = 0; i < len; i++)
                if (found[i] != KVBM_BLOCK_NONE)
                    to_release[kept++] = found[i];
            if (kept != n_found || kvbm_manager_release(m, to_release, kept) != KVBM_OK)
                atomic_fetch_add(&s->violations, 1);
            continue;
        }
        if (kvbm_manager_match(m, hashes, len, held, &matched) != KVBM_OK)
            atomic_fetch_add(&s->violations, 1);

        size_t need = len - matched;
        uint32_t fresh[MAX_LEN];
        if (need > 0 && kvbm_manager_allocate(m, need, fresh, NULL, NULL) == KVBM_OK) {
            for (size_t i = 0; i < need; i++) {
                unsigned expected = 0;
                if (!atomic_compare_exchange_strong_explicit(&s->mutable_owner[fresh[i]], &expected,
                                                             me, memory_order_relaxed,
                                                             memory_order_relaxed))
                    atomic_fetch_add(&s->violations, 1);
            }
            /* Hand the blocks back to the manager before registering: after
             * a dedup they return to reset and another thread may take them. */
            for (size_t i = 0; i < need; i++)
                atomic_store_explicit(&s->mutable_owner[fresh[i]], 0, memory_order_relaxed);
            kvbm_register_opts_t opts = {.has_parent = matched > 0,
                                         .parent_hash = matched > 0 ? hashes[matched - 1] : 0,
                                         .priority = 50};
            if (kvbm_manager_register(m, fresh, hashes + matched, need, &opts, held + matched) !=
                KVBM_OK)
                atomic_fetch_add(&s->violations, 1);
            matched = len;
        }
        /* Whatever is held now must carry the hashes asked for. */
        uint32_t check[MAX_LEN];
        size_t n_check;
        if (kvbm_manager_scan(m, hashes, matched, false, check, &n_check) != KVBM_OK ||
            n_check != matched)
            atomic_fetch_add(&s->violations, 1);
        else if (kvbm_manager_release(m, check, matched) != KVBM_OK)
            atomic_fetch_add(&s->violations, 1);
        uint32_t reversed[MAX_LEN];
        for (size_t i = 0; i < matched; i++)
            reversed[i] = held[matched - 1 - i];
        if (kvbm_manager_release(m, reversed, matched) != KVBM_OK)
            atomic_fetch_add(&s->violations, 1);
    }
    return NULL;
}

/* A stand-in oracle for belady: any deterministic next use will do here. */
static uint64_t fake_next_use(void *ctx, uint64_t hash)
{
    (void)ctx;
    return hash * 2654435761u % 1000;
}

static void run_stress(const kvbm_policy_ops_t *policy)
{
    static shared_t s;
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = BLOCKS;
    config.policy = policy;
    config.policy_config.next_use = fake_next_use;
    s.manager = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &s.manager));
    for (int i = 0; i < BLOCKS; i++)
        atomic_init(&s.mutable_owner[i], 0);
    atomic_init(&s.violations, 0);
    pthread_t threads[THREADS];
    worker_t workers[THREADS];
    for (unsigned t = 0; t < THREADS; t++) {
        workers[t] = (worker_t){.shared = &s, .index = t, .rng = 0x1234567ULL * (t + 1)};
        assert_int_equal(pthread_create(&threads[t], NULL, worker_main, &workers[t]), 0);
    }
    for (unsigned t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    assert_int_equal(atomic_load(&s.violations), 0);

    kvbm_pool_counts_t counts;
    kvbm_manager_counts(s.manager, &counts);
    assert_int_equal(counts.active, 0);
    assert_int_equal(counts.reset + counts.inactive, BLOCKS);
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(s.manager, &metrics);
    assert_true(metrics.match_blocks > 0);
    assert_true(metrics.evictions > 0);
    assert_kvbm_ok(kvbm_manager_reset_inactive(s.manager));
    assert_pools(s.manager, BLOCKS, 0, 0);
    kvbm_manager_destroy(s.manager);
}

static void concurrent_requests_keep_pools_consistent(void **state)
{
    /* Every built-in policy: the manager's lock must keep each one sound. */
    for (const char *const *name = kvbm_policy_names(); *name != NULL; name++) {
        print_message("policy %s\n", *name);
        run_stress(kvbm_policy_find(*name));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_requests_keep_pools_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
