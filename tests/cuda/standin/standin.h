/*
 * A stand-in for the subset of the CUDA runtime that kvbm's cuda/ code calls,
 * linked only into tests (kvbm_standin), so the real CUDA backend runs in CI
 * without a GPU. It models what kvbm's host logic depends on, no more:
 * devices and their primary contexts (per-thread current context, the driver
 * calls kvbm reaches through cudaGetDriverEntryPointByVersion), device and
 * pinned allocations in host memory, streams as worker threads, events,
 * cudaMemcpyAsync / cudaMemcpyBatchAsync, the copy kernel (running the
 * kernel's own per-region code, cuda/kernel/copy_region.h), per-thread last
 * errors and sticky device errors, and error injection.
 *
 * What passes here is evidence about kvbm's host logic (device restore, no
 * blocking, error mapping, method choice, chunked registration), never a
 * claim about real CUDA: timings, copy engines, the driver's behaviour and
 * the kernel's device code are not modelled.
 *
 * Checks that real CUDA would make by faulting are made explicitly: the
 * kernel touching memory the device cannot reach (pageable host memory)
 * raises cudaErrorIllegalAddress, sticky, as a GPU would.
 */
#ifndef KVBM_TESTS_CUDA_STANDIN_H
#define KVBM_TESTS_CUDA_STANDIN_H

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STANDIN_MAX_DEVICES 4

/* Back to the defaults: 1 device, driver 13000, no injection, no sticky
 * error, counters zero, no register limit. Only with no object alive. */
void standin_reset(void);
void standin_set_devices(int count);
/* cudaDriverGetVersion's answer; 0 models a machine without a driver. */
void standin_set_driver_version(int version);
void standin_set_attribute(int device, enum cudaDeviceAttr attr, int value);

/* The @p skip + 1-th call of @p api from now fails with @p err, and the
 * @p times - 1 calls after it too. @p api is the CUDA name, or
 * "kvbm__copy_kernel_launch". */
void standin_fail_call(const char *api, cudaError_t err, unsigned skip, unsigned times);
/* The next piece of stream work to run (copy or kernel) faults instead:
 * @p err becomes its device's sticky error. */
void standin_fail_next_work(cudaError_t err);
/* cudaHostRegister of more than @p bytes fails (0: no limit). */
void standin_set_register_limit(size_t bytes);

/* While held, a stream starts no queued work (what is running finishes). */
void standin_stream_hold(cudaStream_t stream, bool hold);
/* While set for the calling thread, a blocking wait on unfinished work
 * (cudaEventSynchronize, cudaStreamSynchronize) fails with
 * cudaErrorNotPermitted instead of waiting, and is counted. */
void standin_forbid_blocking(bool forbid);
/* Puts @p err in the calling thread's last-error slot, as an application's
 * own failed call would. */
void standin_set_last_error(cudaError_t err);

/* Whether a device's primary context has been initialised. */
bool standin_primary_initialized(int device);
/* A non-primary context on @p device (as cuCtxCreate would make). */
CUcontext standin_context_create(int device);
void standin_context_destroy(CUcontext ctx);

typedef struct standin_counters {
    uint64_t blocking_waits;        /* event/stream waits that had to wait */
    uint64_t spin_waits;            /* of those, on events without cudaEventBlockingSync */
    uint64_t forbidden_waits;       /* waits refused by standin_forbid_blocking */
    uint64_t batch_calls;           /* cudaMemcpyBatchAsync calls */
    uint64_t batch_on_legacy;       /* of those, on the legacy stream (refused) */
    uint64_t memcpy_calls;          /* cudaMemcpyAsync calls */
    uint64_t kernel_launches;       /* kvbm__copy_kernel_launch calls enqueued */
    uint64_t illegal_accesses;      /* kernels that touched unreachable memory */
    uint64_t crossed_registrations; /* copy-engine copies spanning two registrations */
    uint64_t device_allocs;         /* cudaMalloc / cudaHostAlloc calls that succeeded */
    uint64_t registrations;         /* cudaHostRegister calls that succeeded */
} standin_counters_t;

void standin_counters(standin_counters_t *out);
/* Allocations and registrations still alive. */
size_t standin_live_allocations(void);

#endif /* KVBM_TESTS_CUDA_STANDIN_H */
