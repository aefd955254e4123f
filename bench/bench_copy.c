/*
 * Copy bandwidth sweep. For each region size, block count, layout and
 * direction it times every copy method of the backend and prints GB/s next
 * to one large contiguous copy of the same bytes, measured in the same run.
 *
 *   bench_copy [--backend cpu|cuda] [--full] [--max-mib N]
 *   bench_copy [--backend cpu|cuda] --blocks N [--regions-kib 4,16,32,64,2048] [--json]
 *
 * The second form (the GPU check's): N blocks of each size, one region per
 * block, both directions, every method of the backend against one large
 * copy of the same bytes between the same pools, measured in rotation in one
 * run; after each method the destination is compared with the source
 * (exit 1 on a wrong byte). CUDA methods: auto, batch, kernel, per-region.
 *
 * Layouts: 4 layers, K/V, 128 x 2-byte elements per token. Fully contiguous
 * blocks are one region of R bytes; layer-separate blocks are 4 regions of
 * R bytes. Block ids are shuffled so regions are not merged.
 * CPU methods: the backend's batched copy (worker thread) and a plain memcpy
 * loop over the same regions. CUDA methods: batch API, kernel, per-region.
 * Prints numbers only; nothing passes or fails on time.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvbm/backend.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(kvbm_status_t st, const char *what)
{
    if (st != KVBM_OK) {
        fprintf(stderr, "bench_copy: %s: %s\n", what, kvbm_status_str(st));
        exit(1);
    }
}

typedef struct ctx {
    kvbm_backend_t *b;
    kvbm_stream_t *s;
    kvbm_fence_t *f;
} ctx_t;

static ctx_t ctx_open(kvbm_backend_kind_t kind, kvbm_copy_method_t method)
{
    ctx_t c;
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = kind;
    cfg.copy_method = method;
    check(kvbm_backend_create(&cfg, &c.b), "backend");
    check(kvbm_stream_create(c.b, &c.s), "stream");
    check(kvbm_fence_create(c.b, &c.f), "fence");
    return c;
}

static void ctx_close(ctx_t *c)
{
    kvbm_fence_destroy(c->f);
    kvbm_stream_destroy(c->s);
    kvbm_backend_destroy(c->b);
}

/* Seconds per call of fn(arg), repeated until 50 ms or 3 calls. */
typedef void (*run_fn)(void *arg);
static double time_it(run_fn fn, void *arg)
{
    fn(arg); /* warm up */
    int reps = 0;
    double t0 = now_s(), t;
    do {
        fn(arg);
        reps++;
        t = now_s() - t0;
    } while (t < 0.05 || reps < 3);
    return t / reps;
}

typedef struct job {
    ctx_t *c;
    const kvbm_layout_t *l;
    kvbm_pool_t *src, *dst;
    uint32_t *src_ids, *dst_ids;
    size_t n;
    kvbm_copy_dir_t dir;
    kvbm_copy_t *regions; /* for the memcpy loop */
    size_t n_regions;
    size_t bytes;
} job_t;

static void run_backend(void *arg)
{
    job_t *j = arg;
    check(kvbm_backend_copy_blocks(j->c->b, j->c->s, j->l, j->src, j->src_ids, j->dst, j->dst_ids,
                                   j->n, j->dir, j->c->f),
          "copy_blocks");
    check(kvbm_fence_wait(j->c->f), "fence");
}

static void run_memcpy_loop(void *arg)
{
    job_t *j = arg;
    for (size_t i = 0; i < j->n_regions; i++)
        memcpy(j->regions[i].dst, j->regions[i].src, j->regions[i].bytes);
}

static void run_contiguous(void *arg)
{
    job_t *j = arg;
    kvbm_copy_t one = {kvbm_pool_ptr(j->src), kvbm_pool_ptr(j->dst), j->bytes};
    check(kvbm_backend_copy(j->c->b, j->c->s, &one, 1, j->dir, j->c->f), "copy");
    check(kvbm_fence_wait(j->c->f), "fence");
}

