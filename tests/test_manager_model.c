/*
 * Model-based test: long random sequences of manager calls, each checked
 * against a small reference model kept in this file (reject duplication,
 * LRU). The model predicts every status, every matched id, every evicted
 * hash in order, and the pool sizes after every step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"

#define N_BLOCKS 16
#define N_HASHES 24
#define MAX_HELD 256
#define STEPS    20000

typedef enum { M_RESET, M_MUTABLE, M_REGISTERED } model_state_t;

typedef struct model {
    model_state_t state[N_BLOCKS];
    uint32_t refcount[N_BLOCKS];
    uint64_t hash[N_BLOCKS];
    uint32_t holder[N_HASHES]; /* block registered under hash h, or NONE */
    uint32_t lru[N_BLOCKS];    /* inactive ids, oldest first */
    size_t lru_size;
    uint32_t held[MAX_HELD]; /* references the test holds (multiset) */
    size_t held_count;
} model_t;

static uint64_t rng_state;
static uint32_t rnd(uint32_t bound)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((rng_state >> 33) % bound);
}

static void lru_remove(model_t *model, uint32_t id)
{
    for (size_t i = 0; i < model->lru_size; i++) {
        if (model->lru[i] == id) {
            memmove(&model->lru[i], &model->lru[i + 1],
                    (model->lru_size - i - 1) * sizeof(uint32_t));
            model->lru_size--;
            return;
        }
    }
    fail_msg("model: block %u not in the LRU", id);
}

static void model_acquire(model_t *model, uint32_t id)
{
    if (model->refcount[id] == 0)
        lru_remove(model, id);
    model->refcount[id]++;
    model->held[model->held_count++] = id;
}

static void check_pools(kvbm_manager_t *m, const model_t *model)
{
    size_t reset = 0, active = 0;
    for (int i = 0; i < N_BLOCKS; i++) {
        if (model->state[i] == M_RESET)
            reset++;
        else if (model->refcount[i] > 0)
            active++;
    }
    assert_pools(m, reset, active, model->lru_size);
    for (uint64_t h = 0; h < N_HASHES; h++)
        assert_int_equal(kvbm_manager_contains(m, h), model->holder[h] != KVBM_BLOCK_NONE);
}

static void step_allocate(kvbm_manager_t *m, model_t *model)
{
    size_t reset = 0;
    for (int i = 0; i < N_BLOCKS; i++)
        reset += model->state[i] == M_RESET;
    size_t count = 1 + rnd(4);
    if (model->held_count + count > MAX_HELD)
        return;
    uint32_t ids[4];
    kvbm_evicted_t evicted[4];
    size_t n_evicted = 0;
    kvbm_status_t status = kvbm_manager_allocate(m, count, ids, evicted, &n_evicted);
    if (count > reset + model->lru_size) {
        assert_int_equal(status, KVBM_ERR_NO_BLOCKS);
        return;
    }
    assert_int_equal(status, KVBM_OK);
    size_t from_reset = count < reset ? count : reset;
    assert_int_equal(n_evicted, count - from_reset);
    for (size_t i = 0; i < from_reset; i++)
        assert_int_equal(model->state[ids[i]], M_RESET);
    for (size_t i = 0; i < n_evicted; i++) {
        uint32_t victim = model->lru[0];
        assert_int_equal(evicted[i].block_id, victim);
        assert_int_equal(evicted[i].seq_hash, model->hash[victim]);
        assert_int_equal(ids[from_reset + i], victim);
        lru_remove(model, victim);
        model->holder[model->hash[victim]] = KVBM_BLOCK_NONE;
    }
    for (size_t i = 0; i < count; i++) {
        model->state[ids[i]] = M_MUTABLE;
        model->refcount[ids[i]] = 1;
        model->held[model->held_count++] = ids[i];
    }
}

