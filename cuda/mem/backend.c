/*
 * The CUDA backend: opening (is there a device at all, and which one), the
 * ops table, and closing. Pools are in pool.c and pinned.c, streams and
 * fences in stream.c, copies in copy.c; device.c keeps the caller's device.
 *
 * Linking: kvbm links the static CUDA runtime, which loads the driver at run
 * time, so a kvbm built with CUDA starts on a machine without CUDA and AUTO
 * uses the CPU backend there. CUDA is touched only here, in open, never at
 * load time.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "check.h"
#include "core/check.h"
#include "core/error.h"
#include "core/log.h"
#include "internal.h"

/*
 * Why opening did not give a device: logged, and recorded for
 * kvbm_last_error() whenever the verdict reaches the caller. AUTO falling
 * back to the CPU backend (no device at all) is expected: neither logged nor
 * recorded, unless CUDA was asked for by name.
 */
static void report(kvbm_status_t verdict, const kvbm__cuda_probe_t *p, bool asked_for_cuda)
{
    char reason[256];
    bool no_driver = p->driver_err != cudaSuccess || p->driver_version == 0;
    if (verdict == KVBM_ERR_NO_DEVICE && !asked_for_cuda)
        return;
    if (verdict == KVBM_ERR_NO_DEVICE && no_driver)
        snprintf(reason, sizeof(reason), "CUDA: no driver installed (%s)",
                 p->driver_err != cudaSuccess ? cudaGetErrorName(p->driver_err)
                                              : "driver version 0");
    else if (verdict == KVBM_ERR_NO_DEVICE)
        snprintf(reason, sizeof(reason), "CUDA: no device (%s, %d devices)",
                 cudaGetErrorName(p->count_err), p->count);
    else if (verdict == KVBM_ERR_INVALID_ARG)
        snprintf(reason, sizeof(reason), "backend config: CUDA device %d is not in 0..%d",
                 p->device, p->count - 1);
    else
        snprintf(reason, sizeof(reason), "CUDA device %d not usable (driver %d): %s: %s", p->device,
                 p->driver_version,
                 cudaGetErrorName(p->driver_err != cudaSuccess ? p->driver_err : p->count_err),
                 cudaGetErrorString(p->driver_err != cudaSuccess ? p->driver_err : p->count_err));
    kvbm__log(verdict == KVBM_ERR_NO_DEVICE ? KVBM_LOG_INFO : KVBM_LOG_ERROR, "%s", reason);
    (void)kvbm__fail(verdict, "%s", reason);
}

/* Takes a probe call's error out of the last-error slot if it is still there. */
static void forget(cudaError_t err)
{
    if (err != cudaSuccess && cudaPeekAtLastError() == err)
        (void)cudaGetLastError();
}

static kvbm_status_t probe_devices(const kvbm_backend_config_t *config)
{
    kvbm__cuda_probe_t p = {
        .driver_err = cudaSuccess, .count_err = cudaSuccess, .device = config->device};
    p.driver_err = cudaDriverGetVersion(&p.driver_version);
    forget(p.driver_err);
    if (p.driver_err == cudaSuccess && p.driver_version > 0) {
        p.count_err = cudaGetDeviceCount(&p.count);
        forget(p.count_err);
    }
    kvbm_status_t verdict = kvbm__cuda_open_verdict(&p);
    if (verdict != KVBM_OK)
        report(verdict, &p, config->kind == KVBM_BACKEND_CUDA);
    return verdict;
}

/* Reads one device attribute; @p fallback when the runtime does not know it. */
static int attribute(enum cudaDeviceAttr attr, int device, int fallback)
{
    int value = fallback;
    cudaError_t err = cudaDeviceGetAttribute(&value, attr, device);
    forget(err);
    return err == cudaSuccess ? value : fallback;
}

static kvbm_status_t cuda_open(const kvbm_backend_config_t *config, void **state_out)
{
    kvbm_status_t st = probe_devices(config);
    if (st != KVBM_OK)
        return st;
    kvbm__cuda_backend_t *b = kvbm__calloc(1, sizeof(*b));
    if (b == NULL)
        return KVBM_ERR_NO_MEMORY;
    b->device = config->device;
    b->pinned =
        config->pinned_method == KVBM_PINNED_DEFAULT ? KVBM_PINNED_REGISTER : config->pinned_method;
    b->touch_threads = config->first_touch_threads;
    b->huge_pages = config->huge_pages;
    b->chunk_bytes = config->pinned_chunk_bytes;
    b->method = config->copy_method;
    b->kernel_threshold = config->kernel_threshold;
    st = kvbm__cuda_ctx_api_load(&b->ctx);
    if (st != KVBM_OK)
        goto err_free_backend;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&b->ranges_mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_backend;
    /* Entering initialises the device's primary context: failures of a
     * present device (exclusive-process, out of memory, ...) show here. */
    kvbm__cuda_scope_t scope;
    st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        goto err_destroy_mutex;
    b->host_ptr_ok = attribute(cudaDevAttrCanUseHostPointerForRegisteredMem, b->device, 0) != 0;
    b->pageable_ok = attribute(cudaDevAttrPageableMemoryAccess, b->device, 0) != 0;
    b->numa_node = attribute(cudaDevAttrHostNumaId, b->device, -1);
    int runtime = 0, driver = 0;
    b->batch_ok = CUDART_VERSION >= 12080 && cudaRuntimeGetVersion(&runtime) == cudaSuccess &&
                  runtime >= 12080 && cudaDriverGetVersion(&driver) == cudaSuccess &&
                  driver >= 12080;
    /* cudaFree(NULL) makes the context real now rather than at the first
     * pool, so an unusable device fails the create. */
    KVBM_CUDA_CHECK(cudaFree(NULL), st);
    kvbm__cuda_leave(b, &scope);
    if (st != KVBM_OK)
        goto err_destroy_mutex;
    *state_out = b;
    return KVBM_OK;

err_destroy_mutex:
    kvbm__mutex_destroy(&b->ranges_mu);
err_free_backend:
    kvbm__free(b);
    return st;
}

static void cuda_close(void *state)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__range_set_free(&b->ranges);
    kvbm__mutex_destroy(&b->ranges_mu);
    kvbm__free(b);
}

static const kvbm__backend_ops_t cuda_ops = {
    .version = KVBM_BACKEND_OPS_VERSION,
    .name = "cuda",
    .open = cuda_open,
    .close = cuda_close,
    .mem_alloc = kvbm__cuda_mem_alloc,
    .mem_free = kvbm__cuda_mem_free,
    .stream_create = kvbm__cuda_stream_create,
    .stream_wrap = kvbm__cuda_stream_wrap,
    .stream_destroy = kvbm__cuda_stream_destroy,
    .stream_native = kvbm__cuda_stream_native,
    .stream_hold = kvbm__cuda_stream_hold,
    .stream_wait_fence = kvbm__cuda_stream_wait_fence,
    .fence_create = kvbm__cuda_fence_create,
    .fence_destroy = kvbm__cuda_fence_destroy,
    .fence_record = kvbm__cuda_fence_record,
    .fence_query = kvbm__cuda_fence_query,
    .fence_wait = kvbm__cuda_fence_wait,
    .copy_async = kvbm__cuda_copy_async,
    .mem_wrap = kvbm__cuda_mem_wrap,
    .mem_unwrap = kvbm__cuda_mem_unwrap,
};

const kvbm__backend_ops_t *kvbm__backend_cuda_ops(void)
{
    return &cuda_ops;
}
