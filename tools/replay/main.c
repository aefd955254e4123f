/*
 * kvbm-replay: replays a Mooncake-format request trace through kvbm and
 * reports what a serving engine would have reused (shared/REPLAY.md).
 *
 *   kvbm-replay [options] TRACE.jsonl
 *   kvbm-replay --sweep 1000,5859,10000,30000 [--policies lru,...] TRACE.jsonl
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run.h"
#include "sweep.h"

/* A usage error: one line naming the problem, and where to find the rest;
 * returns the exit status 2. */
static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "kvbm-replay: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (try 'kvbm-replay --help')\n");
    return 2;
}

static void print_version(void)
{
    printf("kvbm-replay %s\n", kvbm_version());
    if (kvbm_version_code() != KVBM_VERSION_CODE)
        printf("built against kvbm %d.%d.%d headers\n", KVBM_VERSION_MAJOR, KVBM_VERSION_MINOR,
               KVBM_VERSION_PATCH);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kvbm-replay [options] TRACE.jsonl   (TRACE may be - for stdin)\n"
            "  --g1-blocks N      device tier capacity in blocks (default 5859)\n"
            "  --g2-blocks N      host tier capacity in blocks (default 0: no host tier)\n"
            "  --policy NAME      G1 eviction policy (default lru); belady = offline bound\n"
            "  --g2-policy NAME   G2 eviction policy (default: same as --policy)\n"
            "  --g3-blocks N      disk tier capacity in blocks (default 0: no disk tier;\n"
            "                     needs --g2-blocks)\n"
            "  --g3-policy NAME   G3 eviction policy (default: same as --g2-policy)\n"
            "  --g3-dir DIR       data mode: directory of the G3 file (default /tmp)\n"
            "  --g3-keep          data mode: reopen the G3 file an earlier run kept (warm)\n"
            "                     and keep it (default: start empty, remove it at the end)\n"
            "  --g3-min-free-mib N  data mode: free space G3 leaves on its filesystem\n"
            "                     (default 1024)\n"
            "  --limit N          replay only the first N requests\n"
            "  --json             print one JSON object with the counts on stdout\n"
            "  --sweep C1,C2,...  capacity sweep: every policy at every G1 capacity\n"
            "  --policies A,B,... policies for the sweep (default: all, and belady)\n"
            "  --csv FILE         sweep CSV output (default replay-sweep.csv)\n"
            "  --plot FILE        sweep PNG plot drawn with gnuplot (default replay-sweep.png)\n"
            "  --no-progress      no progress (default: a bar on a terminal, else a line\n"
            "                     at each quarter of the trace)\n"
            "  --logical          with a G2 tier: replay the logic only, no data copies\n"
            "  --backend KIND     data mode memory backend: auto (default), cpu, cuda\n"
            "  --block-kib N      data mode block size in KiB (default 16)\n"
            "  --no-verify        data mode: do not fill and check block contents\n"
            "  --max-line-bytes N longest trace line accepted (default 16777216, at most\n"
            "                     1073741824); a longer line stops the replay with an error\n"
            "  --g2-admission     offload to G2 only evicted blocks whose class comes back\n"
            "                     often enough (kvbm/admission.h; default: offload all)\n"
            "  --admission-keep-ratio X  the filter's keep ratio (default 0.65)\n"
            "  --no-hints         register blocks without the request length and position\n"
            "  --publish ENDPOINT publish the tiers' KV events in vLLM's wire format\n"
            "                     (tcp://*:5557 binds, tcp://host:5557 connects)\n"
            "  --publish-replay ENDPOINT  ROUTER socket answering replay requests\n"
            "  --publish-topic T  topic frame of every batch (default empty)\n"
            "  --publish-buffer N batches kept for replay (default 10000)\n"
            "  --publish-queue N  batches the publisher's queue holds (default 100000);\n"
            "                     a full queue drops batches, and routers are resynchronised\n"
            "  --dump-state FILE  after the replay: each tier's hashes as JSON\n"
            "  --publish-hold     after the replay: keep the sockets until stdin closes\n"
            "  --version          print the version and exit\n"
            "  -h, --help         print this help and exit\n"
            "policies:");
    for (const char *const *name = kvbm_policy_names(); *name != NULL; name++)
        fprintf(out, " %s", *name);
    fprintf(out, "\n");
}

