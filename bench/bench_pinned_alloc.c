/*
 * How fast the CUDA backend pins a host pool, each method side by side:
 * cudaHostAlloc (one driver call) and mmap + first touch + cudaHostRegister
 * in chunks of several sizes (threads bound to the GPU's NUMA node), each
 * configuration run --reps times in rotation so the numbers compare within
 * one run. Prints seconds and GiB/s of allocation and of freeing.
 *
 *   bench_pinned_alloc [--gib G] [--chunks-mib 256,1024,4096,0] [--threads N]
 *                      [--huge] [--reps R] [--json]
 *
 * --chunks-mib 0 means one chunk for the whole pool. --json prints one JSON
 * object per measurement. Skips (exit 0, says why) when no CUDA device is
 * usable; exits 1 when an allocation fails. Prints numbers only; it never
 * passes or fails on time.
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

typedef struct config {
    kvbm_pinned_method_t method;
    size_t chunk; /* REGISTER: bytes per registration; SIZE_MAX: the whole pool */
} config_t;

static void usage(void)
{
    fprintf(stderr, "usage: bench_pinned_alloc [--gib G] [--chunks-mib A,B,...] [--threads N] "
                    "[--huge] [--reps R] [--json]\n");
}

int main(int argc, char **argv)
{
    double gib = 8.0;
    bool huge = false, json = false;
    uint32_t threads = 0;
    int reps = 2;
    const char *chunks_arg = "256,1024,4096,0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--huge") == 0)
            huge = true;
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--gib") == 0 && i + 1 < argc)
            gib = atof(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--chunks-mib") == 0 && i + 1 < argc)
            chunks_arg = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (gib <= 0 || reps < 1) {
        usage();
        return 2;
    }
    size_t bytes = (size_t)(gib * 1024 * 1024 * 1024);
    int failures = 0;
    config_t configs[16];
    size_t n = 0;
    configs[n++] = (config_t){KVBM_PINNED_HOST_ALLOC, 0};
    char *list = strdup(chunks_arg);
    for (char *tok = strtok(list, ","); tok != NULL && n < 16; tok = strtok(NULL, ",")) {
        size_t mib = (size_t)strtoull(tok, NULL, 10);
        configs[n++] = (config_t){KVBM_PINNED_REGISTER, mib == 0 ? SIZE_MAX : mib << 20};
    }
    free(list);

    if (!json)
        printf("pinned host pool of %.2f GiB%s, %d rounds\n%-34s %9s %9s %9s\n", gib,
               huge ? " (huge pages asked)" : "", reps, "method", "alloc s", "GiB/s", "free s");
    for (int rep = 0; rep < reps; rep++) {
        for (size_t i = 0; i < n; i++) {
            kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
            cfg.kind = KVBM_BACKEND_CUDA;
            cfg.pinned_method = configs[i].method;
            cfg.pinned_chunk_bytes = configs[i].chunk == SIZE_MAX ? bytes : configs[i].chunk;
            cfg.huge_pages = huge;
            cfg.first_touch_threads = threads;
            kvbm_backend_t *b = NULL;
            kvbm_status_t st = kvbm_backend_create(&cfg, &b);
            if (st == KVBM_ERR_NO_DEVICE) {
                const char *why =
                    kvbm_backend_cuda_built() ? "no usable CUDA device" : "CUDA backend not built";
                if (json)
                    printf("{\"bench\": \"pinned_alloc\", \"skipped\": \"%s\"}\n", why);
                else
                    printf("skipped: %s\n", why);
                return 0;
            }
            if (st != KVBM_OK) {
                fprintf(stderr, "bench_pinned_alloc: backend: %s\n", kvbm_status_str(st));
                return 1;
            }
            char name[64];
            if (configs[i].method == KVBM_PINNED_HOST_ALLOC)
                snprintf(name, sizeof(name), "cudaHostAlloc");
            else if (configs[i].chunk == SIZE_MAX)
                snprintf(name, sizeof(name), "register, one chunk");
            else
                snprintf(name, sizeof(name), "register, %zu MiB chunks", configs[i].chunk >> 20);
            kvbm_pool_t *p = NULL;
            double t0 = now_s();
            st = kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &p);
            double t1 = now_s();
            kvbm_pool_destroy(p);
            double t2 = now_s();
            kvbm_backend_destroy(b);
            failures += st != KVBM_OK;
            if (json)
                printf("{\"bench\": \"pinned_alloc\", \"method\": \"%s\", \"chunk_mib\": %zu, "
                       "\"gib\": %.3f, \"round\": %d, \"status\": \"%s\", \"alloc_s\": %.4f, "
                       "\"alloc_gibps\": %.3f, \"free_s\": %.4f}\n",
                       configs[i].method == KVBM_PINNED_HOST_ALLOC ? "host_alloc" : "register",
                       configs[i].chunk == SIZE_MAX ? bytes >> 20 : configs[i].chunk >> 20, gib,
                       rep, kvbm_status_name(st), t1 - t0, st == KVBM_OK ? gib / (t1 - t0) : 0.0,
                       t2 - t1);
            else if (st != KVBM_OK)
                printf("%-34s failed: %s\n", name, kvbm_status_str(st));
            else
                printf("%-34s %9.3f %9.2f %9.3f\n", name, t1 - t0, gib / (t1 - t0), t2 - t1);
        }
    }
    return failures == 0 ? 0 : 1;
}
