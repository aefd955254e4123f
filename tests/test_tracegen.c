/*
 * kvbm-tracegen: the same options give the same bytes, its output is a
 * valid trace for kvbm-replay, block ids are prefix-chained, and bad
 * workload specs are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "kvbm_test.h"
#include "prompt.h"
#include "replay.h"
#include "trace.h"
#include "tracegen.h"

typedef struct generated {
    char *text;
    size_t size;
} generated_t;

static generated_t generate(const char *workload, uint64_t seed, size_t requests)
{
    tracegen_options_t options = {.seed = seed, .requests = requests, .block_tokens = 512};
    char error[256];
    assert_int_equal(tracegen_parse_workload(workload, options.weights, error, sizeof(error)), 0);
    generated_t g = {NULL, 0};
    FILE *out = open_memstream(&g.text, &g.size);
    assert_non_null(out);
    assert_int_equal(tracegen_write(&options, out, error, sizeof(error)), 0);
    assert_int_equal(fclose(out), 0);
    return g;
}

static const char *const workloads[] = {"chat", "agent", "sysprompt", "rag", "scan", "mix"};

static void test_same_seed_same_bytes_other_seed_other_bytes(void **unused)
{
    for (size_t w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++) {
        generated_t a = generate(workloads[w], 7, 300);
        generated_t b = generate(workloads[w], 7, 300);
        generated_t c = generate(workloads[w], 8, 300);
        assert_true(a.size > 0);
        assert_int_equal(a.size, b.size);
        assert_memory_equal(a.text, b.text, a.size);
        assert_true(a.size != c.size || memcmp(a.text, c.text, a.size) != 0);
        free(a.text);
        free(b.text);
        free(c.text);
    }
}

/* Every line is a JSON object with the four Mooncake fields, input_length
 * tokens make ceil(input_length / 512) ids, and timestamps never go back. */
