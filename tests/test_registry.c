/*
 * The manager's hash registry (host/manager/registry.h): an open-addressing
 * table with the key inline, two slots per block, backward-shift deletion.
 * The home slot is passed in, so the tests place keys where they like: runs
 * that wrap around the end of the table, long collision runs, and a random
 * model check over a table crowded into a few home slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "manager/registry.h"

/* The home slot the registry computes for a hash. */
#define HOME(hash) kvbm__registry_home(&r, (hash))

enum { CAP = 64 };

static kvbm__registry_t registry_new(uint32_t capacity)
{
    kvbm__registry_t r;
    assert_kvbm_ok(kvbm__registry_init(&r, capacity));
    assert_int_equal(r.n_slots, KVBM__REGISTRY_SLOTS_PER_BLOCK * capacity);
    assert_int_equal(r.count, 0);
    return r;
}

static void remove_hash(kvbm__registry_t *r, uint64_t hash, uint32_t spread)
{
    kvbm__registry_slot_t *slot = kvbm__registry_probe(r, hash, spread);
    assert_int_not_equal(kvbm__registry_slot_first(slot), KVBM_BLOCK_NONE);
    kvbm__registry_remove(r, slot);
}

static void insert_find_and_remove(void **state)
{
    kvbm__registry_t r = registry_new(CAP);
    uint32_t s = HOME(42);
    assert_int_equal(kvbm__registry_find(&r, 42, s), KVBM_BLOCK_NONE);
    assert_int_equal(kvbm__registry_insert(&r, 42, s, 5), KVBM_BLOCK_NONE);
    assert_int_equal(kvbm__registry_find(&r, 42, s), 5);
    assert_int_equal(r.count, 1);
    remove_hash(&r, 42, s);
    assert_int_equal(kvbm__registry_find(&r, 42, s), KVBM_BLOCK_NONE);
    assert_int_equal(r.count, 0);
    kvbm__registry_fini(&r);
    kvbm__registry_fini(&r); /* zeroed by the first: harmless */
}

/* A hash already present is reported, not added again; block 0 is a block
 * like any other (the slot stores it plus one). */
static void present_hash_names_the_existing_block(void **state)
{
    kvbm__registry_t r = registry_new(CAP);
    uint32_t s = HOME(77);
    assert_int_equal(kvbm__registry_insert(&r, 77, s, 0), KVBM_BLOCK_NONE);
    assert_int_equal(kvbm__registry_insert(&r, 77, s, 2), 0);
    assert_int_equal(kvbm__registry_find(&r, 77, s), 0);
    assert_int_equal(r.count, 1);
    kvbm__registry_fini(&r);
}

static void set_first_promotes_a_duplicate(void **state)
{
    kvbm__registry_t r = registry_new(CAP);
    uint32_t s = HOME(900);
    kvbm__registry_insert(&r, 900, s, 3);
    kvbm__registry_slot_set_first(kvbm__registry_probe(&r, 900, s), 4);
    assert_int_equal(kvbm__registry_find(&r, 900, s), 4);
    kvbm__registry_fini(&r);
}

/* Keys sharing one home slot near the end run over the end into slot 0 and
 * on; removing any of them keeps every other findable, and the run closes
 * up (a removed run's slots are empty again, so misses stay short). */
static void collision_runs_wrap_around_and_close_up(void **state)
{
    for (uint32_t victim = 0; victim < 6; victim++) {
        kvbm__registry_t r = registry_new(4);
        uint32_t s = r.n_slots - 2;
        for (uint32_t k = 0; k < 4; k++)
            assert_int_equal(kvbm__registry_insert(&r, 100 + k, s, k), KVBM_BLOCK_NONE);
        /* The last two slots, 0 and 1 hold the run; a key homed at 0 lands
         * after it. */
        uint32_t s0 = 0;
        if (victim < 4) {
            remove_hash(&r, 100 + victim, s);
        } else {
            kvbm__registry_insert(&r, 200, s0, 9);
            assert_int_equal(kvbm__registry_probe(&r, 200, s0) - r.slots, 2);
            remove_hash(&r, 100 + (victim - 4) * 3, s); /* the head or the tail */
        }
        for (uint32_t k = 0; k < 4; k++) {
            bool removed = victim < 4 ? k == victim : k == (victim - 4) * 3;
            assert_int_equal(kvbm__registry_find(&r, 100 + k, s), removed ? KVBM_BLOCK_NONE : k);
        }
        if (victim >= 4) {
            assert_int_equal(kvbm__registry_find(&r, 200, s0), 9);
            /* The key homed at 0 moved back into the run's freed slot. */
            assert_int_equal(kvbm__registry_probe(&r, 200, s0) - r.slots, 1);
        }
        kvbm__registry_fini(&r);
    }
}

