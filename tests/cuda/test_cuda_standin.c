/*
 * The CUDA backend's host logic (the files of cuda/mem, unchanged) on the CUDA runtime
 * stand-in (standin/): the caller's device and context come back after every
 * call, error paths included; no call but kvbm_fence_wait blocks on unfinished
 * GPU work; fence waits sleep; pageable or unknown memory never reaches the
 * copy kernel; the legacy stream never gets the batch API; CUDA errors map
 * to the right statuses and AUTO falls back to the CPU only without any
 * device; kvbm never takes or erases the application's CUDA errors; pinned
 * pools are registered in chunks, copies are cut at chunk ends, and nothing
 * is left registered or mapped after a failure or a destroy.
 *
 * These are statements about kvbm's host code against a model of the
 * runtime, not about real CUDA (scripts/gpu-check.sh runs the real thing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "standin.h"
#include "core/error.h"

/* ---- helpers ---- */

static char log_text[4096];
static size_t log_len;

static void capture_log(void *user, kvbm_log_level_t level, const char *message)
{
    (void)user;
    (void)level;
    int n = snprintf(log_text + log_len, sizeof(log_text) - log_len, "%s\n", message);
    if (n > 0 && (size_t)n < sizeof(log_text) - log_len)
        log_len += (size_t)n;
}

static int setup(void **state)
{
    (void)state;
    standin_reset();
    log_len = 0;
    log_text[0] = '\0';
    kvbm_log_set(capture_log, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kvbm_log_set(NULL, NULL);
    if (standin_live_allocations() != 0)
        fail_msg("%zu stand-in allocations left", standin_live_allocations());
    standin_reset();
    return 0;
}

static kvbm_backend_t *cuda_backend(int device, kvbm_copy_method_t method)
{
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = KVBM_BACKEND_CUDA;
    cfg.device = device;
    cfg.copy_method = method;
    kvbm_backend_t *b = NULL;
    assert_kvbm_ok(kvbm_backend_create(&cfg, &b));
    assert_string_equal(kvbm_backend_name(b), "cuda");
    return b;
}

static CUcontext current_context(void)
{
    CUresult (*get)(CUcontext *) = NULL;
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult found;
    assert_int_equal(cudaGetDriverEntryPointByVersion("cuCtxGetCurrent", &fn, 12000, 0, &found),
                     cudaSuccess);
    memcpy(&get, &fn, sizeof(fn));
    CUcontext ctx = NULL;
    assert_int_equal(get(&ctx), CUDA_SUCCESS);
    return ctx;
}

static void set_context(CUcontext ctx)
{
    CUresult (*set)(CUcontext) = NULL;
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult found;
    assert_int_equal(cudaGetDriverEntryPointByVersion("cuCtxSetCurrent", &fn, 12000, 0, &found),
                     cudaSuccess);
    memcpy(&set, &fn, sizeof(fn));
    assert_int_equal(set(ctx), CUDA_SUCCESS);
}

static void fill(void *p, size_t bytes, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < bytes; i++)
        c[i] = (unsigned char)(i * 31u + seed);
}

/* ---- the caller's device and context ---- */

/* Runs a whole life cycle on a device-1 backend, checking the calling
 * thread's context after every call, and that device 0 was never touched. */
