/*
 * Policy batches (kvbm_policy_ops_t version 3, host/manager/policy_batch.c):
 * a version-3 table sees, through its batches, exactly the single
 * operations an older table gets one by one, in the same order; and
 * every built-in policy's batches leave it where its single operations do.
 * Checked by driving two managers with the same random calls (evictions,
 * deduplications, repeats, misuse) and comparing everything they return.
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

enum { BLOCKS = 16, LOG_MAX = 1 << 16 };

/* One recorded single operation: kind ('I', 'R', 'P', 'T' touch inactive,
 * 't' touch active) and block. */
typedef struct op_log {
    char kind[LOG_MAX];
    uint32_t block[LOG_MAX];
    size_t count;
    size_t batch_calls;   /* batch operations called */
    size_t largest_batch; /* entries in the largest */
    size_t id_calls;      /* of which batches by id (version 4) */
} op_log_t;

static op_log_t logs[2];
static op_log_t *recording; /* the log of the manager being called */

static void record(char kind, uint32_t block)
{
    assert_true(recording->count < LOG_MAX);
    recording->kind[recording->count] = kind;
    recording->block[recording->count] = block;
    recording->count++;
}

/* A policy recording its operations around LRU's single operations. */
static void rec_insert(void *state, const kvbm_policy_entry_t *entry)
{
    record('I', entry->block_id);
    kvbm_policy_lru()->insert(state, entry);
}

static void rec_remove(void *state, uint32_t block_id)
{
    record('R', block_id);
    kvbm_policy_lru()->remove(state, block_id);
}

static bool rec_pop_victim(void *state, uint32_t *block_id_out)
{
    bool popped = kvbm_policy_lru()->pop_victim(state, block_id_out);
    if (popped)
        record('P', *block_id_out);
    return popped;
}

static void rec_touch(void *state, const kvbm_policy_entry_t *entry, bool inactive)
{
    record(inactive ? 'T' : 't', entry->block_id);
    kvbm_policy_lru()->touch(state, entry, inactive);
}

static void note_batch(size_t count)
{
    assert_true(count > 0);
    recording->batch_calls++;
    if (count > recording->largest_batch)
        recording->largest_batch = count;
}

static void rec_insert_batch(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    note_batch(count);
    for (size_t i = 0; i < count; i++)
        rec_insert(state, &entries[i]);
}

static void rec_acquire_batch(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    note_batch(count);
    for (size_t i = 0; i < count; i++) {
        rec_touch(state, &entries[i], true);
        rec_remove(state, entries[i].block_id);
    }
}

static void rec_touch_batch(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    note_batch(count);
    for (size_t i = 0; i < count; i++)
        rec_touch(state, &entries[i], false);
}

static size_t rec_pop_victims(void *state, uint32_t *ids_out, size_t count)
{
    note_batch(count);
    size_t popped = 0;
    while (popped < count && rec_pop_victim(state, &ids_out[popped]))
        popped++;
    return popped;
}

/* Version 4, by id: LRU's inserts and acquires read only the block id. */
static void rec_insert_ids(void *state, const uint32_t *ids, size_t count)
{
    note_batch(count);
    recording->id_calls++;
    for (size_t i = 0; i < count; i++) {
        record('I', ids[i]);
        kvbm_policy_lru()->insert_ids(state, &ids[i], 1);
    }
}

static void rec_acquire_ids(void *state, const uint32_t *ids, size_t count)
{
    note_batch(count);
    recording->id_calls++;
    for (size_t i = 0; i < count; i++) {
        record('T', ids[i]);
        record('R', ids[i]);
        kvbm_policy_lru()->acquire_ids(state, &ids[i], 1);
    }
}

