/*
 * Copies of the CUDA backend. One batch takes one of three paths, chosen by
 * kvbm__cuda_pick_method (decide.h) from facts gathered here:
 * - the copy kernel (cuda/kernel), only when every byte of the batch lies in
 *   memory the device reaches through the pointer (the backend's pools and
 *   checked wrapped pools, or any host memory when the device reads
 *   pageable memory): a kernel dereferencing pageable memory faults and
 *   kills the context;
 * - cudaMemcpyBatchAsync (copy engines), never on the legacy stream;
 * - one cudaMemcpyAsync per region.
 * Copy-engine copies are cut where a chunked pinned pool's registration ends,
 * so every copy stays inside one registration. Nothing here waits for the
 * GPU or allocates device or pinned memory; host scratch grows with malloc.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "check.h"
#include "core/check.h"
#include "cuda_kernel/launch.h"
#include "internal.h"

/* Whether the kernel may touch [p, p + bytes) on a side that is host memory
 * (@p host_side) or device memory. Called with ranges_mu held. */
static bool reachable(const kvbm__cuda_backend_t *b, const void *p, size_t bytes, bool host_side)
{
    return kvbm__range_set_covers(&b->ranges, p, bytes) || (host_side && b->pageable_ok);
}

/* Pieces of one copy when cut at registration ends on either side. Called
 * with ranges_mu held; the pieces are written to @p out unless it is NULL. */
static size_t cut_copy(const kvbm__cuda_backend_t *b, const kvbm_copy_t *c, kvbm_copy_t *out)
{
    size_t pieces = 0, done = 0;
    while (done < c->bytes) {
        const char *src = (const char *)c->src + done;
        char *dst = (char *)c->dst + done;
        size_t left = c->bytes - done;
        size_t run = kvbm__range_set_run(&b->ranges, src, left);
        size_t run_dst = kvbm__range_set_run(&b->ranges, dst, run);
        if (out != NULL)
            out[pieces] = (kvbm_copy_t){.src = src, .dst = dst, .bytes = run_dst};
        pieces++;
        done += run_dst;
    }
    return pieces;
}

/* The facts of one batch: mean size, kernel reachability, and the batch cut
 * for the copy engines (@p cut_out: the input itself, or s->cut). */
