/* The logical block manager: pools, registration, matching, misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "manager/internal.h"

/* Allocates count blocks and registers them under hashes; returns ids in out. */
static void alloc_register(kvbm_manager_t *m, const uint64_t *hashes, size_t count, uint32_t *out)
{
    uint32_t ids[64];
    assert_true(count <= 64);
    assert_kvbm_ok(kvbm_manager_allocate(m, count, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, count, NULL, out));
}

/* Releases ids tail first, as a request does. */
static void release_reversed(kvbm_manager_t *m, const uint32_t *ids, size_t count)
{
    uint32_t rev[64];
    for (size_t i = 0; i < count; i++)
        rev[i] = ids[count - 1 - i];
    assert_kvbm_ok(kvbm_manager_release(m, rev, count));
}

static void create_rejects_bad_config(void **state)
{
    kvbm_manager_t *m = (kvbm_manager_t *)0x1;
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 0;
    assert_kvbm_status(kvbm_manager_create(&config, &m), KVBM_ERR_INVALID_ARG);
    config.num_blocks = 4;
    config.version = 99;
    assert_kvbm_status(kvbm_manager_create(&config, &m), KVBM_ERR_VERSION);
    config.version = KVBM_MANAGER_CONFIG_VERSION;
    config.duplication = (kvbm_duplication_t)7;
    assert_kvbm_status(kvbm_manager_create(&config, &m), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_manager_create(NULL, &m), KVBM_ERR_INVALID_ARG);
    assert_ptr_equal(m, (kvbm_manager_t *)0x1);
    kvbm_manager_destroy(NULL);
}

static void fresh_manager_hands_out_dense_ids(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    assert_pools(m, 4, 0, 0);
    uint32_t ids[4];
    assert_kvbm_ok(kvbm_manager_allocate(m, 4, ids, NULL, NULL));
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(ids[i], i);
    assert_pools(m, 0, 4, 0);
    assert_string_equal(kvbm_manager_policy_name(m), "lru");
    kvbm_manager_destroy(m);
}

static void unregistered_release_returns_to_reset(void **state)
{
    kvbm_manager_t *m = test_manager_new(3, KVBM_DUPLICATION_REJECT, NULL);
    uint32_t ids[2];
    assert_kvbm_ok(kvbm_manager_allocate(m, 2, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_release(m, ids, 2));
    assert_pools(m, 3, 0, 0);
    kvbm_manager_destroy(m);
}

static void full_capacity_eviction_cycle(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t first[4] = {101, 102, 103, 104};
    uint32_t ids[4];
    alloc_register(m, first, 4, ids);
    release_reversed(m, ids, 4); /* 104 inactive first, 101 last */
    assert_pools(m, 0, 0, 4);

    /* Allocating everything evicts all four in LRU order and reports them. */
    uint32_t fresh[4];
    kvbm_evicted_t evicted[4];
    size_t n_evicted = 0;
    assert_kvbm_ok(kvbm_manager_allocate(m, 4, fresh, evicted, &n_evicted));
    assert_int_equal(n_evicted, 4);
    const uint64_t expected_order[4] = {104, 103, 102, 101};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(evicted[i].seq_hash, expected_order[i]);
        assert_int_equal(evicted[i].block_id, fresh[i]);
        assert_false(kvbm_manager_contains(m, expected_order[i]));
    }
    assert_pools(m, 0, 4, 0);
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(m, &metrics);
    assert_int_equal(metrics.evictions, 4);
    assert_int_equal(metrics.allocations, 8);
    assert_int_equal(metrics.allocations_from_reset, 4);

    /* Registering the new blocks and releasing them completes the cycle. */
    const uint64_t second[4] = {201, 202, 203, 204};
    uint32_t out[4];
    assert_kvbm_ok(kvbm_manager_register(m, fresh, second, 4, NULL, out));
    release_reversed(m, out, 4);
    assert_pools(m, 0, 0, 4);
    kvbm_manager_destroy(m);
}

static void allocation_failure_changes_nothing(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[2] = {1, 2};
    uint32_t ids[2];
    alloc_register(m, hashes, 2, ids); /* 2 active, 2 reset */
    uint32_t one;
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &one, NULL, NULL)); /* 3 active */
    assert_kvbm_ok(kvbm_manager_release(m, &ids[1], 1));           /* 2 inactive-able: 1 */
    assert_pools(m, 1, 2, 1);
    kvbm_manager_metrics_t before, after;
    kvbm_manager_metrics(m, &before);

    uint32_t out[3] = {7, 7, 7};
    kvbm_evicted_t evicted[3];
    size_t n_evicted = 42;
    assert_kvbm_status(kvbm_manager_allocate(m, 3, out, evicted, &n_evicted), KVBM_ERR_NO_BLOCKS);
    assert_int_equal(n_evicted, 42);
    assert_int_equal(out[0], 7);
    assert_pools(m, 1, 2, 1);
    assert_true(kvbm_manager_contains(m, 2));
    kvbm_manager_metrics(m, &after);
    assert_int_equal(after.allocations, before.allocations);
    assert_int_equal(after.evictions, before.evictions);
    assert_int_equal(after.allocation_failures, before.allocation_failures + 1);
    kvbm_manager_destroy(m);
}

static void reject_policy_returns_existing_block(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t h = 55;
    uint32_t first;
    alloc_register(m, &h, 1, &first);

    uint32_t second, out;
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &second, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, &second, &h, 1, NULL, &out));
    assert_int_equal(out, first);
    assert_pools(m, 3, 1, 0); /* second went back to reset; first holds 2 refs */
    assert_kvbm_ok(kvbm_manager_release(m, &first, 1));
    assert_pools(m, 3, 1, 0);
    assert_kvbm_ok(kvbm_manager_release(m, &first, 1));
    assert_pools(m, 3, 0, 1);

    /* An inactive holder is resurrected by a duplicate registration. */
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &second, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, &second, &h, 1, NULL, &out));
    assert_int_equal(out, first);
    assert_pools(m, 3, 1, 0);
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(m, &metrics);
    assert_int_equal(metrics.dedups, 2);
    assert_int_equal(metrics.registrations, 1);
    kvbm_manager_destroy(m);
}

static void allow_policy_keeps_both_blocks(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_ALLOW, NULL);
    const uint64_t h = 77;
    uint32_t a, b;
    alloc_register(m, &h, 1, &a);
    alloc_register(m, &h, 1, &b);
    assert_int_not_equal(a, b);
    assert_pools(m, 2, 2, 0);
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(m, &metrics);
    assert_int_equal(metrics.duplicates, 1);
    assert_kvbm_ok(kvbm_manager_release(m, &a, 1));
    assert_kvbm_ok(kvbm_manager_release(m, &b, 1));
    assert_pools(m, 2, 0, 2);

    /* Evicting the first holder leaves the hash on the second. */
    uint32_t fresh[3];
    kvbm_evicted_t evicted[3];
    size_t n_evicted;
    assert_kvbm_ok(kvbm_manager_allocate(m, 3, fresh, evicted, &n_evicted));
    assert_int_equal(n_evicted, 1);
    assert_int_equal(evicted[0].block_id, a);
    assert_true(kvbm_manager_contains(m, h));
    uint32_t matched;
    size_t n;
    assert_kvbm_ok(kvbm_manager_match(m, &h, 1, &matched, &n));
    assert_int_equal(n, 1);
    assert_int_equal(matched, b);
    assert_kvbm_ok(kvbm_manager_release(m, fresh, 3));
    assert_kvbm_ok(kvbm_manager_release(m, &matched, 1));
    assert_pools(m, 3, 0, 1);
    kvbm_manager_destroy(m);
}

