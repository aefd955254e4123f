/*
 * Manager benchmark: nanoseconds per block for allocate, register, release
 * and match (hit and miss) at 1, 16 and 256 blocks per call, with 10^5 and
 * 10^6 blocks in the manager, plus host metadata bytes per block.
 *
 * Steady state: the manager starts full of inactive registered blocks, so
 * every allocate evicts (the expensive path). Each phase runs in bulk over
 * many calls between two clock reads, so timer cost is amortised: `cycle`
 * adds the three phases measured apart (every call's metadata cold again),
 * `per_call` times allocate, register and release back to back per call, as
 * an engine does. Single thread. Prints numbers only; never passes or fails.
 *
 *   bench_manager [--quick] [--blocks N] [--policy NAME]
 *   bench_manager --metadata N [--policy NAME]    metadata bytes per block only
 *   bench_manager --create N [--policy NAME]      create/first call/destroy times
 *
 * --blocks runs only that manager size (default 10^5 and 10^6); --policy
 * names the eviction policy of every manager (default lru).
 */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kvbm/kvbm.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kvbm_status_t s_ = (call);                                                                 \
        if (s_ != KVBM_OK) {                                                                       \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, kvbm_status_str(s_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct phase_times {
    double allocate, reg, release, match_hit, match_miss, interleaved;
} phase_times_t;

static uint64_t next_hash = 1;

/* The policy every manager of this run uses (--policy). */
static const kvbm_policy_ops_t *bench_policy;

/* Fills the manager with inactive registered blocks, in chains of `chain`. */
static void fill(kvbm_manager_t *m, uint32_t n, uint32_t chain, uint64_t *hashes_out)
{
    uint32_t *ids = malloc(sizeof(uint32_t) * chain);
    uint32_t *out = malloc(sizeof(uint32_t) * chain);
    for (uint32_t done = 0; done < n; done += chain) {
        uint32_t count = n - done < chain ? n - done : chain;
        CHECK(kvbm_manager_allocate(m, count, ids, NULL, NULL));
        for (uint32_t i = 0; i < count; i++)
            hashes_out[done + i] = next_hash++;
        CHECK(kvbm_manager_register(m, ids, hashes_out + done, count, NULL, out));
        CHECK(kvbm_manager_release(m, out, count));
    }
    free(ids);
    free(out);
}

static phase_times_t run(uint32_t n_blocks, uint32_t batch, uint32_t rounds)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = n_blocks;
    config.policy = bench_policy;
    kvbm_manager_t *m = NULL;
    CHECK(kvbm_manager_create(&config, &m));
    uint64_t *registered = malloc(sizeof(uint64_t) * n_blocks);
    fill(m, n_blocks, batch, registered);

    /* Half the pool is cycled per round; the rest stays cached for matches. */
    uint32_t calls = (n_blocks / 2) / batch;
    size_t total = (size_t)calls * batch;
    uint32_t *ids = malloc(sizeof(uint32_t) * total);
    uint32_t *out = malloc(sizeof(uint32_t) * total);
    uint64_t *hashes = malloc(sizeof(uint64_t) * total);
    phase_times_t sum = {0};
    for (uint32_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < total; i++)
            hashes[i] = next_hash++;
        double t0 = bench_now_ns();
        for (uint32_t c = 0; c < calls; c++)
            CHECK(kvbm_manager_allocate(m, batch, ids + (size_t)c * batch, NULL, NULL));
        double t1 = bench_now_ns();
        for (uint32_t c = 0; c < calls; c++)
            CHECK(kvbm_manager_register(m, ids + (size_t)c * batch, hashes + (size_t)c * batch,
                                        batch, NULL, out + (size_t)c * batch));
        double t2 = bench_now_ns();
        for (uint32_t c = 0; c < calls; c++)
            CHECK(kvbm_manager_release(m, out + (size_t)c * batch, batch));
        double t3 = bench_now_ns();

        /* Match hits: the chains just registered, each `batch` long. */
        size_t n;
        for (uint32_t c = 0; c < calls; c++) {
            CHECK(kvbm_manager_match(m, hashes + (size_t)c * batch, batch, out + (size_t)c * batch,
                                     &n));
            if (n != batch) {
                fprintf(stderr, "match returned %zu of %u\n", n, batch);
                exit(1);
            }
        }
        double t4 = bench_now_ns();
        for (uint32_t c = 0; c < calls; c++)
            CHECK(kvbm_manager_release(m, out + (size_t)c * batch, batch));
        /* Match misses: the first hash is absent, so each call looks up one. */
        uint64_t absent = UINT64_MAX - 1;
        double t5 = bench_now_ns();
        for (uint32_t c = 0; c < calls; c++)
            CHECK(kvbm_manager_match(m, &absent, 1, out, &n));
        double t6 = bench_now_ns();
        /* The same work the way an engine does it: each call's blocks are
         * allocated, registered and released back to back. */
        for (size_t i = 0; i < total; i++)
            hashes[i] = next_hash++;
        double t7 = bench_now_ns();
        for (uint32_t c = 0; c < calls; c++) {
            uint32_t *call_ids = ids + (size_t)c * batch, *call_out = out + (size_t)c * batch;
            CHECK(kvbm_manager_allocate(m, batch, call_ids, NULL, NULL));
            CHECK(kvbm_manager_register(m, call_ids, hashes + (size_t)c * batch, batch, NULL,
                                        call_out));
            CHECK(kvbm_manager_release(m, call_out, batch));
        }
        double t8 = bench_now_ns();
        sum.interleaved += (t8 - t7) / (double)total;
        sum.allocate += (t1 - t0) / (double)total;
        sum.reg += (t2 - t1) / (double)total;
        sum.release += (t3 - t2) / (double)total;
        sum.match_hit += (t4 - t3) / (double)total;
        sum.match_miss += (t6 - t5) / (double)calls;
    }
    free(ids);
    free(out);
    free(hashes);
    free(registered);
    kvbm_manager_destroy(m);
    phase_times_t avg = {sum.allocate / rounds,  sum.reg / rounds,        sum.release / rounds,
                         sum.match_hit / rounds, sum.match_miss / rounds, sum.interleaved / rounds};
    return avg;
}