static kvbm_status_t survey(kvbm__cuda_backend_t *b, kvbm__cuda_stream_t *s, const kvbm_copy_t *c,
                            size_t n, kvbm_copy_dir_t dir, kvbm__copy_facts_t *facts,
                            const kvbm_copy_t **cut_out, size_t *cut_n_out)
{
    bool src_host = dir == KVBM_COPY_H2D || dir == KVBM_COPY_H2H;
    bool dst_host = dir == KVBM_COPY_D2H || dir == KVBM_COPY_H2H;
    size_t total = 0, pieces = 0;
    bool reach = true;
    kvbm_status_t st = KVBM_OK;
    kvbm__mutex_lock(&b->ranges_mu);
    for (size_t i = 0; i < n; i++) {
        total += c[i].bytes;
        reach = reach && reachable(b, c[i].src, c[i].bytes, src_host) &&
                reachable(b, c[i].dst, c[i].bytes, dst_host);
        pieces += cut_copy(b, &c[i], NULL);
    }
    *cut_out = c;
    *cut_n_out = n;
    if (pieces != n) {
        if (pieces > s->cut_cap) {
            kvbm_copy_t *grown = kvbm__realloc(s->cut, pieces, sizeof(*grown));
            if (grown == NULL) {
                st = KVBM_ERR_NO_MEMORY;
                goto out_unlock;
            }
            s->cut = grown;
            s->cut_cap = pieces;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += cut_copy(b, &c[i], s->cut + k);
        *cut_out = s->cut;
        *cut_n_out = k;
    }
    facts->asked = b->method;
    facts->kernel_threshold = b->kernel_threshold;
    facts->mean_bytes = n > 0 ? total / n : 0;
    facts->kernel_reachable = reach;
    facts->batch_supported = b->batch_ok;
    facts->legacy_stream = s->legacy;
out_unlock:
    kvbm__mutex_unlock(&b->ranges_mu);
    return st;
}

/* Keeps the first failure since the stream's last record, with its reason,
 * for the fence recorded next: the thread that waits on it is told why, not
 * only this one. Called with s->mu held. */
static void park_failure(kvbm__cuda_stream_t *s, kvbm_status_t st, bool injected)
{
    if (s->pending != KVBM_OK)
        return;
    s->pending = st;
    /* A runtime call that failed left its reason on this thread (check.h);
     * the scratch allocations do not record one. */
    const char *why = injected                   ? "a failure injected for testing"
                      : st == KVBM_ERR_NO_MEMORY ? "no host memory for the copy's scratch lists"
                                                 : kvbm_last_error();
    snprintf(s->pending_reason, sizeof(s->pending_reason), "%s", why);
}

static kvbm_status_t copy_per_region(kvbm__cuda_stream_t *s, const kvbm_copy_t *c, size_t n)
{
    kvbm_status_t st = KVBM_OK;
    for (size_t i = 0; i < n && st == KVBM_OK; i++) {
        if (c[i].bytes > 0)
            KVBM_CUDA_CHECK(
                cudaMemcpyAsync(c[i].dst, c[i].src, c[i].bytes, cudaMemcpyDefault, s->s), st);
    }
    return st;
}

static kvbm_status_t grow_batch_scratch(kvbm__cuda_stream_t *s, size_t n)
{
    if (n <= s->scratch_cap)
        return KVBM_OK;
    size_t cap = n > 2 * s->scratch_cap ? n : 2 * s->scratch_cap;
    void **d = kvbm__realloc(s->dsts, cap, sizeof(*d));
    if (d == NULL)
        return KVBM_ERR_NO_MEMORY;
    s->dsts = d;
    const void **sr = kvbm__realloc(s->srcs, cap, sizeof(*sr));
    if (sr == NULL)
        return KVBM_ERR_NO_MEMORY;
    s->srcs = sr;
    size_t *sz = kvbm__realloc(s->sizes, cap, sizeof(*sz));
    if (sz == NULL)
        return KVBM_ERR_NO_MEMORY;
    s->sizes = sz;
    s->scratch_cap = cap;
    return KVBM_OK;
}

static kvbm_status_t copy_batch(kvbm__cuda_stream_t *s, const kvbm_copy_t *c, size_t n,
                                kvbm_copy_dir_t dir)
{
#if CUDART_VERSION >= 12080
    kvbm_status_t st = grow_batch_scratch(s, n);
    if (st != KVBM_OK)
        return st;
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
    (void)grow_batch_scratch;
    return KVBM_ERR_UNSUPPORTED;
#endif
}

/* One launch per KVBM__COPY_LAUNCH_MAX regions, the list passed by value. */
static kvbm_status_t copy_kernel(kvbm__cuda_stream_t *s, const kvbm_copy_t *c, size_t n)
{
    kvbm_status_t st = KVBM_OK;
    size_t i = 0;
    while (i < n && st == KVBM_OK) {
        kvbm__copy_launch_t *launch = s->launch;
        launch->n = 0;
        for (; i < n && launch->n < KVBM__COPY_LAUNCH_MAX; i++) {
            if (c[i].bytes == 0)
                continue;
            launch->desc[launch->n++] =
                (kvbm__copy_desc_t){.src = c[i].src, .dst = c[i].dst, .bytes = c[i].bytes};
        }
        if (launch->n > 0)
            KVBM_CUDA_CHECK(kvbm__copy_kernel_launch(launch, s->s), st);
    }
    return st;
}

/* Copies, then the fence's event record. A copy's failure travels with the
 * next fence (the call still succeeds); the record fails only when the
 * device or context is in error, and then the copies already enqueued fail
 * with it: the one case where an error can leave copies behind. */
kvbm_status_t kvbm__cuda_copy_async(void *state, void *stream, const kvbm_copy_t *copies, size_t n,
                                    kvbm_copy_dir_t dir, bool fail, void *fence)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_stream_t *s = stream;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    kvbm__mutex_lock(&s->mu);
    if (n == 0) {
        st = KVBM_OK; /* only the fence */
    } else if (fail) {
        st = KVBM_ERR_COPY_FAILED; /* injected: nothing is enqueued */
    } else {
        kvbm__copy_facts_t facts;
        const kvbm_copy_t *cut = NULL;
        size_t cut_n = 0;
        st = survey(b, s, copies, n, dir, &facts, &cut, &cut_n);
        if (st == KVBM_OK) {
            switch (kvbm__cuda_pick_method(&facts)) {
            case KVBM_COPY_METHOD_KERNEL:
                st = copy_kernel(s, copies, n);
                break;
            case KVBM_COPY_METHOD_BATCH:
                st = copy_batch(s, cut, cut_n, dir);
                /* A refused batch: the same copies go one by one. Copies
                 * are idempotent (destinations never overlap), so whatever
                 * the batch did enqueue is written twice with the same bytes;
                 * a sticky device error fails these too. */
                if (st != KVBM_OK && st != KVBM_ERR_NO_MEMORY)
                    st = copy_per_region(s, cut, cut_n);
                break;
            default:
                st = copy_per_region(s, cut, cut_n);
                break;
            }
        }
        if (st != KVBM_OK && st != KVBM_ERR_NO_MEMORY)
            st = KVBM_ERR_COPY_FAILED;
    }
    if (st != KVBM_OK)
        park_failure(s, st, fail);
    kvbm__mutex_unlock(&s->mu);
    kvbm__cuda_leave(b, &scope);
    /* Failures of the copies travel with the next fence. */
    return fence != NULL ? kvbm__cuda_fence_record(state, fence, stream) : KVBM_OK;
}
