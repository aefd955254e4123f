/*
 * The stand-in's memory: "device" allocations, cudaHostAlloc and
 * cudaHostRegister, all in host memory, listed so that pointer attributes,
 * the kernel's reachability and copy-engine copies crossing registrations
 * can be answered. Not real CUDA: see standin.h.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef enum alloc_kind { ALLOC_DEVICE, ALLOC_HOST, ALLOC_REGISTERED } alloc_kind_t;

typedef struct alloc {
    uintptr_t base;
    size_t bytes;
    alloc_kind_t kind;
    int device; /* ALLOC_DEVICE */
} alloc_t;

/* Under standin_mu. */
static alloc_t *allocs;
static size_t n_allocs, cap_allocs;

static bool push_locked(alloc_t a)
{
    if (n_allocs == cap_allocs) {
        size_t cap = cap_allocs == 0 ? 64 : 2 * cap_allocs;
        alloc_t *grown = realloc(allocs, cap * sizeof(*grown));
        if (grown == NULL)
            return false;
        allocs = grown;
        cap_allocs = cap;
    }
    allocs[n_allocs++] = a;
    return true;
}

/* The allocation holding address @p p, or NULL. */
static alloc_t *find_locked(uintptr_t p)
{
    for (size_t i = 0; i < n_allocs; i++) {
        if (p - allocs[i].base < allocs[i].bytes)
            return &allocs[i];
    }
    return NULL;
}

static alloc_t *find_base_locked(uintptr_t p, alloc_kind_t kind)
{
    for (size_t i = 0; i < n_allocs; i++) {
        if (allocs[i].base == p && allocs[i].kind == kind)
            return &allocs[i];
    }
    return NULL;
}

static void remove_locked(alloc_t *a)
{
    *a = allocs[--n_allocs];
}

void standin_memory_reset(void)
{
    standin_lock();
    n_allocs = 0;
    standin_unlock();
}

size_t standin_memory_live(void)
{
    standin_lock();
    size_t n = n_allocs;
    standin_unlock();
    return n;
}

bool standin_device_reaches(int device, const void *p, size_t n)
{
    uintptr_t at = (uintptr_t)p, end = at + n;
    standin_lock();
    bool pageable = standin.pageable_access[device] != 0;
    bool host_ptr = standin.can_use_host_pointer[device] != 0;
    bool ok = true;
    /* Walk allocations that follow each other: chunked registrations of one
     * mapping are all mapped for the device. */
    while (ok && at < end) {
        alloc_t *a = find_locked(at);
        if (a == NULL) {
            ok = pageable;
            break;
        }
        ok = (a->kind == ALLOC_DEVICE && a->device == device) || a->kind == ALLOC_HOST ||
             (a->kind == ALLOC_REGISTERED && host_ptr);
        at = a->base + a->bytes;
    }
    standin_unlock();
    return ok;
}