static void cycle_checking_context(CUcontext expected)
{
    kvbm_backend_t *b = cuda_backend(1, KVBM_COPY_METHOD_AUTO);
    assert_ptr_equal(current_context(), expected);
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 1 << 16, &h));
    assert_ptr_equal(current_context(), expected);
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, 1 << 16, &d));
    assert_ptr_equal(current_context(), expected);
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_ptr_equal(current_context(), expected);
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    assert_ptr_equal(current_context(), expected);
    fill(kvbm_pool_ptr(h), 1 << 16, 3);
    kvbm_copy_t c = {kvbm_pool_ptr(h), kvbm_pool_ptr(d), 1 << 16};
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f));
    assert_ptr_equal(current_context(), expected);
    kvbm_status_t q = kvbm_fence_query(f);
    assert_true(q == KVBM_OK || q == KVBM_ERR_BUSY);
    assert_ptr_equal(current_context(), expected);
    assert_kvbm_ok(kvbm_stream_wait_fence(s, f));
    assert_ptr_equal(current_context(), expected);
    assert_kvbm_ok(kvbm_fence_wait(f));
    assert_ptr_equal(current_context(), expected);
    /* Error paths: a failing allocation and a failing record. */
    kvbm_pool_t *none = NULL;
    standin_fail_call("cudaMalloc", cudaErrorMemoryAllocation, 0, 1);
    assert_kvbm_status(kvbm_pool_create(b, KVBM_MEM_DEVICE, 4096, &none), KVBM_ERR_NO_MEMORY);
    assert_null(none);
    assert_ptr_equal(current_context(), expected);
    standin_fail_call("cudaEventRecord", cudaErrorInvalidResourceHandle, 0, 1);
    assert_kvbm_status(kvbm_fence_record(f, s), KVBM_ERR_DEVICE);
    assert_ptr_equal(current_context(), expected);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    assert_ptr_equal(current_context(), expected);
    kvbm_backend_destroy(b);
    assert_ptr_equal(current_context(), expected);
}

static void callers_device_comes_back_after_every_call(void **state)
{
    (void)state;
    standin_set_devices(2);
    /* A thread with no context keeps none, and device 0 is never initialised. */
    assert_null(current_context());
    cycle_checking_context(NULL);
    assert_false(standin_primary_initialized(0));
    assert_true(standin_primary_initialized(1));
    /* A thread on device 0 stays on device 0. */
    assert_int_equal(cudaSetDevice(0), cudaSuccess);
    CUcontext dev0 = current_context();
    assert_non_null(dev0);
    cycle_checking_context(dev0);
    int device = -1;
    assert_int_equal(cudaGetDevice(&device), cudaSuccess);
    assert_int_equal(device, 0);
    /* An application's own context on another device is the one put back. */
    CUcontext own = standin_context_create(0);
    set_context(own);
    cycle_checking_context(own);
    /* ...and one on the backend's device is used as it is: no switch. */
    CUcontext own1 = standin_context_create(1);
    set_context(own1);
    cycle_checking_context(own1);
    set_context(NULL);
    standin_context_destroy(own1);
    standin_context_destroy(own);
}

/* ---- nothing blocks ---- */

static void no_call_blocks_on_unfinished_work(void **state)
{
    (void)state;
    kvbm_backend_t *b = cuda_backend(0, KVBM_COPY_METHOD_AUTO);
    enum { BATCHES = 12, REGIONS = 64, REGION = 1024 };
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, (size_t)BATCHES * REGIONS * REGION, &h));
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, (size_t)BATCHES * REGIONS * REGION, &d));
    fill(kvbm_pool_ptr(h), (size_t)BATCHES * REGIONS * REGION, 9);
    kvbm_stream_t *s = NULL, *other = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_stream_create(b, &other));
    kvbm_fence_t *f[BATCHES];
    for (int i = 0; i < BATCHES; i++)
        assert_kvbm_ok(kvbm_fence_create(b, &f[i]));
    standin_counters_t before, after;
    standin_counters(&before);

    /* The stream is stalled: every batch stays pending. With the old two-slot
     * descriptor ring the third kernel batch waited here for the first. */
    standin_stream_hold(kvbm_stream_native(s), true);
    standin_forbid_blocking(true);
    for (int i = 0; i < BATCHES; i++) {
        kvbm_copy_t c[REGIONS];
        for (int r = 0; r < REGIONS; r++) {
            size_t off = ((size_t)i * REGIONS + r) * REGION;
            c[r] = (kvbm_copy_t){(char *)kvbm_pool_ptr(h) + off, (char *)kvbm_pool_ptr(d) + off,
                                 REGION};
        }
        assert_kvbm_ok(kvbm_backend_copy(b, s, c, REGIONS, KVBM_COPY_H2D, f[i]));
        assert_kvbm_status(kvbm_fence_query(f[i]), KVBM_ERR_BUSY);
        assert_kvbm_ok(kvbm_stream_wait_fence(other, f[i]));
    }
    standin_forbid_blocking(false);
    standin_counters(&after);
    assert_int_equal(after.forbidden_waits, before.forbidden_waits);
    assert_int_equal(after.kernel_launches - before.kernel_launches, BATCHES);
    /* The copy path allocated no device or pinned memory. */
    assert_int_equal(after.device_allocs, before.device_allocs);
    assert_int_equal(after.registrations, before.registrations);

    standin_stream_hold(kvbm_stream_native(s), false);
    for (int i = 0; i < BATCHES; i++)
        assert_kvbm_ok(kvbm_fence_wait(f[i]));
    assert_memory_equal(kvbm_pool_ptr(d), kvbm_pool_ptr(h), (size_t)BATCHES * REGIONS * REGION);
    for (int i = 0; i < BATCHES; i++)
        kvbm_fence_destroy(f[i]);
    kvbm_stream_destroy(other);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* Releases a held stream once a thread is blocked waiting on its work. */
