/*
 * The caller's device around every entry point: kvbm switches to its own
 * device only when another (or none) is current, and puts the caller's
 * context back before returning, on every path. The restore is exact: a
 * thread that had no context is left with none (restoring "device 0" with
 * cudaSetDevice would create device 0's primary context on a machine where
 * the application never used device 0), and a context the application made
 * current through the driver API is the one made current again.
 */
#include <stddef.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "core/log.h"
#include "internal.h"

kvbm_status_t kvbm__cuda_ctx_api_load(kvbm__cuda_ctx_api_t *api_out)
{
    static const struct {
        const char *symbol;
        size_t offset;
    } calls[] = {
        {"cuCtxGetCurrent", offsetof(kvbm__cuda_ctx_api_t, get_current)},
        {"cuCtxSetCurrent", offsetof(kvbm__cuda_ctx_api_t, set_current)},
        {"cuCtxGetDevice", offsetof(kvbm__cuda_ctx_api_t, get_device)},
    };
    kvbm__cuda_ctx_api_t api;
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        void *fn = NULL;
        enum cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        kvbm_status_t status = KVBM_OK;
        /* 12000: these calls have had one ABI since CUDA 4. */
        KVBM_CUDA_CHECK(cudaGetDriverEntryPointByVersion(calls[i].symbol, &fn, 12000,
                                                         cudaEnableDefault, &found),
                        status);
        if (status != KVBM_OK)
            return status;
        if (found != cudaDriverEntryPointSuccess || fn == NULL) {
            kvbm__log(KVBM_LOG_ERROR, "CUDA driver has no %s", calls[i].symbol);
            return kvbm__fail(KVBM_ERR_DEVICE, "CUDA driver has no %s", calls[i].symbol);
        }
        memcpy((char *)&api + calls[i].offset, &fn, sizeof(fn));
    }
    *api_out = api;
    return KVBM_OK;
}

/* Maps and logs a driver result (these calls fail only on a broken driver). */
static kvbm_status_t driver_status(CUresult rc, const char *what)
{
    if (rc == CUDA_SUCCESS)
        return KVBM_OK;
    kvbm__log(KVBM_LOG_ERROR, "%s failed: CUresult %d", what, (int)rc);
    return kvbm__fail(KVBM_ERR_DEVICE, "%s failed: CUresult %d", what, (int)rc);
}

kvbm_status_t kvbm__cuda_enter(const kvbm__cuda_backend_t *b, kvbm__cuda_scope_t *scope)
{
    CUcontext current = NULL;
    kvbm_status_t status = driver_status(b->ctx.get_current(&current), "cuCtxGetCurrent");
    if (status != KVBM_OK)
        return status;
    int device = -1;
    if (current != NULL) {
        CUdevice d = -1;
        status = driver_status(b->ctx.get_device(&d), "cuCtxGetDevice");
        if (status != KVBM_OK)
            return status;
        device = (int)d;
    }
    /* A context of the backend's device already current (the primary one, or
     * the application's own on that device) is used as it is. */
    if (current != NULL && !kvbm__cuda_must_switch(device, b->device)) {
        *scope = (kvbm__cuda_scope_t){.saved = current, .switched = false};
        return KVBM_OK;
    }
    KVBM_CUDA_CHECK(cudaSetDevice(b->device), status);
    if (status != KVBM_OK) {
        /* cudaSetDevice may have changed the context before failing. */
        (void)b->ctx.set_current(current);
        return status;
    }
    *scope = (kvbm__cuda_scope_t){.saved = current, .switched = true};
    return KVBM_OK;
}

void kvbm__cuda_leave(const kvbm__cuda_backend_t *b, const kvbm__cuda_scope_t *scope)
{
    if (scope->switched)
        (void)driver_status(b->ctx.set_current(scope->saved), "cuCtxSetCurrent");
}
