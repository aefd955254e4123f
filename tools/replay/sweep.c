/* Capacity sweep with CSV and a gnuplot PNG; see sweep.h. */
#include "sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SWEEP_MAX 64

extern char **environ;

/*
 * Splits a comma list, in place and whole, into at most SWEEP_MAX items: a
 * longer list, or an empty item, is refused with a message naming the
 * option, never cut.
 */
static kvbm_status_t split_list(char *text, const char *option, char **items, size_t *count_out)
{
    size_t count = 0;
    for (char *item = text; item != NULL;) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma++ = '\0';
        if (item[0] == '\0') {
            fprintf(stderr, "kvbm-replay: an empty item in %s\n", option);
            return KVBM_ERR_INVALID_ARG;
        }
        if (count == SWEEP_MAX) {
            fprintf(stderr, "kvbm-replay: %s takes at most %d items\n", option, SWEEP_MAX);
            return KVBM_ERR_INVALID_ARG;
        }
        items[count++] = item;
        item = comma;
    }
    *count_out = count;
    return KVBM_OK;
}

/* Writes @p text as a gnuplot single-quoted string: inside one, only a
 * doubled quote means anything, and a line break would end the command, so
 * control characters are refused. */
static int put_gnuplot_string(FILE *gnuplot, const char *text)
{
    if (fputc('\'', gnuplot) == EOF)
        return -1;
    for (const char *c = text; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return -1;
        if ((*c == '\'' && fputc('\'', gnuplot) == EOF) || fputc(*c, gnuplot) == EOF)
            return -1;
    }
    return fputc('\'', gnuplot) == EOF ? -1 : 0;
}

/*
 * Runs gnuplot with no shell and with its standard output going to the plot
 * file, opened here: the path never becomes gnuplot (or shell) text, so no
 * path can inject a command. *pid_out is gnuplot's, *commands_out the pipe
 * to its standard input.
 */
static kvbm_status_t start_gnuplot(const char *plot_path, pid_t *pid_out, FILE **commands_out)
{
    int png = open(plot_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (png < 0) {
        fprintf(stderr, "kvbm-replay: cannot write %s: %s\n", plot_path, strerror(errno));
        return KVBM_ERR_IO;
    }
    int to_gnuplot[2];
    if (pipe2(to_gnuplot, O_CLOEXEC) != 0) {
        close(png);
        return KVBM_ERR_IO;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_gnuplot[0], 0);
    posix_spawn_file_actions_adddup2(&actions, png, 1);
    char *const argv[] = {"gnuplot", NULL};
    int rc = posix_spawnp(pid_out, "gnuplot", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(to_gnuplot[0]);
    close(png);
    if (rc != 0) {
        close(to_gnuplot[1]);
        fprintf(stderr, "kvbm-replay: cannot run gnuplot: %s\n", strerror(rc));
        return KVBM_ERR_IO;
    }
    *commands_out = fdopen(to_gnuplot[1], "w");
    if (*commands_out == NULL) {
        close(to_gnuplot[1]);
        waitpid(*pid_out, NULL, 0);
        return KVBM_ERR_IO;
    }
    return KVBM_OK;
}

/* Draws one curve per policy; the points are sent inline, sorted by capacity. */
static kvbm_status_t draw_plot(const char *plot_path, const uint32_t *capacities,
                               size_t n_capacities, char **policies, size_t n_policies,
                               double rates[][SWEEP_MAX])
{
    /* A gnuplot that dies early must make a write fail, not kill us. */
    struct sigaction ignore = {.sa_handler = SIG_IGN}, previous;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, &previous);
    pid_t pid;
    FILE *gnuplot = NULL;
    kvbm_status_t status = start_gnuplot(plot_path, &pid, &gnuplot);
    if (status != KVBM_OK) {
        sigaction(SIGPIPE, &previous, NULL);
        return status;
    }
    int rc =
        fprintf(gnuplot, "set terminal pngcairo size 900,560\n"
                         "set output\n" /* standard output: the plot file */
                         "set title 'kvbm-replay: hit rate against G1 capacity'\n"
                         "set xlabel 'G1 capacity (blocks, log scale)'\nset ylabel 'hit rate'\n"
                         "set logscale x\nset grid\nset key top left\n"
                         "set offsets graph 0.05, graph 0.05, 0, 0\n"
                         "plot ");
    /* gnuplot's default colours repeat after eight curves; these do not
     * within the policies listed (belady, the ceiling, is black and dashed). */
    static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                          "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"};
    const size_t n_colours = sizeof(colours) / sizeof(colours[0]);
    for (size_t p = 0; p < n_policies && rc >= 0; p++) {
        bool bound = strcmp(policies[p], "belady") == 0;
        rc = fprintf(gnuplot, "%s'-' using 1:2 with linespoints lw 2 lc rgb '%s' dt %d title ",
                     p > 0 ? ", " : "", bound ? "#000000" : colours[p % n_colours], bound ? 2 : 1);
        if (rc >= 0)
            rc = put_gnuplot_string(gnuplot, policies[p]);
    }
    if (rc >= 0)
        rc = fprintf(gnuplot, "\n");
    for (size_t p = 0; p < n_policies; p++) {
        bool done[SWEEP_MAX] = {false};
        for (size_t k = 0; k < n_capacities; k++) {
            size_t best = SIZE_MAX;
            for (size_t c = 0; c < n_capacities; c++)
                if (!done[c] && (best == SIZE_MAX || capacities[c] < capacities[best]))
                    best = c;
            done[best] = true;
            if (rc >= 0)
                rc = fprintf(gnuplot, "%u %.6f\n", capacities[best], rates[best][p]);
        }
        if (rc >= 0)
            rc = fprintf(gnuplot, "e\n");
    }
    if (fclose(gnuplot) != 0)
        rc = -1;
    int wait_status = 0;
    while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGPIPE, &previous, NULL);
    if (rc < 0 || !WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
        remove(plot_path); /* no half-drawn plot left behind */
        return KVBM_ERR_IO;
    }
    return KVBM_OK;
}