static void match_stops_at_first_miss(void **state)
{
    kvbm_manager_t *m = test_manager_new(8, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[3] = {1, 2, 3};
    uint32_t ids[3];
    alloc_register(m, hashes, 3, ids);
    release_reversed(m, ids, 3);
    const uint64_t query[4] = {1, 2, 99, 3};
    uint32_t out[4];
    size_t n = 0;
    assert_kvbm_ok(kvbm_manager_match(m, query, 4, out, &n));
    assert_int_equal(n, 2);
    assert_int_equal(out[0], ids[0]);
    assert_int_equal(out[1], ids[1]);
    assert_pools(m, 5, 2, 1); /* 3 stays inactive even though it is registered */
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(m, &metrics);
    assert_int_equal(metrics.match_hashes, 4);
    assert_int_equal(metrics.match_blocks, 2);
    kvbm_manager_destroy(m);
}

static void match_crosses_active_inactive_alternation(void **state)
{
    /* Blocks 1..6 registered; 1, 3, 5 held by another request, 2, 4, 6
     * inactive. The match must return the whole prefix. */
    kvbm_manager_t *m = test_manager_new(8, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[6] = {11, 12, 13, 14, 15, 16};
    uint32_t ids[6];
    alloc_register(m, hashes, 6, ids);
    const uint32_t drop[3] = {ids[1], ids[3], ids[5]};
    assert_kvbm_ok(kvbm_manager_release(m, drop, 3));
    assert_pools(m, 2, 3, 3);
    uint32_t out[6];
    size_t n = 0;
    assert_kvbm_ok(kvbm_manager_match(m, hashes, 6, out, &n));
    assert_int_equal(n, 6);
    assert_memory_equal(out, ids, sizeof(ids));
    assert_pools(m, 2, 6, 0);
    kvbm_manager_destroy(m);
}

/* A recording policy: LRU underneath, counting the touches it is told of. */
static int recorded_touches;
static void recording_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    recorded_touches++;
    kvbm_policy_lru()->touch(state, entry, inactive);
}

static void scan_finds_all_and_touch_reaches_the_policy(void **state)
{
    /* A version-1 table (no batches): the manager calls its single ops. */
    kvbm_policy_ops_t recording = *kvbm_policy_lru();
    recording.version = 1;
    recording.name = "recording";
    recording.touch = recording_touch;
    kvbm_manager_t *m = test_manager_new(8, KVBM_DUPLICATION_REJECT, &recording);
    const uint64_t hashes[3] = {21, 22, 23};
    uint32_t ids[3];
    alloc_register(m, hashes, 3, ids);
    release_reversed(m, ids, 3);

    const uint64_t query[4] = {21, 99, 23, 98};
    uint32_t out[4];
    size_t found = 0;
    recorded_touches = 0;
    assert_kvbm_ok(kvbm_manager_scan(m, query, 4, false, out, &found));
    assert_int_equal(found, 2); /* does not stop at 99 */
    assert_int_equal(out[0], ids[0]);
    assert_int_equal(out[1], KVBM_BLOCK_NONE);
    assert_int_equal(out[2], ids[2]);
    assert_int_equal(out[3], KVBM_BLOCK_NONE);
    assert_int_equal(recorded_touches, 0);
    assert_pools(m, 5, 2, 1);
    const uint32_t held[2] = {out[0], out[2]};
    assert_kvbm_ok(kvbm_manager_release(m, held, 2));

    assert_kvbm_ok(kvbm_manager_scan(m, query, 4, true, out, &found));
    assert_int_equal(found, 2);
    assert_int_equal(recorded_touches, 2);
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(m, &metrics);
    assert_int_equal(metrics.scan_hashes, 8);
    assert_int_equal(metrics.scan_blocks, 4);
    kvbm_manager_destroy(m);
}

/* A hint-recording policy: LRU underneath, keeping the hints it is given. */
static kvbm_policy_hint_t recorded_hints[8];
static uint64_t recorded_hint_hashes[8];
static int recorded_hint_count;
static void recording_hint(void *state, const kvbm_policy_entry_t *entry,
                           const kvbm_policy_hint_t *hint)
{
    assert_true(recorded_hint_count < 8);
    recorded_hint_hashes[recorded_hint_count] = entry->seq_hash;
    recorded_hints[recorded_hint_count++] = *hint;
}

/* Registration hints reach version-2 policies, block by block; a table of
 * version 1 (which ends at size) keeps working and is never asked. */
static void hints_reach_version_2_policies_and_version_1_still_works(void **state)
{
    const uint64_t hashes[3] = {31, 32, 33};
    kvbm_register_opts_t opts = {.has_parent = true,
                                 .parent_hash = 30,
                                 .priority = 70,
                                 .request_blocks = 5,
                                 .first_position = 2};
    uint32_t ids[3], out[3];

    kvbm_policy_ops_t recording = *kvbm_policy_lru();
    recording.name = "recording-hints";
    recording.hint = recording_hint;
    kvbm_manager_t *m = test_manager_new(8, KVBM_DUPLICATION_REJECT, &recording);
    recorded_hint_count = 0;
    assert_kvbm_ok(kvbm_manager_allocate(m, 3, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, 3, &opts, out));
    assert_int_equal(recorded_hint_count, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(recorded_hint_hashes[i], hashes[i]);
        assert_int_equal(recorded_hints[i].request_blocks, 5);
        assert_int_equal(recorded_hints[i].position, 2 + i);
        assert_int_equal(recorded_hints[i].last, i == 2);
        assert_int_equal(recorded_hints[i].priority, 70);
    }
    /* Without hints in the options, the op is not called. */
    const uint64_t more[1] = {40};
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, ids, more, 1, NULL, out));
    assert_int_equal(recorded_hint_count, 3);
    kvbm_manager_destroy(m);

    /* Version 1: the manager must not read past size. A zeroed hint slot
     * stands for "not there"; calling it would crash. */
    kvbm_policy_ops_t old = *kvbm_policy_lru();
    old.version = 1;
    old.hint = NULL;
    m = test_manager_new(8, KVBM_DUPLICATION_REJECT, &old);
    assert_kvbm_ok(kvbm_manager_allocate(m, 3, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, 3, &opts, out));
    release_reversed(m, out, 3);
    size_t k = 0;
    assert_kvbm_ok(kvbm_manager_match(m, hashes, 3, ids, &k));
    assert_int_equal(k, 3);
    kvbm_manager_destroy(m);

    /* Versions from the future (or 0) are refused. */
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 4;
    kvbm_policy_ops_t future = *kvbm_policy_lru();
    future.version = KVBM_POLICY_OPS_VERSION + 1;
    config.policy = &future;
    kvbm_manager_t *none = NULL;
    assert_kvbm_status(kvbm_manager_create(&config, &none), KVBM_ERR_VERSION);
    future.version = 0;
    assert_kvbm_status(kvbm_manager_create(&config, &none), KVBM_ERR_VERSION);
    assert_null(none);
}

