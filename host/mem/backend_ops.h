/*
 * Internal: the table of function pointers each backend fills in, and the
 * generic objects of backend.c that wrap a backend's private ones.
 *
 * The table is versioned like SQLite's VFS: fields are appended, never
 * reordered. Every slot is filled; an operation a backend cannot do points at
 * a stub returning KVBM_ERR_UNSUPPORTED. backend.c checks every argument
 * before calling in, so the ops see only valid, same-backend objects.
 *
 * This header includes no CUDA header: the CUDA backend is reached only
 * through kvbm__backend_cuda_ops(), compiled in with KVBM_HAVE_CUDA.
 */
#ifndef KVBM_BACKEND_OPS_H
#define KVBM_BACKEND_OPS_H

#include "kvbm/backend.h"

/* 2: mem_wrap / mem_unwrap appended. 3: copy_async records the fence
 * itself, all or nothing (every backend is in this tree, so the slot's
 * signature changed rather than a second copy slot being appended). */
#define KVBM_BACKEND_OPS_VERSION 3u

typedef struct kvbm__backend_ops {
    uint32_t version; /* KVBM_BACKEND_OPS_VERSION */
    const char *name;
    /* Open the backend. KVBM_ERR_NO_DEVICE only when there is no device at
     * all (the one failure AUTO falls back on); any other failure of a
     * device that is present is returned as such. config->kind is the kind
     * asked for after KVBM_BACKEND, so a backend knows whether it was named. */
    kvbm_status_t (*open)(const kvbm_backend_config_t *config, void **state_out);
    void (*close)(void *state);
    /* Allocate / free a pool's memory; priv is the backend's bookkeeping. */
    kvbm_status_t (*mem_alloc)(void *state, kvbm_mem_kind_t kind, size_t bytes, void **ptr_out,
                               void **priv_out);
    void (*mem_free)(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv);
    kvbm_status_t (*stream_create)(void *state, void **stream_out);
    kvbm_status_t (*stream_wrap)(void *state, void *native, void **stream_out);
    /* Drains the stream, then frees it. */
    void (*stream_destroy)(void *state, void *stream);
    void *(*stream_native)(void *state, void *stream);
    kvbm_status_t (*stream_hold)(void *state, void *stream, bool hold);
    kvbm_status_t (*stream_wait_fence)(void *state, void *stream, void *fence);
    kvbm_status_t (*fence_create)(void *state, void **fence_out);
    void (*fence_destroy)(void *state, void *fence);
    kvbm_status_t (*fence_record)(void *state, void *fence, void *stream);
    /* The fence's answer; a failure's reason is recorded on the calling
     * thread (kvbm__fail), whichever thread enqueued the failed copy. */
    kvbm_status_t (*fence_query)(void *state, void *fence);
    kvbm_status_t (*fence_wait)(void *state, void *fence);
    /*
     * Enqueue a batch (n >= 0), then, when @p fence is not NULL, record it on
     * the stream after the copies. The list is only valid during the call.
     * All or nothing: a call that returns an error has enqueued nothing (so
     * no copy runs that no fence covers; the CUDA backend can break this only
     * when the device itself fails, see its file). When fail is true the
     * backend must not copy and must report KVBM_ERR_COPY_FAILED through the
     * next fence recorded on the stream.
     */
    kvbm_status_t (*copy_async)(void *state, void *stream, const kvbm_copy_t *copies, size_t n,
                                kvbm_copy_dir_t dir, bool fail, void *fence);
    /* Version 2. A pool wraps memory the caller owns (kvbm_pool_wrap): the
     * backend may look at it (CUDA checks whether its copy kernel can reach
     * it) but never frees it; priv as for mem_alloc. */
    kvbm_status_t (*mem_wrap)(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                              void **priv_out);
    void (*mem_unwrap)(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv);
} kvbm__backend_ops_t;

const kvbm__backend_ops_t *kvbm__backend_cpu_ops(void);
#if defined(KVBM_HAVE_CUDA) && KVBM_HAVE_CUDA
const kvbm__backend_ops_t *kvbm__backend_cuda_ops(void);
#define KVBM__BACKEND_CUDA_ENTRY(X) X(KVBM_BACKEND_CUDA, kvbm__backend_cuda_ops)
#else
#define KVBM__BACKEND_CUDA_ENTRY(X)
#endif

/*
 * The backends built in, most preferred first: X(kind, function returning the
 * ops table). KVBM_BACKEND_AUTO opens the first that opens; a kind asked for
 * by name opens that one or fails. Adding a backend is one entry here (under
 * its KVBM_HAVE_ macro when it is optional) and its ops file.
 */
#define KVBM__BACKEND_LIST(X)                                                                      \
    KVBM__BACKEND_CUDA_ENTRY(X)                                                                    \
    X(KVBM_BACKEND_CPU, kvbm__backend_cpu_ops)

#endif /* KVBM_BACKEND_OPS_H */
