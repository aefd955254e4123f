/*
 * Streams and fences of the CUDA backend. A fence is an event created with
 * cudaEventBlockingSync, so a thread in kvbm_fence_wait (and the cache calls
 * built on it) sleeps instead of spinning a core. Nothing here blocks a
 * caller on the GPU except kvbm_fence_wait and kvbm_stream_destroy, which
 * are documented to wait.
 *
 * Errors: a copy that cannot be enqueued parks its status and reason in the
 * stream's `pending`, handed to the next fence recorded there, which tells
 * every thread that waits on it or queries it; asynchronous failures
 * come back from cudaEventQuery / cudaEventSynchronize. cudaErrorNotReady is
 * an answer, not an error: it never touches the runtime's last-error slot.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "check.h"
#include "core/check.h"
#include "internal.h"

static kvbm_status_t stream_init(kvbm__cuda_backend_t *b, cudaStream_t native, bool wrapped,
                                 void **stream_out)
{
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    kvbm__cuda_stream_t *s = kvbm__calloc(1, sizeof(*s));
    if (s == NULL) {
        st = KVBM_ERR_NO_MEMORY;
        goto out_leave;
    }
    /* The kernel's parameter block, sized once: the copy path allocates no
     * device or pinned memory. */
    s->launch = kvbm__alloc(1, sizeof(*s->launch));
    if (s->launch == NULL) {
        st = KVBM_ERR_NO_MEMORY;
        goto err_free_stream;
    }
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&s->mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_launch;
    if (wrapped) {
        s->s = native;
    } else {
        KVBM_CUDA_CHECK(cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking), st);
        if (st != KVBM_OK)
            goto err_destroy_mutex;
    }
    s->wrapped = wrapped;
    s->legacy = kvbm__cuda_stream_is_legacy(s->s);
    s->pending = KVBM_OK;
    *stream_out = s;
    goto out_leave;

err_destroy_mutex:
    kvbm__mutex_destroy(&s->mu);
err_free_launch:
    kvbm__free(s->launch);
err_free_stream:
    kvbm__free(s);
out_leave:
    kvbm__cuda_leave(b, &scope);
    return st;
}

kvbm_status_t kvbm__cuda_stream_create(void *state, void **stream_out)
{
    return stream_init(state, NULL, false, stream_out);
}

kvbm_status_t kvbm__cuda_stream_wrap(void *state, void *native, void **stream_out)
{
    return stream_init(state, (cudaStream_t)native, true, stream_out);
}

void kvbm__cuda_stream_destroy(void *state, void *stream)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_stream_t *s = stream;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st == KVBM_OK) {
        KVBM_CUDA_CHECK(cudaStreamSynchronize(s->s), st);
        if (!s->wrapped)
            KVBM_CUDA_CHECK(cudaStreamDestroy(s->s), st);
        (void)st; /* teardown goes on regardless; failures were logged */
        kvbm__cuda_leave(b, &scope);
    }
    kvbm__free(s->dsts);
    kvbm__free(s->srcs);
    kvbm__free(s->sizes);
    kvbm__free(s->cut);
    kvbm__free(s->launch);
    kvbm__mutex_destroy(&s->mu);
    kvbm__free(s);
}

void *kvbm__cuda_stream_native(void *state, void *stream)
{
    (void)state;
    return (void *)((kvbm__cuda_stream_t *)stream)->s;
}

kvbm_status_t kvbm__cuda_stream_hold(void *state, void *stream, bool hold)
{
    (void)state;
    (void)stream;
    (void)hold;
    return KVBM_ERR_UNSUPPORTED;
}

kvbm_status_t kvbm__cuda_stream_wait_fence(void *state, void *stream, void *fence)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_stream_t *s = stream;
    kvbm__cuda_fence_t *f = fence;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    kvbm__mutex_lock(&s->mu);
    KVBM_CUDA_CHECK(cudaStreamWaitEvent(s->s, f->ev, 0), st);
    kvbm__mutex_unlock(&s->mu);
    kvbm__cuda_leave(b, &scope);
    return st;
}

