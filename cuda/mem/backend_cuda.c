/*
 * The CUDA backend. Device pools are one cudaMalloc each; pinned host pools
 * are cudaHostAlloc, or mmap + parallel first touch + cudaHostRegister
 * (faster for large pools because page zeroing runs on many cores instead of
 * inside one driver call). Copies go through cudaMemcpyBatchAsync (copy
 * engines), a gather/scatter kernel (many small regions), or one
 * cudaMemcpyAsync per region (fallback).
 *
 * Errors: a copy that cannot be enqueued is not reported by the copy call;
 * its status is parked in the stream's `pending` and handed to the next
 * fence recorded on the stream. Asynchronous failures surface from
 * cudaEventQuery/cudaEventSynchronize on that fence.
 *
 * Lock order: cuda_stream.mu, then cuda_fence.mu. Every entry point makes the
 * backend's device current on the calling thread first.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS, MAP_HUGETLB, MADV_HUGEPAGE */
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "copy_kernel.h"
#include "core/check.h"
#include "core/log.h"
#include "mem/backend_ops.h"

kvbm_status_t kvbm__cuda_error(cudaError_t err, const char *expr, const char *file, int line,
                               atomic_int *logged)
{
    (void)cudaGetLastError(); /* clear the non-sticky last error */
    if (atomic_exchange_explicit(logged, 1, memory_order_relaxed) == 0)
        kvbm__log(KVBM_LOG_ERROR, "%s failed: %s (%s) at %s:%d", expr, cudaGetErrorName(err),
                  cudaGetErrorString(err), file, line);
    switch (err) {
    case cudaErrorMemoryAllocation:
        return KVBM_ERR_NO_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
        return KVBM_ERR_NO_DEVICE;
    case cudaErrorNotReady:
        return KVBM_ERR_BUSY;
    default:
        return KVBM_ERR_DEVICE;
    }
}

typedef struct cuda_backend {
    int device;
    kvbm_pinned_method_t pinned;
    uint32_t touch_threads;
    bool huge_pages;
    kvbm_copy_method_t method;
    size_t kernel_threshold;
    bool host_ptr_ok; /* the device can use registered host pointers as they are */
    bool batch_ok;    /* cudaMemcpyBatchAsync compiled in and supported by the runtime */
} cuda_backend_t;

/* How a host pool was pinned, so it is freed the same way. */
typedef struct cuda_host_mem {
    kvbm_pinned_method_t method;
} cuda_host_mem_t;

/* Descriptor staging for the kernel: pinned host copy, device copy, and the
 * event after the last launch that read it. */
typedef struct desc_slot {
    kvbm__cuda_desc_t *host;
    kvbm__cuda_desc_t *dev;
    size_t cap;
    cudaEvent_t ev;
} desc_slot_t;

typedef struct cuda_stream {
    cudaStream_t s; /* immutable */
    bool wrapped;   /* immutable: s belongs to the caller */
    pthread_mutex_t mu;
    kvbm_status_t pending; /* mu: first enqueue error since the last record */
    desc_slot_t slots[2];  /* mu */
    unsigned next_slot;    /* mu */
    /* mu: scratch arrays for cudaMemcpyBatchAsync */
    void **dsts;
    const void **srcs;
    size_t *sizes;
    size_t scratch_cap;
} cuda_stream_t;

typedef struct cuda_fence {
    cudaEvent_t ev;
    pthread_mutex_t mu;
    kvbm_status_t status; /* mu: enqueue error carried by the latest record */
} cuda_fence_t;

static kvbm_status_t set_device(const cuda_backend_t *b)
{
    kvbm_status_t st = KVBM_OK;
    KVBM_CUDA_CHECK(cudaSetDevice(b->device), st);
    return st;
}

/* ---------------------------------------------------------------- backend */

