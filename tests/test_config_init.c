/*
 * Config defaults (kvbm/config_init.h): each struct's initializer macro and
 * its init function come from one _DEFAULTS list and must agree; the
 * function sets exactly the listed fields and zeroes the rest, over
 * whatever the struct held before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kvbm_test.h"

/* For each listed field: the macro, the function and the list agree. */
#define SAME_AS_LISTED(P, field, value)                                                            \
    assert_true(from_macro.P field == (value));                                                    \
    assert_true(from_function.P field == (value));
/* Builds the expected bytes: zero, then the listed fields. */
#define SET_LISTED(P, field, value) expected.P field = (value);

#define CHECK_CONFIG(type, init_macro, init_fn, defaults_list)                                     \
    do {                                                                                           \
        type from_macro = init_macro;                                                              \
        type from_function;                                                                        \
        memset(&from_function, 0xa5, sizeof(from_function));                                       \
        init_fn(&from_function);                                                                   \
        defaults_list(SAME_AS_LISTED, ) type expected;                                             \
        memset(&expected, 0, sizeof(expected));                                                    \
        defaults_list(SET_LISTED, )                                                                \
            assert_memory_equal(&from_function, &expected, sizeof(expected));                      \
        assert_int_equal(from_function.struct_size, sizeof(type));                                 \
    } while (0)

static void every_config_macro_and_init_function_agree(void **state)
{
    CHECK_CONFIG(kvbm_layout_config_t, KVBM_LAYOUT_CONFIG_INIT, kvbm_layout_config_init,
                 KVBM_LAYOUT_CONFIG_DEFAULTS);
    CHECK_CONFIG(kvbm_policy_config_t, KVBM_POLICY_CONFIG_INIT, kvbm_policy_config_init,
                 KVBM_POLICY_CONFIG_DEFAULTS);
    CHECK_CONFIG(kvbm_backend_config_t, KVBM_BACKEND_CONFIG_INIT, kvbm_backend_config_init,
                 KVBM_BACKEND_CONFIG_DEFAULTS);
    CHECK_CONFIG(kvbm_manager_config_t, KVBM_MANAGER_CONFIG_INIT, kvbm_manager_config_init,
                 KVBM_MANAGER_CONFIG_DEFAULTS);
    CHECK_CONFIG(kvbm_cache_config_t, KVBM_CACHE_CONFIG_INIT, kvbm_cache_config_init,
                 KVBM_CACHE_CONFIG_DEFAULTS);
    CHECK_CONFIG(kvbm_xfer_config_t, KVBM_XFER_CONFIG_INIT, kvbm_xfer_config_init,
                 KVBM_XFER_CONFIG_DEFAULTS);
    CHECK_CONFIG(kvbm_disk_config_t, KVBM_DISK_CONFIG_INIT, kvbm_disk_config_init,
                 KVBM_DISK_CONFIG_DEFAULTS);
}

/* The embedded configs get their own defaults, not zeros. */
static void embedded_configs_get_their_defaults(void **state)
{
    kvbm_cache_config_t cache;
    kvbm_cache_config_init(&cache);
    assert_int_equal(cache.layout.struct_size, sizeof(kvbm_layout_config_t));
    assert_int_equal(cache.layout.alignment, 256);
    assert_int_equal(cache.policy_config.multi_lru_thresholds[2], 15);
    kvbm_manager_config_t manager;
    kvbm_manager_config_init(&manager);
    assert_int_equal(manager.policy_config.version, KVBM_POLICY_CONFIG_VERSION);
    kvbm_xfer_config_t xfer;
    kvbm_xfer_config_init(&xfer);
    assert_int_equal(xfer.memory.kind, KVBM_XFER_MEM_HOST);
    assert_int_equal(xfer.cuda_device, -1);
}

/* What the init functions give is what the creates accept. */
static void creates_accept_initialised_configs(void **state)
{
    kvbm_manager_config_t manager_config;
    kvbm_manager_config_init(&manager_config);
    manager_config.num_blocks = 8;
    kvbm_manager_t *manager = NULL;
    assert_kvbm_ok(kvbm_manager_create(&manager_config, &manager));
    kvbm_manager_destroy(manager);

    kvbm_backend_config_t backend_config;
    kvbm_backend_config_init(&backend_config);
    backend_config.kind = KVBM_BACKEND_CPU;
    kvbm_backend_t *backend = NULL;
    assert_kvbm_ok(kvbm_backend_create(&backend_config, &backend));

    kvbm_cache_config_t cache_config;
    kvbm_cache_config_init(&cache_config);
    cache_config.backend = backend;
    cache_config.layout.num_blocks = 4;
    cache_config.layout.num_layers = 1;
    cache_config.layout.tokens_per_block = 4;
    cache_config.layout.inner_dim = 8;
    cache_config.g2_blocks = 4;
    kvbm_cache_t *cache = NULL;
    assert_kvbm_ok(kvbm_cache_create(&cache_config, &cache));
    kvbm_cache_destroy(cache);
    kvbm_backend_destroy(backend);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_config_macro_and_init_function_agree),
        cmocka_unit_test(embedded_configs_get_their_defaults),
        cmocka_unit_test(creates_accept_initialised_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