typedef struct releaser {
    cudaStream_t stream;
    uint64_t waits_before;
} releaser_t;

static void *release_when_waited_on(void *arg)
{
    releaser_t *r = arg;
    for (;;) {
        standin_counters_t c;
        standin_counters(&c);
        if (c.blocking_waits > r->waits_before)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    standin_stream_hold(r->stream, false);
    return NULL;
}

static void fence_waits_sleep_instead_of_spinning(void **state)
{
    (void)state;
    kvbm_backend_t *b = cuda_backend(0, KVBM_COPY_METHOD_AUTO);
    kvbm_pool_t *h = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 8192, &h));
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    standin_counters_t before, after;
    standin_counters(&before);
    standin_stream_hold(kvbm_stream_native(s), true);
    fill(kvbm_pool_ptr(h), 4096, 1);
    kvbm_copy_t c = {kvbm_pool_ptr(h), (char *)kvbm_pool_ptr(h) + 4096, 4096};
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2H, f));
    releaser_t r = {kvbm_stream_native(s), before.blocking_waits};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, release_when_waited_on, &r), 0);
    assert_kvbm_ok(kvbm_fence_wait(f)); /* blocks until the releaser sees it */
    assert_int_equal(pthread_join(th, NULL), 0);
    standin_counters(&after);
    assert_int_equal(after.blocking_waits, before.blocking_waits + 1);
    assert_int_equal(after.spin_waits, before.spin_waits); /* cudaEventBlockingSync */
    assert_memory_equal((char *)kvbm_pool_ptr(h) + 4096, kvbm_pool_ptr(h), 4096);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* ---- which memory reaches the kernel ---- */

/* Copies @p bytes H2D then D2H through a fresh stream, returning how many
 * kernel launches that took. */
static uint64_t roundtrip_launches(kvbm_backend_t *b, void *host_src, void *dev, void *host_dst,
                                   size_t bytes)
{
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    standin_counters_t before, after;
    standin_counters(&before);
    kvbm_copy_t up = {host_src, dev, bytes}, down = {dev, host_dst, bytes};
    assert_kvbm_ok(kvbm_backend_copy(b, s, &up, 1, KVBM_COPY_H2D, NULL));
    assert_kvbm_ok(kvbm_backend_copy(b, s, &down, 1, KVBM_COPY_D2H, f));
    assert_kvbm_ok(kvbm_fence_wait(f));
    standin_counters(&after);
    assert_int_equal(after.illegal_accesses, before.illegal_accesses);
    assert_memory_equal(host_dst, host_src, bytes);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    return after.kernel_launches - before.kernel_launches;
}

