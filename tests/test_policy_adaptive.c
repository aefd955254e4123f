/*
 * The adaptive policy: it starts on LRU's order, follows slru's when a scan
 * floods a reused working set, returns to LRU's when recency is what pays,
 * and its miniature simulations sample by hash. Driven through the replay
 * model (the real manager), so the hit counts are the contract's. The
 * randomized set-model run is in test_policies.c with the other policies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "manager/internal.h"
#include "policy/adaptive.h"
#include "replay.h"

#define POOL        256
#define HOT_REQS    8
#define HOT_BLOCKS  16 /* 8 x 16 = 128 blocks reused every round */
#define SCAN_REQS   4
#define SCAN_BLOCKS 64 /* 256 one-off blocks per round: LRU loses the hot set */

typedef struct run {
    replay_t *replay;
    uint64_t next_unique;
} run_t;

static void run_open_hinted(run_t *r, const char *policy, bool hints)
{
    replay_config_t config = {.g1_blocks = POOL,
                              .g1_policy = kvbm_policy_find(policy),
                              .g2_policy = kvbm_policy_lru(),
                              .policy_config = KVBM_POLICY_CONFIG_INIT,
                              .no_hints = !hints};
    assert_non_null(config.g1_policy);
    r->replay = NULL;
    r->next_unique = 1u << 20;
    assert_kvbm_ok(replay_create(&config, &r->replay));
}

static void run_open(run_t *r, const char *policy)
{
    run_open_hinted(r, policy, true);
}

static uint64_t hits(const run_t *r)
{
    replay_counts_t c;
    replay_get_counts(r->replay, &c);
    return c.g1_hits;
}

static void request(run_t *r, uint64_t first, size_t count)
{
    uint64_t hashes[SCAN_BLOCKS];
    assert_true(count <= SCAN_BLOCKS);
    for (size_t i = 0; i < count; i++)
        hashes[i] = first + i;
    assert_kvbm_ok(replay_request(r->replay, hashes, count));
}

static void unique_request(run_t *r, size_t count)
{
    request(r, r->next_unique, count);
    r->next_unique += count;
}

/* Rounds of the hot set followed by a scan burst. */
static void scan_rounds(run_t *r, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        for (uint64_t h = 0; h < HOT_REQS; h++)
            request(r, 1000 * (h + 1), HOT_BLOCKS);
        for (int s = 0; s < SCAN_REQS; s++)
            unique_request(r, SCAN_BLOCKS);
    }
}

/* Fresh requests each repeated once, two requests later: 160 blocks of
 * traffic apart, inside the pool only if the stale hot set (128 blocks that
 * slru protects) gives way. */
static void recency_rounds(run_t *r, int rounds)
{
    uint64_t recent[2] = {0, 0};
    for (int i = 0; i < rounds; i++) {
        uint64_t first = r->next_unique;
        unique_request(r, 32);
        if (i >= 2)
            request(r, recent[i % 2], 32);
        recent[i % 2] = first;
    }
}

typedef struct phases {
    uint64_t scan_hits;
    uint64_t recency_hits;
} phases_t;

static phases_t play(const char *policy)
{
    run_t r;
    run_open(&r, policy);
    scan_rounds(&r, 40);
    phases_t p = {.scan_hits = hits(&r)};
    recency_rounds(&r, 400);
    p.recency_hits = hits(&r) - p.scan_hits;
    replay_destroy(r.replay);
    return p;
}

static void test_adaptive_follows_slru_under_scans_and_lru_under_recency(void **unused)
{
    phases_t lru = play("lru"), slru = play("slru"), adaptive = play("adaptive");
    /* The workload tells the rules apart. */
    assert_true(slru.scan_hits > 4 * lru.scan_hits + 1000);
    assert_true(slru.recency_hits * 10 < lru.recency_hits * 8);
    /* adaptive gets most of the better rule's hits in each phase: it loses
     * what the small caches need to see before switching, not more. */
    assert_true(adaptive.scan_hits * 10 >= slru.scan_hits * 8);
    assert_true(adaptive.recency_hits * 10 >= lru.recency_hits * 9);
}

/* A new policy follows LRU: a reused block released first is evicted first. */
static void test_adaptive_starts_on_lru(void **unused)
{
    const kvbm_policy_ops_t *ops = kvbm_policy_adaptive();
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    void *state = NULL;
    assert_kvbm_ok(ops->create(&config, 16, &state));
    assert_int_equal(kvbm__adaptive_rule(state), 0);
    assert_string_equal(kvbm__adaptive_rule_name(0), "lru");
    kvbm_policy_entry_t reused = {.block_id = 0, .seq_hash = 7};
    ops->touch(state, &reused, false);
    ops->touch(state, &reused, false); /* used twice: protected */
    ops->insert(state, &reused);
    for (uint32_t id = 1; id < 4; id++) {
        kvbm_policy_entry_t once = {.block_id = id, .seq_hash = 10 + id};
        ops->touch(state, &once, false);
        ops->insert(state, &once);
    }
    uint32_t victim;
    for (uint32_t expected = 0; expected < 4; expected++) {
        assert_true(ops->pop_victim(state, &victim));
        assert_int_equal(victim, expected);
    }
    assert_false(ops->pop_victim(state, &victim));
    ops->destroy(state);
}

