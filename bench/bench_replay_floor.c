/*
 * The replay floor (bench/floor/replay_floor.h): the replay contract, LRU,
 * G1 only, as plainly and fast as C allows, the reference kvbm's replay core
 * is measured against. The trace is loaded whole first with kvbm-replay's
 * reader; ns_per_block is the time of the contract's steps over every
 * request, divided by blocks. Prints the contract's counts in kvbm-replay's
 * JSON field names.
 *
 * With --vs-kvbm R, it runs R rounds, each replaying the trace through the
 * floor and then through kvbm's replay core (replay_request, the function
 * kvbm-replay times, LRU, G1 only, logical mode) on fresh state, timed the
 * same way over the whole loop, and prints every round, the fastest and the
 * median of each, and fastest kvbm / fastest floor. The counts must agree.
 *
 *   bench_replay_floor [--g1-blocks N] [--json] [--vs-kvbm ROUNDS] TRACE.jsonl
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "floor/replay_floor.h"
#include "replay.h"
#include "trace.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_replay_floor [--g1-blocks N] [--json] [--vs-kvbm ROUNDS] TRACE.jsonl\n");
}

/* One replay of the whole trace through the floor; ns per block. */
static double run_floor(const trace_t *trace, uint32_t g1_blocks, floor_counts_t *counts_out)
{
    replay_floor_t *floor = replay_floor_create(g1_blocks);
    if (floor == NULL) {
        fprintf(stderr, "bench_replay_floor: out of memory\n");
        exit(1);
    }
    double start = bench_now_ns();
    for (size_t r = 0; r < trace->requests; r++)
        replay_floor_request(floor, trace->hashes + trace->offsets[r],
                             trace->offsets[r + 1] - trace->offsets[r]);
    double elapsed = bench_now_ns() - start;
    *counts_out = *replay_floor_counts(floor);
    replay_floor_destroy(floor);
    return trace->blocks > 0 ? elapsed / (double)trace->blocks : 0.0;
}

/* The same through kvbm's replay core; ns per block. */
static double run_kvbm(const trace_t *trace, uint32_t g1_blocks, replay_counts_t *counts_out)
{
    replay_config_t config = {.g1_blocks = g1_blocks,
                              .g1_policy = kvbm_policy_lru(),
                              .g2_policy = kvbm_policy_lru(),
                              .policy_config = KVBM_POLICY_CONFIG_INIT};
    replay_t *replay = NULL;
    kvbm_status_t status = replay_create(&config, &replay);
    double start = bench_now_ns();
    for (size_t r = 0; r < trace->requests && status == KVBM_OK; r++)
        status = replay_request(replay, trace->hashes + trace->offsets[r],
                                trace->offsets[r + 1] - trace->offsets[r]);
    double elapsed = bench_now_ns() - start;
    if (status != KVBM_OK) {
        fprintf(stderr, "bench_replay_floor: kvbm: %s\n", kvbm_status_str(status));
        exit(1);
    }
    replay_get_counts(replay, counts_out);
    replay_destroy(replay);
    return trace->blocks > 0 ? elapsed / (double)trace->blocks : 0.0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Rounds of floor then kvbm; returns 0 when every count agreed. */
static int vs_kvbm(const trace_t *trace, uint32_t g1_blocks, int rounds)
{
    double *floor_ns = malloc(sizeof(double) * (size_t)rounds);
    double *kvbm_ns = malloc(sizeof(double) * (size_t)rounds);
    if (floor_ns == NULL || kvbm_ns == NULL)
        exit(1);
    floor_counts_t f;
    replay_counts_t k;
    printf("replay core vs floor: %zu requests, %zu blocks, G1 %u, LRU (ns per block)\n",
           trace->requests, trace->blocks, g1_blocks);
    for (int r = 0; r < rounds; r++) {
        floor_ns[r] = run_floor(trace, g1_blocks, &f);
        kvbm_ns[r] = run_kvbm(trace, g1_blocks, &k);
        printf("  round %2d  floor %7.2f  kvbm %7.2f  ratio %5.2f\n", r + 1, floor_ns[r],
               kvbm_ns[r], kvbm_ns[r] / floor_ns[r]);
        if (f.g1_hits != k.g1_hits || f.g1_evictions != k.g1_evictions || f.dedup != k.dedup ||
            f.misses != k.misses || f.oversize != k.oversize) {
            fprintf(stderr, "bench_replay_floor: counts differ from kvbm's\n");
            return 1;
        }
    }
    qsort(floor_ns, (size_t)rounds, sizeof(double), compare_doubles);
    qsort(kvbm_ns, (size_t)rounds, sizeof(double), compare_doubles);
    printf("  floor fastest %.2f median %.2f; kvbm fastest %.2f median %.2f; "
           "fastest kvbm / fastest floor %.2f\n",
           floor_ns[0], floor_ns[rounds / 2], kvbm_ns[0], kvbm_ns[rounds / 2],
           kvbm_ns[0] / floor_ns[0]);
    printf("  counts: g1_hits %llu, g1_evictions %llu, dedup %llu (equal)\n",
           (unsigned long long)k.g1_hits, (unsigned long long)k.g1_evictions,
           (unsigned long long)k.dedup);
    free(floor_ns);
    free(kvbm_ns);
    return 0;
}

static void print_counts(const floor_counts_t *c, unsigned long g1_blocks, double ns_per_block,
                         int json)
{
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
}

int main(int argc, char **argv)
{
    unsigned long g1_blocks = 5859;
    int json = 0, rounds = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--g1-blocks") == 0 && i + 1 < argc) {
            g1_blocks = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || g1_blocks == 0 || g1_blocks > UINT32_MAX / 2) {
                fprintf(stderr, "bench_replay_floor: bad --g1-blocks '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--vs-kvbm") == 0 && i + 1 < argc) {
            rounds = (int)strtol(argv[++i], &end, 10);
            if (*end != '\0' || rounds < 1 || rounds > 1000) {
                fprintf(stderr, "bench_replay_floor: bad --vs-kvbm '%s'\n", argv[i]);
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
    if (trace_load(path, 0, 0, &trace, error, sizeof(error)) != KVBM_OK) {
        fprintf(stderr, "bench_replay_floor: %s: %s\n", path, error);
        return 1;
    }
    int rc = 0;
    if (rounds > 0) {
        rc = vs_kvbm(&trace, (uint32_t)g1_blocks, rounds);
    } else {
        floor_counts_t counts;
        double ns = run_floor(&trace, (uint32_t)g1_blocks, &counts);
        print_counts(&counts, g1_blocks, ns, json);
    }
    trace_free(&trace);
    return rc;
}
