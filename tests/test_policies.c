/*
 * Eviction policies driven directly through their ops tables: each policy's
 * order on small hand-built cases, the frequency sketch, the registry, and a
 * randomized run of every policy against a set model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy/freq_sketch.h"
#include "policy/multi_lru.h"
#include "kvbm/policy.h"

/* ------------------------------------------------------------- helpers */

typedef struct policy_fixture {
    const kvbm_policy_ops_t *ops;
    void *state;
} policy_fixture_t;

/* belady oracle over a table indexed by hash (hashes in tests are small). */
#define ORACLE_SIZE 64
typedef struct oracle {
    uint64_t next[ORACLE_SIZE];
} oracle_t;

static uint64_t oracle_next_use(void *ctx, uint64_t seq_hash)
{
    const oracle_t *o = ctx;
    if (seq_hash < ORACLE_SIZE)
        return o->next[seq_hash];
    /* Hashes outside the table get a deterministic pseudo-random time. */
    return (seq_hash * 0x9e3779b97f4a7c15ULL) >> 40;
}

static oracle_t default_oracle;

static void open_with(policy_fixture_t *f, const char *name, const kvbm_policy_config_t *config,
                      uint32_t capacity)
{
    f->ops = kvbm_policy_find(name);
    assert_non_null(f->ops);
    assert_int_equal(f->ops->create(config, capacity, &f->state), KVBM_OK);
}

static void open_policy(policy_fixture_t *f, const char *name, uint32_t capacity)
{
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    config.next_use = oracle_next_use;
    config.next_use_ctx = &default_oracle;
    open_with(f, name, &config, capacity);
}

static void close_policy(policy_fixture_t *f)
{
    f->ops->destroy(f->state);
    f->state = NULL;
}

static kvbm_policy_entry_t entry_of(uint32_t id, uint64_t hash, uint64_t parent, bool has_parent,
                                    uint8_t priority)
{
    kvbm_policy_entry_t e = {.block_id = id,
                             .seq_hash = hash,
                             .parent_hash = parent,
                             .has_parent = has_parent,
                             .priority = priority};
    return e;
}

/* A root block whose hash is 100 + id. */
static void insert_root(policy_fixture_t *f, uint32_t id)
{
    kvbm_policy_entry_t e = entry_of(id, 100 + id, 0, false, 50);
    f->ops->insert(f->state, &e);
}

static void insert_hashed(policy_fixture_t *f, uint32_t id, uint64_t hash)
{
    kvbm_policy_entry_t e = entry_of(id, hash, 0, false, 50);
    f->ops->insert(f->state, &e);
}

static void insert_child(policy_fixture_t *f, uint32_t id, uint64_t hash, uint64_t parent)
{
    kvbm_policy_entry_t e = entry_of(id, hash, parent, true, 50);
    f->ops->insert(f->state, &e);
}

static void touch_hashed(policy_fixture_t *f, uint32_t id, uint64_t hash, bool inactive)
{
    kvbm_policy_entry_t e = entry_of(id, hash, 0, false, 50);
    f->ops->touch(f->state, &e, inactive);
}

static uint32_t pop(policy_fixture_t *f)
{
    uint32_t id = KVBM_BLOCK_NONE;
    assert_true(f->ops->pop_victim(f->state, &id));
    return id;
}

static void assert_empty(policy_fixture_t *f)
{
    uint32_t id = 12345;
    assert_int_equal(f->ops->size(f->state), 0);
    assert_false(f->ops->pop_victim(f->state, &id));
    assert_int_equal(id, 12345); /* untouched on failure */
}

/* Every built-in policy, from the one list in kvbm/policy.h. */
static const char *const all_policies[] = {
#define POLICY_NAME(name, getter) name,
    KVBM_POLICY_LIST(POLICY_NAME)
#undef POLICY_NAME
};
#define N_POLICIES (sizeof(all_policies) / sizeof(all_policies[0]))

/* ------------------------------------------------------------- registry */

