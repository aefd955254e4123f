/*
 * The fixed-capacity map of the policies (host/policy/u64_map.c): lookups,
 * upserts, and its backward-shift erase, which must keep every other key
 * findable without tombstones, also when a cluster wraps around the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mix.h"
#include "kvbm_test.h"
#include "policy/u64_map.h"

static size_t home_of(const kvbm__u64_map_t *map, uint64_t key)
{
    return (size_t)(((unsigned __int128)kvbm__mix64(key) * map->n_slots) >> 64);
}

static size_t used_slots(const kvbm__u64_map_t *map)
{
    size_t n = 0;
    for (size_t i = 0; i < map->n_slots; i++)
        n += map->used[i];
    return n;
}

/* @p n keys (from @p from on) whose home slot is @p slot. */
static void keys_homed_at(const kvbm__u64_map_t *map, size_t slot, uint64_t from, size_t n,
                          uint64_t *keys)
{
    for (uint64_t k = from; n > 0; k++) {
        if (home_of(map, k) == slot) {
            *keys++ = k;
            n--;
        }
    }
}

static void upsert_find_and_erase(void **state)
{
    kvbm__u64_map_t map;
    assert_kvbm_ok(kvbm__u64_map_init(&map, 4));
    assert_null(kvbm__u64_map_find(&map, 7));
    uint64_t *v = kvbm__u64_map_upsert(&map, 7, 70);
    assert_int_equal(*v, 70);
    *v = 71;
    assert_int_equal(*kvbm__u64_map_upsert(&map, 7, 99), 71); /* present: initial ignored */
    assert_int_equal(map.size, 1);
    assert_int_equal(*kvbm__u64_map_find(&map, 7), 71);
    assert_true(kvbm__u64_map_erase(&map, 7));
    assert_false(kvbm__u64_map_erase(&map, 7));
    assert_null(kvbm__u64_map_find(&map, 7));
    assert_int_equal(map.size, 0);
    assert_int_equal(used_slots(&map), 0);
    kvbm__u64_map_fini(&map);
    kvbm__u64_map_fini(&map); /* finishing twice is safe */
}

/* Erasing the head of a cluster of keys with one home pulls the rest back. */
static void erase_shifts_the_cluster_back(void **state)
{
    kvbm__u64_map_t map;
    assert_kvbm_ok(kvbm__u64_map_init(&map, 8)); /* 13 slots */
    assert_int_equal(map.n_slots, 13);           /* 8 * 3 / 2 + 1: not a power of two */
    uint64_t same[4];
    keys_homed_at(&map, 3, 1, 4, same);
    for (int i = 0; i < 4; i++)
        *kvbm__u64_map_upsert(&map, same[i], (uint64_t)i) = (uint64_t)i;
    for (int i = 0; i < 4; i++)
        assert_true(map.used[3 + i] && map.keys[3 + i] == same[i]);
    assert_true(kvbm__u64_map_erase(&map, same[0]));
    /* No tombstone: the cluster moved back one slot and the last slot is free. */
    for (int i = 1; i < 4; i++) {
        assert_true(map.used[3 + i - 1] && map.keys[3 + i - 1] == same[i]);
        assert_int_equal(*kvbm__u64_map_find(&map, same[i]), (uint64_t)i);
    }
    assert_false(map.used[6]);
    assert_int_equal(used_slots(&map), map.size);
    kvbm__u64_map_fini(&map);
}

/* An entry sitting at its own home is not moved into an earlier hole. */
static void erase_leaves_entries_at_home(void **state)
{
    kvbm__u64_map_t map;
    assert_kvbm_ok(kvbm__u64_map_init(&map, 8));
    uint64_t a[2], b[1];
    keys_homed_at(&map, 5, 1, 2, a); /* slots 5, 6 */
    keys_homed_at(&map, 7, 1, 1, b); /* slot 7, its home */
    kvbm__u64_map_upsert(&map, a[0], 1);
    kvbm__u64_map_upsert(&map, a[1], 2);
    kvbm__u64_map_upsert(&map, b[0], 3);
    assert_true(kvbm__u64_map_erase(&map, a[0]));
    assert_true(map.keys[5] == a[1] && map.used[5]);
    assert_true(map.keys[7] == b[0] && map.used[7]); /* stayed at home */
    assert_false(map.used[6]);
    assert_int_equal(*kvbm__u64_map_find(&map, b[0]), 3);
    kvbm__u64_map_fini(&map);
}

