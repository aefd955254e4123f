/*
 * Time to allocate a pinned host pool with each method of the CUDA backend:
 * cudaHostAlloc versus mmap + parallel first touch + cudaHostRegister.
 *   bench_pinned_alloc [GiB] [--huge] [--threads N]   (default 8 GiB)
 * Skips with a message when no CUDA device is usable. Prints numbers only;
 * it never passes or fails on time.
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

int main(int argc, char **argv)
{
    double gib = 8.0;
    bool huge = false;
    uint32_t threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--huge") == 0)
            huge = true;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = (uint32_t)atoi(argv[++i]);
        else
            gib = atof(argv[i]);
    }
    size_t bytes = (size_t)(gib * 1024 * 1024 * 1024);
    static const struct {
        kvbm_pinned_method_t m;
        const char *name;
    } methods[] = {{KVBM_PINNED_HOST_ALLOC, "cudaHostAlloc"},
                   {KVBM_PINNED_REGISTER, "mmap+first-touch+cudaHostRegister"}};
    printf("pinned host pool of %.2f GiB%s\n", gib, huge ? " (huge pages asked)" : "");
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
        cfg.kind = KVBM_BACKEND_CUDA;
        cfg.pinned_method = methods[i].m;
        cfg.huge_pages = huge;
        cfg.first_touch_threads = threads;
        kvbm_backend_t *b = NULL;
        kvbm_status_t st = kvbm_backend_create(&cfg, &b);
        if (st == KVBM_ERR_NO_DEVICE) {
            printf("skipped: no usable CUDA device%s\n",
                   kvbm_backend_cuda_built() ? "" : " (CUDA backend not built)");
            return 0;
        }
        if (st != KVBM_OK) {
            printf("backend: %s\n", kvbm_status_str(st));
            return 1;
        }
        kvbm_pool_t *p = NULL;
        double t0 = now_s();
        st = kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &p);
        double t1 = now_s();
        kvbm_pool_destroy(p);
        double t2 = now_s();
        if (st != KVBM_OK)
            printf("%-36s failed: %s\n", methods[i].name, kvbm_status_str(st));
        else
            printf("%-36s alloc %8.3f s  (%6.2f GiB/s)  free %7.3f s\n", methods[i].name, t1 - t0,
                   gib / (t1 - t0), t2 - t1);
        kvbm_backend_destroy(b);
    }
    return 0;
}
