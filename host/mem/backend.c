/*
 * The public backend API: argument checks, selection of a backend, fault
 * injection counting, and the block-copy convenience that turns a layout
 * into one batch. Everything device-specific is behind kvbm__backend_ops_t.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* strcasecmp */
#endif
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "backend_ops.h"
#include "fault.h"
#include "copy_plan.h"
#include "core/config.h"
#include "core/error.h"

struct kvbm_backend {
    const kvbm__backend_ops_t *ops; /* immutable after create */
    void *state;                    /* the backend's own; it does its locking */
    kvbm_backend_kind_t kind;
    /* Copy calls made so far, and the call number that fails (0 = none).
     * Relaxed: each call only needs a unique number; the test that arms the
     * hook orders itself against the copies it makes. */
    _Atomic uint64_t copy_calls;
    _Atomic uint64_t fail_at;
    /* mem/fault.h: one call in fail_one_in fails (0: none), except on the
     * spared stream; and how many failed. Relaxed, as above. */
    _Atomic uint64_t fail_one_in;
    _Atomic(kvbm_stream_t *) fail_spared;
    _Atomic uint64_t faults_injected;
};

struct kvbm_pool {
    kvbm_backend_t *backend;
    kvbm_mem_kind_t kind;
    void *ptr;
    size_t bytes;
    void *priv;   /* backend bookkeeping (mem_alloc's or mem_wrap's) */
    bool wrapped; /* memory belongs to the caller */
};

struct kvbm_stream {
    kvbm_backend_t *backend;
    void *impl;
};

struct kvbm_fence {
    kvbm_backend_t *backend;
    void *impl;
};

bool kvbm_backend_cuda_built(void)
{
#if defined(KVBM_HAVE_CUDA) && KVBM_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

static kvbm_backend_kind_t kind_from_env(kvbm_backend_kind_t asked)
{
    if (asked != KVBM_BACKEND_AUTO)
        return asked;
    const char *env = getenv("KVBM_BACKEND");
    if (env == NULL)
        return asked;
    if (strcasecmp(env, "cpu") == 0)
        return KVBM_BACKEND_CPU;
    if (strcasecmp(env, "cuda") == 0)
        return KVBM_BACKEND_CUDA;
    return KVBM_BACKEND_AUTO;
}

/* Installs one backend: checks its table's version, then opens it. */
static kvbm_status_t open_ops(const kvbm__backend_ops_t *ops, const kvbm_backend_config_t *config,
                              void **state_out)
{
    if (ops->version != KVBM_BACKEND_OPS_VERSION)
        return kvbm__fail(KVBM_ERR_VERSION, "backend %s: ops table version %u, expected %u",
                          ops->name, ops->version, KVBM_BACKEND_OPS_VERSION);
    return ops->open(config, state_out);
}

/* Opens the backend of @p kind, or for AUTO the first in KVBM__BACKEND_LIST
 * that opens, passing over only those with no device. Sets the outputs only
 * on success. */
static kvbm_status_t open_backend(kvbm_backend_kind_t kind, const kvbm_backend_config_t *config,
                                  const kvbm__backend_ops_t **ops_out, void **state_out,
                                  kvbm_backend_kind_t *kind_out)
{
    static const struct {
        kvbm_backend_kind_t kind;
        const kvbm__backend_ops_t *(*ops)(void);
    } backends[] = {
#define KVBM__BACKEND_ROW(row_kind, row_ops) {(row_kind), (row_ops)},
        KVBM__BACKEND_LIST(KVBM__BACKEND_ROW)
#undef KVBM__BACKEND_ROW
    };
    /* The backend sees the kind asked for after KVBM_BACKEND. */
    kvbm_backend_config_t asked = *config;
    asked.kind = kind;
    kvbm_status_t status = KVBM_ERR_NO_DEVICE;
    bool tried = false;
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (kind != KVBM_BACKEND_AUTO && kind != backends[i].kind)
            continue;
        const kvbm__backend_ops_t *ops = backends[i].ops();
        tried = true;
        status = open_ops(ops, &asked, state_out);
        if (status == KVBM_OK) {
            *ops_out = ops;
            *kind_out = backends[i].kind;
            return KVBM_OK;
        }
        /* AUTO goes on to the next backend only when this one has no device
         * at all. A device that is present but fails (an old driver, an
         * exclusive-process GPU taken) is an error to report: falling back
         * would hand device addresses the caller holds to a CPU backend. */
        if (kind != KVBM_BACKEND_AUTO || status != KVBM_ERR_NO_DEVICE)
            break;
    }
    if (!tried)
        return kvbm__fail(KVBM_ERR_NO_DEVICE, "the %s backend is not built in",
                          kind == KVBM_BACKEND_CUDA ? "CUDA" : "asked for");
    return status;
}

