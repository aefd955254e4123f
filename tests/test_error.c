/* kvbm_last_error: the per-thread failure reason (core/error.h) and who records it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/check.h"
#include "core/error.h"
#include "kvbm_test.h"

static void quiet(void *user, kvbm_log_level_t level, const char *message)
{
    (void)user;
    (void)level;
    (void)message;
}

static void fail_returns_the_status_and_records_the_reason(void **state)
{
    assert_int_equal(kvbm__fail(KVBM_ERR_PARSE, "line %d: %s", 3, "no colon"), KVBM_ERR_PARSE);
    assert_string_equal(kvbm_last_error(), "line 3: no colon");
    /* A later failure replaces it. */
    (void)kvbm__fail(KVBM_ERR_IO, "second");
    assert_string_equal(kvbm_last_error(), "second");
}

static void long_reasons_are_cut_not_overrun(void **state)
{
    char big[2 * KVBM__ERROR_MAX];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    (void)kvbm__fail(KVBM_ERR_INVALID_ARG, "%s", big);
    assert_int_equal(strlen(kvbm_last_error()), KVBM__ERROR_MAX - 1);
}

typedef struct thread_view {
    char before[64]; /* what the new thread saw first */
    char after[64];  /* what it saw after failing itself */
} thread_view_t;

static void *fail_in_thread(void *arg)
{
    thread_view_t *view = arg;
    snprintf(view->before, sizeof(view->before), "%s", kvbm_last_error());
    (void)kvbm__fail(KVBM_ERR_IO, "the other thread's reason");
    snprintf(view->after, sizeof(view->after), "%s", kvbm_last_error());
    return NULL;
}

static void each_thread_has_its_own_reason(void **state)
{
    (void)kvbm__fail(KVBM_ERR_INVALID_ARG, "this thread's reason");
    thread_view_t view = {{0}, {0}};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, fail_in_thread, &view), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_string_equal(view.before, "");
    assert_string_equal(view.after, "the other thread's reason");
    assert_string_equal(kvbm_last_error(), "this thread's reason");
}

static kvbm_status_t pthread_fail_with(int rc)
{
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(rc, status);
    return status;
}

static void checking_macros_record_the_foreign_reason(void **state)
{
    kvbm_log_set(quiet, NULL);
    (void)kvbm__fail(KVBM_ERR_INVALID_ARG, "stale");
    assert_int_equal(pthread_fail_with(EAGAIN), KVBM_ERR_NO_MEMORY);
    assert_non_null(strstr(kvbm_last_error(), "rc failed: "));
    assert_non_null(strstr(kvbm_last_error(), strerror(EAGAIN)));
    /* Every failure is recorded, not only the first of a call site (which alone is logged). */
    (void)kvbm__fail(KVBM_ERR_INVALID_ARG, "stale");
    assert_int_equal(pthread_fail_with(EAGAIN), KVBM_ERR_NO_MEMORY);
    assert_non_null(strstr(kvbm_last_error(), "rc failed: "));

    errno = ECONNRESET;
    assert_int_equal(KVBM_SYS_ERROR("send to peer 2"), KVBM_ERR_PEER);
    kvbm_log_set(NULL, NULL);
    char expected[128];
    snprintf(expected, sizeof(expected), "send to peer 2: %s", strerror(ECONNRESET));
    assert_string_equal(kvbm_last_error(), expected);
}

static void a_public_call_with_a_bad_argument_says_which(void **state)
{
    uint32_t tokens[4] = {1, 2, 3, 4};
    uint64_t hashes[4];
    size_t n;
    (void)kvbm__fail(KVBM_ERR_IO, "stale");
    assert_kvbm_status(kvbm_hash_tokens(tokens, 4, 0, 0, hashes, &n), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "kvbm_hash_tokens: block_tokens is 0");
    assert_kvbm_status(kvbm_hash_tokens(tokens, 4, 2, 0, NULL, &n), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "kvbm_hash_tokens: hashes is NULL");
    /* Success leaves the reason alone, as errno. */
    assert_kvbm_ok(kvbm_hash_tokens(tokens, 4, 2, 0, hashes, &n));
    assert_string_equal(kvbm_last_error(), "kvbm_hash_tokens: hashes is NULL");
}