/* ----------------------------------------------------------------- fences */

kvbm_status_t kvbm__cuda_fence_create(void *state, void **fence_out)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    kvbm__cuda_fence_t *f = kvbm__calloc(1, sizeof(*f));
    if (f == NULL) {
        st = KVBM_ERR_NO_MEMORY;
        goto out_leave;
    }
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&f->mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_fence;
    KVBM_CUDA_CHECK(
        cudaEventCreateWithFlags(&f->ev, cudaEventBlockingSync | cudaEventDisableTiming), st);
    if (st != KVBM_OK)
        goto err_destroy_mutex;
    f->status = KVBM_OK;
    *fence_out = f;
    goto out_leave;

err_destroy_mutex:
    kvbm__mutex_destroy(&f->mu);
err_free_fence:
    kvbm__free(f);
out_leave:
    kvbm__cuda_leave(b, &scope);
    return st;
}

void kvbm__cuda_fence_destroy(void *state, void *fence)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_fence_t *f = fence;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st == KVBM_OK) {
        KVBM_CUDA_CHECK(cudaEventDestroy(f->ev), st);
        (void)st;
        kvbm__cuda_leave(b, &scope);
    }
    kvbm__mutex_destroy(&f->mu);
    kvbm__free(f);
}

kvbm_status_t kvbm__cuda_fence_record(void *state, void *fence, void *stream)
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_stream_t *s = stream;
    kvbm__cuda_fence_t *f = fence;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    kvbm__mutex_lock(&s->mu);
    kvbm__mutex_lock(&f->mu);
    KVBM_CUDA_CHECK(cudaEventRecord(f->ev, s->s), st);
    if (st == KVBM_OK) {
        f->status = s->pending;
        if (s->pending != KVBM_OK)
            memcpy(f->reason, s->pending_reason, sizeof(f->reason));
        s->pending = KVBM_OK;
    }
    kvbm__mutex_unlock(&f->mu);
    kvbm__mutex_unlock(&s->mu);
    kvbm__cuda_leave(b, &scope);
    return st;
}

/* The fence's answer from cudaEventQuery's or cudaEventSynchronize's result. */
static kvbm_status_t fence_result(kvbm__cuda_fence_t *f, cudaError_t err)
{
    if (err == cudaSuccess) {
        char reason[KVBM__ERROR_MAX];
        kvbm__mutex_lock(&f->mu);
        kvbm_status_t st = f->status;
        if (st != KVBM_OK)
            memcpy(reason, f->reason, sizeof(reason));
        kvbm__mutex_unlock(&f->mu);
        if (st == KVBM_OK)
            return st;
        return kvbm__fail(st, "a copy covered by the fence failed on the cuda backend: %s", reason);
    }
    if (err == cudaErrorNotReady)
        return KVBM_ERR_BUSY; /* not an error: the slot is left alone */
    kvbm_status_t st = KVBM_OK;
    KVBM_CUDA_CHECK(err, st);
    return st;
}

/* Asks @p fence's event with @p ask (query or synchronize) inside the
 * backend's device scope: the fence's status once it completed. */
static kvbm_status_t fence_ask(void *state, void *fence, cudaError_t (*ask)(cudaEvent_t))
{
    kvbm__cuda_backend_t *b = state;
    kvbm__cuda_fence_t *f = fence;
    kvbm__cuda_scope_t scope;
    kvbm_status_t st = kvbm__cuda_enter(b, &scope);
    if (st != KVBM_OK)
        return st;
    st = fence_result(f, ask(f->ev));
    kvbm__cuda_leave(b, &scope);
    return st;
}

kvbm_status_t kvbm__cuda_fence_query(void *state, void *fence)
{
    return fence_ask(state, fence, cudaEventQuery);
}

kvbm_status_t kvbm__cuda_fence_wait(void *state, void *fence)
{
    return fence_ask(state, fence, cudaEventSynchronize);
}