static void test_registry_finds_every_policy_by_name(void **unused)
{
    const char *const *names = kvbm_policy_names();
    size_t n = 0;
    while (names[n] != NULL)
        n++;
    assert_int_equal(n, N_POLICIES);
    for (size_t i = 0; i < N_POLICIES; i++) {
        assert_string_equal(names[i], all_policies[i]);
        const kvbm_policy_ops_t *ops = kvbm_policy_find(all_policies[i]);
        assert_non_null(ops);
        assert_string_equal(ops->name, all_policies[i]);
        assert_int_equal(ops->version, KVBM_POLICY_OPS_VERSION);
        assert_non_null(ops->create);
        assert_non_null(ops->destroy);
        assert_non_null(ops->insert);
        assert_non_null(ops->remove);
        assert_non_null(ops->pop_victim);
        assert_non_null(ops->touch);
        assert_non_null(ops->size);
        assert_non_null(ops->hint); /* version 2: every slot filled */
    }
#define POLICY_FOUND_BY_NAME(name, getter) assert_ptr_equal(kvbm_policy_find(name), getter());
    KVBM_POLICY_LIST(POLICY_FOUND_BY_NAME)
#undef POLICY_FOUND_BY_NAME
    /* The offline bound is listed last, as the ceiling of the sweeps. */
    assert_string_equal(all_policies[N_POLICIES - 1], "belady");
    assert_null(kvbm_policy_find("nope"));
    assert_null(kvbm_policy_find(NULL));
}

/* ------------------------------------------------------------- common */

static void test_every_policy_pop_on_empty_returns_false(void **unused)
{
    for (size_t i = 0; i < N_POLICIES; i++) {
        policy_fixture_t f;
        open_policy(&f, all_policies[i], 8);
        assert_empty(&f);
        insert_root(&f, 3);
        assert_int_equal(f.ops->size(f.state), 1);
        assert_int_equal(pop(&f), 3);
        assert_empty(&f);
        close_policy(&f);
    }
}

static void test_every_policy_remove_of_middle_element(void **unused)
{
    for (size_t i = 0; i < N_POLICIES; i++) {
        policy_fixture_t f;
        open_policy(&f, all_policies[i], 8);
        insert_root(&f, 0);
        insert_root(&f, 1);
        insert_root(&f, 2);
        f.ops->remove(f.state, 1);
        assert_int_equal(f.ops->size(f.state), 2);
        uint32_t a = pop(&f);
        uint32_t b = pop(&f);
        assert_true((a == 0 && b == 2) || (a == 2 && b == 0));
        assert_empty(&f);
        /* The removed block can come back. */
        insert_root(&f, 1);
        assert_int_equal(pop(&f), 1);
        assert_empty(&f);
        close_policy(&f);
    }
}

static void test_every_policy_destroy_null_is_noop(void **unused)
{
    for (size_t i = 0; i < N_POLICIES; i++)
        kvbm_policy_find(all_policies[i])->destroy(NULL);
}

/* ------------------------------------------------------------- sketch */

static void test_sketch_counts_and_saturates(void **unused)
{
    kvbm__freq_sketch_t s;
    assert_int_equal(kvbm__freq_sketch_init(&s, 1000), KVBM_OK);
    assert_int_equal(s.width, 1024);
    assert_int_equal(s.sample_size, 10240);
    assert_int_equal(kvbm__freq_sketch_estimate(&s, 42), 0);
    for (int i = 0; i < 7; i++)
        kvbm__freq_sketch_increment(&s, 42);
    assert_int_equal(kvbm__freq_sketch_estimate(&s, 42), 7);
    for (int i = 0; i < 40; i++)
        kvbm__freq_sketch_increment(&s, 42);
    assert_int_equal(kvbm__freq_sketch_estimate(&s, 42), 15);
    kvbm__freq_sketch_fini(&s);
    assert_int_equal(kvbm__freq_sketch_init(&s, KVBM__FREQ_SKETCH_MAX_WIDTH + 1u),
                     KVBM_ERR_INVALID_ARG);
}

