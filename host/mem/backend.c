/*
 * The public backend API: argument checks, selection of a backend, fault
 * injection counting, and the block-copy convenience that turns a layout
 * into one batch. Everything device-specific is behind kvbm__backend_ops_t.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* strcasecmp */
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend_ops.h"

struct kvbm_backend {
    const kvbm__backend_ops_t *ops; /* immutable after create */
    void *state;                    /* the backend's own; it does its locking */
    kvbm_backend_kind_t kind;
    /* Copy calls made so far, and the call number that fails (0 = none).
     * Relaxed: each call only needs a unique number; the test that arms the
     * hook orders itself against the copies it makes. */
    _Atomic uint64_t copy_calls;
    _Atomic uint64_t fail_at;
};

struct kvbm_pool {
    kvbm_backend_t *backend;
    kvbm_mem_kind_t kind;
    void *ptr;
    size_t bytes;
    void *priv;   /* backend bookkeeping; unused for wrapped pools */
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

static kvbm_status_t open_ops(const kvbm__backend_ops_t *ops, const kvbm_backend_config_t *config,
                              void **state_out)
{
    return ops->open(config, state_out);
}

kvbm_status_t kvbm_backend_create(const kvbm_backend_config_t *config, kvbm_backend_t **backend_out)
{
    kvbm_backend_config_t defaults = KVBM_BACKEND_CONFIG_INIT;
    if (backend_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    if (config == NULL)
        config = &defaults;
    if (config->struct_size != sizeof(*config) || config->version != KVBM_BACKEND_CONFIG_VERSION)
        return KVBM_ERR_VERSION;
    if ((unsigned)config->kind > KVBM_BACKEND_CUDA ||
        (unsigned)config->pinned_method > KVBM_PINNED_REGISTER ||
        (unsigned)config->copy_method > KVBM_COPY_METHOD_PER_REGION)
        return KVBM_ERR_INVALID_ARG;

    kvbm_backend_kind_t kind = kind_from_env(config->kind);
    const kvbm__backend_ops_t *ops = NULL;
    void *state = NULL;
    kvbm_status_t st = KVBM_ERR_NO_DEVICE;
#if defined(KVBM_HAVE_CUDA) && KVBM_HAVE_CUDA
    if (kind == KVBM_BACKEND_CUDA || kind == KVBM_BACKEND_AUTO) {
        st = open_ops(kvbm__backend_cuda_ops(), config, &state);
        if (st == KVBM_OK) {
            ops = kvbm__backend_cuda_ops();
            kind = KVBM_BACKEND_CUDA;
        } else if (kind == KVBM_BACKEND_CUDA) {
            return st;
        }
    }
#else
    if (kind == KVBM_BACKEND_CUDA)
        return KVBM_ERR_NO_DEVICE;
#endif
    if (ops == NULL) {
        st = open_ops(kvbm__backend_cpu_ops(), config, &state);
        if (st != KVBM_OK)
            return st;
        ops = kvbm__backend_cpu_ops();
        kind = KVBM_BACKEND_CPU;
    }

    kvbm_backend_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        goto err_close;
    b->ops = ops;
    b->state = state;
    b->kind = kind;
    atomic_init(&b->copy_calls, 0);
    atomic_init(&b->fail_at, config->fail_nth_copy);
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
    free(backend);
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
    if (backend == NULL)
        return KVBM_ERR_INVALID_ARG;
    uint64_t now = atomic_load_explicit(&backend->copy_calls, memory_order_relaxed);
    atomic_store_explicit(&backend->fail_at, n == 0 ? 0 : now + n, memory_order_relaxed);
    return KVBM_OK;
}

/* ------------------------------------------------------------------ pools */

kvbm_status_t kvbm_pool_create(kvbm_backend_t *backend, kvbm_mem_kind_t kind, size_t bytes,
                               kvbm_pool_t **pool_out)
{
    if (backend == NULL || pool_out == NULL || bytes == 0 ||
        (kind != KVBM_MEM_DEVICE && kind != KVBM_MEM_HOST))
        return KVBM_ERR_INVALID_ARG;
    kvbm_pool_t *p = calloc(1, sizeof(*p));
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
    free(p);
    return st;
}

kvbm_status_t kvbm_pool_wrap(kvbm_backend_t *backend, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                             kvbm_pool_t **pool_out)
{
    if (backend == NULL || ptr == NULL || pool_out == NULL || bytes == 0 ||
        (kind != KVBM_MEM_DEVICE && kind != KVBM_MEM_HOST))
        return KVBM_ERR_INVALID_ARG;
    kvbm_pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    p->backend = backend;
    p->kind = kind;
    p->ptr = ptr;
    p->bytes = bytes;
    p->wrapped = true;
    *pool_out = p;
    return KVBM_OK;
}

void kvbm_pool_destroy(kvbm_pool_t *pool)
{
    if (pool == NULL)
        return;
    if (!pool->wrapped)
        pool->backend->ops->mem_free(pool->backend->state, pool->kind, pool->ptr, pool->bytes,
                                     pool->priv);
    free(pool);
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
        return KVBM_ERR_INVALID_ARG;
    kvbm_stream_t *s = calloc(1, sizeof(*s));
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
    free(s);
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
    free(stream);
}

void *kvbm_stream_native(const kvbm_stream_t *stream)
{
    return stream->backend->ops->stream_native(stream->backend->state, stream->impl);
}

kvbm_status_t kvbm_stream_hold(kvbm_stream_t *stream, bool hold)
{
    if (stream == NULL)
        return KVBM_ERR_INVALID_ARG;
    return stream->backend->ops->stream_hold(stream->backend->state, stream->impl, hold);
}

kvbm_status_t kvbm_stream_wait_fence(kvbm_stream_t *stream, kvbm_fence_t *fence)
{
    if (stream == NULL || fence == NULL || stream->backend != fence->backend)
        return KVBM_ERR_INVALID_ARG;
    return stream->backend->ops->stream_wait_fence(stream->backend->state, stream->impl,
                                                   fence->impl);
}

/* ----------------------------------------------------------------- fences */

kvbm_status_t kvbm_fence_create(kvbm_backend_t *backend, kvbm_fence_t **fence_out)
{
    if (backend == NULL || fence_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_fence_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t st = backend->ops->fence_create(backend->state, &f->impl);
    if (st != KVBM_OK)
        goto err_free_fence;
    f->backend = backend;
    *fence_out = f;
    return KVBM_OK;

err_free_fence:
    free(f);
    return st;
}

void kvbm_fence_destroy(kvbm_fence_t *fence)
{
    if (fence == NULL)
        return;
    fence->backend->ops->fence_destroy(fence->backend->state, fence->impl);
    free(fence);
}

kvbm_status_t kvbm_fence_record(kvbm_fence_t *fence, kvbm_stream_t *stream)
{
    if (fence == NULL || stream == NULL || fence->backend != stream->backend)
        return KVBM_ERR_INVALID_ARG;
    return fence->backend->ops->fence_record(fence->backend->state, fence->impl, stream->impl);
}

kvbm_status_t kvbm_fence_query(kvbm_fence_t *fence)
{
    if (fence == NULL)
        return KVBM_ERR_INVALID_ARG;
    return fence->backend->ops->fence_query(fence->backend->state, fence->impl);
}

kvbm_status_t kvbm_fence_wait(kvbm_fence_t *fence)
{
    if (fence == NULL)
        return KVBM_ERR_INVALID_ARG;
    return fence->backend->ops->fence_wait(fence->backend->state, fence->impl);
}

/* ----------------------------------------------------------------- copies */

kvbm_status_t kvbm_backend_copy(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                const kvbm_copy_t *copies, size_t n, kvbm_copy_dir_t dir,
                                kvbm_fence_t *fence)
{
    if (backend == NULL || stream == NULL || stream->backend != backend ||
        (n > 0 && copies == NULL) || (unsigned)dir > KVBM_COPY_H2H ||
        (fence != NULL && fence->backend != backend))
        return KVBM_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        if (copies[i].bytes > 0 && (copies[i].src == NULL || copies[i].dst == NULL))
            return KVBM_ERR_INVALID_ARG;
    }
    if (n > 0) {
        uint64_t call =
            atomic_fetch_add_explicit(&backend->copy_calls, 1, memory_order_relaxed) + 1;
        bool fail = call == atomic_load_explicit(&backend->fail_at, memory_order_relaxed);
        kvbm_status_t st =
            backend->ops->copy_async(backend->state, stream->impl, copies, n, dir, fail);
        if (st != KVBM_OK)
            return st;
    }
    if (fence != NULL)
        return backend->ops->fence_record(backend->state, fence->impl, stream->impl);
    return KVBM_OK;
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

/* Append one copy, merging it into the previous one when it continues it on
 * both sides. */
static void push_merged(kvbm_copy_t *list, size_t *count, const char *src, char *dst, size_t bytes)
{
    if (*count > 0) {
        kvbm_copy_t *last = &list[*count - 1];
        if ((const char *)last->src + last->bytes == src &&
            (char *)last->dst + last->bytes == dst) {
            last->bytes += bytes;
            return;
        }
    }
    list[*count].src = src;
    list[*count].dst = dst;
    list[*count].bytes = bytes;
    (*count)++;
}

kvbm_status_t kvbm_backend_copy_blocks_between(kvbm_backend_t *backend, kvbm_stream_t *stream,
                                               const kvbm_layout_t *src_layout,
                                               kvbm_pool_t *src_pool, const uint32_t *src_ids,
                                               const kvbm_layout_t *dst_layout,
                                               kvbm_pool_t *dst_pool, const uint32_t *dst_ids,
                                               size_t n, kvbm_copy_dir_t dir, kvbm_fence_t *fence)
{
    if (backend == NULL || stream == NULL || src_layout == NULL || dst_layout == NULL ||
        src_pool == NULL || dst_pool == NULL || (n > 0 && (src_ids == NULL || dst_ids == NULL)) ||
        src_pool->backend != backend || dst_pool->backend != backend ||
        (unsigned)dir > KVBM_COPY_H2H || !dir_matches(dir, src_pool->kind, dst_pool->kind))
        return KVBM_ERR_INVALID_ARG;
    kvbm_status_t st = kvbm_layout_compatible(src_layout, dst_layout);
    if (st != KVBM_OK)
        return st;
    if (src_pool->bytes < kvbm_layout_total_bytes(src_layout) ||
        dst_pool->bytes < kvbm_layout_total_bytes(dst_layout))
        return KVBM_ERR_INVALID_ARG;
    const kvbm_layout_config_t *sc = kvbm_layout_config(src_layout);
    const kvbm_layout_config_t *dc = kvbm_layout_config(dst_layout);
    for (size_t i = 0; i < n; i++) {
        if (src_ids[i] >= sc->num_blocks || dst_ids[i] >= dc->num_blocks)
            return KVBM_ERR_OUT_OF_RANGE;
    }
    if (n == 0)
        return kvbm_backend_copy(backend, stream, NULL, 0, dir, fence);

    /* Same arrangement: regions correspond one to one. Otherwise go chunk by
     * chunk, which every compatible pair shares. */
    bool same_regions = sc->kind == dc->kind && (sc->kind == KVBM_LAYOUT_FULLY_CONTIGUOUS ||
                                                 sc->outer_contiguous == dc->outer_contiguous);
    size_t per_block = same_regions ? kvbm_layout_regions_per_block(src_layout)
                                    : (size_t)sc->num_layers * sc->outer_dim;
    size_t total;
    if (__builtin_mul_overflow(per_block, n, &total) || total > SIZE_MAX / sizeof(kvbm_copy_t))
        return KVBM_ERR_OVERFLOW;
    kvbm_copy_t *list = malloc(total * sizeof(*list));
    if (list == NULL)
        return KVBM_ERR_NO_MEMORY;
    const char *sbase = src_pool->ptr;
    char *dbase = dst_pool->ptr;
    size_t count = 0;
    if (same_regions) {
        /* Region-major: region r of every block in turn, so the same layer of
         * consecutive blocks merges into one copy. In every arrangement region r
         * of block b sits at region r of block 0 plus the offset of chunk
         * (b, 0, 0), since chunk (0, 0, 0) is at offset 0. */
        kvbm_region_t *sr = malloc(2 * per_block * sizeof(*sr));
        if (sr == NULL) {
            st = KVBM_ERR_NO_MEMORY;
            goto out_free_list;
        }
        kvbm_region_t *dr = sr + per_block;
        size_t got;
        (void)kvbm_layout_block_regions(src_layout, 0, sr, per_block, &got);
        (void)kvbm_layout_block_regions(dst_layout, 0, dr, per_block, &got);
        for (size_t r = 0; r < per_block; r++) {
            for (size_t i = 0; i < n; i++) {
                size_t so, dso;
                (void)kvbm_layout_offset(src_layout, src_ids[i], 0, 0, &so);
                (void)kvbm_layout_offset(dst_layout, dst_ids[i], 0, 0, &dso);
                push_merged(list, &count, sbase + sr[r].offset + so, dbase + dr[r].offset + dso,
                            sr[r].bytes);
            }
        }
        free(sr);
    } else {
        size_t chunk = kvbm_layout_chunk_bytes(src_layout);
        for (uint32_t l = 0; l < sc->num_layers; l++) {
            for (uint32_t o = 0; o < sc->outer_dim; o++) {
                for (size_t i = 0; i < n; i++) {
                    size_t so, dso;
                    (void)kvbm_layout_offset(src_layout, src_ids[i], l, o, &so);
                    (void)kvbm_layout_offset(dst_layout, dst_ids[i], l, o, &dso);
                    push_merged(list, &count, sbase + so, dbase + dso, chunk);
                }
            }
        }
    }
    st = kvbm_backend_copy(backend, stream, list, count, dir, fence);
out_free_list:
    free(list);
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
