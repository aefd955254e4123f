/* The stand-in's shared state; see standin.h. */
#ifndef KVBM_TESTS_CUDA_STANDIN_INTERNAL_H
#define KVBM_TESTS_CUDA_STANDIN_INTERNAL_H

#include <pthread.h>

#include "standin.h"

/* A context: the primary one of each device, or one made by a test. */
struct CUctx_st {
    int device;
    bool primary;
};

/* Global state, under standin_mu (a leaf lock: no call out with it held,
 * except stream workers' condition variables documented in work.c). */
typedef struct standin_state {
    int devices;
    int driver_version;
    int can_use_host_pointer[STANDIN_MAX_DEVICES];
    int pageable_access[STANDIN_MAX_DEVICES];
    int numa_node[STANDIN_MAX_DEVICES];
    bool primary_initialized[STANDIN_MAX_DEVICES];
    cudaError_t sticky[STANDIN_MAX_DEVICES];
    cudaError_t fail_next_work;
    size_t register_limit;
    standin_counters_t counters;
} standin_state_t;

extern pthread_mutex_t standin_mu;
extern standin_state_t standin;

void standin_lock(void);
void standin_unlock(void);

/* The calling thread's current context, made the primary one of device 0 if
 * it has none (as the runtime does at its first call on a thread). */
struct CUctx_st *standin_ctx(void);
/* The calling thread's current context or NULL, without creating one. */
struct CUctx_st *standin_ctx_peek(void);

/* Records @p err as the calling thread's last error and returns it. */
cudaError_t standin_fail(cudaError_t err);
/* The injected failure of this call of @p api, or cudaSuccess. */
cudaError_t standin_injected(const char *api);
/* The sticky error of @p device (cudaSuccess when none). */
cudaError_t standin_sticky(int device);
/* Common entry of calls that need a context: injection, then sticky error. */
cudaError_t standin_enter(const char *api, int *device_out);
/* Entry of calls that release something: injection only. A dead context
 * fails them on a GPU too, but the process then exits; the stand-in lets
 * them release, so one test's device fault does not leak into the next. */
cudaError_t standin_enter_release(const char *api);

/* Memory (memory.c): whether a kernel on @p device may touch [p, p + n),
 * and whether a copy-engine copy of [p, p + n) crosses from one
 * registration into another. */
bool standin_device_reaches(int device, const void *p, size_t n);
bool standin_crosses_registrations(const void *p, size_t n);
void standin_memory_reset(void);
size_t standin_memory_live(void);

#endif /* KVBM_TESTS_CUDA_STANDIN_INTERNAL_H */