/* Each module records what was wrong with the argument it refused. */
static void every_module_says_which_argument_is_bad(void **state)
{
    kvbm_manager_config_t manager_config = KVBM_MANAGER_CONFIG_INIT;
    kvbm_manager_t *manager = NULL;
    assert_kvbm_status(kvbm_manager_create(&manager_config, &manager), KVBM_ERR_INVALID_ARG);
    assert_non_null(strstr(kvbm_last_error(), "num_blocks 0 is not in 1.."));

    manager_config.struct_size = 3;
    assert_kvbm_status(kvbm_manager_create(&manager_config, &manager), KVBM_ERR_VERSION);
    assert_non_null(strstr(kvbm_last_error(), "version 2, 3 bytes"));

    kvbm_layout_config_t layout_config = KVBM_LAYOUT_CONFIG_INIT;
    layout_config.num_blocks = layout_config.num_layers = layout_config.tokens_per_block = 1;
    layout_config.inner_dim = 8;
    layout_config.alignment = 48;
    kvbm_layout_t *layout = NULL;
    assert_kvbm_status(kvbm_layout_create(&layout_config, &layout), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "layout config: alignment 48 is not a power of two");

    kvbm_backend_config_t backend_config = KVBM_BACKEND_CONFIG_INIT;
    backend_config.kind = KVBM_BACKEND_CPU;
    kvbm_backend_t *backend = NULL;
    assert_kvbm_ok(kvbm_backend_create(&backend_config, &backend));
    kvbm_stream_t *stream = NULL;
    assert_kvbm_ok(kvbm_stream_create(backend, &stream));
    char byte = 0;
    kvbm_copy_t copy = {.src = &byte, .dst = NULL, .bytes = 1};
    assert_kvbm_status(kvbm_backend_copy(backend, stream, &copy, 1, KVBM_COPY_H2H, NULL),
                       KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "kvbm_backend_copy: copy 0 has a NULL dst");
    assert_kvbm_status(kvbm_fence_wait(NULL), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "kvbm_fence_wait: bad argument: needs fence != NULL");
    kvbm_stream_destroy(stream);

    kvbm_cache_config_t cache_config = KVBM_CACHE_CONFIG_INIT;
    kvbm_cache_t *cache = NULL;
    assert_kvbm_status(kvbm_cache_create(&cache_config, &cache), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "cache config: backend is NULL");
    kvbm_backend_destroy(backend);

    kvbm_xfer_rendezvous_t *rendezvous = NULL;
    assert_kvbm_status(kvbm_xfer_rendezvous_create("not-an-address", 0, &rendezvous),
                       KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(),
                        "'not-an-address' is not a numeric IPv4 or IPv6 address");
}

/* Beyond bad arguments, the manager says why it refused. */
static void manager_refusals_say_why(void **state)
{
    kvbm_manager_t *manager = test_manager_new(2, KVBM_DUPLICATION_REJECT, NULL);
    uint32_t ids[3];
    assert_kvbm_status(kvbm_manager_allocate(manager, 3, ids, NULL, NULL), KVBM_ERR_NO_BLOCKS);
    assert_string_equal(kvbm_last_error(),
                        "manager kvbm: 3 blocks asked for, 2 free and 0 evictable");
    assert_kvbm_ok(kvbm_manager_allocate(manager, 1, ids, NULL, NULL));
    assert_kvbm_ok(kvbm_manager_release(manager, ids, 1));
    assert_kvbm_status(kvbm_manager_release(manager, ids, 1), KVBM_ERR_NOT_HELD);
    char expected[64];
    snprintf(expected, sizeof(expected), "block %u: no reference left to release", ids[0]);
    assert_string_equal(kvbm_last_error(), expected);
    kvbm_manager_destroy(manager);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fail_returns_the_status_and_records_the_reason),
        cmocka_unit_test(long_reasons_are_cut_not_overrun),
        cmocka_unit_test(each_thread_has_its_own_reason),
        cmocka_unit_test(checking_macros_record_the_foreign_reason),
        cmocka_unit_test(a_public_call_with_a_bad_argument_says_which),
        cmocka_unit_test(every_module_says_which_argument_is_bad),
        cmocka_unit_test(manager_refusals_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