/* A cluster that wraps from the last slot to the first. */
static void erase_across_the_wrap(void **state)
{
    kvbm__u64_map_t map;
    assert_kvbm_ok(kvbm__u64_map_init(&map, 8));
    size_t last = map.n_slots - 1;
    uint64_t tail[3], zero[1];
    keys_homed_at(&map, last, 1, 3, tail); /* slots last, 0, 1 */
    keys_homed_at(&map, 0, 1, 1, zero);    /* home 0, pushed to slot 2 */
    for (int i = 0; i < 3; i++)
        kvbm__u64_map_upsert(&map, tail[i], 10 + (uint64_t)i);
    kvbm__u64_map_upsert(&map, zero[0], 20);
    assert_true(map.used[2] && map.keys[2] == zero[0]);
    assert_true(kvbm__u64_map_erase(&map, tail[0]));
    assert_true(map.keys[last] == tail[1] && map.keys[0] == tail[2] && map.keys[1] == zero[0]);
    assert_false(map.used[2]);
    for (int i = 1; i < 3; i++)
        assert_int_equal(*kvbm__u64_map_find(&map, tail[i]), 10 + (uint64_t)i);
    assert_int_equal(*kvbm__u64_map_find(&map, zero[0]), 20);
    assert_true(kvbm__u64_map_erase(&map, tail[2])); /* the hole at slot 0 */
    assert_true(map.keys[0] == zero[0] && !map.used[1]);
    assert_int_equal(used_slots(&map), map.size);
    kvbm__u64_map_fini(&map);
}

/* A long run at full load against a plain array: every answer right, and no
 * tombstones build up (used slots always equal the live entries). */
static void long_churn_matches_a_model(void **state)
{
    enum { MAX = 64, KEYS = 200, OPS = 200000 };
    kvbm__u64_map_t map;
    assert_kvbm_ok(kvbm__u64_map_init(&map, MAX));
    uint64_t model[KEYS];
    bool present[KEYS] = {false};
    size_t live = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int op = 0; op < OPS; op++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t k = (size_t)(rng % KEYS);
        uint64_t key = (uint64_t)k * 64; /* poorly mixed keys on purpose */
        if (present[k] && (rng >> 32) % 2 == 0) {
            assert_true(kvbm__u64_map_erase(&map, key));
            present[k] = false;
            live--;
        } else if (!present[k] && live < MAX) {
            model[k] = rng;
            *kvbm__u64_map_upsert(&map, key, 0) = rng;
            present[k] = true;
            live++;
        }
        if (op % 1000 == 0) {
            for (size_t j = 0; j < KEYS; j++) {
                uint64_t *v = kvbm__u64_map_find(&map, (uint64_t)j * 64);
                if (present[j]) {
                    assert_non_null(v);
                    assert_int_equal(*v, model[j]);
                } else {
                    assert_null(v);
                }
            }
            assert_int_equal(map.size, live);
            assert_int_equal(used_slots(&map), live);
        }
    }
    kvbm__u64_map_fini(&map);
}

static void impossible_size_is_refused_zeroed(void **state)
{
    kvbm__u64_map_t map;
    memset(&map, 0xab, sizeof(map));
    assert_kvbm_status(kvbm__u64_map_init(&map, SIZE_MAX / 4), KVBM_ERR_OVERFLOW);
    assert_null(map.keys);
    assert_int_equal(map.size, 0);
    kvbm__u64_map_fini(&map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(upsert_find_and_erase),
        cmocka_unit_test(erase_shifts_the_cluster_back),
        cmocka_unit_test(erase_leaves_entries_at_home),
        cmocka_unit_test(erase_across_the_wrap),
        cmocka_unit_test(long_churn_matches_a_model),
        cmocka_unit_test(impossible_size_is_refused_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
