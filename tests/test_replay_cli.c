/*
 * kvbm-replay's command line, end to end: an option the run asked for would
 * ignore is refused (exit 2, a message naming it, nothing on stdout), never
 * dropped while the numbers of another run are printed with exit status 0.
 */
#include <setjmp.h>
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

extern char **environ;

typedef struct outcome {
    int exit_status;
    char out[4096]; /* the first bytes of stdout */
    char err[4096]; /* the first bytes of stderr */
} outcome_t;

static void read_and_remove(const char *path, char *buffer, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buffer, 1, size - 1, f);
    buffer[n] = '\0';
    fclose(f);
    remove(path);
}

/* Runs kvbm-replay with @p args (NULL-terminated) and the two-line trace. */
static void run_replay_cli(const char *const *args, outcome_t *result)
{
    const char *bin = getenv("KVBM_BINARY_DIR");
    assert_non_null(bin);
    char replay[512], trace[64], csv[64];
    snprintf(replay, sizeof(replay), "%s/tools/replay/kvbm-replay", bin);
    snprintf(trace, sizeof(trace), "/tmp/kvbm-cli-trace-%d.jsonl", (int)getpid());
    snprintf(csv, sizeof(csv), "/tmp/kvbm-cli-sweep-%d.csv", (int)getpid());
    FILE *t = fopen(trace, "w");
    assert_non_null(t);
    fputs("{\"hash_ids\": [1, 2, 3]}\n{\"hash_ids\": [1, 2, 4]}\n", t);
    assert_int_equal(fclose(t), 0);
    char out_path[] = "/tmp/kvbm-cli-out-XXXXXX", err_path[] = "/tmp/kvbm-cli-err-XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    assert_true(out_fd >= 0 && err_fd >= 0);
    /* Sweeps write their CSV to a scratch file and draw no plot. */
    const char *argv[32] = {replay, "--no-progress", "--csv", csv, "--plot", ""};
    size_t argc = 6;
    for (size_t i = 0; args[i] != NULL; i++)
        argv[argc++] = args[i];
    argv[argc++] = trace;
    argv[argc] = NULL;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, replay, &actions, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    close(out_fd);
    close(err_fd);
    int wait_status = 0;
    assert_int_equal(waitpid(pid, &wait_status, 0), pid);
    result->exit_status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128;
    read_and_remove(out_path, result->out, sizeof(result->out));
    read_and_remove(err_path, result->err, sizeof(result->err));
    remove(trace);
    remove(csv);
}

static void expect_refused(const char *const *args, const char *message)
{
    outcome_t r;
    run_replay_cli(args, &r);
    if (r.exit_status != 2 || strstr(r.err, message) == NULL || r.out[0] != '\0')
        fail_msg("expected exit 2 and '%s'; got exit %d, stderr '%s', stdout '%s'", message,
                 r.exit_status, r.err, r.out);
}

static void expect_runs(const char *const *args)
{
    outcome_t r;
    run_replay_cli(args, &r);
    if (r.exit_status != 0 || r.out[0] == '\0')
        fail_msg("expected a run; got exit %d, stderr '%s'", r.exit_status, r.err);
}

static void options_a_run_would_ignore_are_refused(void **state)
{
    /* The sweep sets G1's policy per column and G2 follows it: --g2-policy
     * (even a name that does not exist) was dropped without a word. */
    expect_refused(
        (const char *[]){"--sweep", "8", "--g2-blocks", "4", "--g2-policy", "nonsense", NULL},
        "--g2-policy do not apply to --sweep");
    expect_refused((const char *[]){"--sweep", "8", "--g2-blocks", "4", "--g2-policy", "lru", NULL},
                   "--g2-policy do not apply to --sweep");
    expect_refused((const char *[]){"--sweep", "8", "--policy", "slru", NULL},
                   "--policy and --g2-policy do not apply to --sweep");
    expect_refused((const char *[]){"--sweep", "8", "--json", NULL},
                   "--json does not apply to --sweep");
    expect_refused((const char *[]){"--g1-blocks", "8", "--policies", "lru,slru", NULL},
                   "--policies needs --sweep");
    /* Admission filters offloads to G2: without G2 it did nothing. */
    expect_refused((const char *[]){"--g1-blocks", "8", "--g2-admission", NULL},
                   "--g2-admission needs --g2-blocks");
    expect_refused((const char *[]){"--g1-blocks", "8", "--g2-blocks", "4",
                                    "--admission-keep-ratio", "0.5", NULL},
                   "--admission-keep-ratio needs --g2-admission");
    /* Unknown policies are refused in a sweep as in one replay. */
    expect_refused((const char *[]){"--sweep", "8", "--g2-blocks", "4", "--g3-blocks", "8",
                                    "--g3-policy", "nonsense", NULL},
                   "unknown policy 'nonsense'");
    /* The same options where they apply still run. */
    expect_runs((const char *[]){"--sweep", "8", "--policies", "lru,slru", "--g2-blocks", "4",
                                 "--g2-admission", "--admission-keep-ratio", "0.5", NULL});
    expect_runs((const char *[]){"--g1-blocks", "8", "--policy", "slru", "--g2-blocks", "4",
                                 "--g2-policy", "lru", "--logical", "--g2-admission", "--json",
                                 NULL});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_a_run_would_ignore_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