static int parse_u32(const char *text, uint32_t *out)
{
    char *end = NULL;
    unsigned long value = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || value > UINT32_MAX || text[0] == '-')
        return -1;
    *out = (uint32_t)value;
    return 0;
}

static void print_events(const run_result_t *result)
{
    const kvbm_publisher_metrics_t *e = &result->events;
    fprintf(stderr,
            "  events: %llu batches (%llu events) published, %llu dropped, %llu resyncs, %llu "
            "replay requests\n",
            (unsigned long long)e->batches_published, (unsigned long long)e->events_published,
            (unsigned long long)e->batches_dropped, (unsigned long long)e->resyncs,
            (unsigned long long)e->replay_requests);
}

/* A positive decimal size up to @p max. */
static int parse_size(const char *text, size_t max, size_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || errno != 0 || value == 0 || value > max)
        return -1;
    *out = (size_t)value;
    return 0;
}

static const char *g3_policy_name(const run_options_t *options)
{
    if (options->g3_policy != NULL)
        return options->g3_policy;
    return options->g2_policy != NULL ? options->g2_policy : options->policy;
}

static void print_summary(const run_options_t *options, const run_result_t *result)
{
    const replay_counts_t *c = &result->counts;
    const char *g2_policy = options->g2_policy != NULL ? options->g2_policy : options->policy;
    fprintf(stderr, "kvbm-replay: %s\n", options->trace_path);
    fprintf(stderr, "  policy %s, G1 %u blocks", options->policy, options->g1_blocks);
    if (options->g2_blocks > 0)
        fprintf(stderr, ", G2 %u blocks (%s)", options->g2_blocks, g2_policy);
    if (options->g3_blocks > 0)
        fprintf(stderr, ", G3 %u blocks (%s%s%s)", options->g3_blocks, g3_policy_name(options),
                result->g3_engine[0] != '\0' ? ", " : "", result->g3_engine);
    fprintf(stderr, ", backend %s\n", result->backend);
    fprintf(stderr, "  %-18s %12s\n", "count", "value");
#define PRINT_COUNT(name) fprintf(stderr, "  %-18s %12llu\n", #name, (unsigned long long)c->name);
    REPLAY_COUNTS_LIST(PRINT_COUNT)
    if (options->g3_blocks > 0) {
        REPLAY_G3_COUNTS_LIST(PRINT_COUNT)
    }
#undef PRINT_COUNT
    fprintf(stderr, "  %-18s %12.4f\n", "hit_rate", replay_hit_rate(c));
    if (options->g2_blocks > 0)
        fprintf(stderr, "  %-18s %12.4f\n", "offloads/g2_hit", replay_offloads_per_g2_hit(c));
    fprintf(stderr, "  %-18s %12.1f\n", "ns_per_block",
            c->blocks > 0 ? c->core_ns / (double)c->blocks : 0.0);
    fprintf(stderr, "  %-18s %12.3f\n", "wall_s", result->wall_s);
    if (c->bytes_moved > 0 || strcmp(result->backend, "logical") != 0) {
        fprintf(stderr, "  %-18s %12.3f\n", "gib_moved", (double)c->bytes_moved / (1u << 30));
        fprintf(stderr, "  %-18s %12.2f\n", "copy_gbps",
                c->core_ns > 0 ? (double)c->bytes_moved / c->core_ns : 0.0);
        fprintf(stderr, "  %-18s %12llu\n", "failed_copies", (unsigned long long)c->failed_copies);
        fprintf(stderr, "  %-18s %12llu\n", "verified_blocks",
                (unsigned long long)c->verified_blocks);
        fprintf(stderr, "  %-18s %12llu\n", "wrong_blocks", (unsigned long long)c->wrong_blocks);
    }
    if (result->published)
        print_events(result);
}