static void step_register(kvbm_manager_t *m, model_t *model)
{
    uint32_t ids[4];
    uint64_t hashes[4];
    size_t count = 0;
    for (size_t i = 0; i < model->held_count && count < 4; i++) {
        uint32_t id = model->held[i];
        bool seen = false;
        for (size_t j = 0; j < count; j++)
            seen |= ids[j] == id;
        if (model->state[id] == M_MUTABLE && !seen && rnd(2) == 0) {
            ids[count] = id;
            hashes[count] = rnd(N_HASHES);
            count++;
        }
    }
    if (count == 0)
        return;
    uint32_t out[4];
    assert_kvbm_ok(kvbm_manager_register(m, ids, hashes, count, NULL, out));
    for (size_t i = 0; i < count; i++) {
        uint64_t h = hashes[i];
        /* The caller's reference on ids[i] becomes one on out[i]. */
        size_t slot = 0;
        while (model->held[slot] != ids[i])
            slot++;
        if (model->holder[h] != KVBM_BLOCK_NONE) {
            uint32_t existing = model->holder[h];
            assert_int_equal(out[i], existing);
            model->held[slot] = model->held[--model->held_count];
            model_acquire(model, existing);
            model->state[ids[i]] = M_RESET;
            model->refcount[ids[i]] = 0;
        } else {
            assert_int_equal(out[i], ids[i]);
            model->state[ids[i]] = M_REGISTERED;
            model->hash[ids[i]] = h;
            model->holder[h] = ids[i];
        }
    }
}

static void step_release(kvbm_manager_t *m, model_t *model)
{
    if (model->held_count == 0)
        return;
    uint32_t ids[3];
    size_t count = 1 + rnd(3);
    if (count > model->held_count)
        count = model->held_count;
    for (size_t i = 0; i < count; i++) {
        size_t slot = rnd((uint32_t)model->held_count);
        ids[i] = model->held[slot];
        model->held[slot] = model->held[--model->held_count];
    }
    assert_kvbm_ok(kvbm_manager_release(m, ids, count));
    for (size_t i = 0; i < count; i++) {
        uint32_t id = ids[i];
        if (--model->refcount[id] > 0)
            continue;
        if (model->state[id] == M_MUTABLE)
            model->state[id] = M_RESET;
        else
            model->lru[model->lru_size++] = id;
    }
}

static void step_match(kvbm_manager_t *m, model_t *model, bool scan)
{
    uint64_t hashes[5];
    size_t count = 1 + rnd(5);
    if (model->held_count + count > MAX_HELD)
        return;
    for (size_t i = 0; i < count; i++)
        hashes[i] = rnd(N_HASHES);
    uint32_t out[5];
    size_t n = 0;
    if (!scan) {
        assert_kvbm_ok(kvbm_manager_match(m, hashes, count, out, &n));
        size_t expected = 0;
        while (expected < count && model->holder[hashes[expected]] != KVBM_BLOCK_NONE) {
            assert_int_equal(out[expected], model->holder[hashes[expected]]);
            model_acquire(model, out[expected]);
            expected++;
        }
        assert_int_equal(n, expected);
        return;
    }
    assert_kvbm_ok(kvbm_manager_scan(m, hashes, count, rnd(2) == 0, out, &n));
    size_t expected = 0;
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(out[i], model->holder[hashes[i]]);
        if (out[i] != KVBM_BLOCK_NONE) {
            model_acquire(model, out[i]);
            expected++;
        }
    }
    assert_int_equal(n, expected);
}

/* kvbm_manager_match_allocate_register: the model's match, allocate and
 * register in a row, or NO_BLOCKS with nothing changed. */
