/*
 * kvbm_event_batcher: records of several calls become one batch, copied (the
 * callers' arrays may change right after), merged where they continue each
 * other, in order otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"

/* Each delivered batch as text: records "; " apart. */
typedef struct delivered {
    char text[8][256];
    size_t calls;
} delivered_t;

static void describe(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    delivered_t *d = ctx;
    assert_true(d->calls < 8);
    char *line = d->text[d->calls++];
    size_t used = 0;
    for (size_t r = 0; r < count; r++) {
        const kvbm_event_record_t *rec = &records[r];
        const char *kind = rec->kind == KVBM_EVENT_STORED    ? "stored"
                           : rec->kind == KVBM_EVENT_REMOVED ? "removed"
                                                             : "cleared";
        used += (size_t)snprintf(line + used, 256 - used, "%s%s", r ? "; " : "", kind);
        if (rec->kind == KVBM_EVENT_CLEARED)
            continue;
        used += (size_t)snprintf(line + used, 256 - used, " %s", kvbm_medium_name(rec->medium));
        for (size_t i = 0; i < rec->count; i++)
            used += (size_t)snprintf(line + used, 256 - used, " %llu",
                                     (unsigned long long)rec->hashes[i]);
        if (rec->has_parent)
            used += (size_t)snprintf(line + used, 256 - used, " parent %llu",
                                     (unsigned long long)rec->parent_hash);
        for (size_t i = 0; i < rec->n_tokens; i++)
            used += (size_t)snprintf(line + used, 256 - used, "%s%u", i ? "," : " tokens ",
                                     rec->tokens[i]);
        if (rec->lora_name != NULL)
            used += (size_t)snprintf(line + used, 256 - used, " lora %s", rec->lora_name);
        assert_null(rec->blocks);
    }
}

static kvbm_event_batcher_t *batcher_new(delivered_t *d)
{
    kvbm_event_batcher_t *b = NULL;
    assert_kvbm_ok(kvbm_event_batcher_create(describe, d, &b));
    return b;
}

static kvbm_event_record_t stored(kvbm_medium_t medium, const uint64_t *hashes, size_t count,
                                  bool has_parent, uint64_t parent)
{
    return (kvbm_event_record_t){.kind = KVBM_EVENT_STORED,
                                 .medium = medium,
                                 .count = count,
                                 .hashes = hashes,
                                 .has_parent = has_parent,
                                 .parent_hash = parent,
                                 .block_size = 4};
}

static void chains_merge_in_either_order_and_removals_join(void **state)
{
    delivered_t d = {0};
    kvbm_event_batcher_t *b = batcher_new(&d);
    uint64_t h[4] = {1, 2, 3, 4};
    kvbm_event_record_t r = stored(KVBM_MEDIUM_GPU, h, 2, false, 0); /* 1 2 */
    kvbm_event_batcher_sink(b, &r, 1);
    h[0] = 99; /* the caller's array may change: the batcher kept a copy */
    r = stored(KVBM_MEDIUM_GPU, &h[2], 1, true, 2); /* 3, child of 2: appended */
    kvbm_event_batcher_sink(b, &r, 1);
    /* Offloads come tail first: 30 (parent 20), then 20 (parent 10), then 10. */
    const uint64_t tail[3] = {30, 20, 10};
    for (int i = 0; i < 3; i++) {
        r = stored(KVBM_MEDIUM_CPU, &tail[i], 1, i < 2, i < 2 ? tail[i + 1] : 0);
        kvbm_event_batcher_sink(b, &r, 1);
    }
    const uint64_t gone[3] = {7, 8, 9};
    kvbm_event_record_t removed[2] = {
        {.kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_GPU, .count = 2, .hashes = gone},
        {.kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_GPU, .count = 1, .hashes = gone + 2},
    };
    kvbm_event_batcher_sink(b, removed, 2);
    assert_int_equal(d.calls, 0); /* nothing before the flush */
    kvbm_event_batcher_flush(b);
    assert_int_equal(d.calls, 1);
    assert_string_equal(d.text[0], "stored GPU 1 2 3; stored CPU 10 20 30; removed GPU 7 8 9");
    kvbm_event_batcher_flush(b); /* nothing kept: no call */
    assert_int_equal(d.calls, 1);
    kvbm_event_batcher_destroy(b);
}

static void records_that_do_not_continue_stay_apart_in_order(void **state)
{
    delivered_t d = {0};
    kvbm_event_batcher_t *b = batcher_new(&d);
    const uint64_t h[6] = {1, 2, 3, 4, 5, 6};
    const uint32_t tokens[4] = {11, 12, 13, 14};
    kvbm_event_record_t r[6] = {
        stored(KVBM_MEDIUM_GPU, &h[0], 1, false, 0),
        stored(KVBM_MEDIUM_CPU, &h[1], 1, true, 1), /* another tier */
        stored(KVBM_MEDIUM_CPU, &h[2], 1, true, 9), /* not a child of 2 */
        {.kind = KVBM_EVENT_REMOVED, .medium = KVBM_MEDIUM_CPU, .count = 1, .hashes = &h[1]},
        {.kind = KVBM_EVENT_CLEARED},
        stored(KVBM_MEDIUM_GPU, &h[3], 1, false, 0),
    };
    r[5].tokens = tokens;
    r[5].n_tokens = 4;
    r[5].lora_name = "sql";
    kvbm_event_batcher_sink(b, r, 6);
    /* A tokenless run does not prepend to one with tokens. */
    kvbm_event_record_t lead = stored(KVBM_MEDIUM_GPU, &h[4], 1, false, 0);
    kvbm_event_batcher_sink(b, &lead, 1);
    kvbm_event_batcher_flush(b);
    assert_string_equal(d.text[0], "stored GPU 1; stored CPU 2 parent 1; stored CPU 3 parent 9; "
                                   "removed CPU 2; cleared; stored GPU 4 tokens 11,12,13,14 lora "
                                   "sql; stored GPU 5");
    kvbm_event_batcher_destroy(b);
}

static void create_refuses_a_missing_sink(void **state)
{
    kvbm_event_batcher_t *b = NULL;
    assert_kvbm_status(kvbm_event_batcher_create(NULL, NULL, &b), KVBM_ERR_INVALID_ARG);
    assert_null(b);
    kvbm_event_batcher_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chains_merge_in_either_order_and_removals_join),
        cmocka_unit_test(records_that_do_not_continue_stay_apart_in_order),
        cmocka_unit_test(create_refuses_a_missing_sink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