/* Dense small integers (as the replay uses) fill every block's worth of
 * hashes, all found; removed and re-added over several rounds. */
static void full_capacity_of_dense_keys_and_reuse(void **state)
{
    kvbm__registry_t r = registry_new(CAP);
    for (uint64_t round = 0; round < 3; round++) {
        for (uint32_t id = 0; id < CAP; id++) {
            uint64_t hash = id + 1 + round * CAP;
            uint32_t s = HOME(hash);
            kvbm__registry_prefetch(&r, s); /* a hint, present or not */
            assert_int_equal(kvbm__registry_insert(&r, hash, s, id), KVBM_BLOCK_NONE);
        }
        assert_int_equal(r.count, CAP);
        for (uint32_t id = 0; id < CAP; id++) {
            uint64_t hash = id + 1 + round * CAP;
            assert_int_equal(kvbm__registry_find(&r, hash, HOME(hash)), id);
        }
        for (uint32_t id = 0; id < CAP; id++) {
            uint64_t hash = id + 1 + round * CAP;
            remove_hash(&r, hash, HOME(hash));
        }
        for (uint32_t id = 0; id < CAP; id++) {
            uint64_t hash = id + 1 + round * CAP;
            assert_int_equal(kvbm__registry_find(&r, hash, HOME(hash)), KVBM_BLOCK_NONE);
        }
    }
    kvbm__registry_fini(&r);
}

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random inserts and removals of keys crowded into five home slots (long
 * runs that wrap), checked after every step against a plain array. */
static void random_operations_match_a_model(void **state)
{
    enum { KEYS = 40 };
    kvbm__registry_t r = registry_new(KEYS); /* 80 slots */
    uint32_t homes[5] = {0, 1, 40, 77, 79};
    uint32_t model[KEYS]; /* key k's block, or NONE */
    for (uint32_t k = 0; k < KEYS; k++)
        model[k] = KVBM_BLOCK_NONE;
    uint64_t rng = 12345;
    for (int step = 0; step < 20000; step++) {
        uint32_t k = (uint32_t)(next_random(&rng) % KEYS);
        uint32_t s = homes[k % 5];
        if (model[k] == KVBM_BLOCK_NONE) {
            uint32_t block = (uint32_t)(next_random(&rng) % 1000);
            assert_int_equal(kvbm__registry_insert(&r, 1000 + k, s, block), KVBM_BLOCK_NONE);
            model[k] = block;
        } else {
            remove_hash(&r, 1000 + k, s);
            model[k] = KVBM_BLOCK_NONE;
        }
        uint32_t present = 0;
        for (uint32_t j = 0; j < KEYS; j++) {
            uint32_t sj = homes[j % 5];
            assert_int_equal(kvbm__registry_find(&r, 1000 + j, sj), model[j]);
            present += model[j] != KVBM_BLOCK_NONE;
        }
        assert_int_equal(r.count, present);
    }
    kvbm__registry_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(insert_find_and_remove),
        cmocka_unit_test(present_hash_names_the_existing_block),
        cmocka_unit_test(set_first_promotes_a_duplicate),
        cmocka_unit_test(collision_runs_wrap_around_and_close_up),
        cmocka_unit_test(full_capacity_of_dense_keys_and_reuse),
        cmocka_unit_test(random_operations_match_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