static void step_request(kvbm_manager_t *m, model_t *model)
{
    uint64_t hashes[5];
    size_t count = 1 + rnd(5);
    if (model->held_count + count > MAX_HELD)
        return;
    for (size_t i = 0; i < count; i++)
        hashes[i] = rnd(N_HASHES);
    size_t reset = 0;
    for (int i = 0; i < N_BLOCKS; i++)
        reset += model->state[i] == M_RESET;
    size_t matched = 0, prefix_inactive = 0;
    bool counted[N_BLOCKS] = {false};
    while (matched < count && model->holder[hashes[matched]] != KVBM_BLOCK_NONE) {
        uint32_t id = model->holder[hashes[matched]];
        if (model->refcount[id] == 0 && !counted[id]) {
            counted[id] = true;
            prefix_inactive++;
        }
        matched++;
    }
    uint32_t out[5];
    kvbm_evicted_t evicted[5];
    kvbm_request_counts_t got;
    kvbm_register_opts_t opts = {.priority = 50};
    kvbm_status_t status =
        kvbm_manager_match_allocate_register(m, hashes, count, &opts, out, evicted, &got);
    size_t need = count - matched;
    if (need > reset + model->lru_size - prefix_inactive) {
        assert_int_equal(status, KVBM_ERR_NO_BLOCKS);
        return;
    }
    assert_int_equal(status, KVBM_OK);
    assert_int_equal(got.matched, matched);
    for (size_t i = 0; i < matched; i++) {
        assert_int_equal(out[i], model->holder[hashes[i]]);
        model_acquire(model, out[i]);
    }
    size_t from_reset = need < reset ? need : reset;
    assert_int_equal(got.evicted, need - from_reset);
    for (size_t i = 0; i < got.evicted; i++) {
        uint32_t victim = model->lru[0];
        assert_int_equal(evicted[i].block_id, victim);
        assert_int_equal(evicted[i].seq_hash, model->hash[victim]);
        lru_remove(model, victim);
        model->holder[model->hash[victim]] = KVBM_BLOCK_NONE;
        model->state[victim] = M_RESET; /* to be handed out below */
    }
    size_t dedups = 0;
    for (size_t i = matched; i < count; i++) {
        uint64_t h = hashes[i];
        if (model->holder[h] != KVBM_BLOCK_NONE) {
            /* A fresh block came and went back to reset: the reset count is
             * what the pools check sees. */
            assert_int_equal(out[i], model->holder[h]);
            model_acquire(model, out[i]);
            dedups++;
            continue;
        }
        uint32_t id = out[i];
        assert_int_equal(model->state[id], M_RESET);
        model->state[id] = M_REGISTERED;
        model->refcount[id] = 1;
        model->hash[id] = h;
        model->holder[h] = id;
        model->held[model->held_count++] = id;
    }
    assert_int_equal(got.deduplicated, dedups);
}

static void step_misuse(kvbm_manager_t *m, model_t *model)
{
    /* A release of a block the test holds no reference on must be refused. */
    uint32_t id = rnd(N_BLOCKS);
    for (size_t i = 0; i < model->held_count; i++)
        if (model->held[i] == id)
            return;
    assert_kvbm_status(kvbm_manager_release(m, &id, 1), KVBM_ERR_NOT_HELD);
}

static void step_reset_inactive(kvbm_manager_t *m, model_t *model)
{
    kvbm_status_t status = kvbm_manager_reset_inactive(m);
    if (model->held_count > 0) {
        assert_int_equal(status, KVBM_ERR_BUSY);
        return;
    }
    assert_int_equal(status, KVBM_OK);
    for (size_t i = 0; i < model->lru_size; i++) {
        uint32_t id = model->lru[i];
        model->holder[model->hash[id]] = KVBM_BLOCK_NONE;
        model->state[id] = M_RESET;
    }
    model->lru_size = 0;
}

static void run_model(uint64_t seed)
{
    rng_state = seed;
    model_t model;
    memset(&model, 0, sizeof(model));
    for (int h = 0; h < N_HASHES; h++)
        model.holder[h] = KVBM_BLOCK_NONE;
    kvbm_manager_t *m = test_manager_new(N_BLOCKS, KVBM_DUPLICATION_REJECT, NULL);
    for (int step = 0; step < STEPS; step++) {
        switch (rnd(11)) {
        case 0:
        case 1:
            step_allocate(m, &model);
            break;
        case 2:
        case 3:
            step_register(m, &model);
            break;
        case 4:
        case 5:
        case 6:
            step_release(m, &model);
            break;
        case 7:
            step_match(m, &model, false);
            break;
        case 8:
            step_match(m, &model, true);
            break;
        case 9:
            step_request(m, &model);
            break;
        default:
            if (rnd(8) == 0)
                step_reset_inactive(m, &model);
            else
                step_misuse(m, &model);
        }
        check_pools(m, &model);
    }
    kvbm_manager_destroy(m);
}

static void random_sequences_follow_the_model(void **state)
{
    for (uint64_t seed = 1; seed <= 8; seed++)
        run_model(seed * 0x9e3779b97f4a7c15ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_sequences_follow_the_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
