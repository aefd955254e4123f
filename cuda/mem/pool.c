/*
 * Pools of the CUDA backend: device pools (one cudaMalloc), pinned host pools
 * (cudaHostAlloc, or pinned.c's chunked registration), and wrapped memory,
 * which is checked with cudaPointerGetAttributes so the copy kernel is only
 * ever given memory the device can reach through the pointer it holds.
 */
#include <stdlib.h>

#include "core/alloc.h"
#include "check.h"
#include "core/check.h"
#include "core/log.h"
#include "internal.h"

/* How a host pool was made, so it is freed the same way. */
typedef struct host_pool {
    kvbm_pinned_method_t method;
    kvbm__pinned_pool_t pinned; /* REGISTER */
} host_pool_t;

kvbm_status_t kvbm__cuda_ranges_add(kvbm__cuda_backend_t *b, const void *base, size_t bytes,
                                    size_t chunk)
{
    kvbm__mutex_lock(&b->ranges_mu);
    kvbm_status_t st = kvbm__range_set_add(&b->ranges, base, bytes, chunk);
    kvbm__mutex_unlock(&b->ranges_mu);
    return st;
}

void kvbm__cuda_ranges_remove(kvbm__cuda_backend_t *b, const void *base)
{
    kvbm__mutex_lock(&b->ranges_mu);
    (void)kvbm__range_set_remove(&b->ranges, base);
    kvbm__mutex_unlock(&b->ranges_mu);
}

static kvbm_status_t device_alloc(kvbm__cuda_backend_t *b, size_t bytes, void **ptr_out)
{
    void *p = NULL;
    kvbm_status_t st = KVBM_OK;
    KVBM_CUDA_CHECK(cudaMalloc(&p, bytes), st);
    if (st != KVBM_OK)
        return st;
    st = kvbm__cuda_ranges_add(b, p, bytes, 0);
    if (st != KVBM_OK)
        goto err_free;
    *ptr_out = p;
    return KVBM_OK;

err_free:
    (void)cudaFree(p);
    return st;
}

static kvbm_status_t host_alloc(kvbm__cuda_backend_t *b, size_t bytes, void **ptr_out,
                                void **priv_out)
{
    host_pool_t *h = kvbm__calloc(1, sizeof(*h));
    if (h == NULL)
        return KVBM_ERR_NO_MEMORY;
    h->method = b->pinned;
    kvbm_status_t st = KVBM_OK;
    void *p = NULL;
    if (h->method == KVBM_PINNED_HOST_ALLOC) {
        KVBM_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable | cudaHostAllocMapped), st);
        if (st != KVBM_OK)
            goto err_free_priv;
        /* Mapped and portable: with unified addressing the device uses the
         * host pointer itself. */
        st = kvbm__cuda_ranges_add(b, p, bytes, 0);
        if (st != KVBM_OK) {
            (void)cudaFreeHost(p);
            goto err_free_priv;
        }
    } else {
        st = kvbm__pinned_create(b, bytes, &h->pinned);
        if (st != KVBM_OK)
            goto err_free_priv;
        p = h->pinned.base;
    }
    *ptr_out = p;
    *priv_out = h;
    return KVBM_OK;

err_free_priv:
    kvbm__free(h);
    return st;
}

kvbm_status_t kvbm__cuda_mem_alloc(void *state, kvbm_mem_kind_t kind, size_t bytes, void **ptr_out,
                                   void **priv_out)
{
    if (kvbm__alloc_injected_failure())
        return KVBM_ERR_NO_MEMORY;
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    if (kind == KVBM_MEM_DEVICE) {
        st = device_alloc(b, bytes, ptr_out);
        if (st == KVBM_OK)
            *priv_out = NULL;
    } else {
        st = host_alloc(b, bytes, ptr_out, priv_out);
    }
    kvbm__cuda_leave(b, &scope);
    return st;
}

void kvbm__cuda_mem_free(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return; /* logged; the device is unusable, its memory goes with it */
    if (kind == KVBM_MEM_DEVICE) {
        kvbm__cuda_ranges_remove(b, ptr);
        KVBM_CUDA_CHECK(cudaFree(ptr), st);
    } else {
        host_pool_t *h = priv;
        if (h->method == KVBM_PINNED_HOST_ALLOC) {
            kvbm__cuda_ranges_remove(b, ptr);
            KVBM_CUDA_CHECK(cudaFreeHost(ptr), st);
        } else {
            kvbm__pinned_destroy(b, &h->pinned);
        }
        kvbm__free(h);
    }
    (void)bytes;
    (void)st; /* teardown goes on regardless; failures were logged */
    kvbm__cuda_leave(b, &scope);
}

/*
 * Whether the device reaches [ptr, ptr + bytes) through ptr itself: device
 * memory of this device, or pinned host memory mapped at the same address.
 * Both ends are checked; anything else (pageable memory, another device's
 * memory) is left to the copy engines.
 */
static bool device_reaches(const kvbm__cuda_backend_t *b, const char *ptr, size_t bytes)
{
    const char *ends[2] = {ptr, ptr + bytes - 1};
    for (int i = 0; i < 2; i++) {
        struct cudaPointerAttributes a;
        cudaError_t err = cudaPointerGetAttributes(&a, ends[i]);
        if (err != cudaSuccess) {
            /* Not an error of the caller's: unknown memory is simply not
             * given to the kernel. Take the error back out of the slot. */
            if (cudaPeekAtLastError() == err)
                (void)cudaGetLastError();
            return false;
        }
        bool ok = (a.type == cudaMemoryTypeDevice && a.device == b->device) ||
                  (a.type == cudaMemoryTypeHost && a.devicePointer == (void *)ends[i]);
        if (!ok)
            return false;
    }
    return true;
}

kvbm_status_t kvbm__cuda_mem_wrap(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                                  void **priv_out)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    /* Memory the device cannot reach directly is still wrapped: copies of it
     * use the copy engines, which read and write any memory. Memory already
     * known (a kvbm pool wrapped again) stays known through its own range;
     * priv says whether this wrap added one. */
    void *added = NULL;
    if (device_reaches(b, ptr, bytes)) {
        kvbm__mutex_lock(&b->ranges_mu);
        if (!kvbm__range_set_covers(&b->ranges, ptr, bytes)) {
            kvbm_status_t add = kvbm__range_set_add(&b->ranges, ptr, bytes, 0);
            if (add == KVBM_OK)
                added = ptr;
            else if (add == KVBM_ERR_NO_MEMORY)
                st = add;
            /* else it overlaps a range partly: left to the copy engines */
        }
        kvbm__mutex_unlock(&b->ranges_mu);
    }
    if (st == KVBM_OK)
        *priv_out = added;
    kvbm__cuda_leave(b, &scope);
    (void)kind;
    return st;
}

void kvbm__cuda_mem_unwrap(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv)
{
    kvbm__cuda_backend_t *b = state;
    if (priv != NULL)
        kvbm__cuda_ranges_remove(b, ptr);
    (void)kind;
    (void)bytes;
}