static void misuse_is_refused_and_changes_nothing(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[2] = {1, 2};
    uint32_t ids[2], out[2] = {9, 9};
    assert_kvbm_ok(kvbm_manager_allocate(m, 2, ids, NULL, NULL));

    const uint32_t out_of_range = 4;
    assert_kvbm_status(kvbm_manager_release(m, &out_of_range, 1), KVBM_ERR_OUT_OF_RANGE);
    assert_kvbm_status(kvbm_manager_acquire(m, &out_of_range, 1), KVBM_ERR_OUT_OF_RANGE);
    const uint32_t free_block = 3;
    assert_kvbm_status(kvbm_manager_release(m, &free_block, 1), KVBM_ERR_NOT_HELD);
    assert_kvbm_status(kvbm_manager_acquire(m, ids, 1), KVBM_ERR_BAD_STATE); /* mutable */
    const uint32_t repeated[2] = {ids[0], ids[0]};
    assert_kvbm_status(kvbm_manager_register(m, repeated, hashes, 2, NULL, out),
                       KVBM_ERR_BAD_STATE);
    assert_kvbm_status(kvbm_manager_register(m, &free_block, hashes, 1, NULL, out),
                       KVBM_ERR_BAD_STATE);
    const uint32_t mixed[2] = {ids[0], out_of_range};
    assert_kvbm_status(kvbm_manager_register(m, mixed, hashes, 2, NULL, out),
                       KVBM_ERR_OUT_OF_RANGE);
    kvbm_register_opts_t bad_priority = {.priority = 101};
    assert_kvbm_status(kvbm_manager_register(m, ids, hashes, 2, &bad_priority, out),
                       KVBM_ERR_INVALID_ARG);
    assert_int_equal(out[0], 9);
    assert_false(kvbm_manager_contains(m, 1));

    /* Releasing one block twice in one call with one reference: refused whole. */
    const uint32_t twice[3] = {ids[1], ids[0], ids[0]};
    assert_kvbm_status(kvbm_manager_release(m, twice, 3), KVBM_ERR_NOT_HELD);
    assert_pools(m, 2, 2, 0);

    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, 2, NULL, out));
    assert_kvbm_ok(kvbm_manager_release(m, out, 2));
    assert_kvbm_status(kvbm_manager_release(m, out, 1), KVBM_ERR_NOT_HELD); /* inactive */
    assert_kvbm_status(kvbm_manager_register(m, out, hashes, 1, NULL, ids), KVBM_ERR_BAD_STATE);
    assert_kvbm_status(kvbm_manager_allocate(NULL, 1, ids, NULL, NULL), KVBM_ERR_INVALID_ARG);
    assert_pools(m, 2, 0, 2);
    kvbm_manager_destroy(m);
}

static void repeated_ids_release_as_many_references(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t h = 5;
    uint32_t id;
    alloc_register(m, &h, 1, &id);
    const uint32_t two[2] = {id, id};
    assert_kvbm_ok(kvbm_manager_acquire(m, two, 2)); /* 3 references */
    const uint32_t three[3] = {id, id, id};
    assert_kvbm_ok(kvbm_manager_release(m, three, 3));
    assert_pools(m, 3, 0, 1);
    kvbm_manager_destroy(m);
}

/* One release call taking more blocks to zero than release notes on the
 * stack (256) moves them all, in the call's order; a call refused at its
 * last id moves none. */
static void long_release_moves_every_block_in_order(void **state)
{
    enum { N = 600 };
    kvbm_manager_t *m = test_manager_new(N, KVBM_DUPLICATION_REJECT, NULL);
    static uint32_t ids[N], registered[N], order[N + 1];
    static uint64_t hashes[N];
    static kvbm_evicted_t evicted[N];
    assert_kvbm_ok(kvbm_manager_allocate(m, N, ids, NULL, NULL));
    for (size_t i = 0; i < N; i++)
        hashes[i] = 1000 + i;
    /* The first half registered: the rest go back to reset. */
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, N / 2, NULL, registered));
    for (size_t i = 0; i < N; i++)
        order[i] = ids[N - 1 - i];
    order[N] = ids[0]; /* its reference went with the first N */
    assert_kvbm_status(kvbm_manager_release(m, order, N + 1), KVBM_ERR_NOT_HELD);
    assert_pools(m, 0, N, 0);
    assert_kvbm_ok(kvbm_manager_release(m, order, N));
    assert_pools(m, N / 2, 0, N / 2);
    /* LRU hands the registered blocks back in the order they were released. */
    size_t n_evicted = 0;
    assert_kvbm_ok(kvbm_manager_allocate(m, N, ids, evicted, &n_evicted));
    assert_int_equal(n_evicted, N / 2);
    for (size_t i = 0; i < N / 2; i++) {
        assert_int_equal(evicted[i].block_id, registered[N / 2 - 1 - i]);
        assert_int_equal(evicted[i].seq_hash, hashes[N / 2 - 1 - i]);
    }
    kvbm_manager_destroy(m);
}

static void reset_inactive_needs_an_idle_manager(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[3] = {1, 2, 3};
    uint32_t ids[3];
    alloc_register(m, hashes, 3, ids);
    assert_kvbm_ok(kvbm_manager_release(m, ids, 2));
    assert_kvbm_status(kvbm_manager_reset_inactive(m), KVBM_ERR_BUSY);
    assert_pools(m, 1, 1, 2);
    assert_true(kvbm_manager_contains(m, 1));
    assert_kvbm_ok(kvbm_manager_release(m, &ids[2], 1));
    assert_kvbm_ok(kvbm_manager_reset_inactive(m));
    assert_pools(m, 4, 0, 0);
    for (int i = 0; i < 3; i++)
        assert_false(kvbm_manager_contains(m, hashes[i]));
    kvbm_manager_destroy(m);
}

/* A copy of every record a manager delivers, and how many sink calls. */
typedef struct logged_record {
    kvbm_event_record_t record; /* pointers cleared; the arrays below */
    uint64_t hashes[8];
    uint32_t blocks[8];
    uint32_t tokens[16];
} logged_record_t;

typedef struct event_log {
    logged_record_t records[16];
    size_t count;
    size_t calls;
} event_log_t;

static void log_events(void *ctx, const kvbm_event_record_t *records, size_t count)
{
    event_log_t *log = ctx;
    log->calls++;
    for (size_t i = 0; i < count; i++) {
        assert_true(log->count < 16 && records[i].count <= 8 && records[i].n_tokens <= 16);
        logged_record_t *l = &log->records[log->count++];
        l->record = records[i];
        memcpy(l->hashes, records[i].hashes, records[i].count * sizeof(uint64_t));
        if (records[i].blocks != NULL) /* optional: an announce has none */
            memcpy(l->blocks, records[i].blocks, records[i].count * sizeof(uint32_t));
        if (records[i].n_tokens > 0)
            memcpy(l->tokens, records[i].tokens, records[i].n_tokens * sizeof(uint32_t));
        l->record.hashes = NULL;
        l->record.blocks = NULL;
        l->record.tokens = NULL;
    }
}

