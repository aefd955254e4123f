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

/* What the plot says about the run besides the rates. */
typedef struct plot_context {
    const char *trace_path;
    size_t requests;
    size_t blocks;
    uint32_t block_tokens; /* 0: unknown */
} plot_context_t;

/* Writes @p text as a gnuplot string expression: single-quoted (quotes
 * doubled), newlines joined in as "\n". */
static void put_gnuplot_string(FILE *out, const char *text)
{
    fputc('\'', out);
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '\n') {
            fputs("'.\"\\n\".'", out);
            continue;
        }
        if (*c == '\'')
            fputc('\'', out);
        fputc(*c, out);
    }
    fputc('\'', out);
}

/* "512K" / "3.0M" tokens for a capacity of @p blocks blocks. */
static void format_tokens(char *out, size_t size, uint64_t blocks, uint32_t block_tokens)
{
    double tokens = (double)blocks * block_tokens;
    if (tokens >= 1e6)
        snprintf(out, size, "%.1fM", tokens / 1e6);
    else
        snprintf(out, size, "%.0fK", tokens / 1e3);
}

/* Indices of the capacities, smallest first. */
static void sort_capacities(const uint32_t *capacities, size_t n, size_t *order)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && capacities[order[j]] < capacities[order[j - 1]]; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

/* same_as[p]: the first policy whose rates equal p's at every capacity (p
 * itself when none does). */
static void group_equal_curves(size_t n_capacities, size_t n_policies, double rates[][SWEEP_MAX],
                               size_t *same_as)
{
    for (size_t p = 0; p < n_policies; p++) {
        same_as[p] = p;
        for (size_t q = 0; q < p && same_as[p] == p; q++) {
            bool equal = same_as[q] == q;
            for (size_t c = 0; c < n_capacities && equal; c++)
                equal = rates[c][p] == rates[c][q];
            if (equal)
                same_as[p] = q;
        }
    }
}

/* Title, axes and ticks: the x range and ticks are the swept capacities (in
 * blocks, and in tokens when the trace says how many a block holds). */
static void write_plot_frame(FILE *gnuplot, const plot_context_t *context,
                             const uint32_t *capacities, const size_t *order, size_t n,
                             double top_rate)
{
    uint32_t lowest = capacities[order[0]], highest = capacities[order[n - 1]];
    const char *slash = strrchr(context->trace_path, '/');
    bool tokens = context->block_tokens > 0;
    char title[512], span[160] = "", low[16], high[16];
    if (tokens) {
        format_tokens(low, sizeof(low), lowest, context->block_tokens);
        format_tokens(high, sizeof(high), highest, context->block_tokens);
        snprintf(span, sizeof(span), ", %s to %s tokens at %u tokens a block", low, high,
                 context->block_tokens);
    }
    snprintf(title, sizeof(title),
             "Hit rate by eviction policy: %s (%zu requests, %zu blocks)\n"
             "G1 capacity %u to %u blocks%s",
             slash != NULL ? slash + 1 : context->trace_path, context->requests, context->blocks,
             lowest, highest, span);
    /* noenhanced: names such as synthetic_trace are text, not subscripts. */
    /* set output with no file: standard output, the plot file start_gnuplot
     * opened, so the path never becomes gnuplot text. */
    fprintf(
        gnuplot,
        "set terminal pngcairo noenhanced size 1100,700 font 'sans,13'\nset output\nset title ");
    put_gnuplot_string(gnuplot, title);
    /* Two-line tick labels need the axis label lower and a wider margin. */
    fprintf(gnuplot,
            "\nset xlabel '%s' offset 0,%d\nset ylabel 'hit rate (%%)'\nset bmargin %d\n"
            "set logscale x\nset xrange [%g:%g]\nset yrange [0:%g]\n"
            "set grid xtics ytics lc rgb '#d0d0d0'\nset key top left box opaque spacing 1.2\n"
            "set xtics (",
            tokens ? "G1 capacity: blocks (tokens), log scale" : "G1 capacity (blocks, log scale)",
            tokens ? -1 : 0, tokens ? 6 : 4, lowest / 1.25, highest * 1.25,
            top_rate * 100.0 * 1.12 + 1.0);
    for (size_t k = 0; k < n; k++) {
        uint32_t capacity = capacities[order[k]];
        char label[64], at[16];
        if (tokens) {
            format_tokens(at, sizeof(at), capacity, context->block_tokens);
            snprintf(label, sizeof(label), "%u\\n(%s)", capacity, at);
        } else {
            snprintf(label, sizeof(label), "%u", capacity);
        }
        fprintf(gnuplot, "%s\"%s\" %u", k > 0 ? ", " : "", label, capacity);
    }
    fprintf(gnuplot, ")\n");
}

