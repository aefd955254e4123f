/*
 * kvbm-tracegen: writes a synthetic Mooncake-format request trace for the
 * serving shapes kvbm-replay is measured on (docs/TRACEGEN.md).
 *
 *   kvbm-tracegen --workload mix --requests 8000 --seed 1 -o mix.jsonl
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracegen.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: kvbm-tracegen [options]\n"
                 "  --workload SPEC    a preset (chat, agent, sysprompt, rag, scan, mix) or\n"
                 "                     shape[:weight],... over the shapes");
    for (int s = 0; s < TRACEGEN_SHAPE_COUNT; s++)
        fprintf(out, " %s", tracegen_shape_name((tracegen_shape_t)s));
    fprintf(out, "\n"
                 "                     (default mix)\n"
                 "  --requests N       requests to write (default 8000)\n"
                 "  --seed N           random seed (default 1); same options, same bytes\n"
                 "  --block-tokens N   tokens per block id (default 512, as Mooncake)\n"
                 "  -o, --output FILE  write here instead of standard output\n"
                 "  --version          print the version and exit\n"
                 "  -h, --help         print this help and exit\n");
}

enum { OPT_WORKLOAD = 256, OPT_REQUESTS, OPT_SEED, OPT_BLOCK_TOKENS, OPT_HELP, OPT_VERSION };

static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || text[0] == '-' || value > max)
        return -1;
    *out = value;
    return 0;
}

/* What parsing decided: go on and write, or exit with this status. */
#define CLI_RUN (-1)

/* A usage error: one line naming what is wrong and where help is; exit 2. */
static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "kvbm-tracegen: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (try 'kvbm-tracegen --help')\n");
    return 2;
}

/* One option with a numeric value; CLI_RUN when it was valid. */
static int apply_number(int opt, const char *arg, tracegen_options_t *options)
{
    uint64_t value;
    switch (opt) {
    case OPT_REQUESTS:
        if (parse_u64(arg, 100000000, &value) != 0 || value == 0)
            return usage_error("--requests needs 1..100000000, not '%s'", arg);
        options->requests = (size_t)value;
        return CLI_RUN;
    case OPT_SEED:
        if (parse_u64(arg, UINT64_MAX, &value) != 0)
            return usage_error("--seed needs an unsigned integer, not '%s'", arg);
        options->seed = value;
        return CLI_RUN;
    default: /* OPT_BLOCK_TOKENS */
        if (parse_u64(arg, 1u << 20, &value) != 0 || value == 0)
            return usage_error("--block-tokens needs 1..1048576, not '%s'", arg);
        options->block_tokens = (uint32_t)value;
        return CLI_RUN;
    }
}

static int parse_args(int argc, char **argv, tracegen_options_t *options, const char **workload,
                      const char **output_path)
{
    static const struct option long_options[] = {
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"block-tokens", required_argument, NULL, OPT_BLOCK_TOKENS},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    int opt, decided = CLI_RUN;
    opterr = 0; /* usage errors are reported here, in one line */
    while (decided == CLI_RUN &&
           (opt = getopt_long(argc, argv, ":ho:", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_WORKLOAD:
            *workload = optarg;
            break;
        case OPT_REQUESTS:
        case OPT_SEED:
        case OPT_BLOCK_TOKENS:
            decided = apply_number(opt, optarg, options);
            break;
        case 'o':
            *output_path = optarg;
            break;
        case OPT_HELP:
        case 'h':
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("kvbm-tracegen %s\n", KVBM_TRACEGEN_VERSION);
            return 0;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (decided == CLI_RUN && optind != argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return decided;
}

int main(int argc, char **argv)
{
    tracegen_options_t options = {.seed = 1, .requests = 8000, .block_tokens = 512};
    const char *workload = "mix", *output_path = NULL;
    int decided = parse_args(argc, argv, &options, &workload, &output_path);
    if (decided != CLI_RUN)
        return decided;
    char error[256];
    if (tracegen_parse_workload(workload, options.weights, error, sizeof(error)) != 0) {
        return usage_error("--workload: %s", error);
    }
    FILE *out = output_path != NULL ? fopen(output_path, "w") : stdout;
    if (out == NULL) {
        fprintf(stderr, "kvbm-tracegen: cannot write %s: %s\n", output_path, strerror(errno));
        return 1;
    }
    int status = tracegen_write(&options, out, error, sizeof(error));
    if (status != 0)
        fprintf(stderr, "kvbm-tracegen: %s\n", error);
    /* A full disk may only show at the final flush. */
    if ((output_path != NULL ? fclose(out) : fflush(out)) != 0 && status == 0) {
        fprintf(stderr, "kvbm-tracegen: write error: %s\n", strerror(errno));
        status = -1;
    }
    return status == 0 ? 0 : 1;
}
