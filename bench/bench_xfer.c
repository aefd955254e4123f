/*
 * Transfer benchmark: push bandwidth by region size and block count, next to
 * the raw bandwidth of the same transport moving the same bytes as one
 * contiguous message (kvbm_xfer_send_raw), measured in the same run, and
 * their ratio (runs alternate, so drift hits both alike). Two processes on loopback, socket (CPU)
 * transport, a layer-separate slab of 4 layers. "runs" pushes consecutive block ids (one piece per
 * layer), "scattered" every other id (one piece per block and layer). Prints numbers only; it never
 * passes or fails.
 *
 *   bench_xfer [--quick] [--min-seconds S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xfer_ranks.h"

#define LAYERS 4
#define KEY    0x62656e6368ull

typedef struct bench_args {
    double min_seconds;
    bool quick;
} bench_args_t;

/* Ratios of the rows, for the summary line (rank 0 only). */
static double ratios[64];
static size_t n_ratios;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * Times a and b alternately (one run of each per round) until min_seconds of
 * rounds passed and at least 3 rounds ran, so drift in the machine's state
 * hits both alike. Writes GB/s of each; false on a transfer error.
 */
typedef kvbm_status_t (*op_fn)(void *ctx);

static bool measure_pair(op_fn a, op_fn b, void *ctx, size_t bytes, double min_seconds,
                         double *a_gbs, double *b_gbs)
{
    if (a(ctx) != KVBM_OK || b(ctx) != KVBM_OK) /* warm-up: page faults, scratch */
        return false;
    double ta = 0, tb = 0, start = xr_now();
    int rounds = 0;
    do {
        double t0 = xr_now();
        if (a(ctx) != KVBM_OK)
            return false;
        double t1 = xr_now();
        if (b(ctx) != KVBM_OK)
            return false;
        double t2 = xr_now();
        ta += t1 - t0;
        tb += t2 - t1;
        rounds++;
    } while (xr_now() - start < min_seconds || rounds < 3);
    *a_gbs = (double)bytes * rounds / ta / 1e9;
    *b_gbs = (double)bytes * rounds / tb / 1e9;
    return true;
}

typedef struct push_ctx {
    xr_env_t *env;
    const uint32_t *ids;
    uint64_t *hashes;
    size_t n;
    const void *raw;
    size_t raw_bytes;
} push_ctx_t;

static kvbm_status_t do_push(void *arg)
{
    push_ctx_t *c = arg;
    /* New hashes every time: the receiver would otherwise hold them already
     * and (rightly) not receive their bytes again. */
    for (size_t i = 0; i < c->n; i++)
        c->hashes[i] += 0x9e3779b97f4a7c15ull;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = kvbm_xfer_push(c->env->xfer, 1, c->ids, c->hashes, c->n, NULL, &req);
    if (status != KVBM_OK)
        return status;
    status = kvbm_xfer_req_wait(req);
    kvbm_xfer_req_free(req);
    return status;
}

static kvbm_status_t do_raw(void *arg)
{
    push_ctx_t *c = arg;
    kvbm_xfer_req_t *req;
    kvbm_status_t status = kvbm_xfer_send_raw(c->env->xfer, 1, c->raw, c->raw_bytes, &req);
    if (status != KVBM_OK)
        return status;
    status = kvbm_xfer_req_wait(req);
    kvbm_xfer_req_free(req);
    return status;
}