static void print_json(const run_options_t *options, const run_result_t *result)
{
    const replay_counts_t *c = &result->counts;
    printf("{");
#define PRINT_JSON_COUNT(name) printf("\"" #name "\": %llu, ", (unsigned long long)c->name);
    REPLAY_COUNTS_LIST(PRINT_JSON_COUNT)
    if (options->g3_blocks > 0) {
        REPLAY_G3_COUNTS_LIST(PRINT_JSON_COUNT)
        printf("\"g3_blocks\": %u, \"g3_policy\": \"%s\", \"g3_engine\": \"%s\", ",
               options->g3_blocks, g3_policy_name(options), result->g3_engine);
    }
#undef PRINT_JSON_COUNT
    printf("\"offloads_per_g2_hit\": %.6f, \"offload_bytes_per_g2_hit\": %.1f, ",
           replay_offloads_per_g2_hit(c),
           replay_offloads_per_g2_hit(c) * (double)options->block_kib * 1024.0);
    printf("\"hit_rate\": %.6f, \"policy\": \"%s\", \"g2_policy\": \"%s\", \"g1_blocks\": %u, "
           "\"g2_blocks\": %u, \"backend\": \"%s\", \"wall_s\": %.6f, \"ns_per_block\": %.2f, "
           "\"bytes_moved\": %llu, \"copy_gbps\": %.3f, \"failed_copies\": %llu, "
           "\"verified_blocks\": %llu, \"wrong_blocks\": %llu}\n",
           replay_hit_rate(c), options->policy,
           options->g2_policy != NULL ? options->g2_policy : options->policy, options->g1_blocks,
           options->g2_blocks, result->backend, result->wall_s,
           c->blocks > 0 ? c->core_ns / (double)c->blocks : 0.0, (unsigned long long)c->bytes_moved,
           c->core_ns > 0 ? (double)c->bytes_moved / c->core_ns : 0.0,
           (unsigned long long)c->failed_copies, (unsigned long long)c->verified_blocks,
           (unsigned long long)c->wrong_blocks);
}

/* Everything the command line sets. */
typedef struct cli {
    run_options_t options;
    bool json, no_progress;
    const char *sweep, *policies, *csv_path, *plot_path;
} cli_t;

enum {
    OPT_G1 = 256,
    OPT_G2,
    OPT_POLICY,
    OPT_G2_POLICY,
    OPT_LIMIT,
    OPT_JSON,
    OPT_SWEEP,
    OPT_POLICIES,
    OPT_CSV,
    OPT_PLOT,
    OPT_NO_PROGRESS,
    OPT_HELP,
    OPT_LOGICAL,
    OPT_BACKEND,
    OPT_BLOCK_KIB,
    OPT_NO_VERIFY,
    OPT_G3,
    OPT_G3_POLICY,
    OPT_G3_DIR,
    OPT_G3_KEEP,
    OPT_G3_MIN_FREE,
    OPT_MAX_LINE,
    OPT_VERSION,
    OPT_G2_ADMISSION,
    OPT_KEEP_RATIO,
    OPT_NO_HINTS,
    OPT_PUBLISH,
    OPT_PUBLISH_REPLAY,
    OPT_PUBLISH_TOPIC,
    OPT_PUBLISH_BUFFER,
    OPT_PUBLISH_QUEUE,
    OPT_DUMP_STATE,
    OPT_PUBLISH_HOLD
};

/* What parsing decided: go on and run, or exit with this status. */
#define CLI_RUN (-1)

static int parse_ratio(const char *arg, double *ratio_out)
{
    char *end = NULL;
    double ratio = strtod(arg, &end);
    if (end == arg || *end != '\0' || !(ratio > 0.0) || ratio > 1000.0)
        return -1;
    *ratio_out = ratio;
    return 0;
}

static int parse_backend(const char *arg, kvbm_backend_kind_t *kind_out)
{
    if (strcmp(arg, "auto") == 0)
        *kind_out = KVBM_BACKEND_AUTO;
    else if (strcmp(arg, "cpu") == 0)
        *kind_out = KVBM_BACKEND_CPU;
    else if (strcmp(arg, "cuda") == 0)
        *kind_out = KVBM_BACKEND_CUDA;
    else
        return -1;
    return 0;
}

