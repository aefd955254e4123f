/* One replay run; see run.h. */
#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "oracle.h"

/* How long the end of a run waits for the publisher to hand every batch to its socket. */
#define PUBLISH_FLUSH_MS 60000

static double wall_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const kvbm_policy_ops_t *run_find_policy(const char *name)
{
    return kvbm_policy_find(name);
}

typedef struct progress {
    run_progress_t mode;
    double next_line; /* LINES: the next quarter to report */
    bool bar_drawn;   /* BAR: a bar line is on the terminal, not yet ended */
} progress_t;

static void progress_update(progress_t *p, double fraction, size_t requests)
{
    if (p->mode == RUN_PROGRESS_BAR) {
        int width = 40, filled = (int)(fraction * width);
        fprintf(stderr, "\r[");
        for (int i = 0; i < width; i++)
            fputc(i < filled ? '#' : ' ', stderr);
        fprintf(stderr, "] %5.1f%%  %zu requests", fraction * 100.0, requests);
        p->bar_drawn = true;
    } else if (p->mode == RUN_PROGRESS_LINES) {
        while (fraction >= p->next_line && p->next_line <= 1.0) {
            fprintf(stderr, "kvbm-replay: %3.0f%% (%zu requests)\n", p->next_line * 100.0,
                    requests);
            p->next_line += 0.25;
        }
    }
}

/* Ends a bar line left open, so what is printed next starts a line of its own. */
static void progress_end_line(progress_t *p)
{
    if (p->bar_drawn)
        fputc('\n', stderr);
    p->bar_drawn = false;
}

static void progress_done(progress_t *p, size_t requests)
{
    progress_update(p, 1.0, requests);
    progress_end_line(p);
}

static kvbm_status_t replay_loaded(replay_t *replay, const trace_t *trace, size_t limit,
                                   next_use_oracle_t *oracle, run_progress_t mode)
{
    progress_t progress = {.mode = mode, .next_line = 0.25};
    size_t requests = limit != 0 && limit < trace->requests ? limit : trace->requests;
    size_t step = requests / 100 + 1;
    for (size_t r = 0; r < requests; r++) {
        if (oracle != NULL)
            oracle_set_now(oracle, r);
        kvbm_status_t status = replay_request(replay, trace->hashes + trace->offsets[r],
                                              trace->offsets[r + 1] - trace->offsets[r]);
        if (status != KVBM_OK) {
            progress_end_line(&progress);
            fprintf(stderr, "kvbm-replay: request %zu: %s (%s)\n", r + 1, kvbm_status_str(status),
                    kvbm_last_error());
            return status;
        }
        if (r % step == 0)
            progress_update(&progress, (double)(r + 1) / (double)requests, r + 1);
    }
    progress_done(&progress, requests);
    return KVBM_OK;
}

/* Read ahead of the replay: at most this many requests or hashes at a time
 * (8 MiB of hashes; a longer request comes alone, bounded by the line
 * limit). Parsing a chunk, then replaying it, keeps the parser's memory
 * traffic out of the timed steps without holding the whole trace. */
#define CHUNK_REQUESTS 4096
#define CHUNK_BLOCKS   ((size_t)1 << 20)