static void test_sketch_aging_halves_counts(void **unused)
{
    kvbm__freq_sketch_t s;
    assert_int_equal(kvbm__freq_sketch_init(&s, 0), KVBM_OK);
    assert_int_equal(s.width, 16);
    for (int i = 0; i < 12; i++)
        kvbm__freq_sketch_increment(&s, 7);
    assert_int_equal(kvbm__freq_sketch_estimate(&s, 7), 12);
    kvbm__freq_sketch_age(&s);
    assert_int_equal(kvbm__freq_sketch_estimate(&s, 7), 6);

    /* Periodic aging: other keys drive the clock until a halving happens. */
    for (int i = 0; i < 6; i++)
        kvbm__freq_sketch_increment(&s, 7);
    uint32_t before = kvbm__freq_sketch_estimate(&s, 7);
    assert_true(before >= 12);
    uint64_t key = 1000;
    bool aged = false;
    for (int i = 0; i < 10000 && !aged; i++) {
        uint64_t additions = s.additions;
        before = kvbm__freq_sketch_estimate(&s, 7);
        kvbm__freq_sketch_increment(&s, key++);
        aged = s.additions < additions;
    }
    assert_true(aged);
    assert_int_equal(s.additions, s.sample_size / 2);
    uint32_t after = kvbm__freq_sketch_estimate(&s, 7);
    assert_true(after >= 6);                /* at least half of the true 12 */
    assert_true(after <= (before + 1) / 2); /* halved, plus the last increment */
    kvbm__freq_sketch_fini(&s);
}

static void test_sketch_aging_halves_every_counter_exactly(void **unused)
{
    /* A full, narrow sketch: every nibble of every word is in use, so a
     * halving that let bits cross between neighbouring counters shows. */
    kvbm__freq_sketch_t s;
    assert_int_equal(kvbm__freq_sketch_init(&s, 16), KVBM_OK);
    for (uint64_t i = 0; i < 120; i++)
        kvbm__freq_sketch_increment(&s, i % 37);
    uint32_t before[64];
    for (uint64_t k = 0; k < 64; k++)
        before[k] = kvbm__freq_sketch_estimate(&s, k);
    kvbm__freq_sketch_age(&s);
    for (uint64_t k = 0; k < 64; k++)
        assert_int_equal(kvbm__freq_sketch_estimate(&s, k), before[k] >> 1);
    kvbm__freq_sketch_fini(&s);
}

/* ------------------------------------------------------------- multi-lru */

/* multi-lru and multi-lru-follow order the same way until the sketch ages;
 * the checks below run on both. */

static void check_multi_lru_promotes_touched_and_evicts_coldest_level(const char *name)
{
    policy_fixture_t f;
    open_policy(&f, name, 64);
    for (uint32_t id = 0; id < 4; id++)
        insert_root(&f, id);
    /* Three inactive touches lift block 1 to level 1: it goes after all of level 0. */
    for (int i = 0; i < 3; i++)
        touch_hashed(&f, 1, 101, true);
    assert_int_equal(f.ops->size(f.state), 4);
    assert_int_equal(pop(&f), 0);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 1);
    assert_empty(&f);
    close_policy(&f);
}

static void check_multi_lru_levels_follow_thresholds(const char *name)
{
    policy_fixture_t f;
    open_policy(&f, name, 64);
    /* Counts from accesses while active decide the level at insert. */
    const int touches[4] = {15, 8, 3, 2}; /* levels 3, 2, 1, 0 */
    for (uint32_t id = 0; id < 4; id++) {
        for (int i = 0; i < touches[id]; i++)
            touch_hashed(&f, id, 100 + id, false);
        insert_root(&f, id);
    }
    insert_root(&f, 4); /* never touched: level 0, after block 3 */
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 4);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    close_policy(&f);

    /* Custom thresholds: one touch is enough for level 1. */
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    config.multi_lru_thresholds[0] = 1;
    config.multi_lru_thresholds[1] = 2;
    config.multi_lru_thresholds[2] = 3;
    config.sketch_width = 256;
    open_with(&f, name, &config, 8);
    insert_root(&f, 0);
    insert_root(&f, 1);
    touch_hashed(&f, 0, 100, true);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    close_policy(&f);
}

static void check_multi_lru_lru_within_level_and_remove(const char *name)
{
    policy_fixture_t f;
    open_policy(&f, name, 64);
    for (uint32_t id = 0; id < 5; id++)
        insert_root(&f, id);
    touch_hashed(&f, 0, 100, true); /* count 1: still level 0, but most recent */
    f.ops->remove(f.state, 2);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 4);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    close_policy(&f);
}

/* Runs a check on multi-lru and on multi-lru-follow. */
#define MULTI_LRU_TEST(check)                                                                      \
    static void test_##check(void **unused)                                                        \
    {                                                                                              \
        check_##check("multi-lru");                                                                \
        check_##check("multi-lru-follow");                                                         \
    }