static void run_contiguous_memcpy(void *arg)
{
    job_t *j = arg;
    memcpy(kvbm_pool_ptr(j->dst), kvbm_pool_ptr(j->src), j->bytes);
}

static void shuffle(uint32_t *ids, size_t n, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = (size_t)(*rng >> 33) % i;
        uint32_t t = ids[i - 1];
        ids[i - 1] = ids[k];
        ids[k] = t;
    }
}

/* ------------------------------------------------ fixed block count mode */

/* One method of the fixed mode: a backend and its stream, and the pools of
 * the base backend wrapped into it (wrapping costs nothing and the CUDA
 * backend checks the memory, so its kernel may use it). */
typedef struct method_ctx {
    const char *name;
    ctx_t c;
    kvbm_pool_t *host_src, *dev, *host_dst;
} method_ctx_t;

typedef struct fixed_job {
    method_ctx_t *m;
    const kvbm_layout_t *l;
    const uint32_t *a, *b; /* source ids, destination ids */
    size_t n;
    kvbm_copy_dir_t dir;
} fixed_job_t;

static void run_fixed(void *arg)
{
    fixed_job_t *j = arg;
    kvbm_pool_t *src = j->dir == KVBM_COPY_H2D ? j->m->host_src : j->m->dev;
    kvbm_pool_t *dst = j->dir == KVBM_COPY_H2D ? j->m->dev : j->m->host_dst;
    check(kvbm_backend_copy_blocks(j->m->c.b, j->m->c.s, j->l, src, j->a, dst, j->b, j->n, j->dir,
                                   j->m->c.f),
          "copy_blocks");
    check(kvbm_fence_wait(j->m->c.f), "fence");
}

typedef struct contig_job {
    method_ctx_t *m;
    size_t bytes;
    kvbm_copy_dir_t dir;
} contig_job_t;

static void run_contig(void *arg)
{
    contig_job_t *j = arg;
    kvbm_copy_t one = {kvbm_pool_ptr(j->dir == KVBM_COPY_H2D ? j->m->host_src : j->m->dev),
                       kvbm_pool_ptr(j->dir == KVBM_COPY_H2D ? j->m->dev : j->m->host_dst),
                       j->bytes};
    check(kvbm_backend_copy(j->m->c.b, j->m->c.s, &one, 1, j->dir, j->m->c.f), "copy");
    check(kvbm_fence_wait(j->m->c.f), "fence");
}

/* Reads the device pool back and checks that block dst_ids[i] of @p got
 * (device, or the host destination) holds block src_ids[i] of host_src. */
static bool verify_blocks(method_ctx_t *base, const kvbm_layout_t *l, const uint32_t *src_ids,
                          const uint32_t *dst_ids, size_t n, kvbm_pool_t *got,
                          unsigned char *scratch)
{
    size_t block = kvbm_layout_block_bytes(l), total = kvbm_layout_total_bytes(l);
    const unsigned char *view = kvbm_pool_ptr(got);
    if (kvbm_pool_kind(got) == KVBM_MEM_DEVICE) {
        kvbm_copy_t back = {kvbm_pool_ptr(got), scratch, total};
        check(kvbm_backend_copy(base->c.b, base->c.s, &back, 1, KVBM_COPY_D2H, base->c.f),
              "readback");
        check(kvbm_fence_wait(base->c.f), "fence");
        view = scratch;
    }
    const unsigned char *src = kvbm_pool_ptr(base->host_src);
    for (size_t i = 0; i < n; i++) {
        size_t so, dof;
        check(kvbm_layout_offset(l, src_ids[i], 0, 0, &so), "offset");
        check(kvbm_layout_offset(l, dst_ids[i], 0, 0, &dof), "offset");
        if (memcmp(view + dof, src + so, block) != 0)
            return false;
    }
    return true;
}

