/*
 * The manager's hash registry (host/manager/registry.c): one entry per
 * distinct hash, keys read from the owner's table of block hashes, entries
 * drawn from a preallocated pool and reused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "manager/registry.h"

enum { CAP = 64 };

/* The owner's block table: each block's hash at a stride, as the manager's
 * 32-byte block metadata keeps it. */
typedef struct owner_block {
    uint64_t hash;
    uint64_t other[3];
} owner_block_t;

static owner_block_t blocks[CAP];

static kvbm__registry_t *registry_new(void)
{
    kvbm__registry_t *r = NULL;
    assert_kvbm_ok(kvbm__registry_create(CAP, &blocks[0].hash, sizeof(owner_block_t), &r));
    return r;
}

/* Registers block @p id under @p hash, as the manager does: hash first. */
static uint32_t add(kvbm__registry_t *r, uint32_t id, uint64_t hash, uint32_t *existing)
{
    blocks[id].hash = hash;
    uint32_t entry = KVBM_BLOCK_NONE;
    assert_kvbm_ok(kvbm__registry_insert(r, hash, id, &entry, existing));
    return entry;
}

static void insert_find_and_remove(void **state)
{
    kvbm__registry_t *r = registry_new();
    assert_int_equal(kvbm__registry_find(r, 42), KVBM_BLOCK_NONE);
    uint32_t existing;
    uint32_t entry = add(r, 5, 42, &existing);
    assert_int_equal(existing, KVBM_BLOCK_NONE);
    assert_int_equal(kvbm__registry_find(r, 42), 5);
    assert_int_equal(kvbm__registry_first(r, entry), 5);
    kvbm__registry_remove(r, entry);
    assert_int_equal(kvbm__registry_find(r, 42), KVBM_BLOCK_NONE);
    kvbm__registry_destroy(r);
    kvbm__registry_destroy(NULL);
}

/* A hash already present is reported, not added again. */
static void present_hash_names_the_existing_block(void **state)
{
    kvbm__registry_t *r = registry_new();
    uint32_t existing;
    add(r, 1, 77, &existing);
    blocks[2].hash = 77;
    uint32_t entry = 12345;
    assert_kvbm_ok(kvbm__registry_insert(r, 77, 2, &entry, &existing));
    assert_int_equal(existing, 1);
    assert_int_equal(entry, 12345); /* untouched: nothing was added */
    assert_int_equal(kvbm__registry_find(r, 77), 1);
    kvbm__registry_destroy(r);
}

/* Promotion moves the entry to another block carrying the same hash; the key
 * is then read from that block, so the first block's slot may change. */
static void set_first_promotes_a_duplicate(void **state)
{
    kvbm__registry_t *r = registry_new();
    uint32_t existing;
    uint32_t entry = add(r, 3, 900, &existing);
    blocks[4].hash = 900;
    kvbm__registry_set_first(r, entry, 4);
    blocks[3].hash = 0xdead; /* block 3 reused for something else */
    assert_int_equal(kvbm__registry_find(r, 900), 4);
    assert_int_equal(kvbm__registry_find(r, 0xdead), KVBM_BLOCK_NONE);
    kvbm__registry_destroy(r);
}

/* The owner must store a block's hash before inserting it. */
static void hash_not_stored_first_is_refused(void **state)
{
    kvbm__registry_t *r = registry_new();
    blocks[0].hash = 1;
    uint32_t entry, existing;
    assert_kvbm_status(kvbm__registry_insert(r, 2, 0, &entry, &existing), KVBM_ERR_INTERNAL);
    assert_int_equal(kvbm__registry_find(r, 2), KVBM_BLOCK_NONE);
    kvbm__registry_destroy(r);
}

/* Dense small integers (as the replay uses) fill every entry, all found;
 * entries come back to the pool and are reused; a hash beyond capacity is
 * refused. */
static void full_capacity_of_dense_keys_and_reuse(void **state)
{
    kvbm__registry_t *r = registry_new();
    uint32_t entries[CAP], existing;
    for (int round = 0; round < 3; round++) {
        for (uint32_t id = 0; id < CAP; id++) {
            kvbm__registry_prefetch(r, id + 1); /* harmless hints, present or not */
            kvbm__registry_prefetch_chain(r, id + 1);
            entries[id] = add(r, id, id + 1 + (uint64_t)round * CAP, &existing);
            assert_int_equal(existing, KVBM_BLOCK_NONE);
        }
        uint32_t spare, more;
        assert_kvbm_status(kvbm__registry_insert(r, 1u << 30, 0, &spare, &more), KVBM_ERR_INTERNAL);
        for (uint32_t id = 0; id < CAP; id++)
            assert_int_equal(kvbm__registry_find(r, id + 1 + (uint64_t)round * CAP), id);
        for (uint32_t id = 0; id < CAP; id++) {
            kvbm__registry_prefetch_entry(r, entries[id]);
            kvbm__registry_prefetch_neighbours(r, entries[id]);
            kvbm__registry_remove(r, entries[id]);
        }
        for (uint32_t id = 0; id < CAP; id++)
            assert_int_equal(kvbm__registry_find(r, id + 1 + (uint64_t)round * CAP),
                             KVBM_BLOCK_NONE);
    }
    kvbm__registry_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(insert_find_and_remove),
        cmocka_unit_test(present_hash_names_the_existing_block),
        cmocka_unit_test(set_first_promotes_a_duplicate),
        cmocka_unit_test(hash_not_stored_first_is_refused),
        cmocka_unit_test(full_capacity_of_dense_keys_and_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
