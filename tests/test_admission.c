/*
 * The G2 admission filter (kvbm/admission.h): classes that never come back
 * are refused once they have history, classes that come back are kept, a
 * used-twice block is its own class, keep ratio 0 keeps everything, and bad
 * configurations are refused. The filter on the shared trace is pinned in
 * test_replay.c; the tiered cache's use of it in test_cache.c.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvbm/admission.h"
#include "kvbm_test.h"

static kvbm_admission_t *new_filter(double keep_ratio, uint32_t min_samples)
{
    kvbm_admission_config_t config = KVBM_ADMISSION_CONFIG_INIT;
    config.g1_blocks = 64;
    config.g2_blocks = 1000;
    config.keep_ratio = keep_ratio;
    config.min_samples = min_samples;
    kvbm_admission_t *a = NULL;
    assert_kvbm_ok(kvbm_admission_create(&config, &a));
    return a;
}

/* Registers and evicts one block of a request of @p length at @p position;
 * returns the filter's answer. Hashes are unique unless @p hash repeats. */
static bool cycle(kvbm_admission_t *a, uint64_t hash, uint32_t length, uint32_t position)
{
    kvbm_admission_registered(a, 3, hash, length, position);
    return kvbm_admission_evicted(a, 3, hash, false);
}

static void test_class_that_never_returns_is_refused_after_its_samples(void **unused)
{
    kvbm_admission_t *a = new_filter(0.65, 8);
    uint64_t next = 1;
    /* Long requests (64 blocks) come back: each evicted hash is registered
     * again; short ones (4 blocks) never do. */
    int refused_short = 0, refused_long = 0;
    for (int round = 0; round < 50; round++) {
        uint64_t long_hash = next++;
        refused_long += !cycle(a, long_hash, 64, 10);
        kvbm_admission_registered(a, 5, long_hash, 64, 10); /* it came back */
        kvbm_admission_evicted(a, 5, long_hash, true);      /* and is in G2 */
        refused_short += !cycle(a, next++, 4, 1);
    }
    assert_int_equal(refused_long, 0);
    assert_true(refused_short >= 40); /* all but the first min_samples */
    assert_int_equal(kvbm_admission_refused(a), (uint64_t)refused_short);
    kvbm_admission_destroy(a);
}

static void test_keep_ratio_zero_keeps_everything(void **unused)
{
    kvbm_admission_t *a = new_filter(0.0, 0);
    for (uint64_t h = 1; h < 200; h++)
        assert_true(cycle(a, h, 4, 3));
    assert_int_equal(kvbm_admission_refused(a), 0);
    kvbm_admission_destroy(a);
}

/* A block used twice (a hit, or a count remembered from an earlier
 * eviction) is in the reused class, not in its request's class. */
static void test_used_twice_is_its_own_class(void **unused)
{
    kvbm_admission_t *a = new_filter(0.65, 4);
    uint64_t next = 1000;
    /* Long requests come back, once as a first use and once reused. */
    for (int i = 0; i < 20; i++) {
        uint64_t h = next++;
        cycle(a, h, 200, 50);
        for (int again = 0; again < 2; again++) {
            kvbm_admission_registered(a, 4, h, 200, 50);
            kvbm_admission_evicted(a, 4, h, true);
        }
    }
    /* Teach the filter that 8-block requests never come back. */
    for (int i = 0; i < 20; i++)
        cycle(a, next++, 8, 2);
    assert_false(cycle(a, next++, 8, 2));
    /* The same class, but hit once while in G1: reused, no history, kept. */
    kvbm_admission_registered(a, 7, 77, 8, 2);
    kvbm_admission_hit(a, 7);
    assert_true(kvbm_admission_evicted(a, 7, 77, false));
    /* Its count survives the eviction: registered again, still reused. */
    kvbm_admission_registered(a, 9, 77, 8, 2);
    assert_true(kvbm_admission_evicted(a, 9, 77, false));
    kvbm_admission_destroy(a);
}

static void test_in_g2_is_recorded_not_refused(void **unused)
{
    kvbm_admission_t *a = new_filter(0.65, 0);
    for (uint64_t h = 1; h < 100; h++) {
        kvbm_admission_registered(a, 1, h, 4, 3);
        assert_false(kvbm_admission_evicted(a, 1, h, true));
    }
    assert_int_equal(kvbm_admission_refused(a), 0);
    /* Ids outside G1 are ignored, never read out of bounds. */
    kvbm_admission_hit(a, 64);
    kvbm_admission_registered(a, 1000, 5, 4, 0);
    kvbm_admission_evicted(a, UINT32_MAX, 5, false);
    kvbm_admission_destroy(a);
    kvbm_admission_destroy(NULL);
}

static void test_bad_configurations_are_refused(void **unused)
{
    kvbm_admission_config_t config = KVBM_ADMISSION_CONFIG_INIT;
    kvbm_admission_t *a = (kvbm_admission_t *)&config;
    config.g1_blocks = 8;
    config.g2_blocks = 0;
    assert_int_equal(kvbm_admission_create(&config, &a), KVBM_ERR_INVALID_ARG);
    config.g2_blocks = 8;
    config.keep_ratio = -1.0;
    assert_int_equal(kvbm_admission_create(&config, &a), KVBM_ERR_INVALID_ARG);
    config.keep_ratio = NAN;
    assert_int_equal(kvbm_admission_create(&config, &a), KVBM_ERR_INVALID_ARG);
    config.keep_ratio = 0.5;
    config.version = 99;
    assert_int_equal(kvbm_admission_create(&config, &a), KVBM_ERR_VERSION);
    assert_ptr_equal(a, (kvbm_admission_t *)&config); /* untouched on failure */
    assert_int_equal(kvbm_admission_create(NULL, &a), KVBM_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_that_never_returns_is_refused_after_its_samples),
        cmocka_unit_test(test_keep_ratio_zero_keeps_everything),
        cmocka_unit_test(test_used_twice_is_its_own_class),
        cmocka_unit_test(test_in_g2_is_recorded_not_refused),
        cmocka_unit_test(test_bad_configurations_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