static const struct {
    kvbm_copy_method_t m;
    const char *name;
} fixed_methods[] = {{KVBM_COPY_METHOD_AUTO, "auto"},
                     {KVBM_COPY_METHOD_BATCH, "batch"},
                     {KVBM_COPY_METHOD_KERNEL, "kernel"},
                     {KVBM_COPY_METHOD_PER_REGION, "per-region"}};

/* The pools of one block size, owned by the base backend: pinned pools of
 * one registration each, so ranges wrapped elsewhere match registrations. */
static void base_open(kvbm_backend_kind_t kind, size_t total, size_t region, method_ctx_t *base)
{
    kvbm_backend_config_t bc = KVBM_BACKEND_CONFIG_INIT;
    bc.kind = kind;
    bc.pinned_chunk_bytes = total;
    *base = (method_ctx_t){.name = "base"};
    check(kvbm_backend_create(&bc, &base->c.b), "backend");
    check(kvbm_stream_create(base->c.b, &base->c.s), "stream");
    check(kvbm_fence_create(base->c.b, &base->c.f), "fence");
    check(kvbm_pool_create(base->c.b, KVBM_MEM_HOST, total, &base->host_src), "pool");
    check(kvbm_pool_create(base->c.b, KVBM_MEM_DEVICE, total, &base->dev), "pool");
    check(kvbm_pool_create(base->c.b, KVBM_MEM_HOST, total, &base->host_dst), "pool");
    unsigned char *hs = kvbm_pool_ptr(base->host_src);
    for (size_t i = 0; i < total; i++)
        hs[i] = (unsigned char)(i * 131u + region);
}

static void method_close(method_ctx_t *m)
{
    kvbm_pool_destroy(m->host_dst);
    kvbm_pool_destroy(m->dev);
    kvbm_pool_destroy(m->host_src);
    ctx_close(&m->c);
}

/* A method's backend with the base's pools wrapped into it. */
static void method_open(kvbm_backend_kind_t kind, size_t k, bool cuda, const method_ctx_t *base,
                        size_t total, method_ctx_t *m)
{
    m->name = cuda ? fixed_methods[k].name : "backend";
    m->c = ctx_open(kind, cuda ? fixed_methods[k].m : KVBM_COPY_METHOD_AUTO);
    check(kvbm_pool_wrap(m->c.b, KVBM_MEM_HOST, kvbm_pool_ptr(base->host_src), total, &m->host_src),
          "wrap");
    check(kvbm_pool_wrap(m->c.b, KVBM_MEM_DEVICE, kvbm_pool_ptr(base->dev), total, &m->dev),
          "wrap");
    check(kvbm_pool_wrap(m->c.b, KVBM_MEM_HOST, kvbm_pool_ptr(base->host_dst), total, &m->host_dst),
          "wrap");
}

/* One direction of one block size, every method against the contiguous
 * copy; returns the number of method runs that left wrong bytes. */