static kvbm_status_t cuda_open(const kvbm_backend_config_t *config, void **state_out)
{
    int count = 0;
    /* A missing driver or device is an expected outcome here, not an error
     * worth a log line: AUTO falls back to the CPU backend. */
    if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
        (void)cudaGetLastError();
        return KVBM_ERR_NO_DEVICE;
    }
    if (config->device < 0 || config->device >= count)
        return KVBM_ERR_NO_DEVICE;
    cuda_backend_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return KVBM_ERR_NO_MEMORY;
    b->device = config->device;
    b->pinned =
        config->pinned_method == KVBM_PINNED_DEFAULT ? KVBM_PINNED_REGISTER : config->pinned_method;
    b->touch_threads = config->first_touch_threads;
    b->huge_pages = config->huge_pages;
    b->method = config->copy_method;
    b->kernel_threshold = config->kernel_threshold;
    kvbm_status_t st = set_device(b);
    if (st != KVBM_OK)
        goto err_free_backend;
    int attr = 0;
    KVBM_CUDA_CHECK(
        cudaDeviceGetAttribute(&attr, cudaDevAttrCanUseHostPointerForRegisteredMem, b->device), st);
    if (st != KVBM_OK)
        goto err_free_backend;
    b->host_ptr_ok = attr != 0;
#if CUDART_VERSION >= 12080
    int rt = 0;
    b->batch_ok = cudaRuntimeGetVersion(&rt) == cudaSuccess && rt >= 12080;
#else
    b->batch_ok = false;
#endif
    *state_out = b;
    return KVBM_OK;

err_free_backend:
    free(b);
    return st;
}

static void cuda_close(void *state)
{
    free(state);
}

/* ------------------------------------------------------------------ pools */

typedef struct touch_job {
    char *p;
    size_t bytes;
} touch_job_t;

static void *touch_main(void *arg)
{
    touch_job_t *j = arg;
    memset(j->p, 0, j->bytes);
    return NULL;
}

/* Fault every page in with several threads at once: the kernel zeroes
 * pages on first touch, and one thread doing it for many GiB is what makes
 * cudaHostAlloc slow. A thread that cannot be started is done inline. */
static void first_touch(char *p, size_t bytes, uint32_t threads)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    size_t t = threads != 0 ? threads : (online > 0 ? (size_t)online : 1);
    if (t > 32)
        t = 32;
    size_t page = 4096, per = (bytes / t + page - 1) / page * page;
    pthread_t th[32];
    touch_job_t jobs[32];
    bool started[32] = {false};
    for (size_t i = 0; i < t; i++) {
        size_t off = i * per;
        jobs[i].p = p + off;
        jobs[i].bytes = off >= bytes ? 0 : (bytes - off < per ? bytes - off : per);
        if (jobs[i].bytes == 0)
            continue;
        /* A helper thread that cannot start is not an error: this one
         * touches the pages itself. */
        started[i] = pthread_create(&th[i], NULL, touch_main, &jobs[i]) == 0;
        if (!started[i])
            touch_main(&jobs[i]);
    }
    for (size_t i = 0; i < t; i++) {
        if (started[i])
            kvbm__thread_join(th[i]);
    }
}

static kvbm_status_t host_register_alloc(cuda_backend_t *b, size_t bytes, void **ptr_out)
{
    void *p = MAP_FAILED;
    if (b->huge_pages)
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1,
                 0);
    if (p == MAP_FAILED) {
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return KVBM_ERR_NO_MEMORY;
        if (b->huge_pages)
            (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint; failure is harmless */
    }
    first_touch(p, bytes, b->touch_threads);
    kvbm_status_t st = KVBM_OK;
    KVBM_CUDA_CHECK(cudaHostRegister(p, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped),
                    st);
    if (st != KVBM_OK)
        goto err_unmap;
    *ptr_out = p;
    return KVBM_OK;

err_unmap:
    munmap(p, bytes);
    return st;
}