static void pageable_memory_never_reaches_the_kernel(void **state)
{
    (void)state;
    static const kvbm_copy_method_t methods[] = {KVBM_COPY_METHOD_AUTO, KVBM_COPY_METHOD_KERNEL};
    for (int m = 0; m < 2; m++) {
        kvbm_backend_t *b = cuda_backend(0, methods[m]);
        kvbm_pool_t *pinned = NULL, *dev = NULL;
        assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 2 * 4096, &pinned));
        assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, 4096, &dev));
        char *p = kvbm_pool_ptr(pinned);
        fill(p, 4096, 5);
        /* kvbm's own pools: the kernel. */
        assert_int_equal(roundtrip_launches(b, p, kvbm_pool_ptr(dev), p + 4096, 4096), 2);
        /* malloc'd memory: the copy engines, whatever the method asked. */
        char *heap = malloc(2 * 4096);
        assert_non_null(heap);
        fill(heap, 4096, 6);
        assert_int_equal(roundtrip_launches(b, heap, kvbm_pool_ptr(dev), heap + 4096, 4096), 0);
        /* Wrapped: pinned memory the stand-in knows is checked and accepted;
         * malloc'd memory wrapped as a host pool is still not the kernel's. */
        kvbm_pool_t *wrapped_heap = NULL, *wrapped_pinned = NULL;
        assert_kvbm_ok(kvbm_pool_wrap(b, KVBM_MEM_HOST, heap, 2 * 4096, &wrapped_heap));
        assert_int_equal(roundtrip_launches(b, heap, kvbm_pool_ptr(dev), heap + 4096, 4096), 0);
        void *host_alloc = NULL;
        assert_int_equal(cudaHostAlloc(&host_alloc, 2 * 4096, 0), cudaSuccess);
        assert_kvbm_ok(kvbm_pool_wrap(b, KVBM_MEM_HOST, host_alloc, 2 * 4096, &wrapped_pinned));
        fill(host_alloc, 4096, 7);
        assert_int_equal(
            roundtrip_launches(b, host_alloc, kvbm_pool_ptr(dev), (char *)host_alloc + 4096, 4096),
            2);
        kvbm_pool_destroy(wrapped_pinned);
        /* Unwrapped again: no longer known. */
        assert_int_equal(
            roundtrip_launches(b, host_alloc, kvbm_pool_ptr(dev), (char *)host_alloc + 4096, 4096),
            0);
        assert_int_equal(cudaFreeHost(host_alloc), cudaSuccess);
        kvbm_pool_destroy(wrapped_heap);
        free(heap);
        kvbm_pool_destroy(dev);
        kvbm_pool_destroy(pinned);
        kvbm_backend_destroy(b);
    }
    /* A device that reads pageable memory may be given it. */
    standin_set_attribute(0, cudaDevAttrPageableMemoryAccess, 1);
    kvbm_backend_t *b = cuda_backend(0, KVBM_COPY_METHOD_AUTO);
    kvbm_pool_t *dev = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, 4096, &dev));
    char *heap = malloc(2 * 4096);
    assert_non_null(heap);
    fill(heap, 4096, 8);
    assert_int_equal(roundtrip_launches(b, heap, kvbm_pool_ptr(dev), heap + 4096, 4096), 2);
    free(heap);
    kvbm_pool_destroy(dev);
    kvbm_backend_destroy(b);
}

static void legacy_stream_never_gets_the_batch_api(void **state)
{
    (void)state;
    kvbm_backend_t *b = cuda_backend(0, KVBM_COPY_METHOD_BATCH);
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 1 << 20, &h));
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, 1 << 20, &d));
    fill(kvbm_pool_ptr(h), 1 << 20, 2);
    static void *const natives[] = {NULL, (void *)cudaStreamLegacy};
    for (int i = 0; i < 2; i++) {
        kvbm_stream_t *s = NULL;
        kvbm_fence_t *f = NULL;
        assert_kvbm_ok(kvbm_stream_wrap(b, natives[i], &s));
        assert_kvbm_ok(kvbm_fence_create(b, &f));
        standin_counters_t before, after;
        standin_counters(&before);
        kvbm_copy_t c[4];
        for (int r = 0; r < 4; r++)
            c[r] = (kvbm_copy_t){(char *)kvbm_pool_ptr(h) + r * (256 << 10),
                                 (char *)kvbm_pool_ptr(d) + r * (256 << 10), 256 << 10};
        assert_kvbm_ok(kvbm_backend_copy(b, s, c, 4, KVBM_COPY_H2D, f));
        assert_kvbm_ok(kvbm_fence_wait(f));
        standin_counters(&after);
        assert_int_equal(after.batch_calls, before.batch_calls);
        assert_int_equal(after.memcpy_calls - before.memcpy_calls, 4);
        assert_memory_equal(kvbm_pool_ptr(d), kvbm_pool_ptr(h), 1 << 20);
        kvbm_fence_destroy(f);
        kvbm_stream_destroy(s);
    }
    /* Its own streams do get the batch API. */
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    standin_counters_t before, after;
    standin_counters(&before);
    kvbm_copy_t c = {kvbm_pool_ptr(d), kvbm_pool_ptr(h), 1 << 20};
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_D2H, f));
    assert_kvbm_ok(kvbm_fence_wait(f));
    standin_counters(&after);
    assert_int_equal(after.batch_calls - before.batch_calls, 1);
    assert_int_equal(after.batch_on_legacy, 0);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* ---- opening: statuses and AUTO ---- */