static kvbm_manager_t *logged_manager(uint32_t blocks, kvbm_duplication_t duplication,
                                      kvbm_medium_t medium, event_log_t *log)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = blocks;
    config.duplication = duplication;
    config.on_events = log_events;
    config.events_ctx = log;
    config.medium = medium;
    kvbm_manager_t *m = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &m));
    return m;
}

static void events_report_stored_runs_and_removals(void **state)
{
    event_log_t log = {0};
    kvbm_manager_t *m = logged_manager(2, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_CPU, &log);
    const uint64_t hashes[2] = {31, 32};
    const uint32_t tokens[4] = {1, 2, 3, 4};
    uint32_t ids[2];
    assert_kvbm_ok(kvbm_manager_allocate(m, 2, ids, NULL, NULL));
    assert_int_equal(log.calls, 0); /* nothing entered or left the tier */
    kvbm_register_opts_t opts = {.has_parent = true,
                                 .parent_hash = 30,
                                 .priority = 50,
                                 .block_size = 2,
                                 .tokens = tokens,
                                 .n_tokens = 4,
                                 .has_lora_id = true,
                                 .lora_id = 7,
                                 .lora_name = "sql"};
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, 2, &opts, ids));
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.count, 1); /* one run of one chain */
    const logged_record_t *stored = &log.records[0];
    assert_int_equal(stored->record.kind, KVBM_EVENT_STORED);
    assert_int_equal(stored->record.medium, KVBM_MEDIUM_CPU);
    assert_int_equal(stored->record.count, 2);
    assert_int_equal(stored->hashes[0], 31);
    assert_int_equal(stored->hashes[1], 32);
    assert_int_equal(stored->blocks[0], ids[0]);
    assert_true(stored->record.has_parent);
    assert_int_equal(stored->record.parent_hash, 30);
    assert_int_equal(stored->record.block_size, 2);
    assert_int_equal(stored->record.n_tokens, 4);
    assert_memory_equal(stored->tokens, tokens, sizeof(tokens));
    assert_true(stored->record.has_lora_id);
    assert_int_equal(stored->record.lora_id, 7);
    assert_string_equal(stored->record.lora_name, "sql");

    release_reversed(m, ids, 2);
    uint32_t one;
    kvbm_evicted_t evicted;
    size_t n_evicted = 0;
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &one, &evicted, &n_evicted));
    assert_int_equal(log.calls, 2);
    const logged_record_t *removed = &log.records[1];
    assert_int_equal(removed->record.kind, KVBM_EVENT_REMOVED);
    assert_int_equal(removed->record.medium, KVBM_MEDIUM_CPU);
    assert_int_equal(removed->record.count, 1);
    assert_int_equal(removed->hashes[0], 32); /* released first, evicted first */
    assert_int_equal(removed->blocks[0], one);
    /* The eviction also reports the parent the block was registered with. */
    assert_int_equal(n_evicted, 1);
    assert_int_equal(evicted.seq_hash, 32);
    assert_true(evicted.has_parent);
    assert_int_equal(evicted.parent_hash, 31);
    kvbm_manager_destroy(m);
}

static void events_split_runs_where_the_tier_had_the_hash(void **state)
{
    event_log_t log = {0};
    kvbm_manager_t *m = logged_manager(8, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &log);
    uint32_t held;
    alloc_register(m, (const uint64_t[]){2}, 1, &held);
    log = (event_log_t){0};
    const uint64_t hashes[4] = {4, 2, 5, 6};
    const uint32_t tokens[8] = {40, 41, 20, 21, 50, 51, 60, 61};
    uint32_t ids[4], out[4];
    assert_kvbm_ok(kvbm_manager_allocate(m, 4, ids, NULL, NULL));
    kvbm_register_opts_t opts = {.priority = 50, .block_size = 2, .tokens = tokens, .n_tokens = 8};
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, 4, &opts, out));
    assert_int_equal(out[1], held); /* 2 was there: deduplicated */
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.count, 2);
    assert_int_equal(log.records[0].record.count, 1);
    assert_int_equal(log.records[0].hashes[0], 4);
    assert_false(log.records[0].record.has_parent);
    assert_int_equal(log.records[0].record.n_tokens, 2);
    assert_int_equal(log.records[0].tokens[0], 40);
    assert_int_equal(log.records[1].record.count, 2);
    assert_int_equal(log.records[1].hashes[0], 5);
    assert_int_equal(log.records[1].hashes[1], 6);
    assert_true(log.records[1].record.has_parent);
    assert_int_equal(log.records[1].record.parent_hash, 2); /* the hash before the run */
    assert_int_equal(log.records[1].record.n_tokens, 4);
    assert_int_equal(log.records[1].tokens[0], 50);
    assert_int_equal(log.records[1].tokens[3], 61);
    kvbm_manager_destroy(m);
}

static void events_follow_the_last_copy_of_a_duplicated_hash(void **state)
{
    event_log_t log = {0};
    kvbm_manager_t *m = logged_manager(2, KVBM_DUPLICATION_ALLOW, KVBM_MEDIUM_GPU, &log);
    uint32_t a, b;
    alloc_register(m, (const uint64_t[]){9}, 1, &a);
    alloc_register(m, (const uint64_t[]){9}, 1, &b); /* a duplicate: the tier had 9 */
    assert_int_equal(log.count, 1);
    assert_kvbm_ok(kvbm_manager_release(m, (const uint32_t[]){a, b}, 2));
    uint32_t fresh;
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &fresh, NULL, NULL));
    assert_int_equal(log.count, 1); /* one copy is left: the tier still has 9 */
    assert_true(kvbm_manager_contains(m, 9));
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &fresh, NULL, NULL));
    assert_int_equal(log.count, 2);
    assert_int_equal(log.records[1].record.kind, KVBM_EVENT_REMOVED);
    assert_int_equal(log.records[1].hashes[0], 9);
    kvbm_manager_destroy(m);
}

/* Registers @p hash alone, with @p parent (none when 0). */
static uint32_t register_one(kvbm_manager_t *m, uint64_t hash, uint64_t parent)
{
    uint32_t id;
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &id, NULL, NULL));
    kvbm_register_opts_t opts = {.has_parent = parent != 0, .parent_hash = parent, .priority = 50};
    assert_kvbm_ok(kvbm_manager_register(m, &id, &hash, 1, &opts, &id));
    return id;
}

static size_t logged_position(const event_log_t *log, uint64_t hash)
{
    for (size_t i = 0; i < log->count; i++)
        if (log->records[i].record.count == 1 && log->records[i].hashes[0] == hash)
            return i;
    fail_msg("hash %llu not announced", (unsigned long long)hash);
    return 0;
}

/* announce tells the sink every hash the tier holds, once, with its parent,
 * parents first (a chain registered tail first comes out head first), and
 * changes nothing. */