static kvbm_status_t cuda_mem_alloc(void *state, kvbm_mem_kind_t kind, size_t bytes, void **ptr_out,
                                    void **priv_out)
{
    cuda_backend_t *b = state;
    kvbm_status_t st = set_device(b);
    if (st != KVBM_OK)
        return st;
    if (kind == KVBM_MEM_DEVICE) {
        void *p = NULL;
        KVBM_CUDA_CHECK(cudaMalloc(&p, bytes), st);
        if (st != KVBM_OK)
            return st;
        *ptr_out = p;
        *priv_out = NULL;
        return KVBM_OK;
    }
    cuda_host_mem_t *h = malloc(sizeof(*h));
    if (h == NULL)
        return KVBM_ERR_NO_MEMORY;
    h->method = b->pinned;
    void *p = NULL;
    if (h->method == KVBM_PINNED_HOST_ALLOC)
        KVBM_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable | cudaHostAllocMapped), st);
    else
        st = host_register_alloc(b, bytes, &p);
    if (st != KVBM_OK)
        goto err_free_priv;
    *ptr_out = p;
    *priv_out = h;
    return KVBM_OK;

err_free_priv:
    free(h);
    return st;
}

static void cuda_mem_free(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv)
{
    cuda_backend_t *b = state;
    kvbm_status_t st = set_device(b);
    if (kind == KVBM_MEM_DEVICE) {
        KVBM_CUDA_CHECK(cudaFree(ptr), st);
        return;
    }
    cuda_host_mem_t *h = priv;
    if (h->method == KVBM_PINNED_HOST_ALLOC) {
        KVBM_CUDA_CHECK(cudaFreeHost(ptr), st);
    } else {
        KVBM_CUDA_CHECK(cudaHostUnregister(ptr), st);
        munmap(ptr, bytes);
    }
    (void)st;
    free(h);
}

/* ---------------------------------------------------------------- streams */

static kvbm_status_t stream_init(cuda_backend_t *b, cudaStream_t native, bool wrapped,
                                 void **stream_out)
{
    kvbm_status_t st = set_device(b);
    if (st != KVBM_OK)
        return st;
    cuda_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KVBM_ERR_NO_MEMORY;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&s->mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_stream;
    for (int i = 0; i < 2; i++) {
        KVBM_CUDA_CHECK(cudaEventCreateWithFlags(&s->slots[i].ev, cudaEventDisableTiming), st);
        if (st != KVBM_OK) {
            if (i == 1)
                cudaEventDestroy(s->slots[0].ev);
            goto err_destroy_mutex;
        }
    }
    if (wrapped) {
        s->s = native;
    } else {
        KVBM_CUDA_CHECK(cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking), st);
        if (st != KVBM_OK)
            goto err_destroy_events;
    }
    s->wrapped = wrapped;
    s->pending = KVBM_OK;
    *stream_out = s;
    return KVBM_OK;

err_destroy_events:
    cudaEventDestroy(s->slots[1].ev);
    cudaEventDestroy(s->slots[0].ev);
err_destroy_mutex:
    kvbm__mutex_destroy(&s->mu);
err_free_stream:
    free(s);
    return st;
}

static kvbm_status_t cuda_stream_create(void *state, void **stream_out)
{
    return stream_init(state, NULL, false, stream_out);
}

static kvbm_status_t cuda_stream_wrap(void *state, void *native, void **stream_out)
{
    return stream_init(state, (cudaStream_t)native, true, stream_out);
}

static void cuda_stream_destroy(void *state, void *stream)
{
    cuda_stream_t *s = stream;
    kvbm_status_t st = set_device(state);
    KVBM_CUDA_CHECK(cudaStreamSynchronize(s->s), st);
    for (int i = 0; i < 2; i++) {
        cudaFreeHost(s->slots[i].host);
        cudaFree(s->slots[i].dev);
        cudaEventDestroy(s->slots[i].ev);
    }
    if (!s->wrapped)
        KVBM_CUDA_CHECK(cudaStreamDestroy(s->s), st);
    (void)st;
    free(s->dsts);
    free(s->srcs);
    free(s->sizes);
    kvbm__mutex_destroy(&s->mu);
    free(s);
}

