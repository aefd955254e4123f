/*
 * KVBM_PINNED_REGISTER pools: one anonymous mapping (huge pages when asked
 * and available), first-touched and registered with cudaHostRegister in
 * chunks by a few threads bound to the device's NUMA node.
 *
 * Why: cudaHostAlloc zeroes and pins every page inside one driver call on
 * one core; here page zeroing runs on the CPUs next to the GPU, pages land
 * in the GPU's NUMA node, and several registrations proceed at once. A
 * single registration of hundreds of GiB fails in the field; chunks of
 * KVBM__PINNED_CHUNK_DEFAULT (or config.pinned_chunk_bytes) do not. Each
 * chunk is its own registration, so copy-engine copies are cut at chunk
 * ends (copy.c) and the pool is unregistered chunk by chunk.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS, MAP_HUGETLB, MADV_HUGEPAGE */
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "check.h"
#include "core/check.h"
#include "core/log.h"
#include "internal.h"

/* One pass over the chunks of a pool (register or unregister), shared by
 * its worker threads. */
typedef struct chunk_pass {
    kvbm__cuda_backend_t *b; /* immutable */
    kvbm__pinned_pool_t *pool;
    bool registering; /* immutable: register (with first touch) or unregister */
    bool bind;        /* immutable: workers bind to the NUMA node and set the device */
    /* Next chunk to take. Relaxed: each value is taken once; the results
     * below are read only after the workers are joined. */
    atomic_size_t next;
    atomic_bool failed;           /* registering: stop taking chunks */
    bool *registered;             /* per chunk, written by the worker that took it */
    _Atomic kvbm_status_t status; /* first failure */
} chunk_pass_t;

static void pass_chunk(chunk_pass_t *pass, size_t k)
{
    size_t offset, len;
    kvbm__pinned_chunk(&pass->pool->plan, k, &offset, &len);
    char *p = pass->pool->base + offset;
    kvbm_status_t st = KVBM_OK;
    if (pass->registering) {
        memset(p, 0, len); /* first touch: the page lands near this thread */
        KVBM_CUDA_CHECK(cudaHostRegister(p, len, cudaHostRegisterPortable | cudaHostRegisterMapped),
                        st);
        pass->registered[k] = st == KVBM_OK;
    } else if (pass->registered[k]) {
        KVBM_CUDA_CHECK(cudaHostUnregister(p), st);
        pass->registered[k] = false;
    }
    if (st != KVBM_OK) {
        kvbm_status_t none = KVBM_OK;
        (void)atomic_compare_exchange_strong(&pass->status, &none, st);
        atomic_store_explicit(&pass->failed, true, memory_order_relaxed);
    }
}

static void *pass_worker(void *arg)
{
    chunk_pass_t *pass = arg;
    if (pass->bind) {
        /* Its own thread: the device is set once and never restored. */
        kvbm_status_t st = KVBM_OK;
        KVBM_CUDA_CHECK(cudaSetDevice(pass->b->device), st);
        if (st != KVBM_OK) {
            kvbm_status_t none = KVBM_OK;
            (void)atomic_compare_exchange_strong(&pass->status, &none, st);
            atomic_store_explicit(&pass->failed, true, memory_order_relaxed);
            return NULL;
        }
        kvbm__numa_bind_thread(pass->b->numa_node);
    }
    for (;;) {
        if (pass->registering && atomic_load_explicit(&pass->failed, memory_order_relaxed))
            break;
        size_t k = atomic_fetch_add_explicit(&pass->next, 1, memory_order_relaxed);
        if (k >= pass->pool->plan.chunks)
            break;
        pass_chunk(pass, k);
    }
    return NULL;
}

/* Runs a pass on plan.threads threads; whatever no thread could be started
 * for is done by the caller (unbound: its affinity is not kvbm's to change). */
static kvbm_status_t run_pass(chunk_pass_t *pass)
{
    pthread_t th[KVBM__PINNED_THREADS_MAX];
    uint32_t started = 0;
    for (uint32_t i = 0; i < pass->pool->plan.threads; i++) {
        if (pthread_create(&th[started], NULL, pass_worker, pass) != 0)
            break;
        started++;
    }
    if (started == 0) {
        chunk_pass_t *inline_pass = pass;
        inline_pass->bind = false;
        (void)pass_worker(inline_pass);
    }
    for (uint32_t i = 0; i < started; i++)
        kvbm__thread_join(th[i]);
    return atomic_load(&pass->status);
}

