/**
 * @file backend.h
 * @brief Memory binding: device and pinned host pools, streams, fences and
 *        batched asynchronous copies, on CUDA or on a CPU fallback.
 *
 * A backend owns the memory pools of a tiered KV cache (G1 on the device, G2
 * in pinned host memory) and moves block data between them. Two backends
 * exist: CUDA (built when nvcc is found, used when a device is present) and
 * CPU, which is always built and emulates a device with ordinary memory and
 * streams with worker threads, so asynchronous code paths are exercised
 * without a GPU.
 *
 * Objects and ownership. kvbm_backend_t owns nothing the caller creates
 * through it: pools, streams and fences are created from a backend, owned by
 * the caller, and must be destroyed before the backend. Nothing is freed
 * behind the caller's back.
 *
 * Ordering rules.
 * - Work enqueued on one stream (copies, fence records, fence waits) runs in
 *   enqueue order. Work on different streams is unordered unless a stream
 *   waits on a fence recorded on the other (kvbm_stream_wait_fence()).
 * - A copy's destination may be read, and its source overwritten, only after
 *   a fence recorded after the copy on the same stream has completed
 *   (kvbm_fence_wait() or kvbm_fence_query() returned something other than
 *   KVBM_ERR_BUSY), or from a stream that waited on such a fence.
 * - Error rule: a copy call that returns an error enqueued nothing and no
 *   fence reports it. A copy call that returns KVBM_OK may still fail while it
 *   runs; that failure is reported by the next fence recorded after it on the
 *   same stream (and only by that one): waiting on or querying that fence
 *   returns the copy's error (KVBM_ERR_COPY_FAILED, KVBM_ERR_DEVICE). The
 *   destination of a failed copy holds unspecified bytes.
 *
 * Threads. Every call here is thread-safe unless its comment says otherwise.
 * Any thread may enqueue on any stream; calls that enqueue on the same stream
 * from several threads are ordered by the order in which they take the
 * stream's internal lock, so a caller that needs a particular order between
 * threads must impose it. Any number of threads may query or wait on one
 * fence at once. A fence may be recorded again once its previous record is
 * no longer waited for; a query or wait refers to the latest record made
 * before it started.
 *
 * Environment: KVBM_BACKEND=cpu|cuda|auto replaces the kind of a config
 * that asks for KVBM_BACKEND_AUTO. CUDA is initialised by kvbm_backend_create
 * (never at load time), and only when the CUDA or AUTO kind is asked for.
 */
#ifndef KVBM_BACKEND_H
#define KVBM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/config_init.h"
#include "kvbm/export.h"
#include "kvbm/layout.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** 2: pinned_chunk_bytes appended. */
#define KVBM_BACKEND_CONFIG_VERSION 2u

typedef enum kvbm_backend_kind {
    /** CUDA when built and a device is present; CPU only when there is no
     *  device at all (no driver, or no GPU). A device that is present but
     *  cannot be used is an error (KVBM_ERR_DEVICE), not a fallback. */
    KVBM_BACKEND_AUTO = 0,
    KVBM_BACKEND_CPU = 1,
    KVBM_BACKEND_CUDA = 2,
} kvbm_backend_kind_t;

/** Where a pool lives. */
typedef enum kvbm_mem_kind {
    KVBM_MEM_DEVICE = 0, /**< G1: device memory (CPU backend: ordinary memory) */
    KVBM_MEM_HOST = 1,   /**< G2: pinned host memory */
} kvbm_mem_kind_t;

/** Direction of a copy; it must match the pools the pointers come from. */
typedef enum kvbm_copy_dir {
    KVBM_COPY_D2H = 0,
    KVBM_COPY_H2D = 1,
    KVBM_COPY_D2D = 2,
    KVBM_COPY_H2H = 3,
} kvbm_copy_dir_t;

/** How the CUDA backend pins host pools. */
typedef enum kvbm_pinned_method {
    KVBM_PINNED_DEFAULT = 0,    /**< the faster measured method (currently REGISTER) */
    KVBM_PINNED_HOST_ALLOC = 1, /**< cudaHostAlloc */
    KVBM_PINNED_REGISTER = 2,   /**< mmap, parallel first touch, cudaHostRegister */
} kvbm_pinned_method_t;