static void announce_stores_every_hash_once_parents_first(void **state)
{
    event_log_t log = {0};
    kvbm_manager_t *m = logged_manager(8, KVBM_DUPLICATION_ALLOW, KVBM_MEDIUM_CPU, &log);
    uint32_t ids[6];
    ids[0] = register_one(m, 12, 11); /* a chain 10 -> 11 -> 12, tail first */
    ids[1] = register_one(m, 11, 10);
    ids[2] = register_one(m, 10, 0);
    ids[3] = register_one(m, 30, 99); /* its parent is not in this tier */
    ids[4] = register_one(m, 40, 0);
    ids[5] = register_one(m, 40, 0); /* a duplicate: announced once */
    assert_kvbm_ok(kvbm_manager_release(m, ids, 6));
    kvbm_pool_counts_t before, after;
    kvbm_manager_counts(m, &before);
    for (int round = 0; round < 2; round++) {
        log = (event_log_t){0};
        assert_kvbm_ok(kvbm_manager_announce(m));
        assert_int_equal(log.calls, 1);
        assert_int_equal(log.count, 5);
        for (size_t i = 0; i < log.count; i++) {
            assert_int_equal(log.records[i].record.kind, KVBM_EVENT_STORED);
            assert_int_equal(log.records[i].record.medium, KVBM_MEDIUM_CPU);
            assert_int_equal(log.records[i].record.count, 1);
            assert_int_equal(log.records[i].record.n_tokens, 0);
        }
        assert_true(logged_position(&log, 10) < logged_position(&log, 11));
        assert_true(logged_position(&log, 11) < logged_position(&log, 12));
        const logged_record_t *r12 = &log.records[logged_position(&log, 12)];
        assert_true(r12->record.has_parent);
        assert_int_equal(r12->record.parent_hash, 11);
        assert_false(log.records[logged_position(&log, 10)].record.has_parent);
        const logged_record_t *r30 = &log.records[logged_position(&log, 30)];
        assert_true(r30->record.has_parent);
        assert_int_equal(r30->record.parent_hash, 99);
        (void)logged_position(&log, 40);
    }
    kvbm_manager_counts(m, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_kvbm_status(kvbm_manager_announce(NULL), KVBM_ERR_INVALID_ARG);
    kvbm_manager_destroy(m);
}

/* A version-1 config (before event records) with a callback is refused:
 * its callback takes another type. Without one it still works. */
static void version_1_config_with_a_callback_is_refused(void **state)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.version = 1;
    config.struct_size = 80; /* version 1's size: up to name */
    config.num_blocks = 4;
    config.on_events = log_events;
    kvbm_manager_t *m = (kvbm_manager_t *)0x1;
    assert_kvbm_status(kvbm_manager_create(&config, &m), KVBM_ERR_UNSUPPORTED);
    assert_ptr_equal(m, (kvbm_manager_t *)0x1);
    config.on_events = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &m));
    kvbm_manager_destroy(m);
}

static void invalidate_and_reset_report_one_removal_each(void **state)
{
    event_log_t log = {0};
    kvbm_manager_t *m = logged_manager(4, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &log);
    const uint64_t hashes[3] = {11, 12, 13};
    uint32_t ids[3];
    alloc_register(m, hashes, 3, ids);
    assert_kvbm_ok(kvbm_manager_invalidate(m, (const uint32_t[]){ids[2], ids[2]}, 2));
    assert_int_equal(log.calls, 2);
    assert_int_equal(log.records[1].record.count, 1); /* a repeat is withdrawn once */
    assert_int_equal(log.records[1].hashes[0], 13);
    release_reversed(m, ids, 3);
    assert_kvbm_ok(kvbm_manager_reset_inactive(m));
    assert_int_equal(log.calls, 3);
    assert_int_equal(log.records[2].record.kind, KVBM_EVENT_REMOVED);
    assert_int_equal(log.records[2].record.count, 2);
    uint64_t removed[2] = {log.records[2].hashes[0], log.records[2].hashes[1]};
    assert_true((removed[0] == 11 && removed[1] == 12) || (removed[0] == 12 && removed[1] == 11));
    assert_kvbm_ok(kvbm_manager_reset_inactive(m)); /* nothing left: no event */
    assert_int_equal(log.calls, 3);
    kvbm_manager_destroy(m);
}

static void register_refuses_tokens_that_do_not_cover_the_blocks(void **state)
{
    event_log_t log = {0};
    kvbm_manager_t *m = logged_manager(4, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &log);
    uint32_t ids[2];
    assert_kvbm_ok(kvbm_manager_allocate(m, 2, ids, NULL, NULL));
    const uint64_t hashes[2] = {1, 2};
    const uint32_t tokens[4] = {0};
    kvbm_register_opts_t short_tokens = {.block_size = 2, .tokens = tokens, .n_tokens = 3};
    kvbm_register_opts_t no_block_size = {.tokens = tokens, .n_tokens = 4};
    kvbm_register_opts_t null_tokens = {.block_size = 2, .n_tokens = 4};
    assert_kvbm_status(kvbm_manager_register(m, ids, hashes, 2, &short_tokens, ids),
                       KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_manager_register(m, ids, hashes, 2, &no_block_size, ids),
                       KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_manager_register(m, ids, hashes, 2, &null_tokens, ids),
                       KVBM_ERR_INVALID_ARG);
    assert_int_equal(log.calls, 0);
    assert_false(kvbm_manager_contains(m, 1));
    assert_pools(m, 2, 2, 0);
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 1;
    config.medium = (kvbm_medium_t)5;
    kvbm_manager_t *bad = NULL;
    assert_kvbm_status(kvbm_manager_create(&config, &bad), KVBM_ERR_INVALID_ARG);
    kvbm_manager_destroy(m);
}

static void registered_hashes_lists_each_hash_once(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_ALLOW, NULL);
    uint32_t a, b, c;
    alloc_register(m, (const uint64_t[]){5}, 1, &a);
    alloc_register(m, (const uint64_t[]){5}, 1, &b);
    alloc_register(m, (const uint64_t[]){6}, 1, &c);
    uint64_t hashes[4] = {0};
    size_t n = 99;
    assert_kvbm_status(kvbm_manager_registered_hashes(m, hashes, 1, &n), KVBM_ERR_INVALID_ARG);
    assert_int_equal(n, 99);
    assert_kvbm_ok(kvbm_manager_registered_hashes(m, hashes, 4, &n));
    assert_int_equal(n, 2);
    assert_true((hashes[0] == 5 && hashes[1] == 6) || (hashes[0] == 6 && hashes[1] == 5));
    kvbm_manager_destroy(m);
}

static void metrics_export_from_one_list(void **state)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 3;
    config.name = "g1";
    kvbm_manager_t *m = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &m));
    uint32_t ids[2];
    assert_kvbm_ok(kvbm_manager_allocate(m, 2, ids, NULL, NULL));

    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    assert_kvbm_ok(kvbm_manager_metrics_prometheus(m, out));
    assert_kvbm_ok(kvbm_manager_metrics_json(m, out));
    fclose(out);
    assert_non_null(strstr(text, "# TYPE kvbm_allocations_total counter\n"));
    assert_non_null(strstr(text, "kvbm_allocations_total{manager=\"g1\"} 2\n"));
    assert_non_null(strstr(text, "kvbm_reset_blocks{manager=\"g1\"} 1\n"));
    assert_non_null(strstr(text, "\"active_blocks\": 2"));
    free(text);
    kvbm_manager_destroy(m);
}