/* The plot command: one curve per group of equal policies, named "a = b",
 * each with its own colour, dash pattern and point shape. gnuplot's default
 * colours repeat after eight curves; these do not within the policies
 * listed, and belady (the ceiling) is black and dashed. */
static void write_plot_curves(FILE *gnuplot, char **policies, size_t n_policies,
                              const size_t *same_as)
{
    static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                          "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"};
    static const int points[] = {7, 5, 9, 11, 13, 4, 6, 8, 10, 12, 1, 2};
    size_t curve = 0;
    fprintf(gnuplot, "plot ");
    for (size_t p = 0; p < n_policies; p++) {
        if (same_as[p] != p)
            continue;
        char name[256];
        size_t used = (size_t)snprintf(name, sizeof(name), "%s", policies[p]);
        for (size_t q = p + 1; q < n_policies && used < sizeof(name); q++)
            if (same_as[q] == p)
                used += (size_t)snprintf(name + used, sizeof(name) - used, " = %s", policies[q]);
        bool bound = strcmp(policies[p], "belady") == 0;
        if (bound && used < sizeof(name))
            snprintf(name + used, sizeof(name) - used, " (offline bound)");
        fprintf(gnuplot,
                "%s'-' using 1:2 with linespoints lw 2.5 ps 1.6 lc rgb '%s' dt %zu pt %d title ",
                curve > 0 ? ", " : "",
                bound ? "#000000" : colours[curve % (sizeof(colours) / sizeof(colours[0]))],
                bound ? (size_t)2 : curve % 5 + 1,
                points[curve % (sizeof(points) / sizeof(points[0]))]);
        put_gnuplot_string(gnuplot, name);
        curve++;
    }
    fprintf(gnuplot, "\n");
}

/*
 * Draws hit rate (percent) against G1 capacity on a log axis. Policies whose
 * rates are equal at every capacity share one curve, named "a = b = c" in the
 * legend; every curve has its own colour, dash pattern and point shape, so
 * curves that nearly coincide stay apart. The points are sent inline, sorted
 * by capacity.
 */
static kvbm_status_t draw_plot(const char *plot_path, const plot_context_t *context,
                               const uint32_t *capacities, size_t n_capacities, char **policies,
                               size_t n_policies, double rates[][SWEEP_MAX])
{
    if (n_capacities == 0 || n_policies == 0)
        return KVBM_OK; /* grid_parse refuses an empty sweep; nothing to draw */
    size_t order[SWEEP_MAX], same_as[SWEEP_MAX];
    sort_capacities(capacities, n_capacities, order);
    group_equal_curves(n_capacities, n_policies, rates, same_as);
    double top = 0.0;
    for (size_t c = 0; c < n_capacities; c++)
        for (size_t p = 0; p < n_policies; p++)
            top = rates[c][p] > top ? rates[c][p] : top;
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
    write_plot_frame(gnuplot, context, capacities, order, n_capacities, top);
    write_plot_curves(gnuplot, policies, n_policies, same_as);
    for (size_t p = 0; p < n_policies; p++) {
        if (same_as[p] != p)
            continue;
        for (size_t k = 0; k < n_capacities; k++)
            fprintf(gnuplot, "%u %.6f\n", capacities[order[k]], 100.0 * rates[order[k]][p]);
        fprintf(gnuplot, "e\n");
    }
    int rc = ferror(gnuplot) ? -1 : 0;
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
            fprintf(stderr,
                    "kvbm-replay: bad capacity '%s' in --sweep (try 'kvbm-replay --help')\n",
                    capacity_items[i]);
            return KVBM_ERR_INVALID_ARG;
        }
        grid->capacities[i] = (uint32_t)value;
    }
    for (size_t p = 0; p < grid->n_policies; p++) {
        if (run_find_policy(grid->policies[p]) == NULL) {
            fprintf(stderr,
                    "kvbm-replay: unknown policy '%s' in --policies (try 'kvbm-replay --help')\n",
                    grid->policies[p]);
            return KVBM_ERR_INVALID_ARG;
        }
    }
    if (grid->n_capacities == 0 || grid->n_policies == 0) {
        fprintf(stderr,
                "kvbm-replay: --sweep needs capacities and policies (try 'kvbm-replay --help')\n");
        return KVBM_ERR_INVALID_ARG;
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
    const plot_context_t plot_context = {.trace_path = base->trace_path,
                                         .requests = trace.requests,
                                         .blocks = trace.blocks,
                                         .block_tokens = trace.block_tokens};
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
    if (draw_plot(sweep->plot_path, &plot_context, grid->capacities, grid->n_capacities,
                  (char **)grid->policies, grid->n_policies, rates) != KVBM_OK) {
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