static double metadata_bytes_per_block(uint32_t n_blocks)
{
    struct mallinfo2 before = mallinfo2();
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = n_blocks;
    config.policy = bench_policy;
    kvbm_manager_t *m = NULL;
    CHECK(kvbm_manager_create(&config, &m));
    uint64_t *hashes = malloc(sizeof(uint64_t) * n_blocks);
    fill(m, n_blocks, 256, hashes);
    free(hashes);
    /* Counted with every block registered and cached: the registry is full. */
    struct mallinfo2 after = mallinfo2();
    double bytes = (double)(after.uordblks + after.hblkhd - before.uordblks - before.hblkhd);
    kvbm_manager_destroy(m);
    return bytes / n_blocks;
}

/* Creating a manager of @p n_blocks, its first allocate+register+release
 * of one block, and destroying it, timed apart (ms): creation should cost
 * what is touched, not the capacity. */
static void creation_times(uint32_t n_blocks)
{
    kvbm_manager_config_t config = KVBM_MANAGER_CONFIG_INIT;
    config.num_blocks = n_blocks;
    config.policy = bench_policy;
    kvbm_manager_t *m = NULL;
    double t0 = bench_now_ns();
    CHECK(kvbm_manager_create(&config, &m));
    double t1 = bench_now_ns();
    uint32_t id, out;
    uint64_t hash = 42;
    CHECK(kvbm_manager_allocate(m, 1, &id, NULL, NULL));
    CHECK(kvbm_manager_register(m, &id, &hash, 1, NULL, &out));
    CHECK(kvbm_manager_release(m, &out, 1));
    double t2 = bench_now_ns();
    kvbm_manager_destroy(m);
    double t3 = bench_now_ns();
    printf("create: %u blocks, policy %s: create %.3f ms, first cycle %.3f ms, destroy %.3f ms\n",
           n_blocks, bench_policy->name, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6);
}

static uint32_t parse_blocks(const char *text)
{
    char *end;
    double value = strtod(text, &end); /* 1e7 and 10000000 both */
    if (*end != '\0' || value < 1 || value > KVBM_MANAGER_MAX_BLOCKS) {
        fprintf(stderr, "bench_manager: bad block count '%s'\n", text);
        exit(2);
    }
    return (uint32_t)value;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"quick", no_argument, NULL, 'q'},          {"blocks", required_argument, NULL, 'b'},
        {"metadata", required_argument, NULL, 'm'}, {"create", required_argument, NULL, 'c'},
        {"policy", required_argument, NULL, 'p'},   {0}};
    int quick = 0;
    uint32_t only_blocks = 0, metadata_blocks = 0, create_blocks = 0;
    bench_policy = kvbm_policy_lru();
    for (int opt; (opt = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (opt) {
        case 'q':
            quick = 1;
            break;
        case 'b':
            only_blocks = parse_blocks(optarg);
            break;
        case 'm':
            metadata_blocks = parse_blocks(optarg);
            break;
        case 'c':
            create_blocks = parse_blocks(optarg);
            break;
        case 'p':
            bench_policy = kvbm_policy_find(optarg);
            if (bench_policy == NULL) {
                fprintf(stderr, "bench_manager: unknown policy '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "bench_manager: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (create_blocks != 0 || metadata_blocks != 0) {
        if (create_blocks != 0)
            creation_times(create_blocks);
        if (metadata_blocks != 0)
            printf("metadata: %u blocks, %.1f bytes per block (manager, registry, %s policy)\n",
                   metadata_blocks, metadata_bytes_per_block(metadata_blocks), bench_policy->name);
        return 0;
    }
    const uint32_t all_sizes[2] = {100000, 1000000};
    const uint32_t *sizes = only_blocks != 0 ? &only_blocks : all_sizes;
    int n_sizes = only_blocks != 0 ? 1 : 2;
    const uint32_t batches[3] = {1, 16, 256};
    printf("kvbm %s manager benchmark (%s, single thread, ns per block; miss: ns per call)\n",
           kvbm_version(), bench_policy->name);
    printf("%9s %6s %9s %9s %9s %9s %9s %9s %9s\n", "blocks", "batch", "allocate", "register",
           "release", "cycle", "per_call", "match_hit", "match_miss");
    for (int s = 0; s < n_sizes; s++) {
        for (int b = 0; b < 3; b++) {
            uint32_t rounds = quick ? 1 : 3;
            phase_times_t t = run(sizes[s], batches[b], rounds);
            printf("%9u %6u %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", sizes[s], batches[b],
                   t.allocate, t.reg, t.release, t.allocate + t.reg + t.release, t.interleaved,
                   t.match_hit, t.match_miss);
            fflush(stdout);
        }
    }
    for (int s = 0; s < n_sizes; s++)
        printf("metadata: %u blocks, %.1f bytes per block (manager, registry, %s policy)\n",
               sizes[s], metadata_bytes_per_block(sizes[s]), bench_policy->name);
    return 0;
}