static void match_length_measures_without_taking(void **state)
{
    kvbm_manager_t *m = test_manager_new(8, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[4] = {61, 62, 63, 64};
    uint32_t ids[4];
    alloc_register(m, hashes, 3, ids);
    assert_kvbm_ok(kvbm_manager_release(m, &ids[1], 1)); /* 62 inactive, 61 and 63 held */
    size_t n = 99, inactive = 99;
    assert_kvbm_ok(kvbm_manager_match_length(m, hashes, 4, &n, &inactive));
    assert_int_equal(n, 3);
    assert_int_equal(inactive, 1);
    assert_pools(m, 5, 2, 1); /* nothing acquired */
    kvbm_manager_metrics_t metrics;
    kvbm_manager_metrics(m, &metrics);
    assert_int_equal(metrics.match_hashes, 0);
    assert_kvbm_status(kvbm_manager_match_length(m, hashes, 4, NULL, NULL), KVBM_ERR_INVALID_ARG);
    kvbm_manager_destroy(m);
}

static void invalidate_withdraws_hashes_of_held_and_cached_blocks(void **state)
{
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t hashes[2] = {41, 42};
    uint32_t ids[2];
    alloc_register(m, hashes, 2, ids);
    assert_kvbm_ok(kvbm_manager_release(m, &ids[1], 1)); /* 42 cached, 41 held */
    const uint32_t bad_range[2] = {ids[0], 9};
    assert_kvbm_status(kvbm_manager_invalidate(m, bad_range, 2), KVBM_ERR_OUT_OF_RANGE);
    assert_true(kvbm_manager_contains(m, 41));
    assert_kvbm_ok(kvbm_manager_invalidate(m, ids, 2));
    assert_false(kvbm_manager_contains(m, 41));
    assert_false(kvbm_manager_contains(m, 42));
    assert_pools(m, 3, 1, 0); /* the cached one is free, the held one stays held */
    /* A withdrawn block can be neither acquired nor registered again. */
    assert_kvbm_status(kvbm_manager_acquire(m, ids, 1), KVBM_ERR_BAD_STATE);
    uint32_t out;
    assert_kvbm_status(kvbm_manager_register(m, ids, hashes, 1, NULL, &out), KVBM_ERR_BAD_STATE);
    assert_kvbm_ok(kvbm_manager_invalidate(m, ids, 1)); /* already withdrawn: skipped */
    assert_kvbm_ok(kvbm_manager_release(m, ids, 1));
    assert_pools(m, 4, 0, 0);
    kvbm_manager_destroy(m);
}

static void match_length_counts_a_repeated_block_once(void **state)
{
    /* [h, h, h] names one inactive block: a caller sizing an allocation
     * from this must not think three blocks leave the evictable pool. */
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t h = 71, repeated[4] = {71, 71, 71, 72};
    uint32_t id;
    alloc_register(m, &h, 1, &id);
    assert_kvbm_ok(kvbm_manager_release(m, &id, 1));
    size_t n = 0, inactive = 0;
    assert_kvbm_ok(kvbm_manager_match_length(m, repeated, 4, &n, &inactive));
    assert_int_equal(n, 3);
    assert_int_equal(inactive, 1);
    /* The marks used to count once are gone: a second call agrees. */
    assert_kvbm_ok(kvbm_manager_match_length(m, repeated, 3, &n, &inactive));
    assert_int_equal(inactive, 1);
    kvbm_manager_destroy(m);
}

/* Snapshot of everything a refused call must leave as it was. */
typedef struct manager_snapshot {
    kvbm_manager_metrics_t metrics;
    uint32_t refcount;
} manager_snapshot_t;

static manager_snapshot_t snapshot(kvbm_manager_t *m, uint32_t id)
{
    manager_snapshot_t snap;
    kvbm_manager_metrics(m, &snap.metrics);
    snap.refcount = m->blocks[id].refcount;
    return snap;
}

static void assert_unchanged(kvbm_manager_t *m, uint32_t id, const manager_snapshot_t *before)
{
    manager_snapshot_t now = snapshot(m, id);
    assert_memory_equal(&now.metrics, &before->metrics, sizeof(now.metrics));
    assert_int_equal(now.refcount, before->refcount);
}

static void reference_count_limit_refuses_and_changes_nothing(void **state)
{
    /* 2^32 scans of one block used to wrap its count to 0. Reaching the
     * limit takes too long for a test, so the count is set just below it
     * (white box), then every call that takes references is tried. */
    kvbm_manager_t *m = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    const uint64_t h = 81, twice[2] = {81, 81};
    uint32_t a;
    alloc_register(m, &h, 1, &a); /* held once */
    m->blocks[a].refcount = UINT32_MAX - 1;
    uint32_t found[2];
    size_t n = 0;
    assert_kvbm_ok(kvbm_manager_scan(m, &h, 1, true, found, &n)); /* the last one that fits */
    assert_int_equal(m->blocks[a].refcount, UINT32_MAX);
    manager_snapshot_t before = snapshot(m, a);
    assert_kvbm_status(kvbm_manager_scan(m, &h, 1, true, found, &n), KVBM_ERR_OVERFLOW);
    assert_kvbm_status(kvbm_manager_scan(m, twice, 2, false, found, &n), KVBM_ERR_OVERFLOW);
    assert_kvbm_status(kvbm_manager_match(m, &h, 1, found, &n), KVBM_ERR_OVERFLOW);
    assert_kvbm_status(kvbm_manager_acquire(m, &a, 1), KVBM_ERR_OVERFLOW);
    uint32_t b, out = 99;
    assert_kvbm_ok(kvbm_manager_allocate(m, 1, &b, NULL, NULL));
    before = snapshot(m, a);
    /* Registering h again would move b's reference onto a: refused, b stays
     * the caller's mutable block. */
    assert_kvbm_status(kvbm_manager_register(m, &b, &h, 1, NULL, &out), KVBM_ERR_OVERFLOW);
    assert_int_equal(out, 99);
    assert_unchanged(m, a, &before);
    assert_pools(m, 2, 2, 0);
    assert_kvbm_ok(kvbm_manager_release(m, &b, 1));
    /* One below the limit, the same calls work again, and the counts add up. */
    assert_kvbm_ok(kvbm_manager_release(m, &a, 1));
    assert_kvbm_ok(kvbm_manager_match(m, &h, 1, found, &n));
    assert_int_equal(n, 1);
    m->blocks[a].refcount = 1; /* back to one holder (white box, as above) */
    assert_kvbm_ok(kvbm_manager_release(m, &a, 1));
    assert_pools(m, 3, 0, 1);
    uint32_t all[4];
    assert_kvbm_ok(kvbm_manager_allocate(m, 4, all, NULL, NULL)); /* evicts a cleanly */
    assert_false(kvbm_manager_contains(m, h));
    kvbm_manager_destroy(m);
}

static void policy_tables_missing_an_operation_are_refused(void **state)
{
    /* A NULL slot used to be accepted and called on the first registration
     * with hints (hint) or the first eviction (pop_victim): a crash long
     * after create said yes. */
    const kvbm_policy_ops_t *lru = kvbm_policy_lru();
    for (int slot = 0; slot < 13; slot++) {
        kvbm_policy_ops_t ops = *lru;
        switch (slot) {
        case 0:
            ops.name = NULL;
            break;
        case 1:
            ops.create = NULL;
            break;
        case 2:
            ops.destroy = NULL;
            break;
        case 3:
            ops.insert = NULL;
            break;
        case 4:
            ops.remove = NULL;
            break;
        case 5:
            ops.pop_victim = NULL;
            break;
        case 6:
            ops.touch = NULL;
            break;
        case 7:
            ops.size = NULL;
            break;
        case 8:
            ops.hint = NULL;
            break;
        case 9:
            ops.insert_batch = NULL;
            break;
        case 10:
            ops.acquire_batch = NULL;
            break;
        case 11:
            ops.touch_batch = NULL;
            break;
        default:
            ops.pop_victims = NULL;
            break;
        }
        kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
        config.num_blocks = 2;
        config.policy = &ops;
        kvbm_manager_t *m = NULL;
        assert_kvbm_status(kvbm_manager_create(&config, &m), KVBM_ERR_INVALID_ARG);
        assert_null(m);
    }
    /* A version-1 table ends before hint: whatever follows it is not read,
     * and the table works (registration with hints skips the hint op, the
     * manager makes single calls for the batches). */
    kvbm_policy_ops_t v1 = *lru;
    v1.version = 1;
    v1.hint = NULL;
    v1.insert_batch = NULL;
    v1.acquire_batch = NULL;
    v1.touch_batch = NULL;
    v1.pop_victims = NULL;
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 2;
    config.policy = &v1;
    kvbm_manager_t *m = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &m));
    uint32_t ids[2];
    const uint64_t hashes[2] = {7, 8};
    const kvbm_register_opts_t hints = {.request_blocks = 2};
    assert_kvbm_ok(kvbm_manager_allocate(m, 2, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, 2, &hints, ids));
    assert_kvbm_ok(kvbm_manager_release(m, ids, 2));
    kvbm_manager_destroy(m);
}