static kvbm_status_t create_kind(kvbm_backend_kind_t kind, int device, kvbm_backend_t **b)
{
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = kind;
    cfg.device = device;
    return kvbm_backend_create(&cfg, b);
}

static void auto_falls_back_only_without_any_device(void **state)
{
    (void)state;
    kvbm_backend_t *b = NULL;
    /* No driver at all: AUTO is the CPU backend, CUDA says no device. */
    standin_set_driver_version(0);
    assert_kvbm_ok(create_kind(KVBM_BACKEND_AUTO, 0, &b));
    assert_int_equal(kvbm_backend_kind(b), KVBM_BACKEND_CPU);
    kvbm_backend_destroy(b);
    b = NULL;
    assert_kvbm_status(create_kind(KVBM_BACKEND_CUDA, 0, &b), KVBM_ERR_NO_DEVICE);
    assert_null(b);
    assert_non_null(strstr(log_text, "no driver installed"));
    assert_non_null(strstr(kvbm_last_error(), "CUDA: no driver installed"));
    /* A driver but no GPU: the same; AUTO's fallback records no reason. */
    standin_reset();
    standin_set_devices(0);
    kvbm__error_record("before the fallback");
    assert_kvbm_ok(create_kind(KVBM_BACKEND_AUTO, 0, &b));
    assert_string_equal(kvbm_last_error(), "before the fallback");
    assert_int_equal(kvbm_backend_kind(b), KVBM_BACKEND_CPU);
    kvbm_backend_destroy(b);
    b = NULL;
    /* An insufficient driver is an error, with the reason logged, and the
     * application's last-error slot is left clean. */
    standin_reset();
    log_len = 0;
    standin_fail_call("cudaGetDeviceCount", cudaErrorInsufficientDriver, 0, 2);
    assert_kvbm_status(create_kind(KVBM_BACKEND_AUTO, 0, &b), KVBM_ERR_DEVICE);
    assert_null(b);
    assert_non_null(strstr(log_text, "cudaErrorInsufficientDriver"));
    assert_non_null(strstr(kvbm_last_error(), "cudaErrorInsufficientDriver"));
    assert_int_equal(cudaPeekAtLastError(), cudaSuccess);
    assert_kvbm_status(create_kind(KVBM_BACKEND_CUDA, 0, &b), KVBM_ERR_DEVICE);
    /* An exclusive-process GPU taken by another process: an error too. */
    standin_reset();
    standin_fail_call("cudaSetDevice", cudaErrorDevicesUnavailable, 0, 1);
    assert_kvbm_status(create_kind(KVBM_BACKEND_AUTO, 0, &b), KVBM_ERR_DEVICE);
    assert_null(b);
    assert_non_null(strstr(kvbm_last_error(), "cudaSetDevice"));
    assert_non_null(strstr(kvbm_last_error(), "cudaErrorDevicesUnavailable"));
    /* A device ordinal beyond those present. */
    standin_reset();
    assert_kvbm_status(create_kind(KVBM_BACKEND_AUTO, 3, &b), KVBM_ERR_INVALID_ARG);
    assert_null(b);
    assert_string_equal(kvbm_last_error(), "backend config: CUDA device 3 is not in 0..0");
    /* And with a device, AUTO is CUDA. */
    assert_kvbm_ok(create_kind(KVBM_BACKEND_AUTO, 0, &b));
    assert_int_equal(kvbm_backend_kind(b), KVBM_BACKEND_CUDA);
    kvbm_backend_destroy(b);
}