/* The event publishing options (--publish and what goes with it). */
static int apply_publish_option(int opt, const char *arg, cli_t *cli)
{
    run_publish_t *p = &cli->options.publish;
    switch (opt) {
    case OPT_PUBLISH:
        p->endpoint = arg;
        return CLI_RUN;
    case OPT_PUBLISH_REPLAY:
        p->replay_endpoint = arg;
        return CLI_RUN;
    case OPT_PUBLISH_TOPIC:
        p->topic = arg;
        return CLI_RUN;
    case OPT_PUBLISH_BUFFER:
        if (parse_u32(arg, &p->buffer_steps) == 0 && p->buffer_steps > 0)
            return CLI_RUN;
        return usage_error("--publish-buffer needs a positive integer, not '%s'", arg);
    case OPT_PUBLISH_QUEUE:
        if (parse_u32(arg, &p->queue_depth) == 0 && p->queue_depth > 0)
            return CLI_RUN;
        return usage_error("--publish-queue needs a positive integer, not '%s'", arg);
    case OPT_DUMP_STATE:
        p->state_path = arg;
        return CLI_RUN;
    case OPT_PUBLISH_HOLD:
        p->hold = true;
        return CLI_RUN;
    default:
        return usage_error("unknown option '%s'", arg);
    }
}

/* The options that take a number or a name and can be wrong. */
static int apply_checked_option(int opt, const char *arg, cli_t *cli)
{
    run_options_t *o = &cli->options;
    uint32_t value;
    switch (opt) {
    case OPT_G1:
        if (parse_u32(arg, &o->g1_blocks) == 0 && o->g1_blocks > 0)
            return CLI_RUN;
        return usage_error("--g1-blocks needs a positive integer, not '%s'", arg);
    case OPT_G2:
        if (parse_u32(arg, &o->g2_blocks) == 0)
            return CLI_RUN;
        return usage_error("--g2-blocks needs an integer, not '%s'", arg);
    case OPT_G3:
        if (parse_u32(arg, &o->g3_blocks) == 0)
            return CLI_RUN;
        return usage_error("--g3-blocks needs an integer, not '%s'", arg);
    case OPT_G3_MIN_FREE:
        if (parse_u32(arg, &value) == 0) {
            o->g3_min_free_bytes = (uint64_t)value << 20;
            return CLI_RUN;
        }
        return usage_error("--g3-min-free-mib needs an integer, not '%s'", arg);
    case OPT_LIMIT:
        if (parse_u32(arg, &value) == 0) {
            o->limit = value;
            return CLI_RUN;
        }
        return usage_error("--limit needs an integer, not '%s'", arg);
    case OPT_BACKEND:
        if (parse_backend(arg, &o->backend_kind) == 0)
            return CLI_RUN;
        return usage_error("--backend is auto, cpu or cuda, not '%s'", arg);
    case OPT_BLOCK_KIB:
        if (parse_u32(arg, &o->block_kib) == 0 && o->block_kib > 0 && o->block_kib <= 65536)
            return CLI_RUN;
        return usage_error("--block-kib needs 1..65536, not '%s'", arg);
    case OPT_MAX_LINE:
        if (parse_size(arg, TRACE_MAX_LINE_LIMIT, &o->max_line_bytes) == 0)
            return CLI_RUN;
        return usage_error("--max-line-bytes needs 1..1073741824, not '%s'", arg);
    case OPT_KEEP_RATIO:
        if (parse_ratio(arg, &o->admission_keep_ratio) == 0)
            return CLI_RUN;
        return usage_error("--admission-keep-ratio needs a number in (0, 1000], not '%s'", arg);
    default:
        return apply_publish_option(opt, arg, cli);
    }
}