/* The last-block hint decides the tail segment; without hints the first
 * insert of a release run stands for it. Two roots released one after the
 * other are two runs (both tails) unless hints say otherwise. */
static void test_adaptive_tail_from_hint_or_release_run(void **unused)
{
    const kvbm_policy_ops_t *ops = kvbm_policy_adaptive();
    kvbm_policy_config_t config = KVBM_POLICY_CONFIG_INIT;
    void *state = NULL;
    assert_kvbm_ok(ops->create(&config, 16, &state));
    kvbm_policy_entry_t a = {.block_id = 1, .seq_hash = 501};
    kvbm_policy_entry_t b = {.block_id = 2, .seq_hash = 502};
    kvbm_policy_hint_t not_last = {.request_blocks = 4, .position = 1, .last = false};
    kvbm_policy_hint_t last = {.request_blocks = 4, .position = 3, .last = true};
    ops->touch(state, &a, false);
    ops->hint(state, &a, &not_last);
    ops->touch(state, &b, false);
    ops->hint(state, &b, &last);
    ops->insert(state, &a);
    ops->insert(state, &b);
    assert_int_equal(kvbm__adaptive_segment(state, 1), KVBM__SEG_PROBATION);
    assert_int_equal(kvbm__adaptive_segment(state, 2), KVBM__SEG_TAIL);
    /* Evicted and registered again without hints: the run decides. */
    uint32_t victim;
    assert_true(ops->pop_victim(state, &victim));
    assert_true(ops->pop_victim(state, &victim));
    kvbm_policy_entry_t c = {.block_id = 1, .seq_hash = 601};
    kvbm_policy_entry_t d = {
        .block_id = 2, .seq_hash = 602, .has_parent = true, .parent_hash = 601};
    ops->touch(state, &c, false);
    ops->touch(state, &d, false);
    ops->insert(state, &d); /* released last block first */
    ops->insert(state, &c);
    assert_int_equal(kvbm__adaptive_segment(state, 2), KVBM__SEG_TAIL);
    assert_int_equal(kvbm__adaptive_segment(state, 1), KVBM__SEG_PROBATION);
    ops->destroy(state);
}

/* On a large pool the simulations sample hashes: the adaptive run still
 * switches under a scan and never asks for memory after create (ASan and
 * the set-model runs check the rest). */
static void test_adaptive_sampled_pool_switches(void **unused)
{
    replay_config_t config = {.g1_blocks = 8192,
                              .g1_policy = kvbm_policy_adaptive(),
                              .g2_policy = kvbm_policy_lru(),
                              .policy_config = KVBM_POLICY_CONFIG_INIT};
    replay_config_t lru_config = config;
    lru_config.g1_policy = kvbm_policy_lru();
    replay_t *adaptive = NULL, *lru = NULL;
    assert_kvbm_ok(replay_create(&config, &adaptive));
    assert_kvbm_ok(replay_create(&lru_config, &lru));
    /* A hot set of 4096 blocks, then 8192 one-off blocks, 12 rounds. */
    uint64_t hashes[64];
    uint64_t unique = 1ull << 40;
    for (int round = 0; round < 12; round++) {
        for (uint64_t h = 0; h < 64; h++) {
            for (size_t i = 0; i < 64; i++)
                hashes[i] = (h + 1) * 1000 + i;
            assert_kvbm_ok(replay_request(adaptive, hashes, 64));
            assert_kvbm_ok(replay_request(lru, hashes, 64));
        }
        for (int s = 0; s < 128; s++) {
            for (size_t i = 0; i < 64; i++)
                hashes[i] = unique++;
            assert_kvbm_ok(replay_request(adaptive, hashes, 64));
            assert_kvbm_ok(replay_request(lru, hashes, 64));
        }
    }
    replay_counts_t a, l;
    replay_get_counts(adaptive, &a);
    replay_get_counts(lru, &l);
    assert_int_equal(l.g1_hits, 0);    /* every hot block is flushed before its reuse */
    assert_true(a.g1_hits > 8 * 4096); /* most of the 11 later rounds of the hot set */
    replay_destroy(adaptive);
    replay_destroy(lru);
}

/* Each round registers two new 40-block requests (used exactly twice: now
 * and one round later) and 40 one-off 6-block requests (never reused), then
 * repeats the previous round's two long requests. Counts cannot tell the
 * long blocks apart at their first use; the request length can. */
