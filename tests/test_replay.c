/*
 * kvbm-replay: the contract's counts on hand-worked traces, malformed input,
 * and the self-check table of shared/REPLAY.md on the bundled Mooncake trace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "replay.h"
#include "run.h"
#include "trace.h"

static replay_t *new_replay(uint32_t g1, uint32_t g2)
{
    replay_config_t config = {.g1_blocks = g1,
                              .g2_blocks = g2,
                              .g1_policy = kvbm_policy_lru(),
                              .g2_policy = kvbm_policy_lru(),
                              .policy_config = KVBM_POLICY_CONFIG_INIT};
    replay_t *replay = NULL;
    assert_kvbm_ok(replay_create(&config, &replay));
    return replay;
}

static void play(replay_t *replay, const uint64_t *hashes, size_t count)
{
    assert_kvbm_ok(replay_request(replay, hashes, count));
}

/* The six requests worked through by hand in test comments below. */
static void play_worked_trace(replay_t *replay)
{
    const uint64_t r1[] = {1, 2, 3}, r2[] = {1, 2, 4}, r3[] = {5, 6, 7}, r4[] = {1, 2, 3},
                   r5[] = {8, 9, 10, 11, 12}, r6[] = {13, 1};
    play(replay, r1, 3);
    play(replay, r2, 3);
    play(replay, r3, 3);
    play(replay, r4, 3);
    play(replay, r5, 5);
    play(replay, r6, 2);
}

static void g1_only_counts_match_hand_worked_trace(void **state)
{
    /* C1 = 4. R1 fills 3 (inactive 3,2,1 oldest first). R2 hits 1,2 and
     * allocates 4 from reset (3,4,2,1). R3 evicts 3,4,2. R4 hits 1 and
     * evicts 7,6 for 2,3 (5,3,2,1). R5 is oversize (5 > 4). R6 [13,1]
     * misses 13, evicts 5,3, and registering 1 finds it inactive: a dedup. */
    replay_t *replay = new_replay(4, 0);
    play_worked_trace(replay);
    replay_counts_t c;
    replay_get_counts(replay, &c);
    assert_int_equal(c.requests, 6);
    assert_int_equal(c.blocks, 19);
    assert_int_equal(c.g1_hits, 3);
    assert_int_equal(c.g2_hits, 0);
    assert_int_equal(c.misses, 16);
    assert_int_equal(c.g1_evictions, 7);
    assert_int_equal(c.oversize, 1);
    assert_int_equal(c.dedup, 1);
    assert_int_equal(c.offloads, 0);
    replay_destroy(replay);
}

static void g2_counts_match_hand_worked_trace(void **state)
{
    /* C1 = 4, C2 = 4. R3's evictions 3,4,2 are offloaded (G2: 3,4,2). R4
     * hits 1 in G1 and 2,3 in G2; its evictions 7 (free G2 block) and 6
     * (evicts 4 from G2) are offloaded; G2 ends 7,6,3,2. R6 evicts 5 and 3:
     * 5 is offloaded (evicting 7 from G2), 3 is already in G2 (inclusive). */
    replay_t *replay = new_replay(4, 4);
    play_worked_trace(replay);
    replay_counts_t c;
    replay_get_counts(replay, &c);
    assert_int_equal(c.blocks, 19);
    assert_int_equal(c.g1_hits, 3);
    assert_int_equal(c.g2_hits, 2);
    assert_int_equal(c.onboards, 2);
    assert_int_equal(c.misses, 14);
    assert_int_equal(c.offloads, 6);
    assert_int_equal(c.g1_evictions, 7);
    assert_int_equal(c.g2_evictions, 2);
    assert_int_equal(c.offload_skipped, 0);
    assert_int_equal(c.dedup, 1);
    assert_int_equal(c.oversize, 1);
    assert_near(replay_hit_rate(&c), 5.0 / 19.0, 1e-12);
    replay_destroy(replay);
}