static void *cuda_stream_native(void *state, void *stream)
{
    return (void *)((cuda_stream_t *)stream)->s;
}

static kvbm_status_t cuda_stream_hold(void *state, void *stream, bool hold)
{
    return KVBM_ERR_UNSUPPORTED;
}

static kvbm_status_t cuda_stream_wait_fence(void *state, void *stream, void *fence)
{
    cuda_stream_t *s = stream;
    cuda_fence_t *f = fence;
    kvbm_status_t st = set_device(state);
    if (st != KVBM_OK)
        return st;
    kvbm__mutex_lock(&s->mu);
    KVBM_CUDA_CHECK(cudaStreamWaitEvent(s->s, f->ev, 0), st);
    kvbm__mutex_unlock(&s->mu);
    return st;
}

/* ----------------------------------------------------------------- fences */

static kvbm_status_t cuda_fence_create(void *state, void **fence_out)
{
    kvbm_status_t st = set_device(state);
    if (st != KVBM_OK)
        return st;
    cuda_fence_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return KVBM_ERR_NO_MEMORY;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&f->mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_fence;
    KVBM_CUDA_CHECK(cudaEventCreateWithFlags(&f->ev, cudaEventDisableTiming), st);
    if (st != KVBM_OK)
        goto err_destroy_mutex;
    f->status = KVBM_OK;
    *fence_out = f;
    return KVBM_OK;

err_destroy_mutex:
    kvbm__mutex_destroy(&f->mu);
err_free_fence:
    free(f);
    return st;
}

static void cuda_fence_destroy(void *state, void *fence)
{
    cuda_fence_t *f = fence;
    (void)set_device(state);
    cudaEventDestroy(f->ev);
    kvbm__mutex_destroy(&f->mu);
    free(f);
}

static kvbm_status_t cuda_fence_record(void *state, void *fence, void *stream)
{
    cuda_stream_t *s = stream;
    cuda_fence_t *f = fence;
    kvbm_status_t st = set_device(state);
    if (st != KVBM_OK)
        return st;
    kvbm__mutex_lock(&s->mu);
    kvbm__mutex_lock(&f->mu);
    KVBM_CUDA_CHECK(cudaEventRecord(f->ev, s->s), st);
    if (st == KVBM_OK) {
        f->status = s->pending;
        s->pending = KVBM_OK;
    }
    kvbm__mutex_unlock(&f->mu);
    kvbm__mutex_unlock(&s->mu);
    return st;
}

static kvbm_status_t fence_result(cuda_fence_t *f, cudaError_t err)
{
    if (err == cudaSuccess) {
        kvbm__mutex_lock(&f->mu);
        kvbm_status_t st = f->status;
        kvbm__mutex_unlock(&f->mu);
        return st;
    }
    if (err == cudaErrorNotReady) {
        (void)cudaGetLastError();
        return KVBM_ERR_BUSY;
    }
    kvbm_status_t st = KVBM_OK;
    KVBM_CUDA_CHECK(err, st);
    return st;
}

static kvbm_status_t cuda_fence_query(void *state, void *fence)
{
    cuda_fence_t *f = fence;
    kvbm_status_t st = set_device(state);
    if (st != KVBM_OK)
        return st;
    return fence_result(f, cudaEventQuery(f->ev));
}

static kvbm_status_t cuda_fence_wait(void *state, void *fence)
{
    cuda_fence_t *f = fence;
    kvbm_status_t st = set_device(state);
    if (st != KVBM_OK)
        return st;
    return fence_result(f, cudaEventSynchronize(f->ev));
}

/* ----------------------------------------------------------------- copies */

static kvbm_status_t copy_per_region(cuda_stream_t *s, const kvbm_copy_t *c, size_t n)
{
    kvbm_status_t st = KVBM_OK;
    for (size_t i = 0; i < n && st == KVBM_OK; i++) {
        if (c[i].bytes > 0)
            KVBM_CUDA_CHECK(
                cudaMemcpyAsync(c[i].dst, c[i].src, c[i].bytes, cudaMemcpyDefault, s->s), st);
    }
    return st;
}

