/*
 * One replay run as the command line asks for it: picks the policies, builds
 * the oracle when the belady bound needs it, streams or loads the trace, and
 * reports the counts. Shared by the single-run and the sweep modes.
 */
#ifndef KVBM_REPLAY_RUN_H
#define KVBM_REPLAY_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replay.h"
#include "trace.h"

#define REPLAY_BELADY "belady"

typedef enum run_progress {
    RUN_PROGRESS_NONE = 0,  /* nothing until the summary */
    RUN_PROGRESS_BAR = 1,   /* a redrawn bar: stderr is a terminal */
    RUN_PROGRESS_LINES = 2, /* a plain line at each quarter: logs, pipes */
} run_progress_t;

/* Publishing the replay's KV events (kvbm-replay --publish). */
typedef struct run_publish {
    const char *endpoint;        /* PUB endpoint; NULL: no publishing */
    const char *replay_endpoint; /* ROUTER endpoint for replay requests, optional */
    const char *topic;           /* NULL: empty */
    uint32_t buffer_steps;       /* batches kept for replay */
    uint32_t queue_depth;        /* batches the publisher's queue holds; 0: its default */
    const char *state_path;      /* optional: each tier's hashes as JSON, after the replay */
    bool hold;                   /* keep the sockets open until stdin closes */
} run_publish_t;

typedef struct run_options {
    const char *trace_path;
    uint32_t g1_blocks;
    uint32_t g2_blocks;
    uint32_t g3_blocks;      /* 0: no disk tier (needs g2_blocks > 0) */
    const char *policy;      /* a built-in name or "belady" */
    const char *g2_policy;   /* NULL: same as policy */
    const char *g3_policy;   /* NULL: same as g2_policy */
    size_t limit;            /* requests, 0 = all */
    run_progress_t progress; /* how progress shows on stderr */
    bool logical;            /* with G2: two plain managers, no data (default: data mode) */
    kvbm_backend_kind_t backend_kind; /* data mode */
    uint32_t block_kib;               /* data mode block size */
    bool verify;                      /* data mode: fill and check block contents */
    const char *g3_dir;               /* data mode G3: where its file lives */
    bool g3_keep;                     /* data mode G3: reopen and keep the file */
    uint64_t g3_min_free_bytes;       /* data mode G3: the filesystem floor */
    size_t max_line_bytes;            /* longest trace line; 0: TRACE_MAX_LINE_DEFAULT */
    bool g2_admission;                /* offload only blocks judged likely to come back */
    double admission_keep_ratio;      /* 0: the filter's default */
    bool no_hints;                    /* register without request length and position */
    run_publish_t publish;
} run_options_t;

typedef struct run_result {
    replay_counts_t counts;
    double wall_s;
    char backend[16];   /* "logical", "cpu" or "cuda" */
    char g3_engine[32]; /* data mode G3: the disk engine chosen, else "" */
    bool published;     /* events were published: */
    kvbm_publisher_metrics_t events;
} run_result_t;

/*
 * Replays the trace at options->trace_path, or @p loaded when not NULL (the
 * sweep loads once). Errors are printed to stderr with the reason.
 */
kvbm_status_t run_replay(const run_options_t *options, const trace_t *loaded,
                         run_result_t *result_out);

/* Resolves a policy name, "belady" included; NULL if unknown. */
const kvbm_policy_ops_t *run_find_policy(const char *name);

#endif /* KVBM_REPLAY_RUN_H */