static void test_lines_have_mooncake_fields(void **unused)
{
    generated_t g = generate("mix", 3, 500);
    size_t lines = 0;
    int64_t last_ms = 0;
    for (char *line = strtok(g.text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_object *root = json_tokener_parse(line);
        assert_non_null(root);
        json_object *ts, *input, *output, *ids;
        assert_true(json_object_object_get_ex(root, "timestamp", &ts));
        assert_true(json_object_object_get_ex(root, "input_length", &input));
        assert_true(json_object_object_get_ex(root, "output_length", &output));
        assert_true(json_object_object_get_ex(root, "hash_ids", &ids));
        int64_t ms = json_object_get_int64(ts);
        assert_true(ms >= last_ms);
        last_ms = ms;
        int64_t tokens = json_object_get_int64(input);
        assert_true(tokens > 0);
        assert_true(json_object_get_int64(output) > 0);
        assert_int_equal(json_object_array_length(ids), (size_t)((tokens + 511) / 512));
        json_object_put(root);
        lines++;
    }
    assert_int_equal(lines, 500);
    free(g.text);
}

/* The output parses through kvbm-replay's reader and replays, with reuse. */
static void test_output_replays(void **unused)
{
    for (size_t w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++) {
        generated_t g = generate(workloads[w], 1, 400);
        FILE *in = fmemopen(g.text, g.size, "r");
        assert_non_null(in);
        trace_reader_t *reader = NULL;
        assert_kvbm_ok(trace_reader_from_stream(in, &reader));
        replay_config_t config = {.g1_blocks = 100000,
                                  .g1_policy = kvbm_policy_lru(),
                                  .g2_policy = kvbm_policy_lru(),
                                  .policy_config = KVBM_POLICY_CONFIG_INIT};
        replay_t *replay = NULL;
        assert_kvbm_ok(replay_create(&config, &replay));
        for (;;) {
            trace_request_t request;
            int has_request = 0;
            assert_kvbm_ok(trace_reader_next(reader, &request, &has_request));
            if (!has_request)
                break;
            assert_kvbm_ok(replay_request(replay, request.hashes, request.count));
        }
        replay_counts_t c;
        replay_get_counts(replay, &c);
        assert_int_equal(c.requests, 400);
        assert_true(c.blocks > 400);
        assert_int_equal(c.oversize, 0);
        assert_true(c.g1_hits > 0); /* every shape shares prefixes */
        replay_destroy(replay);
        trace_reader_close(reader);
        fclose(in);
        free(g.text);
    }
}

/* Equal leading segments give equal leading ids; a partial last block is a
 * different prefix than the full block a longer prompt has there. */
static void test_block_ids_are_prefix_chained(void **unused)
{
    tracegen_namer_t *namer = NULL;
    assert_int_equal(tracegen_namer_create(4, &namer), 0);
    tracegen_prompt_t short_prompt = {0}, long_prompt = {0}, other = {0};
    assert_int_equal(tracegen_prompt_append(&short_prompt, 1, 6), 0); /* blocks: 4 + 2 */
    assert_int_equal(tracegen_prompt_append(&long_prompt, 1, 6), 0);
    assert_int_equal(tracegen_prompt_append(&long_prompt, 2, 5), 0); /* 4 + 4 + 3 */
    assert_int_equal(tracegen_prompt_append(&other, 3, 6), 0);
    const uint64_t *ids;
    size_t count;
    uint64_t a[2], b[3];
    assert_int_equal(tracegen_namer_name(namer, &short_prompt, &ids, &count), 0);
    assert_int_equal(count, 2);
    memcpy(a, ids, sizeof(a));
    assert_int_equal(tracegen_namer_name(namer, &long_prompt, &ids, &count), 0);
    assert_int_equal(count, 3);
    memcpy(b, ids, sizeof(b));
    assert_int_equal(a[0], b[0]);
    assert_true(a[1] != b[1]); /* 2 tokens of segment 1, not 2 + 2 of segment 2 */
    assert_int_equal(a[0], 0); /* dense ids in order of first appearance */
    assert_int_equal(a[1], 1);
    assert_int_equal(b[1], 2);
    assert_int_equal(tracegen_namer_name(namer, &other, &ids, &count), 0);
    assert_true(ids[0] != a[0]);
    assert_int_equal(tracegen_namer_name(namer, &short_prompt, &ids, &count), 0);
    assert_memory_equal(ids, a, sizeof(a)); /* the same prompt, the same ids */
    tracegen_prompt_free(&short_prompt);
    tracegen_prompt_free(&long_prompt);
    tracegen_prompt_free(&other);
    tracegen_namer_destroy(namer);
}

static void test_workload_specs(void **unused)
{
    double w[TRACEGEN_SHAPE_COUNT];
    char error[256];
    assert_int_equal(tracegen_parse_workload("chat:2,rag,scan:0.5", w, error, sizeof(error)), 0);
    assert_true(w[TRACEGEN_SHAPE_chat] == 2.0 && w[TRACEGEN_SHAPE_rag] == 1.0 &&
                w[TRACEGEN_SHAPE_scan] == 0.5 && w[TRACEGEN_SHAPE_agent] == 0.0);
    /* A repeated shape was last-wins and a trailing comma was dropped,
     * both without a word. */
    const char *bad[] = {"",       "nope",     "chat:",    "chat:-1",       "chat:x",
                         "chat:0", "chat:1e9", "chat:nan", "chat:1,chat:2", "rag,scan,rag:0",
                         "chat,",  "chat:1,",  "chat,,rag"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        w[0] = 42.0;
        assert_int_equal(tracegen_parse_workload(bad[i], w, error, sizeof(error)), -1);
        assert_true(w[0] == 42.0); /* unchanged on error */
        assert_true(error[0] != '\0');
    }
    tracegen_options_t none = {.seed = 1, .requests = 1, .block_tokens = 512};
    assert_int_equal(tracegen_write(&none, stdout, error, sizeof(error)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_bytes_other_seed_other_bytes),
        cmocka_unit_test(test_lines_have_mooncake_fields),
        cmocka_unit_test(test_output_replays),
        cmocka_unit_test(test_block_ids_are_prefix_chained),
        cmocka_unit_test(test_workload_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