static kvbm_status_t copy_batch(cuda_stream_t *s, const kvbm_copy_t *c, size_t n,
                                kvbm_copy_dir_t dir)
{
#if CUDART_VERSION >= 12080
    if (n > s->scratch_cap) {
        size_t cap = n > 2 * s->scratch_cap ? n : 2 * s->scratch_cap;
        void **d = realloc(s->dsts, cap * sizeof(*d));
        if (d == NULL)
            return KVBM_ERR_NO_MEMORY;
        s->dsts = d;
        const void **sr = realloc(s->srcs, cap * sizeof(*sr));
        if (sr == NULL)
            return KVBM_ERR_NO_MEMORY;
        s->srcs = sr;
        size_t *sz = realloc(s->sizes, cap * sizeof(*sz));
        if (sz == NULL)
            return KVBM_ERR_NO_MEMORY;
        s->sizes = sz;
        s->scratch_cap = cap;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].bytes == 0)
            continue; /* the batch API refuses empty copies */
        s->dsts[m] = c[i].dst;
        s->srcs[m] = c[i].src;
        s->sizes[m] = c[i].bytes;
        m++;
    }
    if (m == 0)
        return KVBM_OK;
    struct cudaMemcpyAttributes attr;
    memset(&attr, 0, sizeof(attr));
    attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    if (dir == KVBM_COPY_D2H || dir == KVBM_COPY_H2D)
        attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
    size_t attr_idx = 0;
    kvbm_status_t st = KVBM_OK;
    /* CUDA 13 signature: no failIdx argument (12.8 had one). */
#if CUDART_VERSION >= 13000
    KVBM_CUDA_CHECK(cudaMemcpyBatchAsync((void *const *)s->dsts, (const void *const *)s->srcs,
                                         s->sizes, m, &attr, &attr_idx, 1, s->s),
                    st);
#else
    size_t fail_idx = 0;
    KVBM_CUDA_CHECK(cudaMemcpyBatchAsync((void **)s->dsts, (void **)s->srcs, s->sizes, m, &attr,
                                         &attr_idx, 1, &fail_idx, s->s),
                    st);
#endif
    return st;
#else
    (void)s;
    (void)c;
    (void)n;
    (void)dir;
    return KVBM_ERR_UNSUPPORTED;
#endif
}

static kvbm_status_t copy_kernel(cuda_stream_t *s, const kvbm_copy_t *c, size_t n)
{
    kvbm_status_t st = KVBM_OK;
    desc_slot_t *slot = &s->slots[s->next_slot];
    s->next_slot ^= 1u;
    /* The slot's previous launch must have read its descriptors before they
     * are overwritten; with two slots this rarely waits. */
    KVBM_CUDA_CHECK(cudaEventSynchronize(slot->ev), st);
    if (st != KVBM_OK)
        return st;
    if (n > slot->cap) {
        size_t cap = n > 2 * slot->cap ? n : 2 * slot->cap;
        kvbm__cuda_desc_t *h = NULL, *d = NULL;
        KVBM_CUDA_CHECK(cudaHostAlloc((void **)&h, cap * sizeof(*h), cudaHostAllocDefault), st);
        if (st != KVBM_OK)
            return st;
        KVBM_CUDA_CHECK(cudaMalloc((void **)&d, cap * sizeof(*d)), st);
        if (st != KVBM_OK) {
            cudaFreeHost(h);
            return st;
        }
        cudaFreeHost(slot->host);
        cudaFree(slot->dev);
        slot->host = h;
        slot->dev = d;
        slot->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        slot->host[i].src = c[i].src;
        slot->host[i].dst = c[i].dst;
        slot->host[i].bytes = c[i].bytes;
    }
    KVBM_CUDA_CHECK(cudaMemcpyAsync(slot->dev, slot->host, n * sizeof(*slot->host),
                                    cudaMemcpyHostToDevice, s->s),
                    st);
    if (st != KVBM_OK)
        return st;
    KVBM_CUDA_CHECK(kvbm__cuda_copy_kernel_launch(slot->dev, n, s->s), st);
    kvbm_status_t rec = KVBM_OK;
    KVBM_CUDA_CHECK(cudaEventRecord(slot->ev, s->s), rec);
    return st != KVBM_OK ? st : rec;
}