/* sizeof(kvbm_backend_config_t) at each published version (core/config.h).
 * Version 1 ended with kernel_threshold: 56 bytes on LP64. */
#define BACKEND_CONFIG_V1_SIZE 56u
_Static_assert(sizeof(void *) != 8 ||
                   offsetof(kvbm_backend_config_t, pinned_chunk_bytes) == BACKEND_CONFIG_V1_SIZE,
               "version 1 of kvbm_backend_config_t is published: its fields may not move");
static const size_t backend_config_sizes[] = {BACKEND_CONFIG_V1_SIZE,
                                              sizeof(kvbm_backend_config_t)};

kvbm_status_t kvbm_backend_create(const kvbm_backend_config_t *caller_config,
                                  kvbm_backend_t **backend_out)
{
    const kvbm_backend_config_t defaults = KVBM_BACKEND_CONFIG_INIT;
    KVBM_REQUIRE_ARG(backend_out != NULL);
    kvbm_backend_config_t imported = defaults;
    if (caller_config != NULL) {
        kvbm_status_t status =
            KVBM__CONFIG_IMPORT(caller_config, backend_config_sizes, &defaults, &imported);
        if (status != KVBM_OK)
            return status;
    }
    const kvbm_backend_config_t *config = &imported;
    if ((unsigned)config->kind > KVBM_BACKEND_CUDA)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "backend config: unknown kind %d",
                          (int)config->kind);
    if ((unsigned)config->pinned_method > KVBM_PINNED_REGISTER)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "backend config: unknown pinned_method %d",
                          (int)config->pinned_method);
    if ((unsigned)config->copy_method > KVBM_COPY_METHOD_PER_REGION)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "backend config: unknown copy_method %d",
                          (int)config->copy_method);

    const kvbm__backend_ops_t *ops = NULL;
    void *state = NULL;
    kvbm_backend_kind_t kind = KVBM_BACKEND_AUTO;
    kvbm_status_t st = open_backend(kind_from_env(config->kind), config, &ops, &state, &kind);
    if (st != KVBM_OK)
        return st;

    kvbm_backend_t *b = kvbm__calloc(1, sizeof(*b));
    if (b == NULL)
        goto err_close;
    b->ops = ops;
    b->state = state;
    b->kind = kind;
    atomic_init(&b->copy_calls, 0);
    atomic_init(&b->fail_at, config->fail_nth_copy);
    atomic_init(&b->fail_one_in, 0);
    atomic_init(&b->fail_spared, NULL);
    atomic_init(&b->faults_injected, 0);
    *backend_out = b;
    return KVBM_OK;

err_close:
    ops->close(state);
    return KVBM_ERR_NO_MEMORY;
}

void kvbm_backend_destroy(kvbm_backend_t *backend)
{
    if (backend == NULL)
        return;
    backend->ops->close(backend->state);
    kvbm__free(backend);
}

const char *kvbm_backend_name(const kvbm_backend_t *backend)
{
    return backend == NULL ? "none" : backend->ops->name;
}

kvbm_backend_kind_t kvbm_backend_kind(const kvbm_backend_t *backend)
{
    return backend->kind;
}

kvbm_status_t kvbm_backend_fail_nth_copy(kvbm_backend_t *backend, uint64_t n)
{
    KVBM_REQUIRE_ARG(backend != NULL);
    uint64_t now = atomic_load_explicit(&backend->copy_calls, memory_order_relaxed);
    atomic_store_explicit(&backend->fail_at, n == 0 ? 0 : now + n, memory_order_relaxed);
    return KVBM_OK;
}

kvbm_status_t kvbm__backend_fail_copies(kvbm_backend_t *backend, uint64_t one_in,
                                        kvbm_stream_t *spared)
{
    KVBM_REQUIRE_ARG(backend != NULL && (spared == NULL || spared->backend == backend));
    atomic_store_explicit(&backend->fail_spared, spared, memory_order_relaxed);
    atomic_store_explicit(&backend->fail_one_in, one_in, memory_order_relaxed);
    return KVBM_OK;
}

uint64_t kvbm__backend_faults_injected(kvbm_backend_t *backend)
{
    return atomic_load_explicit(&backend->faults_injected, memory_order_relaxed);
}

