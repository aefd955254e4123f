/*
 * The ghost of the policies (host/policy/ghost.c): a bounded memory of the
 * last hashes added, each with a value, forgotten oldest first or when taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "policy/ghost.h"

static void take_gives_the_value_once(void **state)
{
    kvbm__ghost_t g;
    assert_kvbm_ok(kvbm__ghost_init(&g, 4));
    kvbm__ghost_add(&g, 100, 7);
    uint8_t v = 0;
    assert_true(kvbm__ghost_take(&g, 100, &v));
    assert_int_equal(v, 7);
    assert_false(kvbm__ghost_take(&g, 100, &v));
    assert_false(kvbm__ghost_take(&g, 101, NULL));
    kvbm__ghost_fini(&g);
    kvbm__ghost_fini(&g); /* finishing twice is safe */
}

static void oldest_is_forgotten_when_full(void **state)
{
    kvbm__ghost_t g;
    assert_kvbm_ok(kvbm__ghost_init(&g, 3));
    for (uint64_t h = 1; h <= 4; h++)
        kvbm__ghost_add(&g, h, (uint8_t)h);
    assert_false(kvbm__ghost_take(&g, 1, NULL));
    for (uint64_t h = 2; h <= 4; h++) {
        uint8_t v = 0;
        assert_true(kvbm__ghost_take(&g, h, &v));
        assert_int_equal(v, h);
    }
    assert_int_equal(g.map.size, 0);
    kvbm__ghost_fini(&g);
}

/* Re-adding a hash renews it: the overwrite of its old ring slot does not
 * forget it, and the newer value wins. */
static void re_adding_renews_and_replaces_the_value(void **state)
{
    kvbm__ghost_t g;
    assert_kvbm_ok(kvbm__ghost_init(&g, 3));
    kvbm__ghost_add(&g, 1, 1);
    kvbm__ghost_add(&g, 2, 2);
    kvbm__ghost_add(&g, 1, 9); /* renewed: now the newest */
    kvbm__ghost_add(&g, 3, 3); /* overwrites the ring slot of the first 1 */
    uint8_t v = 0;
    assert_true(kvbm__ghost_take(&g, 1, &v));
    assert_int_equal(v, 9);
    assert_true(kvbm__ghost_take(&g, 3, NULL));
    kvbm__ghost_fini(&g);
}

/* Overwriting the ring slot of a hash already taken forgets nothing else. */
static void overwriting_a_taken_slot_keeps_the_others(void **state)
{
    kvbm__ghost_t g;
    assert_kvbm_ok(kvbm__ghost_init(&g, 2));
    kvbm__ghost_add(&g, 10, 1);
    assert_true(kvbm__ghost_take(&g, 10, NULL));
    kvbm__ghost_add(&g, 20, 2);
    kvbm__ghost_add(&g, 30, 3); /* overwrites 10's slot */
    assert_true(kvbm__ghost_take(&g, 20, NULL));
    assert_true(kvbm__ghost_take(&g, 30, NULL));
    kvbm__ghost_fini(&g);
}

static void capacity_zero_remembers_one(void **state)
{
    kvbm__ghost_t g;
    assert_kvbm_ok(kvbm__ghost_init(&g, 0));
    kvbm__ghost_add(&g, 1, 1);
    kvbm__ghost_add(&g, 2, 2);
    assert_false(kvbm__ghost_take(&g, 1, NULL));
    assert_true(kvbm__ghost_take(&g, 2, NULL));
    kvbm__ghost_fini(&g);
}

/* Random adds and takes against a model: a hash is remembered iff it was
 * added within the last `capacity` adds and not taken since. */
static void random_run_matches_a_model(void **state)
{
    enum { CAP = 16, HASHES = 40, OPS = 50000 };
    kvbm__ghost_t g;
    assert_kvbm_ok(kvbm__ghost_init(&g, CAP));
    uint64_t last_add[HASHES]; /* add number of the latest add, 0 = never or taken */
    uint8_t value[HASHES];
    memset(last_add, 0, sizeof(last_add));
    uint64_t adds = 0, rng = 12345;
    for (int op = 0; op < OPS; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t h = (size_t)((rng >> 33) % HASHES);
        if ((rng >> 20) % 3 != 0) {
            value[h] = (uint8_t)(rng >> 40);
            kvbm__ghost_add(&g, h + 1, value[h]);
            last_add[h] = ++adds;
        } else {
            bool expect = last_add[h] != 0 && adds - last_add[h] < CAP;
            uint8_t v = 0;
            assert_int_equal(kvbm__ghost_take(&g, h + 1, &v), expect);
            if (expect)
                assert_int_equal(v, value[h]);
            last_add[h] = 0;
        }
    }
    kvbm__ghost_fini(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(take_gives_the_value_once),
        cmocka_unit_test(oldest_is_forgotten_when_full),
        cmocka_unit_test(re_adding_renews_and_replaces_the_value),
        cmocka_unit_test(overwriting_a_taken_slot_keeps_the_others),
        cmocka_unit_test(capacity_zero_remembers_one),
        cmocka_unit_test(random_run_matches_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