static kvbm_status_t replay_streamed(replay_t *replay, const run_options_t *options)
{
    trace_reader_t *reader = NULL;
    kvbm_status_t status = trace_reader_open(options->trace_path, &reader);
    if (status != KVBM_OK) {
        fprintf(stderr, "kvbm-replay: cannot open %s: %s\n", options->trace_path,
                status == KVBM_ERR_IO ? strerror(errno) : kvbm_status_str(status));
        return status;
    }
    if (options->max_line_bytes != 0)
        status = trace_reader_set_max_line(reader, options->max_line_bytes);
    struct stat st;
    double size = stat(options->trace_path, &st) == 0 && st.st_size > 0 ? (double)st.st_size : 0;
    progress_t progress = {.mode = options->progress, .next_line = 0.25};
    trace_t chunk = {0};
    size_t requests = 0;
    int end = 0;
    while (status == KVBM_OK && !end && (options->limit == 0 || requests < options->limit)) {
        size_t want = CHUNK_REQUESTS;
        if (options->limit != 0 && options->limit - requests < want)
            want = options->limit - requests;
        status = trace_reader_fill(reader, &chunk, want, CHUNK_BLOCKS, &end);
        if (status != KVBM_OK) {
            progress_end_line(&progress);
            fprintf(stderr, "kvbm-replay: %s: %s\n", options->trace_path,
                    trace_reader_error(reader));
            break;
        }
        for (size_t r = 0; r < chunk.requests && status == KVBM_OK; r++) {
            status = replay_request(replay, chunk.hashes + chunk.offsets[r],
                                    chunk.offsets[r + 1] - chunk.offsets[r]);
            if (status != KVBM_OK) {
                progress_end_line(&progress);
                fprintf(stderr, "kvbm-replay: line %zu: %s (%s)\n", chunk.lines[r],
                        kvbm_status_str(status), kvbm_last_error());
            }
        }
        requests += chunk.requests;
        if (status == KVBM_OK && size > 0)
            progress_update(&progress, (double)trace_reader_offset(reader) / size, requests);
    }
    if (status == KVBM_OK)
        progress_done(&progress, requests);
    trace_free(&chunk);
    trace_reader_close(reader);
    return status;
}

static kvbm_status_t open_publisher(const run_publish_t *publish, kvbm_publisher_t **out)
{
    kvbm_publisher_config_t config = KVBM_PUBLISHER_CONFIG_INIT;
    config.endpoint = publish->endpoint;
    config.replay_endpoint = publish->replay_endpoint;
    config.topic = publish->topic;
    if (publish->buffer_steps > 0)
        config.buffer_steps = publish->buffer_steps;
    if (publish->queue_depth > 0)
        config.queue_depth = publish->queue_depth;
    kvbm_status_t status = kvbm_publisher_create(&config, out);
    if (status != KVBM_OK) {
        fprintf(stderr, "kvbm-replay: cannot publish on %s: %s\n", publish->endpoint,
                kvbm_status_str(status));
        return status;
    }
    /* An engine starts empty: routers drop whatever an earlier run of it held. */
    const kvbm_event_record_t cleared = {.kind = KVBM_EVENT_CLEARED};
    status = kvbm_publisher_publish(*out, &cleared, 1);
    fprintf(stderr, "kvbm-replay: publishing KV events on %s", kvbm_publisher_endpoint(*out));
    if (kvbm_publisher_replay_endpoint(*out) != NULL)
        fprintf(stderr, " (replay %s)", kvbm_publisher_replay_endpoint(*out));
    fprintf(stderr, "\n");
    return status;
}

static kvbm_status_t write_tier(FILE *out, const char *name, kvbm_manager_t *manager)
{
    fprintf(out, "\"%s\": [", name);
    if (manager != NULL) {
        kvbm_pool_counts_t counts;
        kvbm_manager_counts(manager, &counts);
        uint64_t *hashes = malloc(sizeof(uint64_t) * (counts.total > 0 ? counts.total : 1));
        size_t n = 0;
        if (hashes == NULL)
            return KVBM_ERR_NO_MEMORY;
        kvbm_status_t status = kvbm_manager_registered_hashes(manager, hashes, counts.total, &n);
        for (size_t i = 0; status == KVBM_OK && i < n; i++)
            fprintf(out, "%s%llu", i > 0 ? ", " : "", (unsigned long long)hashes[i]);
        free(hashes);
        if (status != KVBM_OK)
            return status;
    }
    fprintf(out, "]");
    return KVBM_OK;
}

/* What each tier holds when the replay ends, and how far the events went,
 * as one JSON object (written to a temporary name, then renamed, so a
 * reader never sees half of it). */