static void names_outside_the_safe_set_are_refused(void **state)
{
    /* A name goes into Prometheus labels and JSON as is: a quote and a
     * newline would have injected metric lines. */
    const char *refused[] = {"g1\"} 1\nkvbm_fake_total 7\n#",
                             "back\\slash",
                             "tab\tname",
                             "",
                             "caf\xc3\xa9",
                             "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
        config.num_blocks = 2;
        config.name = refused[i];
        kvbm_manager_t *m = NULL;
        assert_kvbm_status(kvbm_manager_create(&config, &m), KVBM_ERR_INVALID_ARG);
        assert_null(m);
    }
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = 2;
    config.name = "llama-70b/tp0 {g1}:x'y"                     /* every character here is safe */
                  "01234567890123456789012345678901234567890"; /* 63 bytes in all */
    assert_int_equal(strlen(config.name), KVBM_MANAGER_NAME_MAX);
    kvbm_manager_t *m = NULL;
    assert_kvbm_ok(kvbm_manager_create(&config, &m));
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    assert_kvbm_ok(kvbm_manager_metrics_prometheus(m, out));
    fclose(out);
    /* Whole, and one sample line per metric: nothing injected, nothing cut. */
    size_t samples = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        samples++;
        assert_non_null(strstr(line, config.name));
    }
    assert_int_equal(samples, sizeof(kvbm_manager_metrics_t) / sizeof(uint64_t));
    free(text);
    kvbm_manager_destroy(m);
}

static void status_strings_cover_every_status(void **state)
{
    assert_string_equal(kvbm_status_str(KVBM_OK), "success");
    assert_string_equal(kvbm_status_name(KVBM_ERR_NO_BLOCKS), "KVBM_ERR_NO_BLOCKS");
    assert_string_equal(kvbm_status_str((kvbm_status_t)12345), "unknown status");
    assert_int_equal(kvbm_version_code(), KVBM_VERSION_CODE);
    assert_string_equal(kvbm_version(), "0.1.0");
}

/* The same records in the same sink calls (blocks, as ids, compared by the caller). */
static void assert_same_events(const event_log_t *a, const event_log_t *b)
{
    assert_int_equal(a->calls, b->calls);
    assert_int_equal(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        const logged_record_t *x = &a->records[i], *y = &b->records[i];
        assert_int_equal(x->record.kind, y->record.kind);
        assert_int_equal(x->record.count, y->record.count);
        assert_int_equal(x->record.has_parent, y->record.has_parent);
        assert_int_equal(x->record.parent_hash, y->record.parent_hash);
        assert_int_equal(x->record.block_size, y->record.block_size);
        assert_int_equal(x->record.n_tokens, y->record.n_tokens);
        assert_memory_equal(x->hashes, y->hashes, x->record.count * sizeof(uint64_t));
        assert_memory_equal(x->blocks, y->blocks, x->record.count * sizeof(uint32_t));
        assert_memory_equal(x->tokens, y->tokens, x->record.n_tokens * sizeof(uint32_t));
    }
}

/* One request of 5 hashes (one token each) on both managers, fused on one and
 * as the three calls on the other; both give the same ids, evictions and
 * events. Released tail first. Returns how many registrations deduplicated. */
static size_t request_both_ways(kvbm_manager_t *fused, event_log_t *log_f, kvbm_manager_t *three,
                                event_log_t *log_t, const uint64_t *h)
{
    uint32_t ids_f[5], ids_t[5], fresh[5], tokens[5];
    for (size_t i = 0; i < 5; i++)
        tokens[i] = (uint32_t)h[i] + 1000;
    kvbm_evicted_t ev_f[5], ev_t[5];
    kvbm_request_counts_t got;
    *log_f = (event_log_t){0};
    *log_t = (event_log_t){0};
    kvbm_register_opts_t opts = {.priority = 50, .block_size = 1, .tokens = tokens, .n_tokens = 5};
    assert_kvbm_ok(kvbm_manager_match_allocate_register(fused, h, 5, &opts, ids_f, ev_f, &got));
    size_t k = 0, n_ev = 0;
    assert_kvbm_ok(kvbm_manager_match(three, h, 5, ids_t, &k));
    assert_kvbm_ok(kvbm_manager_allocate(three, 5 - k, fresh, ev_t, &n_ev));
    kvbm_register_opts_t rest = {.priority = 50,
                                 .has_parent = k > 0,
                                 .parent_hash = k > 0 ? h[k - 1] : 0,
                                 .block_size = 1,
                                 .tokens = tokens + k,
                                 .n_tokens = 5 - k};
    assert_kvbm_ok(kvbm_manager_register(three, fresh, h + k, 5 - k, &rest, ids_t + k));
    assert_int_equal(got.matched, k);
    assert_int_equal(got.evicted, n_ev);
    assert_memory_equal(ids_f, ids_t, sizeof(ids_f));
    for (size_t i = 0; i < n_ev; i++) {
        assert_int_equal(ev_f[i].block_id, ev_t[i].block_id);
        assert_int_equal(ev_f[i].seq_hash, ev_t[i].seq_hash);
        assert_int_equal(ev_f[i].has_parent, ev_t[i].has_parent);
        assert_int_equal(ev_f[i].parent_hash, ev_t[i].parent_hash);
    }
    assert_same_events(log_f, log_t);
    for (size_t i = 5; i-- > 0;) {
        assert_kvbm_ok(kvbm_manager_release(fused, &ids_f[i], 1));
        assert_kvbm_ok(kvbm_manager_release(three, &ids_t[i], 1));
    }
    return got.deduplicated;
}

