/*
 * The manager's fixed cost per call, for instruction counts: a manager full
 * of inactive registered blocks, then CYCLED blocks go through
 * allocate+register+release (cycle_calls) and matched and released again
 * (match_calls), BATCH blocks per call. The two loops are functions of
 * their own so callgrind can count them alone:
 *
 *   valgrind --tool=callgrind --toggle-collect=cycle_calls \
 *       build/bench_manager_calls --batch 1
 *
 * and divide by CYCLED (printed). Also prints ns per block of each loop.
 * Single thread, LRU. Prints numbers only; never passes or fails.
 *
 *   bench_manager_calls [--batch B] [--blocks N] [--cycled C]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "kvbm/kvbm.h"

#define MAX_BATCH 256u

static void check(kvbm_status_t status, const char *what)
{
    if (status != KVBM_OK) {
        fprintf(stderr, "bench_manager_calls: %s: %s\n", what, kvbm_status_str(status));
        exit(1);
    }
}

/* Allocates, registers (hashes[0, cycled)) and releases @p batch blocks a
 * call. */
__attribute__((noinline)) static void cycle_calls(kvbm_manager_t *manager, const uint64_t *hashes,
                                                  uint32_t cycled, uint32_t batch)
{
    uint32_t ids[MAX_BATCH], registered[MAX_BATCH];
    for (uint32_t c = 0; c < cycled; c += batch) {
        check(kvbm_manager_allocate(manager, batch, ids, NULL, NULL), "allocate");
        check(kvbm_manager_register(manager, ids, hashes + c, batch, NULL, registered), "register");
        check(kvbm_manager_release(manager, registered, batch), "release");
    }
}

/* Matches hashes[0, cycled), @p batch a call, and releases what matched. */
__attribute__((noinline)) static void match_calls(kvbm_manager_t *manager, const uint64_t *hashes,
                                                  uint32_t cycled, uint32_t batch)
{
    uint32_t ids[MAX_BATCH];
    for (uint32_t c = 0; c < cycled; c += batch) {
        size_t matched = 0;
        check(kvbm_manager_match(manager, hashes + c, batch, ids, &matched), "match");
        if (matched != batch) {
            fprintf(stderr, "bench_manager_calls: matched %zu of %u\n", matched, batch);
            exit(1);
        }
        check(kvbm_manager_release(manager, ids, batch), "release");
    }
}

static uint32_t parse_count(const char *text, uint32_t max)
{
    char *end;
    unsigned long value = strtoul(text, &end, 10);
    if (*end != '\0' || value < 1 || value > max) {
        fprintf(stderr, "bench_manager_calls: bad count '%s' (1..%u)\n", text, max);
        exit(2);
    }
    return (uint32_t)value;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"batch", required_argument, NULL, 'b'},
                                            {"blocks", required_argument, NULL, 'n'},
                                            {"cycled", required_argument, NULL, 'c'},
                                            {0}};
    uint32_t batch = 1, n_blocks = 100000, cycled = 20480;
    for (int opt; (opt = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        if (opt == 'b')
            batch = parse_count(optarg, MAX_BATCH);
        else if (opt == 'n')
            n_blocks = parse_count(optarg, KVBM_MANAGER_MAX_BLOCKS);
        else if (opt == 'c')
            cycled = parse_count(optarg, UINT32_MAX / 2);
        else
            return 2;
    }
    if (optind != argc || cycled % batch != 0 || cycled > n_blocks / 2) {
        fprintf(stderr, "bench_manager_calls: --cycled must be a multiple of --batch and at most "
                        "half of --blocks\n");
        return 2;
    }
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = n_blocks;
    config.policy = kvbm_policy_lru();
    kvbm_manager_t *manager = NULL;
    check(kvbm_manager_create(&config, &manager), "create");
    uint64_t *hashes = malloc(sizeof(uint64_t) * ((size_t)n_blocks + cycled));
    if (hashes == NULL)
        return 1;
    for (size_t i = 0; i < (size_t)n_blocks + cycled; i++)
        hashes[i] = i + 1;
    for (uint32_t i = 0; i < n_blocks;
         i++) { /* full of inactive blocks, outside the counted loops */
        uint32_t id, registered;
        check(kvbm_manager_allocate(manager, 1, &id, NULL, NULL), "allocate");
        check(kvbm_manager_register(manager, &id, hashes + i, 1, NULL, &registered), "register");
        check(kvbm_manager_release(manager, &registered, 1), "release");
    }
    double t0 = bench_now_ns();
    cycle_calls(manager, hashes + n_blocks, cycled, batch);
    double t1 = bench_now_ns();
    match_calls(manager, hashes + n_blocks, cycled, batch);
    double t2 = bench_now_ns();
    printf("blocks %u batch %u cycled %u: cycle %.1f ns per block, match+release %.1f\n", n_blocks,
           batch, cycled, (t1 - t0) / cycled, (t2 - t1) / cycled);
    free(hashes);
    kvbm_manager_destroy(manager);
    return 0;
}