MULTI_LRU_TEST(multi_lru_promotes_touched_and_evicts_coldest_level)
MULTI_LRU_TEST(multi_lru_levels_follow_thresholds)
MULTI_LRU_TEST(multi_lru_lru_within_level_and_remove)

/* A block hot long ago (level 3) and a block used once (level 0): once the
 * sketch has aged three times the old block's count is 15 >> 3 = 1. The
 * faithful multi-lru still evicts the new block first; multi-lru-follow
 * demotes the stale head to the front of level 0 and evicts it first. */
static void check_stale_hot_block(const char *name, uint32_t first_victim)
{
    policy_fixture_t f;
    open_policy(&f, name, 64);
    for (int i = 0; i < 15; i++)
        touch_hashed(&f, 0, 100, false);
    insert_root(&f, 0); /* level 3 */
    touch_hashed(&f, 1, 101, false);
    insert_root(&f, 1); /* level 0 */
    for (int i = 0; i < 3; i++)
        kvbm__freq_sketch_age(kvbm__multi_lru_sketch(f.state));
    assert_int_equal(kvbm__freq_sketch_estimate(kvbm__multi_lru_sketch(f.state), 100), 1);
    assert_int_equal(pop(&f), first_victim);
    assert_int_equal(pop(&f), 1 - first_victim);
    assert_empty(&f);
    close_policy(&f);
}

static void test_multi_lru_keeps_a_stale_level_follow_demotes_it(void **unused)
{
    check_stale_hot_block("multi-lru", 1);
    check_stale_hot_block("multi-lru-follow", 0);
}

/* Demotion goes one step at a time as the count decays: after one halving
 * a count of 15 is 7, level 1, still above level 0 but below a fresh level 2
 * block. */
static void test_multi_lru_follow_demotes_to_the_level_the_count_gives(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "multi-lru-follow", 64);
    for (int i = 0; i < 15; i++)
        touch_hashed(&f, 0, 100, false);
    insert_root(&f, 0);                                     /* level 3 */
    kvbm__freq_sketch_age(kvbm__multi_lru_sketch(f.state)); /* 100 -> 7: level 1 */
    for (int i = 0; i < 8; i++)
        touch_hashed(&f, 1, 101, false);
    insert_root(&f, 1); /* level 2 (count 8) */
    touch_hashed(&f, 2, 102, false);
    insert_root(&f, 2); /* level 0 */
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 0);
    assert_int_equal(pop(&f), 1);
    assert_empty(&f);
    close_policy(&f);
}

static void test_multi_lru_rejects_decreasing_thresholds(void **unused)
{
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    config.multi_lru_thresholds[0] = 9;
    void *state = (void *)&config;
    assert_int_equal(kvbm_policy_multi_lru()->create(&config, 8, &state), KVBM_ERR_INVALID_ARG);
    assert_ptr_equal(state, (void *)&config); /* untouched on failure */
    assert_int_equal(kvbm_policy_multi_lru_follow()->create(&config, 8, &state),
                     KVBM_ERR_INVALID_ARG);
    assert_ptr_equal(state, (void *)&config);
    config.multi_lru_thresholds[0] = 3;
    config.sketch_width = UINT32_MAX;
    assert_int_equal(kvbm_policy_multi_lru()->create(&config, 8, &state), KVBM_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------- lineage */

static void test_lineage_chain_released_tail_first_evicts_tail_first(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "lineage", 16);
    insert_hashed(&f, 3, 50); /* an unrelated, older root */
    /* Chain 0 <- 1 <- 2 (hashes 10, 11, 12), released tail first as the manager does. */
    insert_child(&f, 2, 12, 11);
    insert_child(&f, 1, 11, 10);
    insert_hashed(&f, 0, 10);
    assert_int_equal(f.ops->size(f.state), 4);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    close_policy(&f);
}

static void test_lineage_never_evicts_parent_before_inactive_child(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "lineage", 16);
    /* Chain released head first: the parent is the oldest but must wait. */
    insert_hashed(&f, 0, 10);
    insert_child(&f, 1, 11, 10);
    insert_child(&f, 2, 12, 11);
    insert_hashed(&f, 3, 50); /* a newer root */
    assert_int_equal(pop(&f), 2);
    /* The evicted tail's parent is cold: it goes next, ahead of root 3. */
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    assert_int_equal(pop(&f), 3);
    assert_empty(&f);
    close_policy(&f);
}

