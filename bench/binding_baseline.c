/*
 * The C side of bench/bench_binding.py: the same batch calls the Python
 * binding makes, from C, through libkvbm.so (as the binding calls it).
 *
 * A manager of 4096 blocks is filled with registered, inactive blocks; each
 * call pair matches a run of n of their hashes (acquiring them) and releases
 * the ids it got. Prints one line: "n ns_per_block" for the pair, the best
 * of `reps` timed runs of `calls` pairs each.
 *
 *   bench_binding_c N CALLS REPS
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "kvbm/kvbm.h"

#define BLOCKS 4096u

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "%s: %s: %s\n", #call, kvbm_status_name(s_), kvbm_last_error());       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static kvbm_manager_t *filled_manager(uint64_t *hashes)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = BLOCKS;
    kvbm_manager_t *m;
    CHECK(kvbm_manager_create(&config, &m));
    static uint32_t ids[BLOCKS];
    CHECK(kvbm_manager_allocate(m, BLOCKS, ids, NULL, NULL));
    for (uint32_t i = 0; i < BLOCKS; i++)
        hashes[i] = i + 1;
    CHECK(kvbm_manager_register(m, ids, hashes, BLOCKS, NULL, ids));
    CHECK(kvbm_manager_release(m, ids, BLOCKS));
    return m;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s N CALLS REPS\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    long calls = strtol(argv[2], NULL, 10);
    long reps = strtol(argv[3], NULL, 10);
    if (n < 1 || n > (long)BLOCKS || calls < 1 || reps < 1) {
        fprintf(stderr, "%s: N must be in 1..%u, CALLS and REPS at least 1\n", argv[0], BLOCKS);
        return 2;
    }
    static uint64_t hashes[BLOCKS];
    static uint32_t ids[BLOCKS];
    kvbm_manager_t *m = filled_manager(hashes);
    size_t runs = BLOCKS / (size_t)n;
    double best = 0;
    for (long r = 0; r < reps; r++) {
        double t0 = bench_now_ns();
        for (long c = 0; c < calls; c++) {
            const uint64_t *h = hashes + (size_t)(c % (long)runs) * (size_t)n;
            size_t matched;
            CHECK(kvbm_manager_match(m, h, (size_t)n, ids, &matched));
            if (matched != (size_t)n) {
                fprintf(stderr, "matched %zu of %ld registered hashes\n", matched, n);
                return 1;
            }
            CHECK(kvbm_manager_release(m, ids, matched));
        }
        double per_block = (bench_now_ns() - t0) / ((double)calls * (double)n);
        if (r == 0 || per_block < best)
            best = per_block;
    }
    printf("%ld %.1f\n", n, best);
    kvbm_manager_destroy(m);
    return 0;
}