/* Whether copy call number @p call on @p stream is made to fail. */
static bool copy_fails(kvbm_backend_t *backend, kvbm_stream_t *stream, uint64_t call)
{
    bool fail = call == atomic_load_explicit(&backend->fail_at, memory_order_relaxed);
    uint64_t one_in = atomic_load_explicit(&backend->fail_one_in, memory_order_relaxed);
    if (!fail && one_in != 0 &&
        stream != atomic_load_explicit(&backend->fail_spared, memory_order_relaxed)) {
        uint64_t z = call * 0x9e3779b97f4a7c15ULL; /* spread the call numbers */
        z ^= z >> 31;
        fail = z % one_in == 0;
    }
    if (fail)
        atomic_fetch_add_explicit(&backend->faults_injected, 1, memory_order_relaxed);
    return fail;
}

/* ------------------------------------------------------------------ pools */

kvbm_status_t kvbm_pool_create(kvbm_backend_t *backend, kvbm_mem_kind_t kind, size_t bytes,
                               kvbm_pool_t **pool_out)
{
    KVBM_REQUIRE_ARG(backend != NULL && pool_out != NULL);
    KVBM_REQUIRE_ARG(bytes > 0);
    KVBM_REQUIRE_ARG(kind == KVBM_MEM_DEVICE || kind == KVBM_MEM_HOST);
    kvbm_pool_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t st = backend->ops->mem_alloc(backend->state, kind, bytes, &p->ptr, &p->priv);
    if (st != KVBM_OK)
        goto err_free_pool;
    p->backend = backend;
    p->kind = kind;
    p->bytes = bytes;
    *pool_out = p;
    return KVBM_OK;

err_free_pool:
    kvbm__free(p);
    return st;
}

kvbm_status_t kvbm_pool_wrap(kvbm_backend_t *backend, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                             kvbm_pool_t **pool_out)
{
    KVBM_REQUIRE_ARG(backend != NULL && ptr != NULL && pool_out != NULL);
    KVBM_REQUIRE_ARG(bytes > 0);
    KVBM_REQUIRE_ARG(kind == KVBM_MEM_DEVICE || kind == KVBM_MEM_HOST);
    kvbm_pool_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t st = backend->ops->mem_wrap(backend->state, kind, ptr, bytes, &p->priv);
    if (st != KVBM_OK)
        goto err_free_pool;
    p->backend = backend;
    p->kind = kind;
    p->ptr = ptr;
    p->bytes = bytes;
    p->wrapped = true;
    *pool_out = p;
    return KVBM_OK;

err_free_pool:
    kvbm__free(p);
    return st;
}

void kvbm_pool_destroy(kvbm_pool_t *pool)
{
    if (pool == NULL)
        return;
    if (pool->wrapped)
        pool->backend->ops->mem_unwrap(pool->backend->state, pool->kind, pool->ptr, pool->bytes,
                                       pool->priv);
    else
        pool->backend->ops->mem_free(pool->backend->state, pool->kind, pool->ptr, pool->bytes,
                                     pool->priv);
    kvbm__free(pool);
}

void *kvbm_pool_ptr(const kvbm_pool_t *pool)
{
    return pool->ptr;
}

size_t kvbm_pool_bytes(const kvbm_pool_t *pool)
{
    return pool->bytes;
}

kvbm_mem_kind_t kvbm_pool_kind(const kvbm_pool_t *pool)
{
    return pool->kind;
}

/* ---------------------------------------------------------------- streams */