static kvbm_policy_ops_t recorder(uint32_t version)
{
    kvbm_policy_ops_t ops = *kvbm_policy_lru();
    ops.version = version;
    ops.name = "recorder";
    ops.insert = rec_insert;
    ops.remove = rec_remove;
    ops.pop_victim = rec_pop_victim;
    ops.touch = rec_touch;
    ops.insert_batch = rec_insert_batch;
    ops.acquire_batch = rec_acquire_batch;
    ops.touch_batch = rec_touch_batch;
    ops.pop_victims = rec_pop_victims;
    ops.insert_ids = rec_insert_ids;
    ops.acquire_ids = rec_acquire_ids;
    return ops;
}

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* What a manager holds between calls, so the same calls go to both. */
typedef struct driver {
    kvbm_manager_t *m;
    uint32_t mutable_ids[BLOCKS];
    size_t n_mutable;
    uint32_t held[4 * BLOCKS]; /* references held on registered blocks */
    size_t n_held;
} driver_t;

/* One random call on @p d, writing what it returned into @p out. */
static void random_call(driver_t *d, uint64_t seed, uint32_t *out, size_t *n_out)
{
    uint64_t rng = seed;
    uint64_t hashes[BLOCKS];
    size_t n = 1 + next_random(&rng) % 8;
    for (size_t i = 0; i < n; i++)
        hashes[i] = next_random(&rng) % 24; /* few hashes: dedups and hits */
    size_t found = 0;
    kvbm_status_t status = KVBM_OK;
    switch (next_random(&rng) % 6) {
    case 0: /* allocate, then register what was allocated */
        status = kvbm_manager_allocate(d->m, n, d->mutable_ids, NULL, NULL);
        if (status == KVBM_OK) {
            assert_kvbm_ok(kvbm_manager_register(d->m, d->mutable_ids, hashes, n, NULL, out));
            memcpy(d->held + d->n_held, out, n * sizeof(uint32_t));
            d->n_held += n;
            found = n;
        }
        break;
    case 1: /* release the newest references, newest first */
    case 2: {
        size_t k = n < d->n_held ? n : d->n_held;
        for (size_t i = 0; i < k; i++)
            out[i] = d->held[d->n_held - 1 - i];
        status = kvbm_manager_release(d->m, out, k);
        d->n_held -= k;
        found = k;
        break;
    }
    case 3:
        if (d->n_held + n <= 4 * BLOCKS) {
            status = kvbm_manager_match(d->m, hashes, n, out, &found);
            memcpy(d->held + d->n_held, out, found * sizeof(uint32_t));
            d->n_held += found;
        }
        break;
    case 4:
        if (d->n_held + n <= 4 * BLOCKS) {
            status = kvbm_manager_scan(d->m, hashes, n, next_random(&rng) % 2, out, &found);
            for (size_t i = 0; i < n; i++)
                if (out[i] != KVBM_BLOCK_NONE)
                    d->held[d->n_held++] = out[i];
        }
        break;
    default: /* misuse: a release of a block not held changes nothing */
        out[0] = (uint32_t)(next_random(&rng) % BLOCKS);
        status = kvbm_manager_release(d->m, out, 1);
        if (status == KVBM_OK) {
            /* it was held after all: take the reference back from our list */
            for (size_t i = 0; i < d->n_held; i++)
                if (d->held[i] == out[0]) {
                    d->held[i] = d->held[--d->n_held];
                    break;
                }
        }
        break;
    }
    out[BLOCKS] = (uint32_t)status;
    *n_out = found;
}

static void drive_and_compare(const kvbm_policy_ops_t *a, const kvbm_policy_ops_t *b, int calls)
{
    driver_t d[2] = {0};
    d[0].m = test_manager_new(BLOCKS, KVBM_DUPLICATION_REJECT, a);
    d[1].m = test_manager_new(BLOCKS, KVBM_DUPLICATION_REJECT, b);
    memset(logs, 0, sizeof(logs));
    for (int c = 0; c < calls; c++) {
        uint32_t out[2][BLOCKS + 1];
        size_t n[2];
        for (int side = 0; side < 2; side++) {
            recording = &logs[side];
            random_call(&d[side], 0x9E3779B97F4A7C15ULL * (uint64_t)(c + 1), out[side], &n[side]);
        }
        assert_int_equal(out[0][BLOCKS], out[1][BLOCKS]); /* the same status */
        assert_int_equal(n[0], n[1]);
        assert_memory_equal(out[0], out[1], n[0] * sizeof(uint32_t));
        kvbm_pool_counts_t counts[2];
        kvbm_manager_counts(d[0].m, &counts[0]);
        kvbm_manager_counts(d[1].m, &counts[1]);
        assert_memory_equal(&counts[0], &counts[1], sizeof(counts[0]));
    }
    kvbm_manager_destroy(d[0].m);
    kvbm_manager_destroy(d[1].m);
}

