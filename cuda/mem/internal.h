/*
 * Internal to cuda/mem: the CUDA backend's objects and the functions its
 * files share. backend.c opens and closes it and holds the ops table;
 * device.c saves and restores the caller's device; pool.c and pinned.c
 * allocate pools; stream.c holds streams and fences; copy.c the copies.
 *
 * Lock order: cuda_stream.mu, then cuda_fence.mu; backend.ranges_mu is a
 * leaf (nothing is called with it held but the range set's pure functions).
 */
#ifndef KVBM_CUDA_MEM_INTERNAL_H
#define KVBM_CUDA_MEM_INTERNAL_H

#include <cuda.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/error.h"
#include "cuda_kernel/copy_region.h"
#include "decide.h"
#include "mem/backend_ops.h"
#include "ranges.h"

/* The driver calls used to save and restore the caller's current context,
 * reached through cudaGetDriverEntryPointByVersion (kvbm never links the
 * driver; cudart loads it at run time). */
typedef struct kvbm__cuda_ctx_api {
    CUresult (*get_current)(CUcontext *ctx);
    CUresult (*set_current)(CUcontext ctx);
    CUresult (*get_device)(CUdevice *device);
} kvbm__cuda_ctx_api_t;

typedef struct kvbm__cuda_backend {
    /* All immutable after open. */
    int device;
    kvbm_pinned_method_t pinned;
    uint32_t touch_threads; /* 0: the CPUs of the device's NUMA node */
    bool huge_pages;
    size_t chunk_bytes; /* REGISTER pools: registration unit (0: default) */
    kvbm_copy_method_t method;
    size_t kernel_threshold;
    bool pageable_ok; /* cudaDevAttrPageableMemoryAccess: the kernel may read any host memory */
    bool host_ptr_ok; /* cudaDevAttrCanUseHostPointerForRegisteredMem */
    bool batch_ok;    /* cudaMemcpyBatchAsync is in this runtime */
    int numa_node;    /* cudaDevAttrHostNumaId: host node nearest the device, -1 unknown */
    kvbm__cuda_ctx_api_t ctx;

    pthread_mutex_t ranges_mu; /* leaf */
    kvbm__range_set_t ranges;  /* ranges_mu: memory the copy kernel may touch */
} kvbm__cuda_backend_t;

/* The caller's CUDA state around an entry point (device.c). */
typedef struct kvbm__cuda_scope {
    CUcontext saved; /* the caller's current context (NULL: none) */
    bool switched;   /* the backend's device was made current: restore on leave */
} kvbm__cuda_scope_t;

/*
 * Makes the backend's device current on the calling thread if it is not,
 * remembering the caller's context. Every entry point calls it first and
 * kvbm__cuda_leave() on every return path after it succeeded.
 */
kvbm_status_t kvbm__cuda_enter(const kvbm__cuda_backend_t *b, kvbm__cuda_scope_t *scope);
/* Puts the caller's context back (exactly: no context if it had none). */
void kvbm__cuda_leave(const kvbm__cuda_backend_t *b, const kvbm__cuda_scope_t *scope);
/* Resolves the driver calls of kvbm__cuda_ctx_api_t. */
kvbm_status_t kvbm__cuda_ctx_api_load(kvbm__cuda_ctx_api_t *api_out);

/* Adds / removes memory the copy kernel may touch (pool.c, pinned.c). */
kvbm_status_t kvbm__cuda_ranges_add(kvbm__cuda_backend_t *b, const void *base, size_t bytes,
                                    size_t chunk);
void kvbm__cuda_ranges_remove(kvbm__cuda_backend_t *b, const void *base);

/* A KVBM_PINNED_REGISTER pool (pinned.c). */
typedef struct kvbm__pinned_pool {
    char *base;
    kvbm__pinned_plan_t plan; /* mapped length, chunks */
} kvbm__pinned_pool_t;

/* mmap, first touch on the device's NUMA node and cudaHostRegister in
 * chunks, by several threads. The caller is inside kvbm__cuda_enter. */
kvbm_status_t kvbm__pinned_create(kvbm__cuda_backend_t *b, size_t bytes,
                                  kvbm__pinned_pool_t *pool_out);
/* Unregisters every chunk and unmaps the whole mapped length. */
void kvbm__pinned_destroy(kvbm__cuda_backend_t *b, kvbm__pinned_pool_t *pool);

/* Host NUMA support, loaded at run time (numa.c): CPUs of @p node (0 when
 * unknown or libnuma is absent) and binding the calling thread to it. */
uint32_t kvbm__numa_node_cpus(int node);
void kvbm__numa_bind_thread(int node);

/* ---------------------------------------------------------------- streams */

typedef struct kvbm__cuda_stream {
    cudaStream_t s; /* immutable */
    bool wrapped;   /* immutable: s belongs to the caller */
    bool legacy;    /* immutable: s is the legacy default stream */
    pthread_mutex_t mu;
    kvbm_status_t pending;                /* mu: first enqueue error since the last record */
    char pending_reason[KVBM__ERROR_MAX]; /* mu: its reason, as the enqueuing thread saw it */
    /* mu: scratch of the copy path (host memory only) */
    void **dsts;
    const void **srcs;
    size_t *sizes;
    size_t scratch_cap;
    kvbm_copy_t *cut; /* copies cut at registration boundaries */
    size_t cut_cap;
    kvbm__copy_launch_t *launch; /* kernel parameter block */
} kvbm__cuda_stream_t;

typedef struct kvbm__cuda_fence {
    cudaEvent_t ev; /* immutable; cudaEventBlockingSync: waiting threads sleep */
    pthread_mutex_t mu;
    kvbm_status_t status;         /* mu: enqueue error carried by the latest record */
    char reason[KVBM__ERROR_MAX]; /* mu: its reason, told to every thread that waits */
} kvbm__cuda_fence_t;

/* Stream and fence ops (stream.c). */
kvbm_status_t kvbm__cuda_stream_create(void *state, void **stream_out);
kvbm_status_t kvbm__cuda_stream_wrap(void *state, void *native, void **stream_out);
void kvbm__cuda_stream_destroy(void *state, void *stream);
void *kvbm__cuda_stream_native(void *state, void *stream);
kvbm_status_t kvbm__cuda_stream_hold(void *state, void *stream, bool hold);
kvbm_status_t kvbm__cuda_stream_wait_fence(void *state, void *stream, void *fence);
kvbm_status_t kvbm__cuda_fence_create(void *state, void **fence_out);
void kvbm__cuda_fence_destroy(void *state, void *fence);
kvbm_status_t kvbm__cuda_fence_record(void *state, void *fence, void *stream);
kvbm_status_t kvbm__cuda_fence_query(void *state, void *fence);
kvbm_status_t kvbm__cuda_fence_wait(void *state, void *fence);

/* Pool ops (pool.c). */
kvbm_status_t kvbm__cuda_mem_alloc(void *state, kvbm_mem_kind_t kind, size_t bytes, void **ptr_out,
                                   void **priv_out);
void kvbm__cuda_mem_free(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv);
kvbm_status_t kvbm__cuda_mem_wrap(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                                  void **priv_out);
void kvbm__cuda_mem_unwrap(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv);

/* The copy op (copy.c). */
kvbm_status_t kvbm__cuda_copy_async(void *state, void *stream, const kvbm_copy_t *copies, size_t n,
                                    kvbm_copy_dir_t dir, bool fail, void *fence);

#endif /* KVBM_CUDA_MEM_INTERNAL_H */
