/*
 * The stand-in's devices, contexts, errors, injection and counters. Not
 * real CUDA: see standin.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

pthread_mutex_t standin_mu = PTHREAD_MUTEX_INITIALIZER;
standin_state_t standin;

static struct CUctx_st primaries[STANDIN_MAX_DEVICES];
static _Thread_local struct CUctx_st *current_ctx;
static _Thread_local cudaError_t last_error;
static bool initialized;

/* Injected failures, under standin_mu. */
typedef struct injection {
    char api[64];
    cudaError_t err;
    unsigned skip;
    unsigned times;
} injection_t;
static injection_t injections[16];
static size_t n_injections;

void standin_lock(void)
{
    pthread_mutex_lock(&standin_mu);
}

void standin_unlock(void)
{
    pthread_mutex_unlock(&standin_mu);
}

static void defaults_locked(void)
{
    memset(&standin, 0, sizeof(standin));
    standin.devices = 1;
    standin.driver_version = 13000;
    for (int d = 0; d < STANDIN_MAX_DEVICES; d++) {
        standin.can_use_host_pointer[d] = 1;
        standin.numa_node[d] = -1;
        primaries[d] = (struct CUctx_st){.device = d, .primary = true};
    }
    n_injections = 0;
    initialized = true;
}

static void ensure_initialized_locked(void)
{
    if (!initialized)
        defaults_locked();
}

void standin_reset(void)
{
    standin_lock();
    defaults_locked();
    standin_unlock();
    standin_memory_reset();
    last_error = cudaSuccess;
    current_ctx = NULL;
}

void standin_set_devices(int count)
{
    standin_lock();
    ensure_initialized_locked();
    standin.devices = count < STANDIN_MAX_DEVICES ? count : STANDIN_MAX_DEVICES;
    standin_unlock();
}

void standin_set_driver_version(int version)
{
    standin_lock();
    ensure_initialized_locked();
    standin.driver_version = version;
    standin_unlock();
}

void standin_set_attribute(int device, enum cudaDeviceAttr attr, int value)
{
    standin_lock();
    ensure_initialized_locked();
    if (device >= 0 && device < STANDIN_MAX_DEVICES) {
        if (attr == cudaDevAttrCanUseHostPointerForRegisteredMem)
            standin.can_use_host_pointer[device] = value;
        else if (attr == cudaDevAttrPageableMemoryAccess)
            standin.pageable_access[device] = value;
        else if (attr == cudaDevAttrHostNumaId)
            standin.numa_node[device] = value;
    }
    standin_unlock();
}

void standin_fail_call(const char *api, cudaError_t err, unsigned skip, unsigned times)
{
    standin_lock();
    ensure_initialized_locked();
    if (n_injections < sizeof(injections) / sizeof(injections[0])) {
        injection_t *in = &injections[n_injections++];
        snprintf(in->api, sizeof(in->api), "%s", api);
        in->err = err;
        in->skip = skip;
        in->times = times;
    }
    standin_unlock();
}

void standin_fail_next_work(cudaError_t err)
{
    standin_lock();
    ensure_initialized_locked();
    standin.fail_next_work = err;
    standin_unlock();
}

void standin_set_register_limit(size_t bytes)
{
    standin_lock();
    ensure_initialized_locked();
    standin.register_limit = bytes;
    standin_unlock();
}

void standin_set_last_error(cudaError_t err)
{
    last_error = err;
}

bool standin_primary_initialized(int device)
{
    standin_lock();
    bool init = device >= 0 && device < STANDIN_MAX_DEVICES && standin.primary_initialized[device];
    standin_unlock();
    return init;
}

CUcontext standin_context_create(int device)
{
    struct CUctx_st *ctx = calloc(1, sizeof(*ctx));
    if (ctx != NULL)
        ctx->device = device;
    return ctx;
}

void standin_context_destroy(CUcontext ctx)
{
    if (ctx != NULL && !ctx->primary)
        free(ctx);
}

void standin_counters(standin_counters_t *out)
{
    standin_lock();
    *out = standin.counters;
    standin_unlock();
}

size_t standin_live_allocations(void)
{
    return standin_memory_live();
}

struct CUctx_st *standin_ctx_peek(void)
{
    return current_ctx;
}

struct CUctx_st *standin_ctx(void)
{
    if (current_ctx == NULL) {
        standin_lock();
        ensure_initialized_locked();
        standin.primary_initialized[0] = true;
        standin_unlock();
        current_ctx = &primaries[0];
    }
    return current_ctx;
}

cudaError_t standin_fail(cudaError_t err)
{
    last_error = err;
    return err;
}

cudaError_t standin_injected(const char *api)
{
    cudaError_t err = cudaSuccess;
    standin_lock();
    ensure_initialized_locked();
    for (size_t i = 0; i < n_injections; i++) {
        injection_t *in = &injections[i];
        if (in->times == 0 || strcmp(in->api, api) != 0)
            continue;
        if (in->skip > 0) {
            in->skip--;
            continue;
        }
        in->times--;
        err = in->err;
        break;
    }
    standin_unlock();
    return err;
}

cudaError_t standin_sticky(int device)
{
    standin_lock();
    cudaError_t err =
        device >= 0 && device < STANDIN_MAX_DEVICES ? standin.sticky[device] : cudaSuccess;
    standin_unlock();
    return err;
}