bool standin_crosses_registrations(const void *p, size_t n)
{
    if (n == 0)
        return false;
    standin_lock();
    alloc_t *first = find_locked((uintptr_t)p);
    alloc_t *last = find_locked((uintptr_t)p + n - 1);
    bool crosses = first != last && ((first != NULL && first->kind == ALLOC_REGISTERED) ||
                                     (last != NULL && last->kind == ALLOC_REGISTERED));
    standin_unlock();
    return crosses;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    int device;
    cudaError_t err = standin_enter("cudaMalloc", &device);
    if (err != cudaSuccess)
        return err;
    void *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (p == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    /* Fresh device memory holds whatever it held: never what a test freed
     * just before (the allocator would often hand that back). */
    memset(p, 0xA5, bytes);
    standin_lock();
    bool ok = push_locked((alloc_t){(uintptr_t)p, bytes, ALLOC_DEVICE, device});
    if (ok)
        standin.counters.device_allocs++;
    standin_unlock();
    if (!ok) {
        free(p);
        return standin_fail(cudaErrorMemoryAllocation);
    }
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr)
{
    cudaError_t err = standin_enter_release("cudaFree");
    if (err != cudaSuccess)
        return err;
    if (ptr == NULL)
        return cudaSuccess;
    standin_lock();
    alloc_t *a = find_base_locked((uintptr_t)ptr, ALLOC_DEVICE);
    if (a != NULL)
        remove_locked(a);
    standin_unlock();
    if (a == NULL)
        return standin_fail(cudaErrorInvalidValue);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned int flags)
{
    (void)flags;
    cudaError_t err = standin_enter("cudaHostAlloc", NULL);
    if (err != cudaSuccess)
        return err;
    void *p = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    if (p == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    memset(p, 0x5A, bytes);
    standin_lock();
    bool ok = push_locked((alloc_t){(uintptr_t)p, bytes, ALLOC_HOST, -1});
    if (ok)
        standin.counters.device_allocs++;
    standin_unlock();
    if (!ok) {
        free(p);
        return standin_fail(cudaErrorMemoryAllocation);
    }
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *ptr)
{
    cudaError_t err = standin_enter_release("cudaFreeHost");
    if (err != cudaSuccess)
        return err;
    standin_lock();
    alloc_t *a = find_base_locked((uintptr_t)ptr, ALLOC_HOST);
    if (a != NULL)
        remove_locked(a);
    standin_unlock();
    if (a == NULL)
        return standin_fail(cudaErrorInvalidValue);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaHostRegister(void *ptr, size_t bytes, unsigned int flags)
{
    (void)flags;
    cudaError_t err = standin_enter("cudaHostRegister", NULL);
    if (err != cudaSuccess)
        return err;
    if (ptr == NULL || bytes == 0)
        return standin_fail(cudaErrorInvalidValue);
    uintptr_t b = (uintptr_t)ptr;
    standin_lock();
    err = cudaSuccess;
    if (standin.register_limit != 0 && bytes > standin.register_limit)
        err = cudaErrorMemoryAllocation;
    for (size_t i = 0; err == cudaSuccess && i < n_allocs; i++) {
        if (allocs[i].kind == ALLOC_REGISTERED && b < allocs[i].base + allocs[i].bytes &&
            allocs[i].base < b + bytes)
            err = cudaErrorHostMemoryAlreadyRegistered;
    }
    if (err == cudaSuccess) {
        if (push_locked((alloc_t){b, bytes, ALLOC_REGISTERED, -1}))
            standin.counters.registrations++;
        else
            err = cudaErrorMemoryAllocation;
    }
    standin_unlock();
    return err == cudaSuccess ? cudaSuccess : standin_fail(err);
}

cudaError_t cudaHostUnregister(void *ptr)
{
    cudaError_t err = standin_enter_release("cudaHostUnregister");
    if (err != cudaSuccess)
        return err;
    standin_lock();
    alloc_t *a = find_base_locked((uintptr_t)ptr, ALLOC_REGISTERED);
    if (a != NULL)
        remove_locked(a);
    standin_unlock();
    return a != NULL ? cudaSuccess : standin_fail(cudaErrorHostMemoryNotRegistered);
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attr, const void *ptr)
{
    cudaError_t err = standin_enter("cudaPointerGetAttributes", NULL);
    if (err != cudaSuccess)
        return err;
    memset(attr, 0, sizeof(*attr));
    standin_lock();
    alloc_t *a = find_locked((uintptr_t)ptr);
    if (a == NULL) {
        attr->type = cudaMemoryTypeUnregistered;
        attr->device = -2;
    } else if (a->kind == ALLOC_DEVICE) {
        attr->type = cudaMemoryTypeDevice;
        attr->device = a->device;
        attr->devicePointer = (void *)ptr;
    } else {
        attr->type = cudaMemoryTypeHost;
        attr->device = 0;
        attr->hostPointer = (void *)ptr;
        attr->devicePointer =
            a->kind == ALLOC_HOST || standin.can_use_host_pointer[0] ? (void *)ptr : NULL;
    }
    standin_unlock();
    return cudaSuccess;
}