static void test_lineage_branching(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "lineage", 16);
    /*      0 (h10)
     *     /       \
     *  1 (h11)   2 (h12)
     *    |
     *  3 (h13)
     */
    insert_hashed(&f, 0, 10);
    insert_child(&f, 1, 11, 10);
    insert_child(&f, 2, 12, 10);
    insert_child(&f, 3, 13, 11);
    assert_int_equal(pop(&f), 2); /* 0 still has child 1 */
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    close_policy(&f);
}

static void test_lineage_remove_makes_parent_a_fresh_leaf(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "lineage", 16);
    insert_hashed(&f, 0, 10);
    insert_child(&f, 1, 11, 10);
    insert_child(&f, 2, 12, 11);
    insert_hashed(&f, 3, 50);
    /* Reacquire the middle of the chain: 0 loses its only inactive child and
     * becomes a leaf behind 3; 2 keeps its (now active) parent's hash. */
    f.ops->remove(f.state, 1);
    assert_int_equal(f.ops->size(f.state), 3);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    /* Parent 1 returns while its child is absent; then the child comes back. */
    insert_child(&f, 1, 11, 10);
    insert_child(&f, 2, 12, 11);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 1);
    assert_empty(&f);
    close_policy(&f);
}

static void test_lineage_parent_not_in_policy_and_odd_links(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "lineage", 16);
    insert_child(&f, 5, 20, 999); /* parent active or never cached */
    assert_int_equal(pop(&f), 5);
    assert_empty(&f);

    /* Two blocks carrying one hash (duplicate registration) both wait for the child. */
    insert_hashed(&f, 0, 30);
    insert_hashed(&f, 1, 30);
    insert_child(&f, 2, 31, 30);
    assert_int_equal(pop(&f), 2);
    uint32_t a = pop(&f);
    uint32_t b = pop(&f);
    assert_true((a == 0 && b == 1) || (a == 1 && b == 0));
    assert_empty(&f);

    /* A self-parent is a root; a cycle still drains. */
    insert_child(&f, 7, 40, 40);
    assert_int_equal(pop(&f), 7);
    insert_child(&f, 8, 41, 42);
    insert_child(&f, 9, 42, 41);
    assert_int_equal(f.ops->size(f.state), 2);
    a = pop(&f);
    b = pop(&f);
    assert_true((a == 8 && b == 9) || (a == 9 && b == 8));
    assert_empty(&f);
    close_policy(&f);
}

static void test_lineage_touch_refreshes_leaf(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "lineage", 16);
    insert_hashed(&f, 0, 10);
    insert_hashed(&f, 1, 11);
    touch_hashed(&f, 0, 10, true);
    touch_hashed(&f, 4, 77, false); /* an active block: ignored */
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    close_policy(&f);
}

/* ------------------------------------------------------------- s3-fifo */

static void test_s3fifo_one_hit_wonders_go_before_reused(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "s3-fifo", 100);
    for (uint32_t id = 0; id < 10; id++)
        insert_root(&f, id);
    for (uint32_t id = 0; id < 5; id++)
        touch_hashed(&f, id, 100 + id, true);
    for (uint32_t id = 10; id < 20; id++)
        insert_root(&f, id);
    /* Blocks 0..4 were hit while in small: promoted, not evicted. */
    for (uint32_t want = 5; want < 20; want++)
        assert_int_equal(pop(&f), want);
    for (uint32_t want = 0; want < 5; want++)
        assert_int_equal(pop(&f), want);
    assert_empty(&f);
    close_policy(&f);
}

static void test_s3fifo_reacquired_block_returns_to_main(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "s3-fifo", 100);
    /* Registration touch, release, then a match: touch while inactive and remove. */
    touch_hashed(&f, 0, 100, false);
    insert_root(&f, 0);
    touch_hashed(&f, 0, 100, true);
    f.ops->remove(f.state, 0);
    insert_root(&f, 0); /* released again: reused, so main */
    for (uint32_t id = 1; id < 10; id++) {
        touch_hashed(&f, id, 100 + id, false); /* registration only */
        insert_root(&f, id);
    }
    for (uint32_t want = 1; want < 10; want++)
        assert_int_equal(pop(&f), want);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);

    /* A hit while active (shared prefix) counts too. */
    touch_hashed(&f, 3, 500, false);
    touch_hashed(&f, 3, 500, false);
    insert_hashed(&f, 3, 500);
    insert_root(&f, 4);
    assert_int_equal(pop(&f), 4);
    assert_int_equal(pop(&f), 3);
    close_policy(&f);
}