cudaError_t standin_enter(const char *api, int *device_out)
{
    cudaError_t err = standin_injected(api);
    if (err != cudaSuccess)
        return standin_fail(err);
    struct CUctx_st *ctx = standin_ctx();
    err = standin_sticky(ctx->device);
    if (err != cudaSuccess)
        return standin_fail(err);
    if (device_out != NULL)
        *device_out = ctx->device;
    return cudaSuccess;
}

cudaError_t standin_enter_release(const char *api)
{
    cudaError_t err = standin_injected(api);
    if (err != cudaSuccess)
        return standin_fail(err);
    (void)standin_ctx();
    return cudaSuccess;
}

/* ---------------------------------------------------------------- runtime */

cudaError_t cudaDriverGetVersion(int *version)
{
    cudaError_t err = standin_injected("cudaDriverGetVersion");
    if (err != cudaSuccess)
        return standin_fail(err);
    standin_lock();
    ensure_initialized_locked();
    *version = standin.driver_version;
    standin_unlock();
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version)
{
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    cudaError_t err = standin_injected("cudaGetDeviceCount");
    if (err != cudaSuccess)
        return standin_fail(err);
    standin_lock();
    ensure_initialized_locked();
    int devices = standin.devices, driver = standin.driver_version;
    standin_unlock();
    if (driver == 0)
        return standin_fail(cudaErrorInsufficientDriver);
    if (devices == 0)
        return standin_fail(cudaErrorNoDevice);
    *count = devices;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    struct CUctx_st *ctx = current_ctx;
    *device = ctx != NULL ? ctx->device : 0;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    cudaError_t err = standin_injected("cudaSetDevice");
    if (err != cudaSuccess)
        return standin_fail(err);
    standin_lock();
    ensure_initialized_locked();
    bool ok = device >= 0 && device < standin.devices;
    if (ok)
        standin.primary_initialized[device] = true;
    standin_unlock();
    if (!ok)
        return standin_fail(cudaErrorInvalidDevice);
    current_ctx = &primaries[device];
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    standin_lock();
    ensure_initialized_locked();
    bool ok = device >= 0 && device < standin.devices;
    int v = 0;
    if (ok) {
        if (attr == cudaDevAttrCanUseHostPointerForRegisteredMem)
            v = standin.can_use_host_pointer[device];
        else if (attr == cudaDevAttrPageableMemoryAccess)
            v = standin.pageable_access[device];
        else if (attr == cudaDevAttrHostNumaId)
            v = standin.numa_node[device];
    }
    standin_unlock();
    if (!ok)
        return standin_fail(cudaErrorInvalidDevice);
    *value = v;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t err = last_error;
    last_error = cudaSuccess;
    if (err == cudaSuccess && current_ctx != NULL)
        err = standin_sticky(current_ctx->device);
    return err;
}

cudaError_t cudaPeekAtLastError(void)
{
    cudaError_t err = last_error;
    if (err == cudaSuccess && current_ctx != NULL)
        err = standin_sticky(current_ctx->device);
    return err;
}

const char *cudaGetErrorName(cudaError_t err)
{
    switch (err) {
#define STANDIN_NAME(e)                                                                            \
    case e:                                                                                        \
        return #e;
        STANDIN_NAME(cudaSuccess)
        STANDIN_NAME(cudaErrorInvalidValue)
        STANDIN_NAME(cudaErrorMemoryAllocation)
        STANDIN_NAME(cudaErrorInsufficientDriver)
        STANDIN_NAME(cudaErrorStubLibrary)
        STANDIN_NAME(cudaErrorNoDevice)
        STANDIN_NAME(cudaErrorInvalidDevice)
        STANDIN_NAME(cudaErrorDevicesUnavailable)
        STANDIN_NAME(cudaErrorNotReady)
        STANDIN_NAME(cudaErrorIllegalAddress)
        STANDIN_NAME(cudaErrorLaunchFailure)
        STANDIN_NAME(cudaErrorNotPermitted)
        STANDIN_NAME(cudaErrorNotSupported)
        STANDIN_NAME(cudaErrorHostMemoryAlreadyRegistered)
        STANDIN_NAME(cudaErrorHostMemoryNotRegistered)
        STANDIN_NAME(cudaErrorInvalidResourceHandle)
#undef STANDIN_NAME
    default:
        return "cudaErrorUnknown (stand-in)";
    }
}

const char *cudaGetErrorString(cudaError_t err)
{
    return err == cudaSuccess ? "no error" : "stand-in error (see its name)";
}

/* ------------------------------------------------ driver calls by entry point */

static CUresult ctx_get_current(CUcontext *ctx)
{
    *ctx = current_ctx;
    return CUDA_SUCCESS;
}

static CUresult ctx_set_current(CUcontext ctx)
{
    current_ctx = ctx;
    return CUDA_SUCCESS;
}

static CUresult ctx_get_device(CUdevice *device)
{
    if (current_ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    *device = current_ctx->device;
    return CUDA_SUCCESS;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int version,
                                             unsigned long long flags,
                                             enum cudaDriverEntryPointQueryResult *status)
{
    (void)version;
    (void)flags;
    cudaError_t err = standin_injected("cudaGetDriverEntryPointByVersion");
    if (err != cudaSuccess)
        return standin_fail(err);
    void *found = NULL;
    if (strcmp(symbol, "cuCtxGetCurrent") == 0)
        found = (void *)ctx_get_current;
    else if (strcmp(symbol, "cuCtxSetCurrent") == 0)
        found = (void *)ctx_set_current;
    else if (strcmp(symbol, "cuCtxGetDevice") == 0)
        found = (void *)ctx_get_device;
    *fn = found;
    if (status != NULL)
        *status = found != NULL ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}