/* ---- the application's CUDA errors ---- */

static void application_errors_are_neither_taken_nor_erased(void **state)
{
    (void)state;
    kvbm_backend_t *b = cuda_backend(0, KVBM_COPY_METHOD_AUTO);
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 4096, &h));
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, 4096, &d));
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    fill(kvbm_pool_ptr(h), 4096, 4);
    /* The application has an error pending in this thread. */
    standin_set_last_error(cudaErrorInvalidValue);
    standin_stream_hold(kvbm_stream_native(s), true);
    kvbm_copy_t c = {kvbm_pool_ptr(h), kvbm_pool_ptr(d), 4096};
    standin_counters_t before, after;
    standin_counters(&before);
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f)); /* the kernel */
    standin_counters(&after);
    assert_int_equal(after.kernel_launches - before.kernel_launches, 1);
    assert_kvbm_status(kvbm_fence_query(f), KVBM_ERR_BUSY); /* NotReady */
    assert_int_equal(cudaPeekAtLastError(), cudaErrorInvalidValue);
    standin_stream_hold(kvbm_stream_native(s), false);
    assert_kvbm_ok(kvbm_fence_wait(f)); /* the copy did not inherit the error */
    assert_memory_equal(kvbm_pool_ptr(d), kvbm_pool_ptr(h), 4096);
    assert_int_equal(cudaGetLastError(), cudaErrorInvalidValue); /* still the application's */
    /* kvbm's own failure does not stay behind in the slot. */
    standin_fail_call("cudaEventRecord", cudaErrorInvalidResourceHandle, 0, 1);
    assert_kvbm_status(kvbm_fence_record(f, s), KVBM_ERR_DEVICE);
    assert_int_equal(cudaPeekAtLastError(), cudaSuccess);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* A fence waited on from a thread of its own, with what that thread was told. */
typedef struct fence_wait_result {
    kvbm_fence_t *fence;
    kvbm_status_t status;
    char reason[512];
} fence_wait_result_t;

static void *wait_on_fence(void *arg)
{
    fence_wait_result_t *r = arg;
    r->status = kvbm_fence_wait(r->fence);
    snprintf(r->reason, sizeof(r->reason), "%s", kvbm_last_error());
    return NULL;
}

static void enqueue_and_device_failures_reach_the_fence(void **state)
{
    (void)state;
    kvbm_backend_t *b = cuda_backend(0, KVBM_COPY_METHOD_PER_REGION);
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 8192, &h));
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, 8192, &d));
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    kvbm_copy_t c = {kvbm_pool_ptr(h), kvbm_pool_ptr(d), 8192};
    /* Refused at enqueue: the next fence says COPY_FAILED, the one after is
     * clean. The thread that waits (not the one that enqueued) is told why. */
    standin_fail_call("cudaMemcpyAsync", cudaErrorInvalidValue, 0, 1);
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f));
    pthread_t waiter;
    fence_wait_result_t waited = {.fence = f};
    assert_int_equal(pthread_create(&waiter, NULL, wait_on_fence, &waited), 0);
    assert_int_equal(pthread_join(waiter, NULL), 0);
    assert_kvbm_status(waited.status, KVBM_ERR_COPY_FAILED);
    assert_non_null(strstr(waited.reason, "failed on the cuda backend"));
    assert_non_null(strstr(waited.reason, "cudaMemcpyAsync"));
    assert_non_null(strstr(waited.reason, "cudaErrorInvalidValue"));
    assert_kvbm_status(kvbm_fence_wait(f), KVBM_ERR_COPY_FAILED);
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f));
    assert_kvbm_ok(kvbm_fence_wait(f));
    /* A fault while running (sticky): the fence reports a device error. The
     * stream is held until the record is enqueued, so the fault cannot come
     * first (then the record itself would fail, as on a GPU). */
    standin_fail_next_work(cudaErrorLaunchFailure);
    standin_stream_hold(kvbm_stream_native(s), true);
    assert_kvbm_ok(kvbm_backend_copy(b, s, &c, 1, KVBM_COPY_H2D, f));
    standin_stream_hold(kvbm_stream_native(s), false);
    assert_kvbm_status(kvbm_fence_wait(f), KVBM_ERR_DEVICE);
    assert_kvbm_status(kvbm_fence_query(f), KVBM_ERR_DEVICE);
    /* The context is dead, as on a GPU; teardown still frees everything. */
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