static void test_s3fifo_ghost_hit_goes_to_main(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "s3-fifo", 100);
    insert_hashed(&f, 0, 777);
    assert_int_equal(pop(&f), 0); /* evicted from small: 777 is in the ghost */
    /* The same content comes back on another block: straight to main. */
    insert_hashed(&f, 5, 777);
    insert_root(&f, 6);
    insert_root(&f, 7);
    assert_int_equal(pop(&f), 6);
    assert_int_equal(pop(&f), 7);
    assert_int_equal(pop(&f), 5);
    /* The ghost entry was consumed: a second return is a new block. */
    insert_hashed(&f, 8, 777);
    insert_root(&f, 9);
    assert_int_equal(pop(&f), 8);
    assert_int_equal(pop(&f), 9);
    assert_empty(&f);
    close_policy(&f);
}

static void test_s3fifo_main_gives_second_chance(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "s3-fifo", 100);
    /* Fill main through the ghost: blocks 0..2 re-enter as ghost hits. */
    for (uint32_t id = 0; id < 3; id++) {
        insert_root(&f, id);
        assert_int_equal(pop(&f), id);
    }
    for (uint32_t id = 0; id < 3; id++)
        insert_root(&f, id);
    touch_hashed(&f, 0, 100, true); /* freq 1 in main */
    assert_int_equal(pop(&f), 1);   /* 0 is skipped once and goes to the tail */
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 0);
    assert_empty(&f);
    close_policy(&f);
}

static void test_s3fifo_ghost_is_bounded(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "s3-fifo", 10); /* ghost holds 9 hashes */
    for (uint32_t i = 0; i < 10; i++) {
        insert_hashed(&f, 0, 1000 + i);
        assert_int_equal(pop(&f), 0);
    }
    /* 1000 fell out of the ghost; 1009 is still there. */
    insert_hashed(&f, 1, 1009);
    insert_hashed(&f, 2, 1000);
    insert_root(&f, 3);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 1);
    close_policy(&f);
}

/* ------------------------------------------------------------- priority */

static void insert_priority(policy_fixture_t *f, uint32_t id, uint8_t priority)
{
    kvbm_policy_entry_t e = entry_of(id, 100 + id, 0, false, priority);
    f->ops->insert(f->state, &e);
}

static void test_priority_lowest_first_lru_tie_break(void **unused)
{
    policy_fixture_t f;
    open_policy(&f, "priority", 16);
    insert_priority(&f, 0, 50);
    insert_priority(&f, 1, 10);
    insert_priority(&f, 2, 100);
    insert_priority(&f, 3, 10);
    insert_priority(&f, 4, 0);
    insert_priority(&f, 5, 70);
    insert_priority(&f, 6, 10);
    touch_hashed(&f, 1, 101, true); /* most recent among the 10s now */
    f.ops->remove(f.state, 5);
    assert_int_equal(pop(&f), 4);
    assert_int_equal(pop(&f), 3);
    assert_int_equal(pop(&f), 6);
    assert_int_equal(pop(&f), 1);
    assert_int_equal(pop(&f), 0);
    assert_int_equal(pop(&f), 2);
    assert_empty(&f);
    close_policy(&f);
}

/* ------------------------------------------------------------- belady */

static void test_belady_farthest_next_use_and_never_used_first(void **unused)
{
    oracle_t oracle = {{0}};
    oracle.next[0] = 10;
    oracle.next[1] = UINT64_MAX;
    oracle.next[2] = 50;
    oracle.next[3] = 20;
    oracle.next[4] = UINT64_MAX;
    oracle.next[5] = 30;
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    config.next_use = oracle_next_use;
    config.next_use_ctx = &oracle;
    policy_fixture_t f;
    open_with(&f, "belady", &config, 16);
    for (uint32_t id = 0; id < 6; id++)
        insert_hashed(&f, id, id);
    f.ops->remove(f.state, 5);
    /* A use moves block 0's next use beyond 2's. */
    oracle.next[0] = 60;
    touch_hashed(&f, 0, 0, true);
    assert_int_equal(pop(&f), 1); /* never used, older */
    assert_int_equal(pop(&f), 4);
    assert_int_equal(pop(&f), 0);
    assert_int_equal(pop(&f), 2);
    assert_int_equal(pop(&f), 3);
    assert_empty(&f);
    close_policy(&f);
}

