/*
 * The replay floor (bench/floor/replay_floor.h): the replay contract, LRU,
 * G1 only, as plainly and fast as C allows, the reference kvbm-replay's
 * ns_per_block is measured against in the same run
 * (bench/replay-vs-floor.sh). The trace is loaded whole first with
 * kvbm-replay's reader; ns_per_block is the time of the contract's steps
 * over every request, divided by blocks. Prints the contract's counts in
 * kvbm-replay's JSON field names.
 *
 *   bench_replay_floor [--g1-blocks N] [--json] TRACE.jsonl
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "floor/replay_floor.h"
#include "trace.h"

static void usage(void)
{
    fprintf(stderr, "usage: bench_replay_floor [--g1-blocks N] [--json] TRACE.jsonl\n");
}

int main(int argc, char **argv)
{
    unsigned long g1_blocks = 5859;
    int json = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--g1-blocks") == 0 && i + 1 < argc) {
            char *end = NULL;
            g1_blocks = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || g1_blocks == 0 || g1_blocks > UINT32_MAX / 2) {
                fprintf(stderr, "bench_replay_floor: bad --g1-blocks '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] != '-' && path == NULL) {
            path = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (path == NULL) {
        usage();
        return 2;
    }
    trace_t trace;
    char error[300];
    if (trace_load(path, 0, &trace, error, sizeof(error)) != KVBM_OK) {
        fprintf(stderr, "bench_replay_floor: %s: %s\n", path, error);
        return 1;
    }
    replay_floor_t *floor = replay_floor_create((uint32_t)g1_blocks);
    if (floor == NULL) {
        fprintf(stderr, "bench_replay_floor: out of memory\n");
        trace_free(&trace);
        return 1;
    }
    double start = bench_now_ns();
    for (size_t r = 0; r < trace.requests; r++)
        replay_floor_request(floor, trace.hashes + trace.offsets[r],
                             trace.offsets[r + 1] - trace.offsets[r]);
    double elapsed = bench_now_ns() - start;

    const floor_counts_t *c = replay_floor_counts(floor);
    double ns_per_block = c->blocks > 0 ? elapsed / (double)c->blocks : 0.0;
    double hit_rate = c->blocks > 0 ? (double)c->g1_hits / (double)c->blocks : 0.0;
    if (json)
        printf("{\"requests\": %llu, \"blocks\": %llu, \"g1_hits\": %llu, \"g2_hits\": 0, "
               "\"misses\": %llu, \"offloads\": 0, \"onboards\": 0, \"offload_skipped\": 0, "
               "\"dedup\": %llu, \"oversize\": %llu, \"g1_evictions\": %llu, "
               "\"g2_evictions\": 0, \"hit_rate\": %.6f, \"policy\": \"lru\", "
               "\"g1_blocks\": %lu, \"g2_blocks\": 0, \"backend\": \"floor\", "
               "\"ns_per_block\": %.2f}\n",
               (unsigned long long)c->requests, (unsigned long long)c->blocks,
               (unsigned long long)c->g1_hits, (unsigned long long)c->misses,
               (unsigned long long)c->dedup, (unsigned long long)c->oversize,
               (unsigned long long)c->g1_evictions, hit_rate, g1_blocks, ns_per_block);
    else
        printf("floor: %llu requests, %llu blocks, g1_hits %llu, misses %llu, dedup %llu, "
               "oversize %llu, g1_evictions %llu, hit_rate %.4f, ns_per_block %.2f\n",
               (unsigned long long)c->requests, (unsigned long long)c->blocks,
               (unsigned long long)c->g1_hits, (unsigned long long)c->misses,
               (unsigned long long)c->dedup, (unsigned long long)c->oversize,
               (unsigned long long)c->g1_evictions, hit_rate, ns_per_block);
    replay_floor_destroy(floor);
    trace_free(&trace);
    return 0;
}
