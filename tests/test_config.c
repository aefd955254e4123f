/*
 * The versioned config importer (core/config.h) and the creates that use it:
 * an older, smaller struct is accepted with the rest defaulted; only sizes and
 * versions the library cannot know are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "kvbm_test.h"

/* A config struct as it was at version 1, and as it is at version 2. */
typedef struct demo_v1 {
    uint32_t struct_size;
    uint32_t version;
    uint64_t a;
} demo_v1_t;

typedef struct demo_v2 {
    uint32_t struct_size;
    uint32_t version;
    uint64_t a;
    uint64_t b; /* added in version 2, after v1's sizeof */
} demo_v2_t;

static const size_t demo_sizes[] = {sizeof(demo_v1_t), sizeof(demo_v2_t)};
static const demo_v2_t demo_defaults = {sizeof(demo_v2_t), 2, 11, 22};

static void older_struct_copies_its_fields_and_defaults_the_rest(void **state)
{
    demo_v1_t old = {sizeof(demo_v1_t), 1, 5};
    demo_v2_t out;
    memset(&out, 0xee, sizeof(out));
    assert_kvbm_ok(KVBM__CONFIG_IMPORT(&old, demo_sizes, &demo_defaults, &out));
    assert_int_equal(out.struct_size, sizeof(demo_v2_t));
    assert_int_equal(out.version, 2);
    assert_int_equal(out.a, 5);
    assert_int_equal(out.b, 22);
}

static void current_struct_is_taken_whole(void **state)
{
    demo_v2_t cur = {sizeof(demo_v2_t), 2, 7, 8};
    demo_v2_t out;
    assert_kvbm_ok(KVBM__CONFIG_IMPORT(&cur, demo_sizes, &demo_defaults, &out));
    assert_int_equal(out.a, 7);
    assert_int_equal(out.b, 8);
}

static void unknown_versions_and_sizes_are_refused_untouched(void **state)
{
    const demo_v2_t bad[] = {
        {sizeof(demo_v2_t), 3, 1, 1},     /* a newer version than the library's */
        {sizeof(demo_v2_t), 0, 1, 1},     /* no version */
        {sizeof(demo_v1_t), 2, 1, 1},     /* version 2 with version 1's size */
        {sizeof(demo_v2_t), 1, 1, 1},     /* version 1 with version 2's size */
        {sizeof(demo_v2_t) + 8, 2, 1, 1}, /* larger than any known size */
        {3, 1, 1, 1},                     /* smaller than the first version */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        demo_v2_t out = {0, 0, 99, 99};
        assert_kvbm_status(KVBM__CONFIG_IMPORT(&bad[i], demo_sizes, &demo_defaults, &out),
                           KVBM_ERR_VERSION);
        assert_int_equal(out.a, 99);
        assert_int_equal(out.b, 99);
    }
}

/* Every public create goes through the importer: sizes it cannot know fail
 * with KVBM_ERR_VERSION, the current size works. */
static void creates_refuse_unknown_sizes(void **state)
{
    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = 4;
    kvbm_manager_t *manager = NULL;
    mc.struct_size += 8;
    assert_kvbm_status(kvbm_manager_create(&mc, &manager), KVBM_ERR_VERSION);
    mc.struct_size -= 16;
    assert_kvbm_status(kvbm_manager_create(&mc, &manager), KVBM_ERR_VERSION);
    mc.struct_size = sizeof(mc);
    mc.policy_config.version = 2;
    assert_kvbm_status(kvbm_manager_create(&mc, &manager), KVBM_ERR_VERSION);
    mc.policy_config.struct_size = 0; /* the policy's defaults */
    assert_kvbm_ok(kvbm_manager_create(&mc, &manager));
    kvbm_manager_destroy(manager);

    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    kvbm_backend_t *backend = NULL;
    bc.struct_size += 8;
    assert_kvbm_status(kvbm_backend_create(&bc, &backend), KVBM_ERR_VERSION);
    assert_null(backend);

    kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
    lc.num_blocks = lc.num_layers = lc.outer_dim = lc.tokens_per_block = lc.inner_dim = 1;
    lc.elem_size = 2;
    kvbm_layout_t *layout = NULL;
    lc.version = 2;
    assert_kvbm_status(kvbm_layout_create(&lc, &layout), KVBM_ERR_VERSION);
    lc.version = KVBM_LAYOUT_CONFIG_VERSION;
    assert_kvbm_ok(kvbm_layout_create(&lc, &layout));
    kvbm_layout_destroy(layout);

    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    kvbm_cache_t *cache = NULL;
    cc.struct_size -= 8;
    assert_kvbm_status(kvbm_cache_create(&cc, &cache), KVBM_ERR_VERSION);

    kvbm_xfer_config_t xc = KVBM_XFER_CONFIG_INIT;
    kvbm_xfer_t *xfer = NULL;
    xc.version = 0;
    assert_kvbm_status(kvbm_xfer_create(&xc, &xfer), KVBM_ERR_VERSION);
}