/* The fused call gives what match, allocate and register give in a row,
 * on two managers with the same history: ids, evictions, events, metrics
 * and pools; a refused one changes nothing. */
static void match_allocate_register_is_the_three_calls(void **state)
{
    (void)state;
    event_log_t log_f, log_t;
    kvbm_manager_t *fused = logged_manager(8, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &log_f);
    kvbm_manager_t *three = logged_manager(8, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &log_t);
    /* Requests over 12 hashes: matches, evictions, and a dedup (hash 3 twice). */
    const uint64_t requests[][5] = {
        {1, 2, 3, 4, 5}, {1, 2, 6, 7, 3}, {8, 9, 10, 11, 12}, {1, 2, 3, 9, 10}, {6, 7, 3, 3, 1}};
    size_t dedups = 0;
    for (size_t r = 0; r < sizeof(requests) / sizeof(requests[0]); r++)
        dedups += request_both_ways(fused, &log_f, three, &log_t, requests[r]);
    assert_true(dedups > 0);
    kvbm_manager_metrics_t mf, mt;
    kvbm_manager_metrics(fused, &mf);
    kvbm_manager_metrics(three, &mt);
    assert_memory_equal(&mf, &mt, sizeof(mf));
    assert_int_equal(mf.dedups, dedups);
    assert_true(mf.evictions > 0);

    /* A hash evicted by the request's own allocation and registered again
     * by it: removed before stored, as in the three calls. On 5 blocks
     * holding 1..5 (released tail first: 5 is the least recently used), a
     * request of 2 new hashes then 5, 4, 3 evicts all five first. */
    event_log_t small_log_f, small_log_t;
    kvbm_manager_t *small_f =
        logged_manager(5, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &small_log_f);
    kvbm_manager_t *small_t =
        logged_manager(5, KVBM_DUPLICATION_REJECT, KVBM_MEDIUM_GPU, &small_log_t);
    request_both_ways(small_f, &small_log_f, small_t, &small_log_t,
                      (const uint64_t[]){1, 2, 3, 4, 5});
    request_both_ways(small_f, &small_log_f, small_t, &small_log_t,
                      (const uint64_t[]){100, 101, 5, 4, 3});
    assert_int_equal(small_log_f.calls, 2); /* the allocation's, then the registration's */
    assert_int_equal(small_log_f.count, 2);
    assert_int_equal(small_log_f.records[0].record.kind, KVBM_EVENT_REMOVED);
    assert_int_equal(small_log_f.records[0].record.count, 5);
    assert_int_equal(small_log_f.records[0].hashes[0], 5);
    assert_int_equal(small_log_f.records[1].record.kind, KVBM_EVENT_STORED);
    assert_int_equal(small_log_f.records[1].record.count, 5);
    assert_int_equal(small_log_f.records[1].hashes[2], 5);
    assert_int_equal(small_log_f.records[1].tokens[2], 1005);
    kvbm_manager_destroy(small_f);
    kvbm_manager_destroy(small_t);

    /* Refused: bad arguments; more new blocks than reset + inactive once the
     * prefix is held (7 held of 8, then a request of 2 new hashes). */
    uint32_t held[7], out[8];
    kvbm_request_counts_t got;
    const uint64_t two[2] = {100, 101};
    kvbm_register_opts_t bad = {.priority = 101};
    assert_kvbm_status(kvbm_manager_match_allocate_register(fused, two, 2, NULL, out, NULL, NULL),
                       KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm_manager_match_allocate_register(fused, two, 2, &bad, out, NULL, &got),
                       KVBM_ERR_INVALID_ARG);
    assert_kvbm_ok(kvbm_manager_allocate(fused, 7, held, NULL, NULL));
    kvbm_pool_counts_t before, after;
    kvbm_manager_counts(fused, &before);
    assert_kvbm_status(kvbm_manager_match_allocate_register(fused, two, 2, NULL, out, NULL, &got),
                       KVBM_ERR_NO_BLOCKS);
    kvbm_manager_counts(fused, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_kvbm_ok(kvbm_manager_match_allocate_register(fused, two, 1, NULL, out, NULL, &got));
    assert_int_equal(got.matched, 0);
    assert_int_equal(got.evicted, 0); /* no evicted_out given */
    kvbm_manager_destroy(fused);
    kvbm_manager_destroy(three);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_rejects_bad_config),
        cmocka_unit_test(fresh_manager_hands_out_dense_ids),
        cmocka_unit_test(unregistered_release_returns_to_reset),
        cmocka_unit_test(full_capacity_eviction_cycle),
        cmocka_unit_test(allocation_failure_changes_nothing),
        cmocka_unit_test(reject_policy_returns_existing_block),
        cmocka_unit_test(allow_policy_keeps_both_blocks),
        cmocka_unit_test(match_stops_at_first_miss),
        cmocka_unit_test(match_crosses_active_inactive_alternation),
        cmocka_unit_test(scan_finds_all_and_touch_reaches_the_policy),
        cmocka_unit_test(hints_reach_version_2_policies_and_version_1_still_works),
        cmocka_unit_test(misuse_is_refused_and_changes_nothing),
        cmocka_unit_test(repeated_ids_release_as_many_references),
        cmocka_unit_test(long_release_moves_every_block_in_order),
        cmocka_unit_test(reset_inactive_needs_an_idle_manager),
        cmocka_unit_test(events_report_stored_runs_and_removals),
        cmocka_unit_test(events_split_runs_where_the_tier_had_the_hash),
        cmocka_unit_test(events_follow_the_last_copy_of_a_duplicated_hash),
        cmocka_unit_test(announce_stores_every_hash_once_parents_first),
        cmocka_unit_test(version_1_config_with_a_callback_is_refused),
        cmocka_unit_test(invalidate_and_reset_report_one_removal_each),
        cmocka_unit_test(register_refuses_tokens_that_do_not_cover_the_blocks),
        cmocka_unit_test(registered_hashes_lists_each_hash_once),
        cmocka_unit_test(metrics_export_from_one_list),
        cmocka_unit_test(match_length_measures_without_taking),
        cmocka_unit_test(invalidate_withdraws_hashes_of_held_and_cached_blocks),
        cmocka_unit_test(match_length_counts_a_repeated_block_once),
        cmocka_unit_test(reference_count_limit_refuses_and_changes_nothing),
        cmocka_unit_test(names_outside_the_safe_set_are_refused),
        cmocka_unit_test(policy_tables_missing_an_operation_are_refused),
        cmocka_unit_test(status_strings_cover_every_status),
        cmocka_unit_test(match_allocate_register_is_the_three_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