/* ---- pinned pools in chunks ---- */

static kvbm_backend_t *register_backend(size_t chunk, bool huge)
{
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = KVBM_BACKEND_CUDA;
    cfg.pinned_method = KVBM_PINNED_REGISTER;
    cfg.pinned_chunk_bytes = chunk;
    cfg.first_touch_threads = 3;
    cfg.huge_pages = huge;
    kvbm_backend_t *b = NULL;
    assert_kvbm_ok(kvbm_backend_create(&cfg, &b));
    return b;
}

/* Whether [p, p + 1) is mapped in this process (/proc/self/maps). */
static bool mapped(const void *p)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_non_null(maps);
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), maps) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            found = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    }
    fclose(maps);
    return found;
}

static void pinned_pools_register_in_chunks_and_copies_stay_inside_one(void **state)
{
    (void)state;
    /* A single registration above 1 MiB fails, as one of 512 GiB does in
     * the field; 256 KiB chunks do not. */
    standin_set_register_limit(1 << 20);
    kvbm_backend_t *b = register_backend(256 << 10, false);
    standin_counters_t before, after;
    standin_counters(&before);
    size_t bytes = (2 << 20) + 5;
    kvbm_pool_t *h = NULL, *d = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &h));
    standin_counters(&after);
    assert_int_equal(after.registrations - before.registrations, 9); /* 2 MiB + 1 page */
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_DEVICE, bytes, &d));
    char *hp = kvbm_pool_ptr(h);
    fill(hp, bytes, 11);
    kvbm_stream_t *s = NULL;
    kvbm_fence_t *f = NULL;
    assert_kvbm_ok(kvbm_stream_create(b, &s));
    assert_kvbm_ok(kvbm_fence_create(b, &f));
    /* Large regions (copy engines) across chunk ends, both directions. */
    standin_counters(&before);
    kvbm_copy_t up[2] = {{hp, kvbm_pool_ptr(d), 1 << 20},
                         {hp + (1 << 20), (char *)kvbm_pool_ptr(d) + (1 << 20), (1 << 20) + 5}};
    assert_kvbm_ok(kvbm_backend_copy(b, s, up, 2, KVBM_COPY_H2D, f));
    assert_kvbm_ok(kvbm_fence_wait(f));
    memset(hp, 0, bytes);
    kvbm_copy_t down = {kvbm_pool_ptr(d), hp + 100, bytes - 100};
    assert_kvbm_ok(kvbm_backend_copy(b, s, &down, 1, KVBM_COPY_D2H, f));
    assert_kvbm_ok(kvbm_fence_wait(f));
    standin_counters(&after);
    assert_int_equal(after.crossed_registrations, before.crossed_registrations);
    assert_true(after.batch_calls > before.batch_calls);
    char *expect = malloc(bytes);
    assert_non_null(expect);
    fill(expect, bytes, 11);
    assert_memory_equal(hp + 100, expect, bytes - 100);
    free(expect);
    kvbm_fence_destroy(f);
    kvbm_stream_destroy(s);
    kvbm_pool_destroy(d);
    kvbm_pool_destroy(h);
    assert_false(mapped(hp));
    kvbm_backend_destroy(b);

    /* One chunk bigger than the limit: the pool fails and leaves nothing. */
    b = register_backend(4 << 20, false);
    kvbm_pool_t *none = NULL;
    assert_kvbm_status(kvbm_pool_create(b, KVBM_MEM_HOST, 2 << 20, &none), KVBM_ERR_NO_MEMORY);
    assert_null(none);
    assert_int_equal(standin_live_allocations(), 0);
    kvbm_backend_destroy(b);
}