/* The cache config gained the G2 admission fields in version 3: a caller
 * built against version 2 (its struct ends at g3) or 1 (at g1_memory_bytes)
 * still creates a cache, with admission off. */
static void cache_config_before_admission_is_accepted_with_it_off(void **state)
{
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    kvbm_backend_t *backend = NULL;
    assert_kvbm_ok(kvbm_backend_create(&bc, &backend));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = backend;
    cc.layout.num_blocks = 4;
    cc.layout.num_layers = 1;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 8;
    cc.g2_blocks = 4;
    cc.offload_mode = KVBM_OFFLOAD_WRITE_THROUGH; /* refused with admission on */
    cc.offload_admission = true;                  /* beyond a version-2 struct */
    kvbm_cache_t *cache = NULL;
    assert_kvbm_status(kvbm_cache_create(&cc, &cache), KVBM_ERR_INVALID_ARG);
    cc.version = 2; /* g3, not yet the admission fields */
    cc.struct_size = (uint32_t)offsetof(kvbm_cache_config_t, offload_admission);
    assert_kvbm_ok(kvbm_cache_create(&cc, &cache)); /* the tail is not read */
    kvbm_cache_destroy(cache);
    cc.version = 1; /* and before g3 */
    cc.struct_size = (uint32_t)offsetof(kvbm_cache_config_t, g3);
    assert_kvbm_ok(kvbm_cache_create(&cc, &cache));
    kvbm_cache_destroy(cache);
    kvbm_backend_destroy(backend);
}

/* Version 4 appended the event batcher and retired the per-tier callback
 * of versions 1-3 in place: a version-3 struct creates a cache without
 * events, and one whose retired callback slot is set is refused (its
 * function would otherwise be called with records it does not expect). */
static void cache_config_version_3_works_and_its_retired_callback_is_refused(void **state)
{
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = KVBM_BACKEND_CPU;
    kvbm_backend_t *backend = NULL;
    assert_kvbm_ok(kvbm_backend_create(&bc, &backend));
    kvbm_cache_config_t cc = KVBM_CACHE_CONFIG_INIT;
    cc.backend = backend;
    cc.layout.num_blocks = 4;
    cc.layout.num_layers = 1;
    cc.layout.tokens_per_block = 4;
    cc.layout.inner_dim = 8;
    cc.g2_blocks = 4;
    cc.version = 3;
    cc.struct_size = (uint32_t)offsetof(kvbm_cache_config_t, events_batcher);
    cc.events_batcher = (kvbm_event_batcher_t *)0x1; /* beyond a version-3 struct: not read */
    kvbm_cache_t *cache = NULL;
    assert_kvbm_ok(kvbm_cache_create(&cc, &cache));
    assert_kvbm_ok(kvbm_cache_announce(cache)); /* no batcher: nothing sent */
    kvbm_cache_destroy(cache);
    cache = NULL;
    cc.retired_on_events = (void *)0x1;
    assert_kvbm_status(kvbm_cache_create(&cc, &cache), KVBM_ERR_UNSUPPORTED);
    assert_null(cache);
    kvbm_backend_destroy(backend);
}

/* An ops table is checked as it is installed: a policy table of another
 * version is refused. */
static void policy_table_of_another_version_is_refused(void **state)
{
    kvbm_policy_ops_t newer = *kvbm_policy_lru();
    newer.version = KVBM_POLICY_OPS_VERSION + 1;
    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = 4;
    mc.policy = &newer;
    kvbm_manager_t *manager = NULL;
    assert_kvbm_status(kvbm_manager_create(&mc, &manager), KVBM_ERR_VERSION);
    assert_null(manager);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(older_struct_copies_its_fields_and_defaults_the_rest),
        cmocka_unit_test(cache_config_before_admission_is_accepted_with_it_off),
        cmocka_unit_test(cache_config_version_3_works_and_its_retired_callback_is_refused),
        cmocka_unit_test(current_struct_is_taken_whole),
        cmocka_unit_test(unknown_versions_and_sizes_are_refused_untouched),
        cmocka_unit_test(creates_refuse_unknown_sizes),
        cmocka_unit_test(policy_table_of_another_version_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