static kvbm_copy_method_t pick_method(const cuda_backend_t *b, const kvbm_copy_t *c, size_t n,
                                      kvbm_copy_dir_t dir)
{
    bool kernel_ok =
        dir == KVBM_COPY_D2D || ((dir == KVBM_COPY_D2H || dir == KVBM_COPY_H2D) && b->host_ptr_ok);
    kvbm_copy_method_t m = b->method;
    if (m == KVBM_COPY_METHOD_AUTO) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += c[i].bytes;
        m = kernel_ok && total / n < b->kernel_threshold ? KVBM_COPY_METHOD_KERNEL
                                                         : KVBM_COPY_METHOD_BATCH;
    }
    if (m == KVBM_COPY_METHOD_KERNEL && !kernel_ok)
        m = KVBM_COPY_METHOD_BATCH;
    if (m == KVBM_COPY_METHOD_BATCH && !b->batch_ok)
        m = KVBM_COPY_METHOD_PER_REGION;
    return m;
}

static kvbm_status_t cuda_copy_async(void *state, void *stream, const kvbm_copy_t *copies, size_t n,
                                     kvbm_copy_dir_t dir, bool fail)
{
    cuda_backend_t *b = state;
    cuda_stream_t *s = stream;
    kvbm_status_t st = set_device(b);
    if (st != KVBM_OK)
        return st;
    kvbm__mutex_lock(&s->mu);
    if (fail) {
        st = KVBM_ERR_COPY_FAILED; /* injected: nothing is enqueued */
    } else {
        switch (pick_method(b, copies, n, dir)) {
        case KVBM_COPY_METHOD_KERNEL:
            st = copy_kernel(s, copies, n);
            break;
        case KVBM_COPY_METHOD_BATCH:
            st = copy_batch(s, copies, n, dir);
            if (st == KVBM_ERR_UNSUPPORTED || st == KVBM_ERR_DEVICE)
                st = copy_per_region(s, copies, n); /* e.g. the legacy stream */
            break;
        default:
            st = copy_per_region(s, copies, n);
            break;
        }
        if (st != KVBM_OK && st != KVBM_ERR_NO_MEMORY && st != KVBM_ERR_NO_DEVICE)
            st = KVBM_ERR_COPY_FAILED;
    }
    if (st != KVBM_OK && s->pending == KVBM_OK)
        s->pending = st;
    kvbm__mutex_unlock(&s->mu);
    return KVBM_OK; /* failures travel with the next fence */
}

static const kvbm__backend_ops_t cuda_ops = {
    .version = KVBM_BACKEND_OPS_VERSION,
    .name = "cuda",
    .open = cuda_open,
    .close = cuda_close,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .stream_create = cuda_stream_create,
    .stream_wrap = cuda_stream_wrap,
    .stream_destroy = cuda_stream_destroy,
    .stream_native = cuda_stream_native,
    .stream_hold = cuda_stream_hold,
    .stream_wait_fence = cuda_stream_wait_fence,
    .fence_create = cuda_fence_create,
    .fence_destroy = cuda_fence_destroy,
    .fence_record = cuda_fence_record,
    .fence_query = cuda_fence_query,
    .fence_wait = cuda_fence_wait,
    .copy_async = cuda_copy_async,
};

const kvbm__backend_ops_t *kvbm__backend_cuda_ops(void)
{
    return &cuda_ops;
}
