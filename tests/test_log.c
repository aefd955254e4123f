/* The logger (kvbm_log_set, core/log.h) and the checking macros (core/check.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/check.h"
#include "core/log.h"
#include "kvbm_test.h"

typedef struct captured {
    int calls;
    kvbm_log_level_t level;
    char message[KVBM__LOG_LINE_MAX];
} captured_t;

static void capture(void *user, kvbm_log_level_t level, const char *message)
{
    captured_t *c = user;
    c->calls++;
    c->level = level;
    snprintf(c->message, sizeof(c->message), "%s", message);
}

static void messages_reach_the_callback_with_level_and_user(void **state)
{
    captured_t c = {0};
    kvbm_log_set(capture, &c);
    kvbm__log(KVBM_LOG_WARN, "block %u of %s", 7u, "g1");
    kvbm_log_set(NULL, NULL);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.level, KVBM_LOG_WARN);
    assert_string_equal(c.message, "block 7 of g1");
}

static void long_messages_are_cut_not_overrun(void **state)
{
    char big[2 * KVBM__LOG_LINE_MAX];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    captured_t c = {0};
    kvbm_log_set(capture, &c);
    kvbm__log(KVBM_LOG_INFO, "%s", big);
    kvbm_log_set(NULL, NULL);
    assert_int_equal(c.calls, 1);
    assert_int_equal(strlen(c.message), KVBM__LOG_LINE_MAX - 1);
}

static void default_target_is_one_prefixed_line_on_stderr(void **state)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fileno(tmp), STDERR_FILENO), STDERR_FILENO);
    kvbm_log_set(capture, NULL); /* then back to the default */
    kvbm_log_set(NULL, NULL);
    kvbm__log(KVBM_LOG_ERROR, "to stderr %d", 42);
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    char line[64] = {0};
    rewind(tmp);
    assert_non_null(fgets(line, sizeof(line), tmp));
    fclose(tmp);
    assert_string_equal(line, "kvbm: to stderr 42\n");
}

/* A pthreads error maps to a status and is logged once per call site. */
static kvbm_status_t fail_with(int rc)
{
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(rc, status);
    return status;
}

static void pthread_errors_map_and_log_once_per_site(void **state)
{
    captured_t c = {0};
    kvbm_log_set(capture, &c);
    assert_int_equal(fail_with(0), KVBM_OK);
    assert_int_equal(c.calls, 0);
    assert_int_equal(fail_with(EAGAIN), KVBM_ERR_NO_MEMORY);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.level, KVBM_LOG_ERROR);
    assert_non_null(strstr(c.message, "rc failed"));
    assert_int_equal(fail_with(ENOMEM), KVBM_ERR_NO_MEMORY);
    assert_int_equal(fail_with(EINVAL), KVBM_ERR_INTERNAL);
    kvbm_log_set(NULL, NULL);
    assert_int_equal(c.calls, 1);
}

static void system_errors_map_by_errno_and_log_each(void **state)
{
    static const struct {
        int err;
        kvbm_status_t status;
    } cases[] = {
        {ECONNRESET, KVBM_ERR_PEER},   {EPIPE, KVBM_ERR_PEER},        {ENOTCONN, KVBM_ERR_PEER},
        {ENOBUFS, KVBM_ERR_NO_MEMORY}, {ETIMEDOUT, KVBM_ERR_TIMEOUT}, {EBADF, KVBM_ERR_IO},
        {ECONNREFUSED, KVBM_ERR_PEER},
    };
    captured_t c = {0};
    kvbm_log_set(capture, &c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        errno = cases[i].err;
        assert_int_equal(KVBM_SYS_ERROR("probe"), cases[i].status);
    }
    kvbm_log_set(NULL, NULL);
    assert_int_equal(c.calls, (int)(sizeof(cases) / sizeof(cases[0])));
    assert_non_null(strstr(c.message, "probe: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_reach_the_callback_with_level_and_user),
        cmocka_unit_test(long_messages_are_cut_not_overrun),
        cmocka_unit_test(default_target_is_one_prefixed_line_on_stderr),
        cmocka_unit_test(pthread_errors_map_and_log_once_per_site),
        cmocka_unit_test(system_errors_map_by_errno_and_log_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
