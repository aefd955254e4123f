/* Shared helpers for the cmocka tests. Include after <cmocka.h>. */
#ifndef KVBM_TESTS_KVBM_TEST_H
#define KVBM_TESTS_KVBM_TEST_H

#include "kvbm/kvbm.h"

/* Exit status of a test program that cannot run here (no GPU, no NCCL): ctest
 * reports it skipped through the test's SKIP_RETURN_CODE property. */
#define KVBM_TEST_SKIPPED 77

/* Fails the test with the status name when a kvbm call does not return KVBM_OK. */
#define assert_kvbm_ok(call)                                                                       \
    do {                                                                                           \
        kvbm_status_t kvbm_test_status_ = (call);                                                  \
        if (kvbm_test_status_ != KVBM_OK)                                                          \
            fail_msg("%s returned %s", #call, kvbm_status_name(kvbm_test_status_));                \
    } while (0)

#define assert_kvbm_status(call, expected)                                                         \
    do {                                                                                           \
        kvbm_status_t kvbm_test_status_ = (call);                                                  \
        if (kvbm_test_status_ != (expected))                                                       \
            fail_msg("%s returned %s, expected %s", #call, kvbm_status_name(kvbm_test_status_),    \
                     kvbm_status_name(expected));                                                  \
    } while (0)

/* cmocka 1.1 has no floating-point assert. */
#define assert_near(actual, expected, tolerance)                                                   \
    do {                                                                                           \
        double kvbm_test_a_ = (actual), kvbm_test_e_ = (expected);                                 \
        if (!(kvbm_test_a_ - kvbm_test_e_ <= (tolerance) &&                                        \
              kvbm_test_e_ - kvbm_test_a_ <= (tolerance)))                                         \
            fail_msg("%s is %.6f, expected %.6f", #actual, kvbm_test_a_, kvbm_test_e_);            \
    } while (0)

static inline kvbm_manager_t *test_manager_new(uint32_t blocks, kvbm_duplication_t duplication,
                                               const kvbm_policy_ops_t *policy)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = blocks;
    config.duplication = duplication;
    config.policy = policy;
    kvbm_manager_t *manager = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &manager));
    return manager;
}

/* Checks the pool sizes and that they add up to the total. */
static inline void assert_pools(kvbm_manager_t *manager, size_t reset, size_t active,
                                size_t inactive)
{
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(manager, &counts);
    assert_int_equal(counts.reset + counts.active + counts.inactive, counts.total);
    assert_int_equal(counts.reset, reset);
    assert_int_equal(counts.active, active);
    assert_int_equal(counts.inactive, inactive);
}

#endif /* KVBM_TESTS_KVBM_TEST_H */