static void test_belady_requires_oracle(void **unused)
{
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    void *state = NULL;
    assert_int_equal(kvbm_policy_belady()->create(&config, 8, &state), KVBM_ERR_INVALID_ARG);
    assert_null(state);
}

/* ------------------------------------------------------------- randomized */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic across platforms. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng_next() % n);
}

#define RAND_CAPACITY 48
#define RAND_HASHES   40

static kvbm_policy_entry_t random_entry(uint32_t id)
{
    uint64_t hash = 1 + rng_below(RAND_HASHES);
    bool has_parent = rng_below(4) != 0;
    return entry_of(id, hash, 1 + rng_below(RAND_HASHES), has_parent, (uint8_t)rng_below(101));
}

static void random_run(const char *name, uint64_t seed, int steps)
{
    policy_fixture_t f;
    open_policy(&f, name, RAND_CAPACITY);
    rng_state = seed;
    bool present[RAND_CAPACITY] = {false};
    kvbm_policy_entry_t entries[RAND_CAPACITY];
    size_t count = 0;
    for (int step = 0; step < steps; step++) {
        uint32_t op = rng_below(10);
        uint32_t id = rng_below(RAND_CAPACITY);
        if (op < 4) { /* insert an absent block */
            if (!present[id]) {
                entries[id] = random_entry(id);
                f.ops->insert(f.state, &entries[id]);
                present[id] = true;
                count++;
            }
        } else if (op < 6) { /* remove a present block */
            if (present[id]) {
                f.ops->remove(f.state, id);
                present[id] = false;
                count--;
            }
        } else if (op < 8) { /* touch, present or not */
            if (present[id]) {
                f.ops->touch(f.state, &entries[id], true);
            } else {
                kvbm_policy_entry_t e = random_entry(id);
                f.ops->touch(f.state, &e, false);
            }
        } else { /* evict */
            uint32_t victim = KVBM_BLOCK_NONE;
            bool got = f.ops->pop_victim(f.state, &victim);
            assert_int_equal(got, count > 0);
            if (got) {
                assert_true(victim < RAND_CAPACITY);
                assert_true(present[victim]);
                present[victim] = false;
                count--;
            }
        }
        assert_int_equal(f.ops->size(f.state), count);
    }
    /* Drain: every present block comes out exactly once. */
    while (count > 0) {
        uint32_t victim = pop(&f);
        assert_true(victim < RAND_CAPACITY);
        assert_true(present[victim]);
        present[victim] = false;
        count--;
        assert_int_equal(f.ops->size(f.state), count);
    }
    assert_empty(&f);
    close_policy(&f);
}

#define RANDOM_TEST(fn, policy_name)                                                               \
    static void fn(void **unused)                                                                  \
    {                                                                                              \
        for (uint64_t seed = 1; seed <= 20; seed++)                                                \
            random_run(policy_name, seed * 0x9e3779b97f4a7c15ULL, 5000);                           \
    }
RANDOM_TEST(test_random_lru_matches_set_model, "lru")
RANDOM_TEST(test_random_multi_lru_matches_set_model, "multi-lru")
RANDOM_TEST(test_random_lineage_matches_set_model, "lineage")
RANDOM_TEST(test_random_s3fifo_matches_set_model, "s3-fifo")
RANDOM_TEST(test_random_priority_matches_set_model, "priority")
RANDOM_TEST(test_random_belady_matches_set_model, "belady")
RANDOM_TEST(test_random_slru_matches_set_model, "slru")
RANDOM_TEST(test_random_multi_lru_follow_matches_set_model, "multi-lru-follow")
RANDOM_TEST(test_random_adaptive_matches_set_model, "adaptive")

/* Lineage's rule on random forests without cycles: a popped block never has
 * an inactive child. Parents are always lower-numbered hashes here. */