/* One option; CLI_RUN to go on, else the exit status. */
static int apply_option(int opt, const char *arg, cli_t *cli)
{
    switch (opt) {
    case OPT_POLICY:
        cli->options.policy = arg;
        return CLI_RUN;
    case OPT_G2_POLICY:
        cli->options.g2_policy = arg;
        return CLI_RUN;
    case OPT_G3_POLICY:
        cli->options.g3_policy = arg;
        return CLI_RUN;
    case OPT_G3_DIR:
        cli->options.g3_dir = arg;
        return CLI_RUN;
    case OPT_G3_KEEP:
        cli->options.g3_keep = true;
        return CLI_RUN;
    case OPT_JSON:
        cli->json = true;
        return CLI_RUN;
    case OPT_SWEEP:
        cli->sweep = arg;
        return CLI_RUN;
    case OPT_POLICIES:
        cli->policies = arg;
        return CLI_RUN;
    case OPT_CSV:
        cli->csv_path = arg;
        return CLI_RUN;
    case OPT_PLOT:
        cli->plot_path = arg;
        return CLI_RUN;
    case OPT_NO_PROGRESS:
        cli->no_progress = true;
        return CLI_RUN;
    case OPT_LOGICAL:
        cli->options.logical = true;
        return CLI_RUN;
    case OPT_NO_VERIFY:
        cli->options.verify = false;
        return CLI_RUN;
    case OPT_G2_ADMISSION:
        cli->options.g2_admission = true;
        return CLI_RUN;
    case OPT_NO_HINTS:
        cli->options.no_hints = true;
        return CLI_RUN;
    case OPT_HELP:
    case 'h':
        usage(stdout);
        return 0;
    case OPT_VERSION:
        print_version();
        return 0;
    default:
        return apply_checked_option(opt, arg, cli);
    }
}

/* The publishing options that need --publish, or cannot go together. */
static int check_publish_options(const cli_t *cli)
{
    const run_publish_t *p = &cli->options.publish;
    bool publishing_options = p->replay_endpoint != NULL || p->topic != NULL ||
                              p->buffer_steps != 0 || p->state_path != NULL || p->hold;
    if (p->endpoint == NULL && publishing_options) {
        fprintf(stderr, "kvbm-replay: --publish-replay, --publish-topic, --publish-buffer, "
                        "--dump-state and --publish-hold need --publish\n");
        return 2;
    }
    if (p->endpoint != NULL && cli->sweep != NULL) {
        fprintf(stderr, "kvbm-replay: --publish replays one configuration, not a --sweep\n");
        return 2;
    }
    if (p->hold && strcmp(cli->options.trace_path, "-") == 0) {
        fprintf(stderr, "kvbm-replay: --publish-hold waits on stdin, which carries the trace\n");
        return 2;
    }
    return CLI_RUN;
}

static int parse_args(int argc, char **argv, cli_t *cli)
{
    static const struct option long_options[] = {
        {"g1-blocks", required_argument, NULL, OPT_G1},
        {"g2-blocks", required_argument, NULL, OPT_G2},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"g2-policy", required_argument, NULL, OPT_G2_POLICY},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"json", no_argument, NULL, OPT_JSON},
        {"sweep", required_argument, NULL, OPT_SWEEP},
        {"policies", required_argument, NULL, OPT_POLICIES},
        {"csv", required_argument, NULL, OPT_CSV},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"help", no_argument, NULL, OPT_HELP},
        {"logical", no_argument, NULL, OPT_LOGICAL},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"block-kib", required_argument, NULL, OPT_BLOCK_KIB},
        {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
        {"g3-blocks", required_argument, NULL, OPT_G3},
        {"g3-policy", required_argument, NULL, OPT_G3_POLICY},
        {"g3-dir", required_argument, NULL, OPT_G3_DIR},
        {"g3-keep", no_argument, NULL, OPT_G3_KEEP},
        {"g3-min-free-mib", required_argument, NULL, OPT_G3_MIN_FREE},
        {"max-line-bytes", required_argument, NULL, OPT_MAX_LINE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"g2-admission", no_argument, NULL, OPT_G2_ADMISSION},
        {"admission-keep-ratio", required_argument, NULL, OPT_KEEP_RATIO},
        {"no-hints", no_argument, NULL, OPT_NO_HINTS},
        {"publish", required_argument, NULL, OPT_PUBLISH},
        {"publish-replay", required_argument, NULL, OPT_PUBLISH_REPLAY},
        {"publish-topic", required_argument, NULL, OPT_PUBLISH_TOPIC},
        {"publish-buffer", required_argument, NULL, OPT_PUBLISH_BUFFER},
        {"publish-queue", required_argument, NULL, OPT_PUBLISH_QUEUE},
        {"dump-state", required_argument, NULL, OPT_DUMP_STATE},
        {"publish-hold", no_argument, NULL, OPT_PUBLISH_HOLD},
        {NULL, 0, NULL, 0},
    };
    int opt;
    opterr = 0; /* usage errors are reported here, in one line */
    while ((opt = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        if (opt == ':')
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        if (opt == '?') {
            char short_option[3] = {'-', (char)optopt, '\0'};
            return usage_error("unknown option '%s'",
                               optopt != 0 ? short_option : argv[optind - 1]);
        }
        int decided = apply_option(opt, optarg, cli);
        if (decided != CLI_RUN)
            return decided;
    }
    if (optind == argc)
        return usage_error("%s", "no trace file given");
    if (optind < argc - 1)
        return usage_error("one trace file, not several ('%s', ...)", argv[optind]);
    cli->options.trace_path = argv[optind];
    cli->options.progress = cli->no_progress        ? RUN_PROGRESS_NONE
                            : isatty(STDERR_FILENO) ? RUN_PROGRESS_BAR
                                                    : RUN_PROGRESS_LINES;
    return check_publish_options(cli);
}

