/*
 * Internal to cuda/mem: every decision of the CUDA backend that depends only
 * on values, as a pure function (no CUDA call, no state), so the CPU tests
 * (tests/cuda/test_cuda_decide.c) pin them without a GPU. The backend's
 * files gather the facts (CUDA calls) and act on the answers.
 */
#ifndef KVBM_CUDA_DECIDE_H
#define KVBM_CUDA_DECIDE_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/backend.h"

/* ---------------------------------------------------------------- opening */

/* What the backend learnt about the machine before choosing a device. */
typedef struct kvbm__cuda_probe {
    cudaError_t driver_err; /* cudaDriverGetVersion */
    int driver_version;     /* 0: no driver installed */
    cudaError_t count_err;  /* cudaGetDeviceCount (not called without a driver) */
    int count;
    int device; /* the ordinal asked for */
} kvbm__cuda_probe_t;

/*
 * The verdict on opening: KVBM_OK; KVBM_ERR_NO_DEVICE only when there is no
 * device at all (no driver, the driver's stub library, cudaErrorNoDevice, or
 * zero devices), the one case where AUTO may fall back to the CPU backend;
 * KVBM_ERR_INVALID_ARG for an ordinal outside the devices present;
 * KVBM_ERR_DEVICE for every other CUDA failure (an insufficient driver, a
 * busy or exclusive-process device, ...), which is reported, never hidden
 * behind a fallback.
 */
kvbm_status_t kvbm__cuda_open_verdict(const kvbm__cuda_probe_t *probe);

/* The kvbm status of a failed CUDA call (not cudaSuccess). */
kvbm_status_t kvbm__cuda_status(cudaError_t err);

/* ----------------------------------------------------------------- copies */

/* What the copy path knows when it picks a method for one batch. */
typedef struct kvbm__copy_facts {
    kvbm_copy_method_t asked; /* the backend's configured method */
    size_t kernel_threshold;  /* AUTO: kernel below this mean region size */
    size_t mean_bytes;        /* mean region size of the batch */
    bool kernel_reachable;    /* the device may touch every byte of the batch */
    bool batch_supported;     /* cudaMemcpyBatchAsync exists in this runtime */
    bool legacy_stream;       /* the stream is the legacy default stream */
} kvbm__copy_facts_t;

/*
 * The method for one batch, never KVBM_COPY_METHOD_AUTO. The kernel only
 * when it can reach every byte (asked for, or AUTO below the threshold);
 * the batch API only where it works (never on the legacy stream, whose use
 * the API refuses); per-region copies otherwise.
 */
kvbm_copy_method_t kvbm__cuda_pick_method(const kvbm__copy_facts_t *facts);

/* Whether a native stream handle is the legacy default stream (NULL or
 * cudaStreamLegacy; kvbm's own C code never means per-thread by NULL). */
bool kvbm__cuda_stream_is_legacy(cudaStream_t stream);

/* Kernel launches needed for @p regions regions (KVBM__COPY_LAUNCH_MAX each). */
size_t kvbm__cuda_kernel_launches(size_t regions);

/* ------------------------------------------------------------ pinned pools */

/* Default registration unit of KVBM_PINNED_REGISTER pools (1 GiB): a single
 * cudaHostRegister of hundreds of GiB fails in the field, and chunks let
 * several threads pin at once. */
#define KVBM__PINNED_CHUNK_DEFAULT ((size_t)1 << 30)
/* Most threads that touch and register one pool. */
#define KVBM__PINNED_THREADS_MAX 32u

/* How a KVBM_PINNED_REGISTER pool is mapped and registered. */
typedef struct kvbm__pinned_plan {
    size_t page;         /* page size of the mapping */
    size_t mapped_bytes; /* mmap/munmap length: bytes rounded up to pages */
    size_t chunk_bytes;  /* registration unit, a multiple of page */
    size_t chunks;       /* registrations: chunk k covers [k * chunk, min(...)) */
    uint32_t threads;    /* workers that touch and register chunks */
} kvbm__pinned_plan_t;

/*
 * Plans a pool of @p bytes on pages of @p page bytes (a power of two),
 * registered in chunks of @p chunk_asked (0: the default; rounded up to a
 * page), by @p threads_asked threads (0: @p cpus, the CPUs near the device),
 * at most one per chunk and KVBM__PINNED_THREADS_MAX.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (bytes or page 0, page not a power
 *         of two); KVBM_ERR_OVERFLOW. @p plan_out is set only on success.
 */
kvbm_status_t kvbm__pinned_plan(size_t bytes, size_t page, size_t chunk_asked,
                                uint32_t threads_asked, uint32_t cpus,
                                kvbm__pinned_plan_t *plan_out);

/* Offset and length of chunk @p k of @p plan. */
void kvbm__pinned_chunk(const kvbm__pinned_plan_t *plan, size_t k, size_t *offset_out,
                        size_t *bytes_out);

/* --------------------------------------------------------------- devices */

/* Whether an entry point must switch devices (and so restore afterwards). */
static inline bool kvbm__cuda_must_switch(int current, int wanted)
{
    return current != wanted;
}

#endif /* KVBM_CUDA_DECIDE_H */
