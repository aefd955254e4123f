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
#include <string.h>

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
/* kvbm_admission_evicted's answer (the call must succeed). */
static bool evicted(kvbm_admission_t *a, uint32_t g1_id, uint64_t hash, bool in_g2)
{
    bool offload = in_g2; /* the call must overwrite it */
    assert_kvbm_ok(kvbm_admission_evicted(a, g1_id, hash, in_g2, &offload));
    return offload;
}

static uint64_t refused(const kvbm_admission_t *a)
{
    uint64_t n = UINT64_MAX;
    assert_kvbm_ok(kvbm_admission_refused(a, &n));
    return n;
}

static bool cycle(kvbm_admission_t *a, uint64_t hash, uint32_t length, uint32_t position)
{
    assert_kvbm_ok(kvbm_admission_registered(a, 3, hash, length, position));
    return evicted(a, 3, hash, false);
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
        assert_kvbm_ok(kvbm_admission_registered(a, 5, long_hash, 64, 10)); /* it came back */
        (void)evicted(a, 5, long_hash, true);                               /* and is in G2 */
        refused_short += !cycle(a, next++, 4, 1);
    }
    assert_int_equal(refused_long, 0);
    assert_true(refused_short >= 40); /* all but the first min_samples */
    assert_int_equal(refused(a), (uint64_t)refused_short);
    kvbm_admission_destroy(a);
}

static void test_keep_ratio_zero_keeps_everything(void **unused)
{
    kvbm_admission_t *a = new_filter(0.0, 0);
    for (uint64_t h = 1; h < 200; h++)
        assert_true(cycle(a, h, 4, 3));
    assert_int_equal(refused(a), 0);
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
            assert_kvbm_ok(kvbm_admission_registered(a, 4, h, 200, 50));
            (void)evicted(a, 4, h, true);
        }
    }
    /* Teach the filter that 8-block requests never come back. */
    for (int i = 0; i < 20; i++)
        cycle(a, next++, 8, 2);
    assert_false(cycle(a, next++, 8, 2));
    /* The same class, but hit once while in G1: reused, no history, kept. */
    assert_kvbm_ok(kvbm_admission_registered(a, 7, 77, 8, 2));
    assert_kvbm_ok(kvbm_admission_hit(a, 7));
    assert_true(evicted(a, 7, 77, false));
    /* Its count survives the eviction: registered again, still reused. */
    assert_kvbm_ok(kvbm_admission_registered(a, 9, 77, 8, 2));
    assert_true(evicted(a, 9, 77, false));
    kvbm_admission_destroy(a);
}

static void test_in_g2_is_recorded_not_refused(void **unused)
{
    kvbm_admission_t *a = new_filter(0.65, 0);
    for (uint64_t h = 1; h < 100; h++) {
        assert_kvbm_ok(kvbm_admission_registered(a, 1, h, 4, 3));
        assert_false(evicted(a, 1, h, true));
    }
    assert_int_equal(refused(a), 0);
    /* Ids outside G1 are ignored, never read out of bounds. */
    assert_kvbm_ok(kvbm_admission_hit(a, 64));
    assert_kvbm_ok(kvbm_admission_registered(a, 1000, 5, 4, 0));
    (void)evicted(a, UINT32_MAX, 5, false);
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

/* Regression (issue 12's leftover): every call on a NULL filter or output
 * crashed; each now refuses with a reason and writes no output. */
static void test_null_filter_or_output_is_refused_with_a_reason(void **unused)
{
    assert_int_equal(kvbm_admission_hit(NULL, 0), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "kvbm_admission_hit"));
    assert_int_equal(kvbm_admission_registered(NULL, 0, 1, 4, 0), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "kvbm_admission_registered"));
    bool offload = true;
    assert_int_equal(kvbm_admission_evicted(NULL, 0, 1, false, &offload), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "admission != NULL"));
    assert_true(offload); /* untouched */
    uint64_t n = 7;
    assert_int_equal(kvbm_admission_refused(NULL, &n), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "kvbm_admission_refused"));
    assert_int_equal(n, 7);

    kvbm_admission_t *a = new_filter(0.65, 0);
    assert_int_equal(kvbm_admission_evicted(a, 1, 5, false, NULL), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "offload_out != NULL"));
    assert_int_equal(kvbm_admission_refused(a, NULL), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "refused_out != NULL"));
    /* The refused evicted call recorded nothing: the filter is as new. */
    assert_int_equal(refused(a), 0);
    kvbm_admission_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_that_never_returns_is_refused_after_its_samples),
        cmocka_unit_test(test_keep_ratio_zero_keeps_everything),
        cmocka_unit_test(test_used_twice_is_its_own_class),
        cmocka_unit_test(test_in_g2_is_recorded_not_refused),
        cmocka_unit_test(test_bad_configurations_are_refused),
        cmocka_unit_test(test_null_filter_or_output_is_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
