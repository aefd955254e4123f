/*
 * The slru policy driven through its ops table: which segment a block lands
 * in (tail, probation, protected), LRU order inside each, counts carried
 * across eviction by the ghost, and the ghost's bound. The randomized
 * set-model run is in test_policies.c with the other policies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvbm/policy.h"

typedef struct fixture {
    const kvbm_policy_ops_t *ops;
    void *state;
} fixture_t;

static void open_slru(fixture_t *f, uint32_t capacity)
{
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    f->ops = kvbm_policy_find("slru");
    assert_non_null(f->ops);
    assert_ptr_equal(f->ops, kvbm_policy_slru());
    assert_int_equal(f->ops->create(&config, capacity, &f->state), KVBM_OK);
}

static void close_slru(fixture_t *f)
{
    f->ops->destroy(f->state);
    f->state = NULL;
}

static kvbm_policy_entry_t entry(uint32_t id, uint64_t hash, bool has_parent, uint64_t parent)
{
    kvbm_policy_entry_t e = {.block_id = id,
                             .seq_hash = hash,
                             .parent_hash = parent,
                             .has_parent = has_parent,
                             .priority = 50};
    return e;
}

/* Registration of @p hash on block @p id (a touch while active). */
static void registered(fixture_t *f, uint32_t id, uint64_t hash)
{
    kvbm_policy_entry_t e = entry(id, hash, false, 0);
    f->ops->touch(f->state, &e, false);
}

static void release_root(fixture_t *f, uint32_t id, uint64_t hash)
{
    kvbm_policy_entry_t e = entry(id, hash, false, 0);
    f->ops->insert(f->state, &e);
}

static void release_child(fixture_t *f, uint32_t id, uint64_t hash, uint64_t parent)
{
    kvbm_policy_entry_t e = entry(id, hash, true, parent);
    f->ops->insert(f->state, &e);
}

/* A match of an inactive block: touch, then the manager removes it. */
static void matched(fixture_t *f, uint32_t id, uint64_t hash)
{
    kvbm_policy_entry_t e = entry(id, hash, false, 0);
    f->ops->touch(f->state, &e, true);
    f->ops->remove(f->state, id);
}

static uint32_t pop(fixture_t *f)
{
    uint32_t id = KVBM_BLOCK_NONE;
    assert_true(f->ops->pop_victim(f->state, &id));
    return id;
}

static void assert_empty(fixture_t *f)
{
    uint32_t id = 12345;
    assert_int_equal(f->ops->size(f->state), 0);
    assert_false(f->ops->pop_victim(f->state, &id));
    assert_int_equal(id, 12345);
}

static void test_slru_once_used_blocks_go_before_reused(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 32);
    for (uint32_t id = 0; id < 10; id++) {
        registered(&f, id, 100 + id);
        release_root(&f, id, 100 + id);
    }
    for (uint32_t id = 0; id < 5; id++) {
        matched(&f, id, 100 + id);
        release_root(&f, id, 100 + id); /* used twice: protected */
    }
    for (uint32_t want = 5; want < 10; want++)
        assert_int_equal(pop(&f), want);
    for (uint32_t want = 0; want < 5; want++)
        assert_int_equal(pop(&f), want);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_deepest_block_of_each_release_run_goes_first(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 32);
    /* Sequence A = 10 <- 11 <- 12 on blocks 0, 1, 2 and B = 20 <- 21 on 3, 4,
     * each released last block first as the manager does. */
    release_child(&f, 2, 12, 11);
    release_child(&f, 1, 11, 10);
    release_root(&f, 0, 10);
    release_child(&f, 4, 21, 20);
    release_root(&f, 3, 20);
    assert_int_equal(pop(&f), 2); /* tails, oldest first */
    assert_int_equal(pop(&f), 4);
    assert_int_equal(pop(&f), 1); /* then probation, oldest first */
    assert_int_equal(pop(&f), 0);
    assert_int_equal(pop(&f), 3);
    assert_empty(&f);

    /* Any other call between two inserts ends the run. */
    release_child(&f, 6, 31, 30);
    registered(&f, 9, 900);
    release_root(&f, 5, 30); /* parent of 6, but the run was broken */
    release_child(&f, 7, 41, 40);
    release_root(&f, 8, 40); /* continues 7's run */
    assert_int_equal(pop(&f), 6);
    assert_int_equal(pop(&f), 5);
    assert_int_equal(pop(&f), 7);
    assert_int_equal(pop(&f), 8);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_reused_tail_is_protected(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 32);
    registered(&f, 0, 10);
    registered(&f, 1, 11);
    release_child(&f, 1, 11, 10);
    release_root(&f, 0, 10);
    matched(&f, 0, 10);
    matched(&f, 1, 11);
    release_child(&f, 1, 11, 10); /* a tail, but used twice */
    release_root(&f, 0, 10);
    registered(&f, 2, 20);
    release_root(&f, 2, 20);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_count_survives_eviction(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 32);
    registered(&f, 0, 777);
    release_root(&f, 0, 777);
    assert_int_equal(pop(&f), 0); /* 777 goes to the ghost with one use */
    registered(&f, 5, 777);       /* registered again on another block */
    release_root(&f, 5, 777);     /* second use: protected */
    registered(&f, 1, 101);
    release_root(&f, 1, 101);
    registered(&f, 2, 102);
    release_root(&f, 2, 102);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 5);
    assert_empty(&f);
    close_slru(&f);
}