/** How the CUDA backend executes a batch of copies. */
typedef enum kvbm_copy_method {
    KVBM_COPY_METHOD_AUTO = 0,       /**< kernel below kernel_threshold, else batch API */
    KVBM_COPY_METHOD_BATCH = 1,      /**< cudaMemcpyBatchAsync (copy engines) */
    KVBM_COPY_METHOD_KERNEL = 2,     /**< one gather/scatter kernel launch */
    KVBM_COPY_METHOD_PER_REGION = 3, /**< one cudaMemcpyAsync per region */
} kvbm_copy_method_t;

typedef struct kvbm_backend_config {
    uint32_t struct_size;     /**< sizeof(kvbm_backend_config_t) */
    uint32_t version;         /**< KVBM_BACKEND_CONFIG_VERSION */
    kvbm_backend_kind_t kind; /**< which backend */
    int device;               /**< CUDA device ordinal */
    /** CPU: run every enqueued operation at once in the calling thread. */
    bool synchronous;
    /**
     * Fault injection (both backends): the fail_nth_copy-th copy call
     * (1-based, counted over the whole backend) fails when it runs; 0 = never.
     */
    uint64_t fail_nth_copy;
    /** CUDA: pinning method of host pools. */
    kvbm_pinned_method_t pinned_method;
    /** CUDA REGISTER: first-touch threads (0 = online CPUs, at most 32). */
    uint32_t first_touch_threads;
    /** CUDA REGISTER: ask for huge pages (MAP_HUGETLB, else MADV_HUGEPAGE). */
    bool huge_pages;
    /** CUDA: copy method. */
    kvbm_copy_method_t copy_method;
    /**
     * CUDA AUTO method: batches whose mean region is smaller than this many
     * bytes use the kernel, others the copy engines. The default (64 KiB) is a
     * placeholder until bench_copy has been run on the target GPU; set it to
     * the region size where the batch API overtakes the kernel there.
     */
    size_t kernel_threshold;
    /* ---- version 2 ---- */
    /**
     * CUDA REGISTER: pinned host pools are registered in chunks of this many
     * bytes (rounded up to the page size), several at once; 0 = 1 GiB. One
     * registration of hundreds of GiB fails on some systems.
     */
    size_t pinned_chunk_bytes;
} kvbm_backend_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_BACKEND_CONFIG_DEFAULTS(X, P)                                                         \
    X(P, struct_size, sizeof(kvbm_backend_config_t))                                               \
    X(P, version, KVBM_BACKEND_CONFIG_VERSION)                                                     \
    X(P, kind, KVBM_BACKEND_AUTO)                                                                  \
    X(P, kernel_threshold, 65536) /* 64 KiB */

#ifdef __cplusplus
#define KVBM_BACKEND_CONFIG_INIT                                                                   \
    KVBM_CONFIG_INIT_CXX(kvbm_backend_config_t, kvbm_backend_config_init)