/* The first policy named on the command line that does not exist, or NULL. */
static const char *unknown_policy(const run_options_t *options)
{
    const char *names[] = {options->policy, options->g2_policy, options->g3_policy};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i] != NULL && run_find_policy(names[i]) == NULL)
            return names[i];
    return NULL;
}

/* An option that would change nothing in the run asked for is refused: a
 * run whose numbers ignore part of the command line must not look like a
 * run that followed it. Says which and returns 2, or returns CLI_RUN. */
static int refuse_ignored_options(const cli_t *cli)
{
    const run_options_t *o = &cli->options;
    const char *why = NULL;
    if (cli->sweep != NULL && (o->policy != NULL || o->g2_policy != NULL))
        why = "--policy and --g2-policy do not apply to --sweep (list its policies with "
              "--policies; G2 follows each)";
    else if (cli->sweep != NULL && cli->json)
        why = "--json does not apply to --sweep (its numbers go to --csv)";
    else if (cli->sweep == NULL && cli->policies != NULL)
        why = "--policies needs --sweep (one replay takes --policy)";
    else if (o->g2_admission && o->g2_blocks == 0)
        why = "--g2-admission needs --g2-blocks";
    else if (o->admission_keep_ratio != 0.0 && !o->g2_admission)
        why = "--admission-keep-ratio needs --g2-admission";
    return why == NULL ? CLI_RUN : usage_error("%s", why);
}

int main(int argc, char **argv)
{
    cli_t cli = {.options = {.g1_blocks = 5859,
                             .backend_kind = KVBM_BACKEND_AUTO,
                             .block_kib = 16,
                             .verify = true,
                             .g3_min_free_bytes = (uint64_t)1024 << 20},
                 .csv_path = "replay-sweep.csv",
                 .plot_path = "replay-sweep.png"};
    int decided = parse_args(argc, argv, &cli);
    if (decided != CLI_RUN)
        return decided;
    decided = refuse_ignored_options(&cli);
    if (decided != CLI_RUN)
        return decided;
    const run_options_t *options = &cli.options;
    const char *unknown = unknown_policy(options);
    if (unknown != NULL)
        return usage_error("unknown policy '%s'", unknown);
    if (cli.options.policy == NULL)
        cli.options.policy = "lru";
    if (cli.sweep != NULL) {
        sweep_options_t sweep_options = {.capacities = cli.sweep,
                                         .policies = cli.policies,
                                         .csv_path = cli.csv_path,
                                         .plot_path = cli.plot_path};
        kvbm_status_t status = sweep_run(options, &sweep_options);
        /* sweep_run refuses bad --sweep or --policies lists with KVBM_ERR_INVALID_ARG. */
        return status == KVBM_OK ? 0 : status == KVBM_ERR_INVALID_ARG ? 2 : 1;
    }
    if (options->g3_blocks > 0 && options->g2_blocks == 0)
        return usage_error("%s", "--g3-blocks needs --g2-blocks");
    run_result_t result;
    if (run_replay(options, NULL, &result) != KVBM_OK)
        return 1;
    print_summary(options, &result);
    if (cli.json)
        print_json(options, &result);
    /* Counts that did not reach their reader are no result: say so. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kvbm-replay: writing the results failed: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