static void offload_is_skipped_when_g2_is_all_in_use(void **state)
{
    /* C1 = 2, C2 = 1. R2 offloads 2 then 1 (evicting 2 from G2). R3 [1,5]
     * holds G2's only block while G1 evicts 4 and 3: both offloads skip. */
    replay_t *replay = new_replay(2, 1);
    const uint64_t r1[] = {1, 2}, r2[] = {3, 4}, r3[] = {1, 5};
    play(replay, r1, 2);
    play(replay, r2, 2);
    play(replay, r3, 2);
    replay_counts_t c;
    replay_get_counts(replay, &c);
    assert_int_equal(c.g2_hits, 1);
    assert_int_equal(c.misses, 5);
    assert_int_equal(c.offloads, 2);
    assert_int_equal(c.g1_evictions, 4);
    assert_int_equal(c.g2_evictions, 1);
    assert_int_equal(c.offload_skipped, 2);
    replay_destroy(replay);
}

/* Writes text to a temporary file and returns its path (static buffer). */
static const char *temp_trace(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/kvbm-test-trace-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void reader_parses_mooncake_lines(void **state)
{
    const char *path = temp_trace(
        "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 3, \"hash_ids\": [0, 1]}\n"
        "\n"
        "{\"hash_ids\": []}\n"
        "{\"hash_ids\": [0, 7, 9007199254740993]}\n");
    trace_t trace;
    char error[300];
    assert_kvbm_ok(trace_load(path, 0, &trace, error, sizeof(error)));
    assert_int_equal(trace.requests, 3);
    assert_int_equal(trace.blocks, 5);
    assert_int_equal(trace.offsets[1], 2);
    assert_int_equal(trace.offsets[2], 2);
    assert_int_equal(trace.hashes[4], 9007199254740993ULL); /* beyond a double's precision */
    trace_free(&trace);
    assert_kvbm_ok(trace_load(path, 1, &trace, error, sizeof(error)));
    assert_int_equal(trace.requests, 1);
    trace_free(&trace);
    remove(path);
}

static void expect_parse_error(const char *text, const char *reason)
{
    const char *path = temp_trace(text);
    trace_t trace;
    char error[300] = "";
    assert_kvbm_status(trace_load(path, 0, &trace, error, sizeof(error)), KVBM_ERR_PARSE);
    if (strstr(error, "line 2:") == NULL || strstr(error, reason) == NULL)
        fail_msg("error '%s' does not name line 2 and '%s'", error, reason);
    remove(path);
}

static void malformed_lines_stop_with_line_and_reason(void **state)
{
    const char *good = "{\"hash_ids\": [1]}\n";
    char text[256];
    const char *cases[][2] = {
        {"{\"hash_ids\": [1, 2\n", "truncated"},
        {"{\"timestamp\": 5}\n", "missing \"hash_ids\""},
        {"{\"hash_ids\": [1, -2]}\n", "negative"},
        {"{\"hash_ids\": [1, \"x\"]}\n", "not an integer"},
        {"{\"hash_ids\": [1.5]}\n", "not an integer"},
        {"{\"hash_ids\": 3}\n", "not an array"},
        {"[1, 2]\n", "not a JSON object"},
        {"{\"hash_ids\": [1]} junk\n", "trailing"},
        {"not json\n", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "%s%s%s", good, cases[i][0], good);
        expect_parse_error(text, cases[i][1]);
    }
}

static void replay_self_check_table_on_shared_trace(void **state)
{
    const char *source = getenv("KVBM_SOURCE_DIR");
    assert_non_null(source);
    char path[512];
    snprintf(path, sizeof(path), "%s/data/mooncake/synthetic_trace.jsonl", source);
    /* shared/REPLAY.md, LRU: C1, C2, blocks, g1_hits, g2_hits, offloads,
     * g1_evictions, g2_evictions, hit_rate. */
    const struct {
        uint32_t c1, c2;
        uint64_t blocks, g1_hits, g2_hits, offloads, g1_evictions, g2_evictions;
        double hit_rate;
    } rows[] = {
        {1000, 0, 121877, 10252, 0, 0, 110625, 0, 0.0841},
        {5859, 0, 121877, 37703, 0, 0, 78315, 0, 0.3094},
        {30000, 0, 121877, 76077, 0, 0, 15800, 0, 0.6242},
        {5859, 23436, 121877, 37703, 36089, 47205, 78315, 23769, 0.6055},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        run_options_t options = {.trace_path = path,
                                 .g1_blocks = rows[i].c1,
                                 .g2_blocks = rows[i].c2,
                                 .policy = "lru",
                                 .logical = true};
        run_result_t result;
        assert_kvbm_ok(run_replay(&options, NULL, &result));
        const replay_counts_t *c = &result.counts;
        assert_int_equal(c->requests, 3993);
        assert_int_equal(c->blocks, rows[i].blocks);
        assert_int_equal(c->g1_hits, rows[i].g1_hits);
        assert_int_equal(c->g2_hits, rows[i].g2_hits);
        assert_int_equal(c->offloads, rows[i].offloads);
        assert_int_equal(c->onboards, rows[i].g2_hits);
        assert_int_equal(c->g1_evictions, rows[i].g1_evictions);
        assert_int_equal(c->g2_evictions, rows[i].g2_evictions);
        assert_int_equal(c->misses, c->blocks - c->g1_hits - c->g2_hits);
        assert_near(replay_hit_rate(c), rows[i].hit_rate, 0.00005);
    }
}

static void data_mode_through_the_cache_prints_the_contract_numbers(void **state)
{
    /* Row 4 of the self-check again, now through the tiered cache with real
     * copies on the CPU backend, every served block's stamp checked. */
    const char *source = getenv("KVBM_SOURCE_DIR");
    assert_non_null(source);
    char path[512];
    snprintf(path, sizeof(path), "%s/data/mooncake/synthetic_trace.jsonl", source);
    run_options_t options = {.trace_path = path,
                             .g1_blocks = 5859,
                             .g2_blocks = 23436,
                             .policy = "lru",
                             .backend_kind = KVBM_BACKEND_CPU,
                             .block_kib = 1,
                             .verify = true};
    run_result_t result;
    assert_kvbm_ok(run_replay(&options, NULL, &result));
    const replay_counts_t *c = &result.counts;
    assert_string_equal(result.backend, "cpu");
    assert_int_equal(c->blocks, 121877);
    assert_int_equal(c->g1_hits, 37703);
    assert_int_equal(c->g2_hits, 36089);
    assert_int_equal(c->onboards, 36089);
    assert_int_equal(c->offloads, 47205);
    assert_int_equal(c->g1_evictions, 78315);
    assert_int_equal(c->g2_evictions, 23769);
    assert_int_equal(c->offload_skipped, 0);
    assert_int_equal(c->wrong_blocks, 0);
    assert_int_equal(c->verified_blocks, 37703 + 36089); /* every block served */
    assert_int_equal(c->failed_copies, 0);
    assert_int_equal(c->bytes_moved, (uint64_t)(47205 + 36089) * 1024);
}

static void data_mode_matches_logical_mode_on_hand_worked_trace(void **state)
{
    /* The hand-worked trace (including a dedup and a skipped offload shape)
     * gives the same counts with and without data. */
    replay_config_t config = {.g1_blocks = 4,
                              .g2_blocks = 4,
                              .g1_policy = kvbm_policy_lru(),
                              .g2_policy = kvbm_policy_lru(),
                              .policy_config = KVBM_POLICY_CONFIG_INIT,
                              .data_mode = true,
                              .backend_kind = KVBM_BACKEND_CPU,
                              .block_kib = 1,
                              .verify = true};
    replay_t *replay = NULL;
    assert_kvbm_ok(replay_create(&config, &replay));
    assert_string_equal(replay_backend_name(replay), "cpu");
    play_worked_trace(replay);
    replay_counts_t c;
    replay_get_counts(replay, &c);
    assert_int_equal(c.g1_hits, 3);
    assert_int_equal(c.g2_hits, 2);
    assert_int_equal(c.misses, 14);
    assert_int_equal(c.offloads, 6);
    assert_int_equal(c.g1_evictions, 7);
    assert_int_equal(c.g2_evictions, 2);
    assert_int_equal(c.dedup, 1);
    assert_int_equal(c.oversize, 1);
    assert_int_equal(c.wrong_blocks, 0);
    assert_int_equal(c.verified_blocks, 3 + 2);
    replay_destroy(replay);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(g1_only_counts_match_hand_worked_trace),
        cmocka_unit_test(g2_counts_match_hand_worked_trace),
        cmocka_unit_test(offload_is_skipped_when_g2_is_all_in_use),
        cmocka_unit_test(reader_parses_mooncake_lines),
        cmocka_unit_test(malformed_lines_stop_with_line_and_reason),
        cmocka_unit_test(replay_self_check_table_on_shared_trace),
        cmocka_unit_test(data_mode_through_the_cache_prints_the_contract_numbers),
        cmocka_unit_test(data_mode_matches_logical_mode_on_hand_worked_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
