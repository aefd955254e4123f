/* Capacity sweep with CSV and a gnuplot PNG; see sweep.h. */
#include "sweep.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_MAX 64

/* Splits a comma list in place into at most SWEEP_MAX items. */
static size_t split_list(char *text, char **items)
{
    size_t count = 0;
    for (char *save = NULL, *item = strtok_r(text, ",", &save); item != NULL && count < SWEEP_MAX;
         item = strtok_r(NULL, ",", &save))
        items[count++] = item;
    return count;
}

/* Draws one curve per policy; the points are sent inline, sorted by capacity. */
static kvbm_status_t draw_plot(const char *plot_path, const uint32_t *capacities,
                               size_t n_capacities, char **policies, size_t n_policies,
                               double rates[][SWEEP_MAX])
{
    FILE *gnuplot = popen("gnuplot", "w");
    if (gnuplot == NULL)
        return KVBM_ERR_IO;
    fprintf(gnuplot,
            "set terminal pngcairo size 900,560\n"
            "set output '%s'\n"
            "set title 'kvbm-replay: hit rate against G1 capacity'\n"
            "set xlabel 'G1 capacity (blocks, log scale)'\nset ylabel 'hit rate'\n"
            "set logscale x\nset grid\nset key top left\nset offsets graph 0.05, graph 0.05, 0, 0\n"
            "plot ",
            plot_path);
    /* gnuplot's default colours repeat after eight curves; these do not
     * within the policies listed (belady, the ceiling, is black and dashed). */
    static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                          "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"};
    const size_t n_colours = sizeof(colours) / sizeof(colours[0]);
    for (size_t p = 0; p < n_policies; p++) {
        bool bound = strcmp(policies[p], "belady") == 0;
        fprintf(gnuplot, "%s'-' using 1:2 with linespoints lw 2 lc rgb '%s' dt %d title '%s'",
                p > 0 ? ", " : "", bound ? "#000000" : colours[p % n_colours], bound ? 2 : 1,
                policies[p]);
    }
    fprintf(gnuplot, "\n");
    for (size_t p = 0; p < n_policies; p++) {
        bool done[SWEEP_MAX] = {false};
        for (size_t k = 0; k < n_capacities; k++) {
            size_t best = SIZE_MAX;
            for (size_t c = 0; c < n_capacities; c++)
                if (!done[c] && (best == SIZE_MAX || capacities[c] < capacities[best]))
                    best = c;
            done[best] = true;
            fprintf(gnuplot, "%u %.6f\n", capacities[best], rates[best][p]);
        }
        fprintf(gnuplot, "e\n");
    }
    return pclose(gnuplot) == 0 ? KVBM_OK : KVBM_ERR_IO;
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

/* The grid of a sweep: capacities by policies, parsed from the options. */
typedef struct sweep_grid {
    char capacity_text[1024], policy_text[1024]; /* the lists, cut in place */
    char *policies[SWEEP_MAX];
    uint32_t capacities[SWEEP_MAX];
    size_t n_capacities, n_policies;
} sweep_grid_t;

static kvbm_status_t grid_parse(const sweep_options_t *sweep, sweep_grid_t *grid)
{
    snprintf(grid->capacity_text, sizeof(grid->capacity_text), "%s", sweep->capacities);
    char *policy_text = grid->policy_text;
    size_t room = sizeof(grid->policy_text);
    if (sweep->policies != NULL) {
        snprintf(policy_text, room, "%s", sweep->policies);
    } else {
        policy_text[0] = '\0';
        for (const char *const *name = kvbm_policy_names(); *name != NULL; name++) {
            if (policy_text[0] != '\0')
                strncat(policy_text, ",", room - strlen(policy_text) - 1);
            strncat(policy_text, *name, room - strlen(policy_text) - 1);
        }
    }
    char *capacity_items[SWEEP_MAX] = {NULL};
    size_t n_capacities = split_list(grid->capacity_text, capacity_items);
    grid->n_capacities = n_capacities;
    grid->n_policies = split_list(policy_text, grid->policies);
    for (size_t i = 0; i < n_capacities; i++) {
        char *end = NULL;
        unsigned long value = strtoul(capacity_items[i], &end, 10);
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
    if (grid->n_capacities == 0 || grid->n_policies == 0) {
        fprintf(stderr, "kvbm-replay: --sweep needs capacities and policies\n");
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

kvbm_status_t sweep_run(const run_options_t *base, const sweep_options_t *sweep)
{
    sweep_grid_t grid;
    static double rates[SWEEP_MAX][SWEEP_MAX];
    kvbm_status_t status = grid_parse(sweep, &grid);
    if (status != KVBM_OK)
        return status;
    trace_t trace;
    char error[300];
    status = trace_load(base->trace_path, base->limit, &trace, error, sizeof(error));
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
    status = grid_run(base, &trace, &grid, csv, rates);
    if (status == KVBM_OK)
        print_gap_closed(grid.capacities, grid.n_capacities, grid.policies, grid.n_policies, rates);
    fflush(stdout);
    fclose(csv);
    trace_free(&trace);
    if (status != KVBM_OK)
        return status;
    fprintf(stderr, "kvbm-replay: wrote %s\n", sweep->csv_path);
    if (sweep->plot_path != NULL && sweep->plot_path[0] != '\0') {
        if (draw_plot(sweep->plot_path, grid.capacities, grid.n_capacities, grid.policies,
                      grid.n_policies, rates) != KVBM_OK) {
            fprintf(stderr, "kvbm-replay: gnuplot could not draw %s\n", sweep->plot_path);
            return KVBM_ERR_IO;
        }
        fprintf(stderr, "kvbm-replay: wrote %s\n", sweep->plot_path);
    }
    return KVBM_OK;
}