/* With lru and belady both swept: how much of the gap between them each
 * policy closes, (policy - lru) / (belady - lru), per capacity. */
static void print_gap_closed(const uint32_t *capacities, size_t n_capacities, char **policies,
                             size_t n_policies, double rates[][SWEEP_MAX])
{
    size_t lru = SIZE_MAX, belady = SIZE_MAX;
    for (size_t p = 0; p < n_policies; p++) {
        if (strcmp(policies[p], "lru") == 0)
            lru = p;
        if (strcmp(policies[p], "belady") == 0)
            belady = p;
    }
    if (lru == SIZE_MAX || belady == SIZE_MAX)
        return;
    printf("\nshare of the lru-to-belady gap closed\n%10s", "g1_blocks");
    for (size_t p = 0; p < n_policies; p++)
        printf(" %10s", policies[p]);
    printf("\n");
    for (size_t c = 0; c < n_capacities; c++) {
        double gap = rates[c][belady] - rates[c][lru];
        printf("%10u", capacities[c]);
        for (size_t p = 0; p < n_policies; p++) {
            if (gap > 0)
                printf(" %9.1f%%", 100.0 * (rates[c][p] - rates[c][lru]) / gap);
            else
                printf(" %10s", "-");
        }
        printf("\n");
    }
}

/* The lists of a sweep: taken whole from the command line (copied, then
 * split in place), and the capacities read from them. */
typedef struct sweep_grid {
    char *capacity_text, *policy_text;
    char *policies[SWEEP_MAX];
    uint32_t capacities[SWEEP_MAX];
    size_t n_capacities, n_policies;
} sweep_grid_t;

/* "lru,multi-lru,...": every built-in policy, for when --policies is not given. */
static char *all_policies(void)
{
    size_t bytes = 1;
    for (const char *const *name = kvbm_policy_names(); *name != NULL; name++)
        bytes += strlen(*name) + 1;
    char *text = calloc(bytes, 1);
    size_t at = 0;
    for (const char *const *name = kvbm_policy_names(); text != NULL && *name != NULL; name++) {
        size_t n = strlen(*name);
        if (at > 0)
            text[at++] = ',';
        memcpy(text + at, *name, n); /* bytes counted above: it fits */
        at += n;
    }
    return text;
}

static void grid_free(sweep_grid_t *grid)
{
    free(grid->capacity_text);
    free(grid->policy_text);
}

static kvbm_status_t grid_parse(const sweep_options_t *sweep, sweep_grid_t *grid)
{
    memset(grid, 0, sizeof(*grid));
    grid->capacity_text = strdup(sweep->capacities);
    grid->policy_text = sweep->policies != NULL ? strdup(sweep->policies) : all_policies();
    if (grid->capacity_text == NULL || grid->policy_text == NULL) {
        fprintf(stderr, "kvbm-replay: out of memory\n");
        return KVBM_ERR_NO_MEMORY;
    }
    char *capacity_items[SWEEP_MAX] = {NULL};
    kvbm_status_t status =
        split_list(grid->capacity_text, "--sweep", capacity_items, &grid->n_capacities);
    if (status == KVBM_OK)
        status = split_list(grid->policy_text, "--policies", grid->policies, &grid->n_policies);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < grid->n_capacities; i++) {
        char *end = NULL;
        /* split_list set items [0, n_capacities); the analyzer does not follow it. */
        unsigned long value = strtoul(capacity_items[i], &end, 10); // NOLINT(*NonNullParamChecker)
        if (end == capacity_items[i] || *end != '\0' || value == 0 || value > UINT32_MAX) {
            fprintf(stderr, "kvbm-replay: bad capacity '%s' in --sweep\n", capacity_items[i]);
            return KVBM_ERR_INVALID_ARG;
        }
        grid->capacities[i] = (uint32_t)value;
    }
    for (size_t p = 0; p < grid->n_policies; p++) {
        if (run_find_policy(grid->policies[p]) == NULL) {
            fprintf(stderr, "kvbm-replay: unknown policy '%s' in --policies\n", grid->policies[p]);
            return KVBM_ERR_INVALID_ARG;
        }
    }
    return KVBM_OK;
}

