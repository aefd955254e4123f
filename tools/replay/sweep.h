/*
 * Capacity sweep: every chosen policy at every G1 capacity over one loaded
 * trace; a table on stdout, a CSV file, and a PNG plot of hit rate against
 * capacity (one curve per policy) drawn by gnuplot.
 */
#ifndef KVBM_REPLAY_SWEEP_H
#define KVBM_REPLAY_SWEEP_H

#include "run.h"

typedef struct sweep_options {
    const char *capacities; /* "1000,5859,..." */
    const char *policies;   /* "lru,multi-lru,..." or NULL for all */
    const char *csv_path;
    const char *plot_path; /* NULL or "" for no plot */
} sweep_options_t;

kvbm_status_t sweep_run(const run_options_t *base, const sweep_options_t *sweep);

#endif /* KVBM_REPLAY_SWEEP_H */