/* The huge page size, from /proc/meminfo; 2 MiB when it cannot be read. */
static size_t huge_page_size(void)
{
    size_t kib = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f != NULL) {
        char line[128];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (sscanf(line, "Hugepagesize: %zu kB", &kib) == 1)
                break;
        }
        fclose(f);
    }
    return kib != 0 ? kib * 1024 : (size_t)2 << 20;
}

/* Maps the pool, with huge pages when asked and possible. The plan returned
 * matches the mapping made (its length is what munmap needs). */
static kvbm_status_t map_pool(kvbm__cuda_backend_t *b, size_t bytes, uint32_t cpus,
                              kvbm__pinned_pool_t *pool_out)
{
    kvbm__pinned_plan_t plan;
    kvbm_status_t st;
    if (b->huge_pages) {
        st = kvbm__pinned_plan(bytes, huge_page_size(), b->chunk_bytes, b->touch_threads, cpus,
                               &plan);
        if (st != KVBM_OK)
            return st;
        void *p = mmap(NULL, plan.mapped_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (p != MAP_FAILED) {
            *pool_out = (kvbm__pinned_pool_t){.base = p, .plan = plan};
            return KVBM_OK;
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    st = kvbm__pinned_plan(bytes, page > 0 ? (size_t)page : 4096, b->chunk_bytes, b->touch_threads,
                           cpus, &plan);
    if (st != KVBM_OK)
        return st;
    void *p =
        mmap(NULL, plan.mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return KVBM_ERR_NO_MEMORY;
    if (b->huge_pages)
        (void)madvise(p, plan.mapped_bytes, MADV_HUGEPAGE); /* a hint; failure is harmless */
    *pool_out = (kvbm__pinned_pool_t){.base = p, .plan = plan};
    return KVBM_OK;
}

static void unmap_pool(kvbm__pinned_pool_t *pool)
{
    if (munmap(pool->base, pool->plan.mapped_bytes) != 0)
        (void)KVBM_SYS_ERROR("munmap of a pinned pool");
}

kvbm_status_t kvbm__pinned_create(kvbm__cuda_backend_t *b, size_t bytes,
                                  kvbm__pinned_pool_t *pool_out)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t cpus = kvbm__numa_node_cpus(b->numa_node);
    if (cpus == 0)
        cpus = online > 0 ? (uint32_t)online : 1;
    kvbm__pinned_pool_t pool;
    kvbm_status_t st = map_pool(b, bytes, cpus, &pool);
    if (st != KVBM_OK)
        return st;
    bool *registered = kvbm__calloc(pool.plan.chunks, sizeof(bool));
    if (registered == NULL) {
        st = KVBM_ERR_NO_MEMORY;
        goto err_unmap;
    }
    chunk_pass_t pass = {
        .b = b, .pool = &pool, .registering = true, .bind = true, .registered = registered};
    atomic_init(&pass.next, 0);
    atomic_init(&pass.failed, false);
    atomic_init(&pass.status, KVBM_OK);
    st = run_pass(&pass);
    if (st != KVBM_OK)
        goto err_unregister;
    if (b->host_ptr_ok) {
        st = kvbm__cuda_ranges_add(b, pool.base, pool.plan.mapped_bytes, pool.plan.chunk_bytes);
        if (st != KVBM_OK)
            goto err_unregister;
    }
    kvbm__free(registered);
    *pool_out = pool;
    return KVBM_OK;

err_unregister:
    pass.registering = false;
    atomic_store(&pass.next, 0);
    atomic_store(&pass.status, KVBM_OK);
    (void)run_pass(&pass);
    kvbm__free(registered);
err_unmap:
    unmap_pool(&pool);
    return st;
}

void kvbm__pinned_destroy(kvbm__cuda_backend_t *b, kvbm__pinned_pool_t *pool)
{
    kvbm__cuda_ranges_remove(b, pool->base);
    bool *registered = kvbm__alloc(pool->plan.chunks, sizeof(bool));
    if (registered != NULL) {
        for (size_t k = 0; k < pool->plan.chunks; k++)
            registered[k] = true;
        chunk_pass_t pass = {
            .b = b, .pool = pool, .registering = false, .bind = true, .registered = registered};
        atomic_init(&pass.next, 0);
        atomic_init(&pass.failed, false);
        atomic_init(&pass.status, KVBM_OK);
        (void)run_pass(&pass); /* failures are logged; the pool goes regardless */
        kvbm__free(registered);
    } else {
        for (size_t k = 0; k < pool->plan.chunks; k++) {
            size_t offset, len;
            kvbm__pinned_chunk(&pool->plan, k, &offset, &len);
            kvbm_status_t st = KVBM_OK;
            KVBM_CUDA_CHECK(cudaHostUnregister(pool->base + offset), st);
            (void)st;
        }
    }
    unmap_pool(pool);
}