static kvbm_status_t stream_new(kvbm_backend_t *backend, void *native, bool wrap,
                                kvbm_stream_t **stream_out)
{
    if (backend == NULL || stream_out == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "%s: bad argument: needs backend and stream_out",
                          wrap ? "kvbm_stream_wrap" : "kvbm_stream_create");
    kvbm_stream_t *s = kvbm__calloc(1, sizeof(*s));
    if (s == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t st = wrap ? backend->ops->stream_wrap(backend->state, native, &s->impl)
                            : backend->ops->stream_create(backend->state, &s->impl);
    if (st != KVBM_OK)
        goto err_free_stream;
    s->backend = backend;
    *stream_out = s;
    return KVBM_OK;

err_free_stream:
    kvbm__free(s);
    return st;
}

kvbm_status_t kvbm_stream_create(kvbm_backend_t *backend, kvbm_stream_t **stream_out)
{
    return stream_new(backend, NULL, false, stream_out);
}

kvbm_status_t kvbm_stream_wrap(kvbm_backend_t *backend, void *native, kvbm_stream_t **stream_out)
{
    return stream_new(backend, native, true, stream_out);
}

void kvbm_stream_destroy(kvbm_stream_t *stream)
{
    if (stream == NULL)
        return;
    stream->backend->ops->stream_destroy(stream->backend->state, stream->impl);
    kvbm__free(stream);
}

void *kvbm_stream_native(const kvbm_stream_t *stream)
{
    return stream->backend->ops->stream_native(stream->backend->state, stream->impl);
}

kvbm_status_t kvbm_stream_hold(kvbm_stream_t *stream, bool hold)
{
    KVBM_REQUIRE_ARG(stream != NULL);
    return stream->backend->ops->stream_hold(stream->backend->state, stream->impl, hold);
}

kvbm_status_t kvbm_stream_wait_fence(kvbm_stream_t *stream, kvbm_fence_t *fence)
{
    KVBM_REQUIRE_ARG(stream != NULL && fence != NULL);
    KVBM_REQUIRE_ARG(stream->backend == fence->backend);
    return stream->backend->ops->stream_wait_fence(stream->backend->state, stream->impl,
                                                   fence->impl);
}

/* ----------------------------------------------------------------- fences */

kvbm_status_t kvbm_fence_create(kvbm_backend_t *backend, kvbm_fence_t **fence_out)
{
    KVBM_REQUIRE_ARG(backend != NULL && fence_out != NULL);
    kvbm_fence_t *f = kvbm__calloc(1, sizeof(*f));
    if (f == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t st = backend->ops->fence_create(backend->state, &f->impl);
    if (st != KVBM_OK)
        goto err_free_fence;
    f->backend = backend;
    *fence_out = f;
    return KVBM_OK;

err_free_fence:
    kvbm__free(f);
    return st;
}

void kvbm_fence_destroy(kvbm_fence_t *fence)
{
    if (fence == NULL)
        return;
    fence->backend->ops->fence_destroy(fence->backend->state, fence->impl);
    kvbm__free(fence);
}

kvbm_status_t kvbm_fence_record(kvbm_fence_t *fence, kvbm_stream_t *stream)
{
    KVBM_REQUIRE_ARG(fence != NULL && stream != NULL);
    KVBM_REQUIRE_ARG(fence->backend == stream->backend);
    return fence->backend->ops->fence_record(fence->backend->state, fence->impl, stream->impl);
}

kvbm_status_t kvbm_fence_query(kvbm_fence_t *fence)
{
    KVBM_REQUIRE_ARG(fence != NULL);
    return fence->backend->ops->fence_query(fence->backend->state, fence->impl);
}

kvbm_status_t kvbm_fence_wait(kvbm_fence_t *fence)
{
    KVBM_REQUIRE_ARG(fence != NULL);
    return fence->backend->ops->fence_wait(fence->backend->state, fence->impl);
}

/* ----------------------------------------------------------------- copies */

kvbm_status_t kvbm_backend_copy(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                const kvbm_copy_t *copies, size_t n, kvbm_copy_dir_t dir,
                                kvbm_fence_t *fence)
{
    KVBM_REQUIRE_ARG(backend != NULL && stream != NULL);
    KVBM_REQUIRE_ARG(stream->backend == backend);
    KVBM_REQUIRE_ARG(n == 0 || copies != NULL);
    KVBM_REQUIRE_ARG((unsigned)dir <= KVBM_COPY_H2H);
    KVBM_REQUIRE_ARG(fence == NULL || fence->backend == backend);
    for (size_t i = 0; i < n; i++) {
        if (copies[i].bytes > 0 && (copies[i].src == NULL || copies[i].dst == NULL))
            return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_backend_copy: copy %zu has a NULL %s", i,
                              copies[i].src == NULL ? "src" : "dst");
    }
    if (n == 0 && fence == NULL)
        return KVBM_OK;
    bool fail = false;
    if (n > 0) {
        uint64_t call =
            atomic_fetch_add_explicit(&backend->copy_calls, 1, memory_order_relaxed) + 1;
        fail = copy_fails(backend, stream, call);
    }
    /* One call, so that an error leaves no copy enqueued without its fence. */
    return backend->ops->copy_async(backend->state, stream->impl, copies, n, dir, fail,
                                    fence != NULL ? fence->impl : NULL);
}

static bool dir_matches(kvbm_copy_dir_t dir, kvbm_mem_kind_t src, kvbm_mem_kind_t dst)
{
    switch (dir) {
    case KVBM_COPY_D2H:
        return src == KVBM_MEM_DEVICE && dst == KVBM_MEM_HOST;
    case KVBM_COPY_H2D:
        return src == KVBM_MEM_HOST && dst == KVBM_MEM_DEVICE;
    case KVBM_COPY_D2D:
        return src == KVBM_MEM_DEVICE && dst == KVBM_MEM_DEVICE;
    case KVBM_COPY_H2H:
        return src == KVBM_MEM_HOST && dst == KVBM_MEM_HOST;
    }
    return false;
}

/* Region addresses of both sides' geometries fit here for most layouts. */
#define STACK_REGIONS 64

kvbm_status_t kvbm_backend_copy_blocks_between(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                               const kvbm_layout_t *src_layout,
                                               kvbm_pool_t *src_pool, const uint32_t *src_ids,
                                               const kvbm_layout_t *dst_layout,
                                               kvbm_pool_t *dst_pool, const uint32_t *dst_ids,
                                               size_t n, kvbm_copy_dir_t dir, kvbm_fence_t *fence)
{
    KVBM_REQUIRE_ARG(backend != NULL && stream != NULL);
    KVBM_REQUIRE_ARG(src_layout != NULL && dst_layout != NULL);
    KVBM_REQUIRE_ARG(src_pool != NULL && dst_pool != NULL);
    KVBM_REQUIRE_ARG(n == 0 || (src_ids != NULL && dst_ids != NULL));
    KVBM_REQUIRE_ARG(src_pool->backend == backend && dst_pool->backend == backend);
    KVBM_REQUIRE_ARG((unsigned)dir <= KVBM_COPY_H2H);
    if (!dir_matches(dir, src_pool->kind, dst_pool->kind))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "block copy: direction %d does not match the pools (%s to %s)", (int)dir,
                          src_pool->kind == KVBM_MEM_DEVICE ? "device" : "host",
                          dst_pool->kind == KVBM_MEM_DEVICE ? "device" : "host");
    kvbm_status_t st = kvbm_layout_compatible(src_layout, dst_layout);
    if (st != KVBM_OK)
        return st;
    if (src_pool->bytes < kvbm_layout_total_bytes(src_layout) ||
        dst_pool->bytes < kvbm_layout_total_bytes(dst_layout))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "block copy: a pool is smaller than its layout (%zu < %zu or %zu < %zu "
                          "bytes)",
                          src_pool->bytes, kvbm_layout_total_bytes(src_layout), dst_pool->bytes,
                          kvbm_layout_total_bytes(dst_layout));
    uint32_t src_blocks = kvbm_layout_config(src_layout)->num_blocks;
    uint32_t dst_blocks = kvbm_layout_config(dst_layout)->num_blocks;
    for (size_t i = 0; i < n; i++) {
        if (src_ids[i] >= src_blocks || dst_ids[i] >= dst_blocks)
            return kvbm__fail(KVBM_ERR_OUT_OF_RANGE,
                              "block copy %zu: block %u of %u to block %u of %u is out of range", i,
                              src_ids[i], src_blocks, dst_ids[i], dst_blocks);
    }
    if (n == 0)
        return kvbm_backend_copy(backend, stream, NULL, 0, dir, fence);

    size_t src_regions = kvbm__layout_geom_regions(src_layout);
    size_t regions = src_regions + kvbm__layout_geom_regions(dst_layout);
    char *stack_bases[STACK_REGIONS];
    char **bases = regions <= STACK_REGIONS ? stack_bases : kvbm__alloc(regions, sizeof(*bases));
    if (bases == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm__geom_t src, dst;
    kvbm__layout_geom(src_layout, src_pool->ptr, bases, &src);
    kvbm__layout_geom(dst_layout, dst_pool->ptr, bases + src_regions, &dst);
    kvbm__copy_plan_t plan;
    st = kvbm__copy_plan_build(&src, src_ids, &dst, dst_ids, n, false, &plan);
    if (bases != stack_bases)
        kvbm__free(bases);
    if (st != KVBM_OK)
        return st;
    st = kvbm_backend_copy(backend, stream, plan.pieces, plan.count, dir, fence);
    kvbm__copy_plan_free(&plan);
    return st;
}

kvbm_status_t kvbm_backend_copy_blocks(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                       const kvbm_layout_t *layout, kvbm_pool_t *src_pool,
                                       const uint32_t *src_ids, kvbm_pool_t *dst_pool,
                                       const uint32_t *dst_ids, size_t n, kvbm_copy_dir_t dir,
                                       kvbm_fence_t *fence)
{
    return kvbm_backend_copy_blocks_between(backend, stream, layout, src_pool, src_ids, layout,
                                            dst_pool, dst_ids, n, dir, fence);
}