static int fixed_direction(method_ctx_t *base, method_ctx_t *m, size_t n_methods,
                           const kvbm_layout_t *l, size_t n, kvbm_copy_dir_t dir, bool json,
                           uint64_t *rng)
{
    size_t total = kvbm_layout_total_bytes(l), region = kvbm_layout_block_bytes(l);
    const char *dir_name = dir == KVBM_COPY_H2D ? "H2D" : "D2H";
    uint32_t *a = malloc(n * sizeof(uint32_t)), *b = malloc(n * sizeof(uint32_t)),
             *c = malloc(n * sizeof(uint32_t));
    unsigned char *scratch = malloc(total);
    if (scratch == NULL || a == NULL || b == NULL || c == NULL)
        check(KVBM_ERR_NO_MEMORY, "malloc");
    contig_job_t cj = {base, total, dir};
    double tc = time_it(run_contig, &cj);
    if (!json)
        printf("%7zuK %4s %12.2f |", region / 1024, dir_name, total / tc / 1e9);
    int wrong = 0;
    for (size_t k = 0; k < n_methods; k++) {
        shuffle(a, n, rng);
        shuffle(b, n, rng);
        shuffle(c, n, rng);
        /* H2D: host_src[a] -> dev[b]. D2H: dev[b] -> host_dst[c], dev first
         * loaded by one contiguous copy, so dev[i] = host_src[i]. */
        if (dir == KVBM_COPY_D2H) {
            memcpy(a, b, n * sizeof(uint32_t));
            run_contig(&(contig_job_t){base, total, KVBM_COPY_H2D});
        }
        const uint32_t *to = dir == KVBM_COPY_H2D ? b : c;
        fixed_job_t j = {&m[k], l, dir == KVBM_COPY_H2D ? a : b, to, n, dir};
        double t = time_it(run_fixed, &j);
        bool ok = verify_blocks(base, l, a, to, n,
                                dir == KVBM_COPY_H2D ? base->dev : base->host_dst, scratch);
        wrong += !ok;
        if (json)
            printf(
                "{\"bench\": \"copy\", \"backend\": \"%s\", \"method\": \"%s\", \"dir\": \"%s\", "
                "\"block_kib\": %zu, \"blocks\": %zu, \"gbps\": %.3f, \"contig_gbps\": %.3f, "
                "\"ratio\": %.3f, \"verified\": %s}\n",
                kvbm_backend_name(m[k].c.b), m[k].name, dir_name, region / 1024, n, total / t / 1e9,
                total / tc / 1e9, tc / t, ok ? "true" : "false");
        else
            printf(" %s %.2f (%.2f)%s", m[k].name, total / t / 1e9, tc / t,
                   ok ? "" : " WRONG BYTES");
    }
    if (!json)
        printf("\n");
    free(scratch);
    free(c);
    free(b);
    free(a);
    return wrong;
}

/* Both directions of one block size; returns the wrong runs. */
static int fixed_size(kvbm_backend_kind_t kind, bool cuda, size_t n, size_t region, bool json,
                      uint64_t *rng)
{
    kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
    lc.num_blocks = (uint32_t)n;
    lc.num_layers = 1;
    lc.outer_dim = 1;
    lc.inner_dim = 256;
    lc.elem_size = 2;
    lc.tokens_per_block = (uint32_t)(region / 512);
    lc.kind = KVBM_LAYOUT_FULLY_CONTIGUOUS;
    kvbm_layout_t *l = NULL;
    check(kvbm_layout_create(&lc, &l), "layout");
    size_t total = kvbm_layout_total_bytes(l);
    method_ctx_t base, m[4];
    base_open(kind, total, region, &base);
    size_t n_methods = cuda ? 4 : 1;
    for (size_t k = 0; k < n_methods; k++)
        method_open(kind, k, cuda, &base, total, &m[k]);
    int wrong = fixed_direction(&base, m, n_methods, l, n, KVBM_COPY_H2D, json, rng);
    wrong += fixed_direction(&base, m, n_methods, l, n, KVBM_COPY_D2H, json, rng);
    for (size_t k = 0; k < n_methods; k++)
        method_close(&m[k]);
    method_close(&base);
    kvbm_layout_destroy(l);
    return wrong;
}