static void batches_carry_the_single_operations_in_order(void **state)
{
    kvbm_policy_ops_t one_by_one = recorder(2), batched = recorder(3);
    drive_and_compare(&one_by_one, &batched, 3000);
    assert_true(logs[0].count > 1000);
    assert_int_equal(logs[0].count, logs[1].count);
    assert_memory_equal(logs[0].kind, logs[1].kind, logs[0].count);
    assert_memory_equal(logs[0].block, logs[1].block, logs[0].count * sizeof(uint32_t));
    /* The version-2 table never saw a batch; the version-3 one saw them,
     * with more than one operation each. */
    assert_int_equal(logs[0].batch_calls, 0);
    assert_true(logs[1].batch_calls > 0 && logs[1].batch_calls < logs[1].count);
    assert_true(logs[1].largest_batch > 1);
    assert_int_equal(logs[1].id_calls, 0); /* version 3 has no batches by id */
}

/* A version-4 table taking ids sees the same single operations in the
 * same order, its inserts and acquires as bare ids; one pointing at
 * kvbm_policy_needs_entries gets entries. */
static void batches_by_id_carry_the_single_operations_in_order(void **state)
{
    kvbm_policy_ops_t one_by_one = recorder(2), by_id = recorder(4);
    drive_and_compare(&one_by_one, &by_id, 3000);
    assert_true(logs[0].count > 1000);
    assert_int_equal(logs[0].count, logs[1].count);
    assert_memory_equal(logs[0].kind, logs[1].kind, logs[0].count);
    assert_memory_equal(logs[0].block, logs[1].block, logs[0].count * sizeof(uint32_t));
    assert_true(logs[1].id_calls > 0 && logs[1].largest_batch > 1);

    kvbm_policy_ops_t entries = recorder(4);
    entries.acquire_ids = kvbm_policy_needs_entries; /* one slot is enough */
    drive_and_compare(&one_by_one, &entries, 3000);
    assert_int_equal(logs[0].count, logs[1].count);
    assert_memory_equal(logs[0].kind, logs[1].kind, logs[0].count);
    assert_int_equal(logs[1].id_calls, 0);
    assert_true(logs[1].batch_calls > 0);
}

/* Every built-in policy (except the offline bound, which needs an oracle)
 * gives the same results through its batches as through its single ops. */
static void every_policy_batches_like_its_single_operations(void **state)
{
#define POLICY_GETTER(name, getter) getter,
    const kvbm_policy_ops_t *(*getters[])(void) = {KVBM_POLICY_LIST(POLICY_GETTER)};
#undef POLICY_GETTER
    for (size_t i = 0; i < sizeof(getters) / sizeof(getters[0]); i++) {
        const kvbm_policy_ops_t *batched = getters[i]();
        if (strcmp(batched->name, "belady") == 0)
            continue;
        assert_int_equal(batched->version, KVBM_POLICY_OPS_VERSION);
        kvbm_policy_ops_t one_by_one = *batched;
        one_by_one.version = 2; /* the last version before the batches */
        recording = &logs[0];
        drive_and_compare(&one_by_one, batched, 3000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_carry_the_single_operations_in_order),
        cmocka_unit_test(batches_by_id_carry_the_single_operations_in_order),
        cmocka_unit_test(every_policy_batches_like_its_single_operations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
