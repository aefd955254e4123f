/*
 * kvbm-replay under an address-space limit (ulimit -v), end to end: running
 * out of memory while reading is an error with a non-zero exit, never the
 * end of the trace; input without newlines stops at the line limit; and a
 * long line costs a small multiple of its length.
 *
 * The limit cannot apply to sanitizer builds (ASan and TSan reserve far more
 * address space than any limit leaves), so there the whole file reports
 * itself skipped (exit 77, which CTest counts as skipped).
 */
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvbm_test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KVBM_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KVBM_TEST_SANITIZED 1
#endif
#endif

#ifndef KVBM_TEST_SANITIZED
extern char **environ;

typedef struct outcome {
    int exit_status;
    char out[4096]; /* the first bytes of stdout */
    char err[4096]; /* the first bytes of stderr */
} outcome_t;

/* Writes the trace into the replay's standard input. */
typedef void (*feed_fn)(FILE *to_replay);

static void read_file(const char *path, char *buffer, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buffer, 1, size - 1, f);
    buffer[n] = '\0';
    fclose(f);
    remove(path);
}

/* Runs `ulimit -v KIB; kvbm-replay ARGS -` with @p feed on its stdin (or
 * ARGS alone when @p feed is NULL). */
static void run_limited(unsigned long kib, const char *const *args, feed_fn feed, outcome_t *result)
{
    const char *bin = getenv("KVBM_BINARY_DIR");
    assert_non_null(bin);
    char replay[512], script[128];
    snprintf(replay, sizeof(replay), "%s/tools/replay/kvbm-replay", bin);
    snprintf(script, sizeof(script), "ulimit -v %lu && exec \"$0\" \"$@\"", kib);
    char out_path[] = "/tmp/kvbm-limits-out-XXXXXX", err_path[] = "/tmp/kvbm-limits-err-XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    assert_true(out_fd >= 0 && err_fd >= 0);
    int in_pipe[2];
    assert_int_equal(pipe(in_pipe), 0);
    const char *argv[24] = {"sh", "-c", script, replay};
    size_t argc = 4;
    for (; args[argc - 4] != NULL; argc++)
        argv[argc] = args[argc - 4];
    argv[argc] = NULL;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    posix_spawn_file_actions_addclose(&actions, in_pipe[1]);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/bin/sh", &actions, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    close(in_pipe[0]);
    close(out_fd);
    close(err_fd);
    FILE *to_replay = fdopen(in_pipe[1], "w");
    assert_non_null(to_replay);
    if (feed != NULL)
        feed(to_replay); /* stops early once the replay has gone (EPIPE) */
    fclose(to_replay);
    int wait_status = 0;
    assert_int_equal(waitpid(pid, &wait_status, 0), pid);
    result->exit_status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128;
    read_file(out_path, result->out, sizeof(result->out));
    read_file(err_path, result->err, sizeof(result->err));
}

/* One line of @p ids ten-digit ids. */
static void write_long_line(FILE *to, size_t ids)
{
    if (fputs("{\"hash_ids\": [", to) < 0)
        return;
    for (size_t i = 0; i < ids; i++)
        if (fprintf(to, i > 0 ? ", %zu" : "%zu", (size_t)1000000000 + i) < 0)
            return;
    fputs("]}\n", to);
}

/* The trace: one request, one line of about 300 MB, 1000 requests. */
static void feed_oversized_line(FILE *to)
{
    fputs("{\"hash_ids\": [1, 2]}\n", to);
    write_long_line(to, 25000000);
    for (int i = 0; i < 1000; i++)
        if (fprintf(to, "{\"hash_ids\": [%d]}\n", 10 + i) < 0)
            return;
}

static void feed_100mb_line(FILE *to)
{
    write_long_line(to, 9000000);
}

static void out_of_memory_while_reading_is_an_error_not_the_end(void **state)
{
    /* Before: "requests: 1" and exit 0 (the failed read was taken for the
     * end). The limit is raised so that reading the line really runs out of
     * memory rather than stopping at the line limit. */
    const char *args[] = {"--max-line-bytes", "1073741824", "--json", "--no-progress", "-", NULL};
    outcome_t r;
    run_limited(400000, args, feed_oversized_line, &r);
    if (r.exit_status == 0 || strstr(r.err, "out of memory") == NULL ||
        strstr(r.out, "\"requests\"") != NULL)
        fail_msg("exit %d, stdout '%s', stderr '%s'", r.exit_status, r.out, r.err);
    assert_non_null(strstr(r.err, "line 2:"));
}

static void input_without_newlines_stops_at_the_line_limit(void **state)
{
    /* Before: memory grew until it ran out (3.6 GB in 8 s), then exit 0. */
    const char *args[] = {"--json", "--no-progress", "/dev/zero", NULL};
    outcome_t r;
    run_limited(300000, args, NULL, &r);
    if (r.exit_status == 0 || strstr(r.err, "line 1: longer than 16777216 bytes") == NULL)
        fail_msg("exit %d, stderr '%s'", r.exit_status, r.err);
    assert_null(strstr(r.out, "\"requests\""));
}

static void a_long_line_costs_a_small_multiple_of_its_length(void **state)
{
    /* A 108 MB line of nine million ids (json-c alone peaked at 810 MB on it)
     * replays within 400 MB of address space, the binary included. */
    const char *args[] = {"--max-line-bytes", "1073741824",    "--g1-blocks", "100",
                          "--json",           "--no-progress", "-",           NULL};
    outcome_t r;
    run_limited(400000, args, feed_100mb_line, &r);
    if (r.exit_status != 0 || strstr(r.out, "\"blocks\": 9000000,") == NULL)
        fail_msg("exit %d, stdout '%s', stderr '%s'", r.exit_status, r.out, r.err);
}

#endif /* !KVBM_TEST_SANITIZED */

int main(void)
{
#ifdef KVBM_TEST_SANITIZED
    printf("test_replay_limits: skipped: an address-space limit cannot apply under a sanitizer\n");
    return 77;
#else
    signal(SIGPIPE, SIG_IGN); /* the replay may stop reading before the end */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(out_of_memory_while_reading_is_an_error_not_the_end),
        cmocka_unit_test(input_without_newlines_stops_at_the_line_limit),
        cmocka_unit_test(a_long_line_costs_a_small_multiple_of_its_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