static kvbm_status_t write_state(const char *path, replay_t *replay,
                                 const kvbm_publisher_metrics_t *events)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return KVBM_ERR_INVALID_ARG;
    FILE *out = fopen(tmp, "w");
    if (out == NULL) {
        fprintf(stderr, "kvbm-replay: cannot write %s: %s\n", tmp, strerror(errno));
        return KVBM_ERR_IO;
    }
    fprintf(out, "{\"next_seq\": %llu, \"batches_dropped\": %llu, \"resyncs\": %llu, ",
            (unsigned long long)events->next_seq, (unsigned long long)events->batches_dropped,
            (unsigned long long)events->resyncs);
    kvbm_status_t status = write_tier(out, "GPU", replay_manager(replay, KVBM_MEDIUM_GPU));
    fprintf(out, ", ");
    if (status == KVBM_OK)
        status = write_tier(out, "CPU", replay_manager(replay, KVBM_MEDIUM_CPU));
    fprintf(out, ", ");
    if (status == KVBM_OK)
        status = write_tier(out, "DISK", replay_manager(replay, KVBM_MEDIUM_DISK));
    fprintf(out, "}\n");
    if (fclose(out) != 0 || status != KVBM_OK || rename(tmp, path) != 0) {
        fprintf(stderr, "kvbm-replay: cannot write %s\n", path);
        return status != KVBM_OK ? status : KVBM_ERR_IO;
    }
    return KVBM_OK;
}

/* After the replay: every batch handed to the socket, the state written,
 * and (with hold) the sockets kept until stdin closes, for subscribers
 * catching up through the replay socket. */
static kvbm_status_t finish_publishing(const run_publish_t *publish, kvbm_publisher_t *publisher,
                                       replay_t *replay, run_result_t *result_out)
{
    kvbm_status_t status = kvbm_publisher_flush(publisher, PUBLISH_FLUSH_MS);
    /* A drop after the last request's resync: with the queue now empty, the
     * snapshot gets through. */
    for (int tries = 0; status == KVBM_OK && kvbm_publisher_resync_needed(publisher) && tries < 3;
         tries++) {
        status = replay_announce(replay);
        if (status == KVBM_OK)
            status = kvbm_publisher_flush(publisher, PUBLISH_FLUSH_MS);
    }
    if (status != KVBM_OK) {
        fprintf(stderr, "kvbm-replay: publishing did not finish: %s\n", kvbm_status_str(status));
        return status;
    }
    kvbm_publisher_metrics(publisher, &result_out->events);
    result_out->published = true;
    if (publish->state_path != NULL) {
        status = write_state(publish->state_path, replay, &result_out->events);
        if (status != KVBM_OK)
            return status;
    }
    if (publish->hold) {
        fprintf(stderr, "kvbm-replay: replay done; event sockets open until stdin closes\n");
        while (fgetc(stdin) != EOF)
            ;
    }
    return KVBM_OK;
}

/* The replay's configuration from the command line's options; refuses an
 * unknown policy, and a G3 without a G2, saying why. */
static kvbm_status_t make_config(const run_options_t *options, const char *g2_name,
                                 const char *g3_name, replay_config_t *config_out)
{
    replay_config_t config = {
        .g1_blocks = options->g1_blocks,
        .g2_blocks = options->g2_blocks,
        .g3_blocks = options->g3_blocks,
        .g1_policy = run_find_policy(options->policy),
        .g2_policy = run_find_policy(g2_name),
        .g3_policy = run_find_policy(g3_name),
        .policy_config = KVBM_POLICY_CONFIG_INIT,
        .data_mode = !options->logical,
        .backend_kind = options->backend_kind,
        .block_kib = options->block_kib,
        .verify = options->verify,
        .g3_dir = options->g3_dir,
        .g3_keep = options->g3_keep,
        .g3_min_free_bytes = options->g3_min_free_bytes,
        .g2_admission = options->g2_admission,
        .admission_keep_ratio = options->admission_keep_ratio,
        .no_hints = options->no_hints,
    };
    if (config.g1_policy == NULL || config.g2_policy == NULL || config.g3_policy == NULL) {
        fprintf(stderr, "kvbm-replay: unknown policy '%s'\n",
                config.g1_policy == NULL   ? options->policy
                : config.g2_policy == NULL ? g2_name
                                           : g3_name);
        return KVBM_ERR_INVALID_ARG;
    }
    if (options->g3_blocks > 0 && options->g2_blocks == 0) {
        fprintf(stderr, "kvbm-replay: a G3 tier (--g3-blocks) needs a G2 tier (--g2-blocks)\n");
        return KVBM_ERR_INVALID_ARG;
    }
    *config_out = config;
    return KVBM_OK;
}