/* Replays every cell of the grid, printing the table and a CSV row each. */
static kvbm_status_t grid_run(const run_options_t *base, const trace_t *trace,
                              const sweep_grid_t *grid, FILE *csv,
                              double rates[SWEEP_MAX][SWEEP_MAX])
{
    fprintf(csv, "g1_blocks,policy,g2_blocks,hit_rate,g1_hits,g2_hits,misses,g1_evictions,"
                 "offloads,ns_per_block\n");
    printf("%10s", "g1_blocks");
    for (size_t p = 0; p < grid->n_policies; p++)
        printf(" %10s", grid->policies[p]);
    printf("\n");
    for (size_t c = 0; c < grid->n_capacities; c++) {
        printf("%10u", grid->capacities[c]);
        for (size_t p = 0; p < grid->n_policies; p++) {
            run_options_t options = *base;
            options.g1_blocks = grid->capacities[c];
            options.policy = grid->policies[p];
            options.g2_policy = NULL;
            options.progress = RUN_PROGRESS_NONE;
            run_result_t result;
            kvbm_status_t status = run_replay(&options, trace, &result);
            if (status != KVBM_OK)
                return status;
            const replay_counts_t *r = &result.counts;
            double rate = replay_hit_rate(r);
            rates[c][p] = rate;
            printf(" %10.4f", rate);
            fflush(stdout);
            fprintf(csv, "%u,%s,%u,%.6f,%llu,%llu,%llu,%llu,%llu,%.2f\n", grid->capacities[c],
                    grid->policies[p], options.g2_blocks, rate, (unsigned long long)r->g1_hits,
                    (unsigned long long)r->g2_hits, (unsigned long long)r->misses,
                    (unsigned long long)r->g1_evictions, (unsigned long long)r->offloads,
                    r->blocks > 0 ? r->core_ns / (double)r->blocks : 0.0);
        }
        printf("\n");
    }
    return KVBM_OK;
}

/* The grid over the loaded trace: table, CSV (a write error is an error),
 * then the plot. */
static kvbm_status_t sweep_grid(const run_options_t *base, const sweep_options_t *sweep,
                                const sweep_grid_t *grid)
{
    static double rates[SWEEP_MAX][SWEEP_MAX];
    trace_t trace;
    char error[300];
    kvbm_status_t status = trace_load(base->trace_path, base->limit, base->max_line_bytes, &trace,
                                      error, sizeof(error));
    if (status != KVBM_OK) {
        fprintf(stderr, "kvbm-replay: %s: %s\n", base->trace_path, error);
        return status;
    }
    FILE *csv = fopen(sweep->csv_path, "w");
    if (csv == NULL) {
        fprintf(stderr, "kvbm-replay: cannot write %s\n", sweep->csv_path);
        trace_free(&trace);
        return KVBM_ERR_IO;
    }
    status = grid_run(base, &trace, grid, csv, rates);
    if (status == KVBM_OK)
        print_gap_closed(grid->capacities, grid->n_capacities, (char **)grid->policies,
                         grid->n_policies, rates);
    fflush(stdout);
    bool csv_written = !ferror(csv);
    csv_written &= fclose(csv) == 0;
    trace_free(&trace);
    if (status != KVBM_OK)
        return status;
    if (!csv_written) {
        fprintf(stderr, "kvbm-replay: writing %s failed\n", sweep->csv_path);
        return KVBM_ERR_IO;
    }
    fprintf(stderr, "kvbm-replay: wrote %s\n", sweep->csv_path);
    if (sweep->plot_path == NULL || sweep->plot_path[0] == '\0')
        return KVBM_OK;
    if (draw_plot(sweep->plot_path, grid->capacities, grid->n_capacities, (char **)grid->policies,
                  grid->n_policies, rates) != KVBM_OK) {
        fprintf(stderr, "kvbm-replay: gnuplot could not draw %s\n", sweep->plot_path);
        return KVBM_ERR_IO;
    }
    fprintf(stderr, "kvbm-replay: wrote %s\n", sweep->plot_path);
    return KVBM_OK;
}

kvbm_status_t sweep_run(const run_options_t *base, const sweep_options_t *sweep)
{
    sweep_grid_t grid;
    kvbm_status_t status = grid_parse(sweep, &grid);
    if (status == KVBM_OK)
        status = sweep_grid(base, sweep, &grid);
    grid_free(&grid);
    return status;
}