#define CLASS_POOL   256
#define LONG_BLOCKS  40
#define SHORT_BLOCKS 6
#define SHORT_REQS   40

static uint64_t class_rounds(bool hints, const char *policy, bool check_learned)
{
    replay_config_t config = {.g1_blocks = CLASS_POOL,
                              .g1_policy = kvbm_policy_find(policy),
                              .g2_policy = kvbm_policy_lru(),
                              .policy_config = KVBM_POLICY_CONFIG_INIT,
                              .no_hints = !hints};
    replay_t *replay = NULL;
    assert_kvbm_ok(replay_create(&config, &replay));
    uint64_t hashes[LONG_BLOCKS];
    uint64_t unique = 1ull << 40;
    uint64_t previous_first = 0;
    for (int round = 0; round < 60; round++) {
        uint64_t first = unique;
        for (int l = 0; l < 2; l++) {
            for (size_t i = 0; i < LONG_BLOCKS; i++)
                hashes[i] = unique++;
            assert_kvbm_ok(replay_request(replay, hashes, LONG_BLOCKS));
        }
        for (int s = 0; s < SHORT_REQS; s++) {
            for (size_t i = 0; i < SHORT_BLOCKS; i++)
                hashes[i] = unique++;
            assert_kvbm_ok(replay_request(replay, hashes, SHORT_BLOCKS));
        }
        if (round > 0)
            for (uint64_t l = 0; l < 2; l++) {
                for (size_t i = 0; i < LONG_BLOCKS; i++)
                    hashes[i] = previous_first + l * LONG_BLOCKS + i;
                assert_kvbm_ok(replay_request(replay, hashes, LONG_BLOCKS));
            }
        previous_first = first;
    }
    replay_counts_t counts;
    replay_get_counts(replay, &counts);
    if (check_learned) {
        /* White-box: what the policy learned, before the replay goes. */
        void *state = replay_manager(replay, KVBM_MEDIUM_GPU)->policy_state;
        assert_true(kvbm__adaptive_class_cold(state, SHORT_BLOCKS, 1));
        assert_true(kvbm__adaptive_class_cold(state, SHORT_BLOCKS, 2));
        assert_false(kvbm__adaptive_class_cold(state, LONG_BLOCKS, 1));
        assert_false(kvbm__adaptive_class_cold(state, LONG_BLOCKS, 20));
        assert_true(kvbm__adaptive_rule(state) >= 4); /* a cold_* rule */
    }
    replay_destroy(replay);
    return counts.g1_hits;
}

/* With the length hint the one-off short requests' blocks are learned cold
 * and evicted first, so the long requests survive to their reuse; LRU and
 * the hint-less policy lose them to the flood. */
static void test_adaptive_hints_predict_reuse(void **unused)
{
    uint64_t lru = class_rounds(true, "lru", false);
    uint64_t blind = class_rounds(false, "adaptive", false);
    uint64_t hinted = class_rounds(true, "adaptive", true);
    print_message("hits of %" PRIu64 ": lru %" PRIu64 ", adaptive without hints %" PRIu64
                  ", with %" PRIu64 "\n",
                  (uint64_t)(59 * 2 * LONG_BLOCKS), lru, blind, hinted);
    uint64_t reuses = 59 * 2 * LONG_BLOCKS; /* every block a hit can find */
    /* LRU: 80 + 240 blocks of other traffic between a long block's two
     * uses, in a pool of 256. */
    assert_true(lru < reuses / 10);
    assert_true(blind < reuses / 2);
    assert_true(hinted > reuses * 8 / 10);
    assert_true(hinted > blind + reuses / 4);
}

/* Hints or not, a scan over a reused working set keeps adaptive at or
 * above LRU. */
static void test_adaptive_hints_never_below_lru_on_scans(void **unused)
{
    for (int hinted = 0; hinted < 2; hinted++) {
        run_t lru, adaptive;
        run_open_hinted(&lru, "lru", hinted);
        run_open_hinted(&adaptive, "adaptive", hinted);
        scan_rounds(&lru, 40);
        scan_rounds(&adaptive, 40);
        recency_rounds(&lru, 400);
        recency_rounds(&adaptive, 400);
        assert_true(hits(&adaptive) >= hits(&lru));
        replay_destroy(lru.replay);
        replay_destroy(adaptive.replay);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adaptive_starts_on_lru),
        cmocka_unit_test(test_adaptive_follows_slru_under_scans_and_lru_under_recency),
        cmocka_unit_test(test_adaptive_tail_from_hint_or_release_run),
        cmocka_unit_test(test_adaptive_sampled_pool_switches),
        cmocka_unit_test(test_adaptive_hints_predict_reuse),
        cmocka_unit_test(test_adaptive_hints_never_below_lru_on_scans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