/* Evict @p hash through block 0 of an otherwise empty policy. */
static void churn(fixture_t *f, uint64_t hash)
{
    registered(f, 0, hash);
    release_root(f, 0, hash);
    assert_int_equal(pop(f), 0);
}

/* With capacity 2 the ghost holds 8 hashes: 1000 is remembered after 7 more
 * evictions and forgotten after 8. */
static void ghost_bound_case(int later_evictions, uint32_t first_victim)
{
    fixture_t f;
    open_slru(&f, 2);
    churn(&f, 1000);
    for (int i = 0; i < later_evictions; i++)
        churn(&f, 2000 + (uint64_t)i);
    registered(&f, 0, 1000);
    release_root(&f, 0, 1000);
    registered(&f, 1, 3000);
    release_root(&f, 1, 3000);
    assert_int_equal(pop(&f), first_victim);
    assert_int_equal(pop(&f), 1 - first_victim);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_ghost_is_bounded(void **unused)
{
    (void)unused;
    ghost_bound_case(7, 1); /* 1000 remembered: protected, 3000 goes first */
    ghost_bound_case(8, 0); /* 1000 forgotten: both once used, LRU */
}

static void test_slru_ghost_entry_is_taken_once(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 4);
    churn(&f, 55);
    registered(&f, 1, 55); /* takes the ghost entry: count 2 */
    registered(&f, 2, 55); /* a duplicate registration elsewhere: count 1 */
    release_root(&f, 1, 55);
    release_root(&f, 2, 55);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 1);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_protected_is_lru_and_remove_unlinks(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 8);
    for (uint32_t id = 0; id < 3; id++) {
        registered(&f, id, 10 + id);
        release_root(&f, id, 10 + id);
        matched(&f, id, 10 + id);
    }
    release_root(&f, 2, 12);
    release_root(&f, 0, 10);
    release_root(&f, 1, 11);
    f.ops->remove(f.state, 0);
    assert_int_equal(f.ops->size(f.state), 2);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 1);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_inactive_touch_refreshes_into_protected(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 8);
    registered(&f, 0, 10);
    release_root(&f, 0, 10);
    registered(&f, 1, 11);
    release_root(&f, 1, 11);
    kvbm_policy_entry_t e = entry(0, 10, false, 0);
    f.ops->touch(f.state, &e, true); /* stays in the pool, now used twice */
    assert_int_equal(f.ops->size(f.state), 2);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    close_slru(&f);
}

static void test_slru_insert_without_registration_counts_once(void **unused)
{
    (void)unused;
    fixture_t f;
    open_slru(&f, 8);
    release_root(&f, 3, 30); /* first sight at insert: one use */
    registered(&f, 4, 40);
    release_root(&f, 4, 40);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 4);
    assert_empty(&f);
    close_slru(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slru_once_used_blocks_go_before_reused),
        cmocka_unit_test(test_slru_deepest_block_of_each_release_run_goes_first),
        cmocka_unit_test(test_slru_reused_tail_is_protected),
        cmocka_unit_test(test_slru_count_survives_eviction),
        cmocka_unit_test(test_slru_ghost_is_bounded),
        cmocka_unit_test(test_slru_ghost_entry_is_taken_once),
        cmocka_unit_test(test_slru_protected_is_lru_and_remove_unlinks),
        cmocka_unit_test(test_slru_inactive_touch_refreshes_into_protected),
        cmocka_unit_test(test_slru_insert_without_registration_counts_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