kvbm_status_t run_replay(const run_options_t *options, const trace_t *loaded,
                         run_result_t *result_out)
{
    double start = wall_now_s();
    bool belady = strcmp(options->policy, REPLAY_BELADY) == 0;
    const char *g2_name = options->g2_policy != NULL ? options->g2_policy : options->policy;
    const char *g3_name = options->g3_policy != NULL ? options->g3_policy : g2_name;
    replay_config_t config;
    kvbm_status_t status = make_config(options, g2_name, g3_name, &config);
    if (status != KVBM_OK)
        return status;

    /* The offline bound reads the whole trace first. */
    trace_t own_trace = {0};
    const trace_t *trace = loaded;
    next_use_oracle_t *oracle = NULL;
    bool needs_oracle = belady || strcmp(g2_name, REPLAY_BELADY) == 0 ||
                        (options->g3_blocks > 0 && strcmp(g3_name, REPLAY_BELADY) == 0);
    if (needs_oracle && trace == NULL) {
        char error[300];
        status = trace_load(options->trace_path, options->limit, options->max_line_bytes,
                            &own_trace, error, sizeof(error));
        if (status != KVBM_OK) {
            fprintf(stderr, "kvbm-replay: %s: %s\n", options->trace_path, error);
            return status;
        }
        trace = &own_trace;
    }
    if (needs_oracle) {
        status = oracle_create(trace, &oracle);
        if (status != KVBM_OK)
            goto out_free_trace;
        config.policy_config.next_use = oracle_next_use;
        config.policy_config.next_use_ctx = oracle;
    }

    kvbm_publisher_t *publisher = NULL;
    kvbm_event_batcher_t *events = NULL;
    if (options->publish.endpoint != NULL) {
        status = open_publisher(&options->publish, &publisher);
        if (status == KVBM_OK)
            status = kvbm_publisher_batcher_create(publisher, &events);
        if (status != KVBM_OK)
            goto out_destroy_publisher;
        config.events = events;
        config.publisher = publisher;
    }
    replay_t *replay = NULL;
    status = replay_create(&config, &replay);
    if (status != KVBM_OK) {
        fprintf(stderr, "kvbm-replay: cannot create the managers: %s (%s)\n",
                kvbm_status_str(status), kvbm_last_error());
        goto out_destroy_publisher;
    }
    if (trace != NULL)
        status = replay_loaded(replay, trace, options->limit, oracle, options->progress);
    else
        status = replay_streamed(replay, options);
    if (status == KVBM_OK) {
        replay_get_counts(replay, &result_out->counts);
        result_out->wall_s = wall_now_s() - start;
        snprintf(result_out->backend, sizeof(result_out->backend), "%s",
                 replay_backend_name(replay));
        const char *engine = replay_g3_engine(replay);
        snprintf(result_out->g3_engine, sizeof(result_out->g3_engine), "%s",
                 engine != NULL ? engine : "");
        result_out->published = false;
        if (publisher != NULL)
            status = finish_publishing(&options->publish, publisher, replay, result_out);
    }
    replay_destroy(replay);
out_destroy_publisher:
    kvbm_event_batcher_destroy(events);
    kvbm_publisher_destroy(publisher);
    oracle_destroy(oracle);
out_free_trace:
    trace_free(&own_trace);
    return status;
}