static void test_random_lineage_never_evicts_a_parent_of_an_inactive_block(void **unused)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        policy_fixture_t f;
        open_policy(&f, "lineage", RAND_CAPACITY);
        rng_state = seed * 0x9e3779b97f4a7c15ULL;
        bool present[RAND_CAPACITY] = {false};
        kvbm_policy_entry_t entries[RAND_CAPACITY];
        for (int step = 0; step < 4000; step++) {
            uint32_t id = rng_below(RAND_CAPACITY);
            uint32_t op = rng_below(10);
            if (op < 5 && !present[id]) {
                uint64_t hash = 2 + rng_below(RAND_HASHES);
                entries[id] =
                    entry_of(id, hash, 1 + rng_below((uint32_t)hash - 1), rng_below(5) != 0, 50);
                f.ops->insert(f.state, &entries[id]);
                present[id] = true;
            } else if (op < 7 && present[id]) {
                f.ops->remove(f.state, id);
                present[id] = false;
            } else if (op >= 7) {
                uint32_t victim;
                if (!f.ops->pop_victim(f.state, &victim))
                    continue;
                assert_true(present[victim]);
                present[victim] = false;
                for (uint32_t c = 0; c < RAND_CAPACITY; c++) {
                    if (present[c] && entries[c].has_parent)
                        assert_false(entries[c].parent_hash == entries[victim].seq_hash);
                }
            }
        }
        close_policy(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_finds_every_policy_by_name),
        cmocka_unit_test(test_every_policy_pop_on_empty_returns_false),
        cmocka_unit_test(test_every_policy_remove_of_middle_element),
        cmocka_unit_test(test_every_policy_destroy_null_is_noop),
        cmocka_unit_test(test_sketch_counts_and_saturates),
        cmocka_unit_test(test_sketch_aging_halves_counts),
        cmocka_unit_test(test_sketch_aging_halves_every_counter_exactly),
        cmocka_unit_test(test_multi_lru_promotes_touched_and_evicts_coldest_level),
        cmocka_unit_test(test_multi_lru_levels_follow_thresholds),
        cmocka_unit_test(test_multi_lru_lru_within_level_and_remove),
        cmocka_unit_test(test_multi_lru_rejects_decreasing_thresholds),
        cmocka_unit_test(test_multi_lru_keeps_a_stale_level_follow_demotes_it),
        cmocka_unit_test(test_multi_lru_follow_demotes_to_the_level_the_count_gives),
        cmocka_unit_test(test_lineage_chain_released_tail_first_evicts_tail_first),
        cmocka_unit_test(test_lineage_never_evicts_parent_before_inactive_child),
        cmocka_unit_test(test_lineage_branching),
        cmocka_unit_test(test_lineage_remove_makes_parent_a_fresh_leaf),
        cmocka_unit_test(test_lineage_parent_not_in_policy_and_odd_links),
        cmocka_unit_test(test_lineage_touch_refreshes_leaf),
        cmocka_unit_test(test_s3fifo_one_hit_wonders_go_before_reused),
        cmocka_unit_test(test_s3fifo_reacquired_block_returns_to_main),
        cmocka_unit_test(test_s3fifo_ghost_hit_goes_to_main),
        cmocka_unit_test(test_s3fifo_main_gives_second_chance),
        cmocka_unit_test(test_s3fifo_ghost_is_bounded),
        cmocka_unit_test(test_priority_lowest_first_lru_tie_break),
        cmocka_unit_test(test_belady_farthest_next_use_and_never_used_first),
        cmocka_unit_test(test_belady_requires_oracle),
        cmocka_unit_test(test_random_lru_matches_set_model),
        cmocka_unit_test(test_random_multi_lru_matches_set_model),
        cmocka_unit_test(test_random_lineage_matches_set_model),
        cmocka_unit_test(test_random_s3fifo_matches_set_model),
        cmocka_unit_test(test_random_priority_matches_set_model),
        cmocka_unit_test(test_random_belady_matches_set_model),
        cmocka_unit_test(test_random_slru_matches_set_model),
        cmocka_unit_test(test_random_multi_lru_follow_matches_set_model),
        cmocka_unit_test(test_random_adaptive_matches_set_model),
        cmocka_unit_test(test_random_lineage_never_evicts_a_parent_of_an_inactive_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
