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
                 "  -o, --output FILE  write here instead of standard output\n");
}

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

int main(int argc, char **argv)
{
    tracegen_options_t options = {.seed = 1, .requests = 8000, .block_tokens = 512};
    const char *workload = "mix", *output_path = NULL;
    enum { OPT_WORKLOAD = 256, OPT_REQUESTS, OPT_SEED, OPT_BLOCK_TOKENS, OPT_HELP };
    static const struct option long_options[] = {
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"block-tokens", required_argument, NULL, OPT_BLOCK_TOKENS},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;
    uint64_t value;
    while ((opt = getopt_long(argc, argv, "ho:", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_WORKLOAD:
            workload = optarg;
            break;
        case OPT_REQUESTS:
            if (parse_u64(optarg, 100000000, &value) != 0 || value == 0) {
                fprintf(stderr, "kvbm-tracegen: --requests needs 1..100000000, not '%s'\n", optarg);
                return 2;
            }
            options.requests = (size_t)value;
            break;
        case OPT_SEED:
            if (parse_u64(optarg, UINT64_MAX, &value) != 0) {
                fprintf(stderr, "kvbm-tracegen: --seed needs an unsigned integer, not '%s'\n",
                        optarg);
                return 2;
            }
            options.seed = value;
            break;
        case OPT_BLOCK_TOKENS:
            if (parse_u64(optarg, 1u << 20, &value) != 0 || value == 0) {
                fprintf(stderr, "kvbm-tracegen: --block-tokens needs 1..1048576, not '%s'\n",
                        optarg);
                return 2;
            }
            options.block_tokens = (uint32_t)value;
            break;
        case 'o':
            output_path = optarg;
            break;
        case OPT_HELP:
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    char error[256];
    if (tracegen_parse_workload(workload, options.weights, error, sizeof(error)) != 0) {
        fprintf(stderr, "kvbm-tracegen: --workload: %s\n", error);
        return 2;
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