static int fixed_mode(kvbm_backend_kind_t kind, size_t n, const char *regions_arg, bool json)
{
    ctx_t probe = ctx_open(kind, KVBM_COPY_METHOD_AUTO);
    bool cuda = kvbm_backend_kind(probe.b) == KVBM_BACKEND_CUDA;
    ctx_close(&probe);
    if (!json)
        printf("backend %s; %zu blocks per batch, one region per block, ids shuffled\n"
               "%8s %4s %12s | method GB/s (ratio to contiguous), bytes verified\n",
               cuda ? "cuda" : "cpu", n, "block", "dir", "contig GB/s");
    char *list = strdup(regions_arg);
    uint64_t rng = 7;
    int wrong = 0;
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ","))
        wrong += fixed_size(kind, cuda, n, (size_t)strtoull(tok, NULL, 10) * 1024, json, &rng);
    free(list);
    if (wrong > 0)
        fprintf(stderr, "bench_copy: %d method runs left wrong bytes\n", wrong);
    return wrong == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    kvbm_backend_kind_t kind = KVBM_BACKEND_AUTO;
    bool full = false, json = false;
    size_t max_mib = 64, fixed_blocks = 0;
    const char *regions_kib = "4,16,32,64,2048";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--full") == 0) {
            full = true;
            max_mib = 1024;
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            i++;
            kind = strcmp(argv[i], "cuda") == 0 ? KVBM_BACKEND_CUDA : KVBM_BACKEND_CPU;
        } else if (strcmp(argv[i], "--max-mib") == 0 && i + 1 < argc) {
            max_mib = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--blocks") == 0 && i + 1 < argc) {
            fixed_blocks = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--regions-kib") == 0 && i + 1 < argc) {
            regions_kib = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            fprintf(stderr, "usage: bench_copy [--backend cpu|cuda] [--full] [--max-mib N]\n"
                            "       bench_copy [--backend cpu|cuda] --blocks N "
                            "[--regions-kib A,B,...] [--json]\n");
            return 2;
        }
    }
    if (fixed_blocks > 0)
        return fixed_mode(kind, fixed_blocks, regions_kib, json);
    ctx_t base = ctx_open(kind, KVBM_COPY_METHOD_AUTO);
    bool cuda = kvbm_backend_kind(base.b) == KVBM_BACKEND_CUDA;
    printf("backend %s; max %zu MiB per pool\n", kvbm_backend_name(base.b), max_mib);

    static const size_t regions_short[] = {4096, 65536, 2u << 20};
    static const size_t regions_full[] = {4096, 16384, 65536, 262144, 1u << 20, 2u << 20};
    static const size_t blocks_short[] = {1, 64, 1024};
    static const size_t blocks_full[] = {1, 4, 16, 64, 256, 1024, 4096};
    const size_t *rs = full ? regions_full : regions_short;
    size_t nrs = full ? 6 : 3;
    const size_t *bs = full ? blocks_full : blocks_short;
    size_t nbs = full ? 7 : 3;

    static const struct {
        kvbm_copy_method_t m;
        const char *name;
    } cuda_methods[] = {{KVBM_COPY_METHOD_BATCH, "batch"},
                        {KVBM_COPY_METHOD_KERNEL, "kernel"},
                        {KVBM_COPY_METHOD_PER_REGION, "per-region"}};
    ctx_t mctx[3];
    if (cuda)
        for (int m = 0; m < 3; m++)
            mctx[m] = ctx_open(KVBM_BACKEND_CUDA, cuda_methods[m].m);

    printf("%-6s %-9s %8s %6s %12s | %s\n", "layout", "dir", "region", "blocks", "contig GB/s",
           "method GB/s");
    uint64_t rng = 42;
    for (size_t ri = 0; ri < nrs; ri++) {
        for (size_t bi = 0; bi < nbs; bi++) {
            for (int arr = 0; arr < 2; arr++) {
                size_t region = rs[ri], n = bs[bi];
                kvbm_layout_config_t lc = KVBM_LAYOUT_CONFIG_INIT;
                lc.num_blocks = (uint32_t)n;
                lc.num_layers = 4;
                lc.outer_dim = 2;
                lc.inner_dim = 128;
                lc.elem_size = 2;
                lc.kind = arr == 0 ? KVBM_LAYOUT_FULLY_CONTIGUOUS : KVBM_LAYOUT_LAYER_SEPARATE;
                lc.tokens_per_block = (uint32_t)(arr == 0 ? region / 2048 : region / 512);
                kvbm_layout_t *l = NULL;
                check(kvbm_layout_create(&lc, &l), "layout");
                size_t total = kvbm_layout_total_bytes(l);
                if (total > max_mib << 20) {
                    kvbm_layout_destroy(l);
                    continue;
                }
                kvbm_pool_t *dev = NULL, *host = NULL;
                check(kvbm_pool_create(base.b, KVBM_MEM_DEVICE, total, &dev), "pool");
                check(kvbm_pool_create(base.b, KVBM_MEM_HOST, total, &host), "pool");
                if (!cuda) {
                    memset(kvbm_pool_ptr(dev), 1, total);
                    memset(kvbm_pool_ptr(host), 2, total);
                }
                uint32_t *a = malloc(n * sizeof(uint32_t)), *bb = malloc(n * sizeof(uint32_t));
                shuffle(a, n, &rng);
                shuffle(bb, n, &rng);
                size_t per = kvbm_layout_regions_per_block(l);
                kvbm_copy_t *list = malloc(n * per * sizeof(kvbm_copy_t));
                kvbm_region_t *sr = malloc(per * sizeof(kvbm_region_t)),
                              *dr = malloc(per * sizeof(kvbm_region_t));
                if (a == NULL || bb == NULL || list == NULL || sr == NULL || dr == NULL)
                    check(KVBM_ERR_NO_MEMORY, "malloc");
                for (int d = 0; d < 2; d++) {
                    kvbm_copy_dir_t dir = d == 0 ? KVBM_COPY_D2H : KVBM_COPY_H2D;
                    kvbm_pool_t *src = d == 0 ? dev : host, *dst = d == 0 ? host : dev;
                    size_t k = 0, got;
                    for (size_t i = 0; i < n; i++) {
                        kvbm_layout_block_regions(l, a[i], sr, per, &got);
                        kvbm_layout_block_regions(l, bb[i], dr, per, &got);
                        for (size_t r = 0; r < per; r++, k++) {
                            list[k].src = (char *)kvbm_pool_ptr(src) + sr[r].offset;
                            list[k].dst = (char *)kvbm_pool_ptr(dst) + dr[r].offset;
                            list[k].bytes = sr[r].bytes;
                        }
                    }
                    size_t bytes = n * kvbm_layout_block_bytes(l);
                    job_t j = {&base, l, src, dst, a, bb, n, dir, list, k, bytes};
                    double tc = time_it(cuda ? run_contiguous : run_contiguous_memcpy, &j);
                    printf("%-6s %-9s %7zuK %6zu %12.2f |", arr == 0 ? "fc" : "ls",
                           d == 0 ? "D2H" : "H2D", region / 1024, n, bytes / tc / 1e9);
                    if (cuda) {
                        for (int m = 0; m < 3; m++) {
                            /* pools belong to base; the method contexts use
                             * the same device, so their pointers are valid. */
                            j.c = &mctx[m];
                            kvbm_pool_t *ws = NULL, *wd = NULL;
                            check(kvbm_pool_wrap(mctx[m].b,
                                                 src == dev ? KVBM_MEM_DEVICE : KVBM_MEM_HOST,
                                                 kvbm_pool_ptr(src), total, &ws),
                                  "wrap");
                            check(kvbm_pool_wrap(mctx[m].b,
                                                 dst == dev ? KVBM_MEM_DEVICE : KVBM_MEM_HOST,
                                                 kvbm_pool_ptr(dst), total, &wd),
                                  "wrap");
                            j.src = ws;
                            j.dst = wd;
                            double t = time_it(run_backend, &j);
                            printf(" %s %.2f", cuda_methods[m].name, bytes / t / 1e9);
                            kvbm_pool_destroy(wd);
                            kvbm_pool_destroy(ws);
                        }
                    } else {
                        double tb = time_it(run_backend, &j);
                        double tm = time_it(run_memcpy_loop, &j);
                        printf(" backend %.2f  memcpy-loop %.2f", bytes / tb / 1e9,
                               bytes / tm / 1e9);
                    }
                    printf("\n");
                }
                free(dr);
                free(sr);
                free(list);
                free(bb);
                free(a);
                kvbm_pool_destroy(host);
                kvbm_pool_destroy(dev);
                kvbm_layout_destroy(l);
            }
        }
    }
    if (cuda)
        for (int m = 0; m < 3; m++)
            ctx_close(&mctx[m]);
    ctx_close(&base);
    return 0;
}
