/* kvbm_last_error: the per-thread failure reason (core/error.h) and who records it. */
#include <errno.h>
#include <pthread.h>
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
    kvbm__fail(KVBM_ERR_IO, "second");
    assert_string_equal(kvbm_last_error(), "second");
}

static void long_reasons_are_cut_not_overrun(void **state)
{
    char big[2 * KVBM__ERROR_MAX];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kvbm__fail(KVBM_ERR_INVALID_ARG, "%s", big);
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
    kvbm__fail(KVBM_ERR_IO, "the other thread's reason");
    snprintf(view->after, sizeof(view->after), "%s", kvbm_last_error());
    return NULL;
}

static void each_thread_has_its_own_reason(void **state)
{
    kvbm__fail(KVBM_ERR_INVALID_ARG, "this thread's reason");
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
    kvbm__fail(KVBM_ERR_INVALID_ARG, "stale");
    assert_int_equal(pthread_fail_with(EAGAIN), KVBM_ERR_NO_MEMORY);
    assert_non_null(strstr(kvbm_last_error(), "rc failed: "));
    assert_non_null(strstr(kvbm_last_error(), strerror(EAGAIN)));
    /* Every failure is recorded, not only the first of a call site (which alone is logged). */
    kvbm__fail(KVBM_ERR_INVALID_ARG, "stale");
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
    kvbm__fail(KVBM_ERR_IO, "stale");
    assert_kvbm_status(kvbm_hash_tokens(tokens, 4, 0, 0, hashes, &n), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "kvbm_hash_tokens: block_tokens is 0");
    assert_kvbm_status(kvbm_hash_tokens(tokens, 4, 2, 0, NULL, &n), KVBM_ERR_INVALID_ARG);
    assert_string_equal(kvbm_last_error(), "kvbm_hash_tokens: hashes is NULL");
    /* Success leaves the reason alone, as errno. */
    assert_kvbm_ok(kvbm_hash_tokens(tokens, 4, 2, 0, hashes, &n));
    assert_string_equal(kvbm_last_error(), "kvbm_hash_tokens: hashes is NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fail_returns_the_status_and_records_the_reason),
        cmocka_unit_test(long_reasons_are_cut_not_overrun),
        cmocka_unit_test(each_thread_has_its_own_reason),
        cmocka_unit_test(checking_macros_record_the_foreign_reason),
        cmocka_unit_test(a_public_call_with_a_bad_argument_says_which),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