#else
#define KVBM_BACKEND_CONFIG_INIT                                                                   \
    {                                                                                              \
        KVBM_BACKEND_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                      \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_BACKEND_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_backend_config_init(kvbm_backend_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_BACKEND_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/** One copy of a batch. */
typedef struct kvbm_copy {
    const void *src;
    void *dst;
    size_t bytes;
} kvbm_copy_t;

typedef struct kvbm_backend kvbm_backend_t; /**< opaque backend */
typedef struct kvbm_pool kvbm_pool_t;       /**< opaque memory pool */
typedef struct kvbm_stream kvbm_stream_t;   /**< opaque in-order work queue */
typedef struct kvbm_fence kvbm_fence_t;     /**< opaque completion marker */

/**
 * @brief Create a backend.
 * @param[in]  config      NULL for defaults (AUTO); copied.
 * @param[out] backend_out set only on success; free with kvbm_backend_destroy().
 * @return KVBM_OK; KVBM_ERR_VERSION; KVBM_ERR_INVALID_ARG (also a CUDA
 *         device ordinal beyond the devices present);
 *         KVBM_ERR_NO_DEVICE (CUDA asked for but not built, no driver, or no
 *         GPU); KVBM_ERR_DEVICE (CUDA or AUTO: a device is present but
 *         failed, e.g. an insufficient driver or an exclusive-process GPU in
 *         use; the CUDA error is logged through kvbm_log_set's target);
 *         KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_backend_create(const kvbm_backend_config_t *config,
                                           kvbm_backend_t **backend_out);

/**
 * @brief Destroy a backend; NULL is a no-op. All its pools, streams and fences
 *        must have been destroyed. No other thread may use it.
 */
KVBM_API void kvbm_backend_destroy(kvbm_backend_t *backend);

/** @brief "cpu" or "cuda". Static string. */
KVBM_API const char *kvbm_backend_name(const kvbm_backend_t *backend);

/** @brief The kind actually selected (never AUTO). */
KVBM_API kvbm_backend_kind_t kvbm_backend_kind(const kvbm_backend_t *backend);

/** @brief Whether the CUDA backend was compiled in. */
KVBM_API bool kvbm_backend_cuda_built(void);

/**
 * @brief Arm fault injection: the @p n-th copy call from now (1-based) fails
 *        when it runs; 0 disarms. Test hook.
 * @return KVBM_OK, KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_backend_fail_nth_copy(kvbm_backend_t *backend, uint64_t n);

/* ------------------------------------------------------------------ pools */

/**
 * @brief Allocate a pool: one allocation, aligned to at least 4096 bytes.
 *        Contents are unspecified.
 * @param[out] pool_out set only on success; free with kvbm_pool_destroy().
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (bytes 0, bad kind);
 *         KVBM_ERR_NO_MEMORY; KVBM_ERR_DEVICE.
 */
KVBM_API kvbm_status_t kvbm_pool_create(kvbm_backend_t *backend, kvbm_mem_kind_t kind, size_t bytes,
                                        kvbm_pool_t **pool_out);

/**
 * @brief Wrap memory the caller owns (an engine's KV tensor) as a pool. The
 *        memory must stay valid until kvbm_pool_destroy(), which does not free
 *        it. With CUDA, host memory must already be pinned for copies to be
 *        asynchronous.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_pool_wrap(kvbm_backend_t *backend, kvbm_mem_kind_t kind, void *ptr,
                                      size_t bytes, kvbm_pool_t **pool_out);

/** @brief Free a pool; NULL is a no-op. No copy may still use it. */
KVBM_API void kvbm_pool_destroy(kvbm_pool_t *pool);

/** @brief Base address (a device pointer for CUDA device pools). */
KVBM_API void *kvbm_pool_ptr(const kvbm_pool_t *pool);
/** @brief Size in bytes. */
KVBM_API size_t kvbm_pool_bytes(const kvbm_pool_t *pool);
/** @brief Where the pool lives. */
KVBM_API kvbm_mem_kind_t kvbm_pool_kind(const kvbm_pool_t *pool);

/* ---------------------------------------------------------------- streams */

/**
 * @brief Create a stream (CUDA: a non-blocking cudaStream_t; CPU: a worker
 *        thread with a FIFO queue, or inline execution when synchronous).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_MEMORY; KVBM_ERR_DEVICE.
 */
KVBM_API kvbm_status_t kvbm_stream_create(kvbm_backend_t *backend, kvbm_stream_t **stream_out);

/**
 * @brief Wrap a native stream the caller owns (CUDA: a cudaStream_t, e.g. the
 *        engine's compute stream). kvbm_stream_destroy() does not destroy it.
 * @return KVBM_OK; KVBM_ERR_UNSUPPORTED (CPU backend); KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_stream_wrap(kvbm_backend_t *backend, void *native,
                                        kvbm_stream_t **stream_out);

/**
 * @brief Wait for everything enqueued on the stream to finish, then free it.
 *        NULL is a no-op. No other thread may enqueue on it any more.
 */
KVBM_API void kvbm_stream_destroy(kvbm_stream_t *stream);

/** @brief The native handle (cudaStream_t for CUDA, NULL for CPU), e.g. for NCCL. */
KVBM_API void *kvbm_stream_native(const kvbm_stream_t *stream);

/**
 * @brief Test hook: while held, a CPU stream starts no further queued work
 *        (work already running finishes). Releasing resumes it.
 * @return KVBM_OK; KVBM_ERR_UNSUPPORTED (CUDA, or CPU synchronous mode).
 */
KVBM_API kvbm_status_t kvbm_stream_hold(kvbm_stream_t *stream, bool hold);

/**
 * @brief Make all work enqueued on @p stream after this call wait until the
 *        latest record of @p fence made before this call completes. Errors
 *        of that fence are not propagated. A fence never recorded does not
 *        make the stream wait.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_DEVICE.
 */
KVBM_API kvbm_status_t kvbm_stream_wait_fence(kvbm_stream_t *stream, kvbm_fence_t *fence);

/* ----------------------------------------------------------------- fences */

/**
 * @brief Create a fence. A fence never recorded counts as complete.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_MEMORY; KVBM_ERR_DEVICE.
 */
KVBM_API kvbm_status_t kvbm_fence_create(kvbm_backend_t *backend, kvbm_fence_t **fence_out);

/** @brief Free a fence; NULL is a no-op. Nobody may wait on it any more. */
KVBM_API void kvbm_fence_destroy(kvbm_fence_t *fence);

/**
 * @brief Record the fence on a stream: it completes when all work enqueued
 *        before it on that stream has finished, and carries the first error
 *        of the copies enqueued since the previous record on that stream.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, other backend); KVBM_ERR_DEVICE.
 */
KVBM_API kvbm_status_t kvbm_fence_record(kvbm_fence_t *fence, kvbm_stream_t *stream);

/**
 * @brief Non-blocking completion test of the latest record.
 * @return KVBM_ERR_BUSY while pending; KVBM_OK when complete; the error of a
 *         failed copy covered by the record (KVBM_ERR_COPY_FAILED,
 *         KVBM_ERR_DEVICE); KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_fence_query(kvbm_fence_t *fence);

/**
 * @brief Block until the latest record completes. Many threads may wait at once.
 * @return KVBM_OK, or the copy error as kvbm_fence_query(); KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_fence_wait(kvbm_fence_t *fence);

/* ----------------------------------------------------------------- copies */

/**
 * @brief Enqueue a batch of copies on a stream, optionally followed by a
 *        fence record. Copies of one batch may run in any order and must not
 *        overlap each other's destinations.
 * @param[in] copies  the list; the backend copies it, so it may be freed when
 *                    the call returns. The memory it points to must stay
 *                    valid until the copies complete.
 * @param[in] n       number of copies (0 is allowed: only the fence is recorded).
 * @param[in] dir     direction, used by CUDA to pick engines.
 * @param[in] fence   if not NULL, recorded after the batch (as kvbm_fence_record()).
 * @return KVBM_OK (the batch is enqueued; its failure is reported through
 *         the fence); KVBM_ERR_INVALID_ARG (NULL pointer, bad direction,
 *         object of another backend) with nothing enqueued; KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_backend_copy(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                         const kvbm_copy_t *copies, size_t n, kvbm_copy_dir_t dir,
                                         kvbm_fence_t *fence);

/**
 * @brief Copy whole blocks between two pools laid out by one layout: block
 *        src_ids[i] of @p src_pool to block dst_ids[i] of @p dst_pool. The
 *        regions are listed region-major and adjacent ones are merged, then
 *        issued as one batch (kvbm_backend_copy()).
 * @param[in] layout  describes both pools; ids are checked against it and
 *                    both pools must hold kvbm_layout_total_bytes().
 * @param[in] dir     must match the pools' kinds (D2H: device to host, ...).
 * @return KVBM_OK; KVBM_ERR_OUT_OF_RANGE (a block id); KVBM_ERR_INVALID_ARG
 *         (NULL, pool too small, direction not matching the pools);
 *         KVBM_ERR_NO_MEMORY. On error nothing is enqueued.
 */
KVBM_API kvbm_status_t kvbm_backend_copy_blocks(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                                const kvbm_layout_t *layout, kvbm_pool_t *src_pool,
                                                const uint32_t *src_ids, kvbm_pool_t *dst_pool,
                                                const uint32_t *dst_ids, size_t n,
                                                kvbm_copy_dir_t dir, kvbm_fence_t *fence);

/**
 * @brief As kvbm_backend_copy_blocks() between pools with different layouts
 *        (e.g. a device pool of fewer blocks, or another arrangement). The
 *        layouts must be kvbm_layout_compatible(); when their regions differ
 *        the copy is made chunk by chunk, merged where adjacent on both sides.
 * @return as kvbm_backend_copy_blocks(), plus KVBM_ERR_INCOMPATIBLE.
 */
KVBM_API kvbm_status_t kvbm_backend_copy_blocks_between(
    kvbm_backend_t *backend, kvbm_stream_t *stream, const kvbm_layout_t *src_layout,
    kvbm_pool_t *src_pool, const uint32_t *src_ids, const kvbm_layout_t *dst_layout,
    kvbm_pool_t *dst_pool, const uint32_t *dst_ids, size_t n, kvbm_copy_dir_t dir,
    kvbm_fence_t *fence);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_BACKEND_H */