static void failed_registration_undoes_every_chunk(void **state)
{
    (void)state;
    kvbm_backend_t *b = register_backend(64 << 10, false);
    /* The 5th of 16 chunk registrations fails. */
    standin_fail_call("cudaHostRegister", cudaErrorMemoryAllocation, 4, 1);
    kvbm_pool_t *none = NULL;
    assert_kvbm_status(kvbm_pool_create(b, KVBM_MEM_HOST, 1 << 20, &none), KVBM_ERR_NO_MEMORY);
    assert_null(none);
    assert_int_equal(standin_live_allocations(), 0);
    /* The next one succeeds and is whole. */
    kvbm_pool_t *h = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 1 << 20, &h));
    assert_int_equal(standin_live_allocations(), 16);
    kvbm_pool_destroy(h);
    assert_int_equal(standin_live_allocations(), 0);
    kvbm_backend_destroy(b);
}

static void huge_page_pools_are_unmapped_whole(void **state)
{
    (void)state;
    /* With huge pages reserved on this machine the pool is MAP_HUGETLB and
     * its mapping is rounded up to the huge page; without, it falls back to
     * ordinary pages. Either way nothing of it stays mapped. */
    kvbm_backend_t *b = register_backend(0, true);
    kvbm_pool_t *h = NULL;
    size_t bytes = (3 << 20) + 4096;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, bytes, &h));
    char *p = kvbm_pool_ptr(h);
    memset(p, 1, bytes);
    kvbm_pool_destroy(h);
    assert_false(mapped(p));
    assert_false(mapped(p + bytes - 1));
    assert_int_equal(standin_live_allocations(), 0);
    kvbm_backend_destroy(b);
}

/* The GPU's NUMA node known (node 0, which every Linux machine has): the
 * first-touch threads bind to it through libnuma, loaded at run time. This
 * VM has one node, so placement itself is not observable here; the path
 * (dlopen, the node's CPU count, binding) runs, under the sanitizers too. */
static void pinned_pools_are_touched_on_the_gpus_numa_node(void **state)
{
    (void)state;
    standin_set_attribute(0, cudaDevAttrHostNumaId, 0);
    kvbm_backend_config_t cfg = KVBM_BACKEND_CONFIG_INIT;
    cfg.kind = KVBM_BACKEND_CUDA;
    cfg.pinned_chunk_bytes = 64 << 10;
    kvbm_backend_t *b = NULL;
    assert_kvbm_ok(kvbm_backend_create(&cfg, &b));
    kvbm_pool_t *h = NULL;
    assert_kvbm_ok(kvbm_pool_create(b, KVBM_MEM_HOST, 1 << 20, &h));
    assert_int_equal(standin_live_allocations(), 16);
    unsigned char *p = kvbm_pool_ptr(h);
    for (size_t i = 0; i < (1 << 20); i += 4096)
        assert_int_equal(p[i], 0); /* first-touched (zeroed) */
    kvbm_pool_destroy(h);
    kvbm_backend_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(callers_device_comes_back_after_every_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(no_call_blocks_on_unfinished_work, setup, teardown),
        cmocka_unit_test_setup_teardown(fence_waits_sleep_instead_of_spinning, setup, teardown),
        cmocka_unit_test_setup_teardown(pageable_memory_never_reaches_the_kernel, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_stream_never_gets_the_batch_api, setup, teardown),
        cmocka_unit_test_setup_teardown(auto_falls_back_only_without_any_device, setup, teardown),
        cmocka_unit_test_setup_teardown(application_errors_are_neither_taken_nor_erased, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(enqueue_and_device_failures_reach_the_fence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(pinned_pools_register_in_chunks_and_copies_stay_inside_one,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(failed_registration_undoes_every_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(huge_page_pools_are_unmapped_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(pinned_pools_are_touched_on_the_gpus_numa_node, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