static int bench_rank(int rank, int size, uint16_t port, kvbm_xfer_rendezvous_t *rv, void *arg)
{
    bench_args_t *a = arg;
    static const size_t region_sizes[] = {4096, 16384, 65536, 262144};
    static const size_t counts[] = {16, 64, 256};
    size_t n_sizes = a->quick ? 2 : 4;
    if (rank == 0) {
        printf("# socket transport, 2 processes on 127.0.0.1, %d layers, layer-separate\n", LAYERS);
        printf("%10s %7s %10s %7s %9s %10s %10s %7s\n", "region_KiB", "blocks", "ids", "pieces",
               "MiB", "push_GB/s", "raw_GB/s", "ratio");
    }
    for (size_t si = 0; si < n_sizes; si++) {
        size_t region = region_sizes[si];
        size_t block_bytes = LAYERS * region;
        uint32_t pool = (uint32_t)((128u << 20) / block_bytes);
        if (pool > 512)
            pool = 512;
        xr_shape_t shape = {.blocks = pool,
                            .regions = LAYERS,
                            .region_bytes = region,
                            .layer_separate = true,
                            .layout_key = KEY,
                            .timeout_ms = 10000};
        xr_env_t env;
        XR_CHECK_OK(xr_env_open(&env, &shape, rank, size, port, rv));
        /* Fault the slab in, as an engine's KV pool would be: otherwise the
         * first pushes pay the receiver's page faults, not the transfer. */
        memset(env.slab, 0, (size_t)pool * block_bytes);
        if (rank == 0) {
            uint32_t *all = malloc(pool * sizeof(*all));
            uint32_t *ids = malloc(pool * sizeof(*ids));
            uint64_t *hashes = malloc(pool * sizeof(*hashes));
            XR_CHECK(all != NULL && ids != NULL && hashes != NULL);
            XR_CHECK_OK(kvbm_manager_allocate(env.manager, pool, all, NULL, NULL));
            xr_hashes((uint32_t)si, pool, hashes);
            for (size_t ci = 0; ci < sizeof(counts) / sizeof(counts[0]); ci++) {
                size_t n = counts[ci];
                if (2 * n > pool)
                    continue;
                void *raw = malloc(n * block_bytes);
                XR_CHECK(raw != NULL);
                memset(raw, 0x5a, n * block_bytes);
                for (int pattern = 0; pattern < 2; pattern++) {
                    for (size_t i = 0; i < n; i++)
                        ids[i] = pattern == 0 ? all[i] : all[2 * i];
                    size_t pieces = pattern == 0 ? LAYERS : n * LAYERS;
                    push_ctx_t ctx = {.env = &env,
                                      .ids = ids,
                                      .hashes = hashes,
                                      .n = n,
                                      .raw = raw,
                                      .raw_bytes = n * block_bytes};
                    double push = 0, rawbw = 0;
                    XR_CHECK(measure_pair(do_push, do_raw, &ctx, n * block_bytes, a->min_seconds,
                                          &push, &rawbw));
                    printf("%10zu %7zu %10s %7zu %9.1f %10.2f %10.2f %6.0f%%\n", region / 1024, n,
                           pattern == 0 ? "runs" : "scattered", pieces,
                           (double)(n * block_bytes) / (1 << 20), push, rawbw,
                           100.0 * push / rawbw);
                    if (n_ratios < 64)
                        ratios[n_ratios++] = push / rawbw;
                }
                free(raw);
            }
            XR_CHECK_OK(kvbm_manager_release(env.manager, all, pool));
            free(all);
            free(ids);
            free(hashes);
        }
        XR_CHECK_OK(kvbm_xfer_barrier(env.xfer));
        xr_env_close(&env);
    }
    if (rank == 0 && n_ratios > 0) {
        qsort(ratios, n_ratios, sizeof(ratios[0]), cmp_double);
        printf("# push/raw over %zu rows: min %.0f%%, median %.0f%%, max %.0f%% (target 90%%)\n",
               n_ratios, 100 * ratios[0], 100 * ratios[n_ratios / 2], 100 * ratios[n_ratios - 1]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_args_t args = {.min_seconds = 0.15, .quick = false};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            args.quick = true;
            args.min_seconds = 0.05;
        } else if (strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc) {
            args.min_seconds = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--min-seconds S]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t0 = xr_now();
    int rc = xr_run(2, bench_rank, &args, 0, 600.0);
    printf("# total %.1f s\n", xr_now() - t0);
    return rc == 0 ? 0 : 1;
}
