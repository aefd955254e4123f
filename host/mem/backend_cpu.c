/*
 * The CPU backend: "device" and pinned pools are ordinary anonymous mappings,
 * a stream is a worker thread draining a FIFO of items (copy batch, fence
 * record, fence wait), so copies really complete after the call that enqueued
 * them and a missing fence wait shows up as stale data. In synchronous mode
 * items run in the enqueuing thread instead.
 *
 * Lock order: stream->mu, then fence->mu. The worker never holds stream->mu
 * while it runs an item.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS, MAP_HUGETLB */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "backend_ops.h"
#include "core/check.h"
#include "core/error.h"

typedef struct cpu_backend {
    bool synchronous; /* immutable */
} cpu_backend_t;

typedef struct cpu_fence {
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* broadcast when completed grows */
    uint64_t recorded;    /* mu: number of the latest record */
    uint64_t completed;   /* mu: highest record number completed */
    kvbm_status_t status; /* mu: error carried by record `completed` */
    unsigned refs;        /* mu: owner + queued items naming this fence */
} cpu_fence_t;

typedef enum item_kind { ITEM_COPY, ITEM_RECORD, ITEM_WAIT } item_kind_t;

typedef struct cpu_item {
    struct cpu_item *next;
    item_kind_t kind;
    cpu_fence_t *fence; /* RECORD, WAIT: holds a reference */
    uint64_t gen;       /* RECORD: record number; WAIT: number to wait for */
    bool fail;          /* COPY: fault injection */
    size_t n;
    kvbm_copy_t copies[]; /* COPY */
} cpu_item_t;

typedef struct cpu_stream {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* worker sleeps here for work, release, or stop */
    cpu_item_t *head;       /* mu */
    cpu_item_t *tail;       /* mu */
    bool held;              /* mu: test hook, worker starts nothing while set */
    bool stop;              /* mu: destroy asked; worker drains then exits */
    /* First copy error since the last record. Touched only by whoever runs
     * items: the worker, or the enqueuer under mu in synchronous mode. */
    kvbm_status_t err;
    bool synchronous;
    pthread_t thread;
} cpu_stream_t;

static void fence_unref(cpu_fence_t *f)
{
    kvbm__mutex_lock(&f->mu);
    unsigned left = --f->refs;
    kvbm__mutex_unlock(&f->mu);
    if (left == 0) {
        kvbm__cond_destroy(&f->cv);
        kvbm__mutex_destroy(&f->mu);
        kvbm__free(f);
    }
}

static void item_run(cpu_stream_t *s, cpu_item_t *it)
{
    switch (it->kind) {
    case ITEM_COPY:
        if (it->fail) {
            /* The destination is left as it was: nothing claims it written. */
            if (s->err == KVBM_OK)
                s->err = KVBM_ERR_COPY_FAILED;
            break;
        }
        for (size_t i = 0; i < it->n; i++) {
            if (it->copies[i].bytes > 0)
                memcpy(it->copies[i].dst, it->copies[i].src, it->copies[i].bytes);
        }
        break;
    case ITEM_RECORD: {
        kvbm_status_t st = s->err;
        s->err = KVBM_OK;
        kvbm__mutex_lock(&it->fence->mu);
        if (it->gen > it->fence->completed) {
            it->fence->completed = it->gen;
            it->fence->status = st;
        }
        kvbm__cond_broadcast(&it->fence->cv);
        kvbm__mutex_unlock(&it->fence->mu);
        break;
    }
    case ITEM_WAIT:
        kvbm__mutex_lock(&it->fence->mu);
        while (it->fence->completed < it->gen)
            kvbm__cond_wait(&it->fence->cv, &it->fence->mu);
        kvbm__mutex_unlock(&it->fence->mu);
        break;
    }
    if (it->fence != NULL)
        fence_unref(it->fence);
    kvbm__free(it);
}

static void *stream_worker(void *arg)
{
    cpu_stream_t *s = arg;
    for (;;) {
        kvbm__mutex_lock(&s->mu);
        while (!s->stop && (s->head == NULL || s->held))
            kvbm__cond_wait(&s->work_cv, &s->mu);
        cpu_item_t *it = s->head;
        if (it == NULL) { /* stop asked and queue drained */
            kvbm__mutex_unlock(&s->mu);
            return NULL;
        }
        s->head = it->next;
        if (s->head == NULL)
            s->tail = NULL;
        kvbm__mutex_unlock(&s->mu);
        item_run(s, it);
    }
}

/* Runs the item now (synchronous streams) or queues it for the worker; with
 * s->mu held. Takes ownership of the item. */
static void stream_enqueue_locked(cpu_stream_t *s, cpu_item_t *it)
{
    it->next = NULL;
    if (s->synchronous) {
        item_run(s, it);
        return;
    }
    if (s->tail != NULL)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    kvbm__cond_signal(&s->work_cv);
}

/* Takes ownership of the item. */
static void stream_push(cpu_stream_t *s, cpu_item_t *it)
{
    kvbm__mutex_lock(&s->mu);
    stream_enqueue_locked(s, it);
    kvbm__mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- backend */

static kvbm_status_t cpu_open(const kvbm_backend_config_t *config, void **state_out)
{
    cpu_backend_t *b = kvbm__calloc(1, sizeof(*b));
    if (b == NULL)
        return KVBM_ERR_NO_MEMORY;
    b->synchronous = config->synchronous;
    *state_out = b;
    return KVBM_OK;
}

static void cpu_close(void *state)
{
    kvbm__free(state);
}

static kvbm_status_t cpu_mem_alloc(void *state, kvbm_mem_kind_t kind, size_t bytes, void **ptr_out,
                                   void **priv_out)
{
    /* Anonymous mappings are page aligned. They are populated now, as
     * cudaMalloc'd and pinned pools are, so page faults land in pool creation
     * rather than in the first copies that touch each page. */
    if (kvbm__alloc_injected_failure())
        return KVBM_ERR_NO_MEMORY;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED)
        return kvbm__fail(KVBM_ERR_NO_MEMORY, "CPU backend: mmap of a %zu-byte pool: %s", bytes,
                          strerror(errno));
    *ptr_out = p;
    *priv_out = NULL;
    return KVBM_OK;
}

static void cpu_mem_free(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv)
{
    munmap(ptr, bytes);
}

/* ---------------------------------------------------------------- streams */

static kvbm_status_t cpu_stream_create(void *state, void **stream_out)
{
    cpu_backend_t *b = state;
    kvbm_status_t st = KVBM_OK;
    cpu_stream_t *s = kvbm__calloc(1, sizeof(*s));
    if (s == NULL)
        return KVBM_ERR_NO_MEMORY;
    s->synchronous = b->synchronous;
    s->err = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&s->mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_stream;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&s->work_cv, NULL), st);
    if (st != KVBM_OK)
        goto err_destroy_mutex;
    if (!s->synchronous) {
        KVBM_PTHREAD_CHECK(pthread_create(&s->thread, NULL, stream_worker, s), st);
        if (st != KVBM_OK)
            goto err_destroy_cond;
    }
    *stream_out = s;
    return KVBM_OK;

err_destroy_cond:
    kvbm__cond_destroy(&s->work_cv);
err_destroy_mutex:
    kvbm__mutex_destroy(&s->mu);
err_free_stream:
    kvbm__free(s);
    return st;
}

static kvbm_status_t cpu_stream_wrap(void *state, void *native, void **stream_out)
{
    return KVBM_ERR_UNSUPPORTED;
}

static void cpu_stream_destroy(void *state, void *stream)
{
    cpu_stream_t *s = stream;
    if (!s->synchronous) {
        kvbm__mutex_lock(&s->mu);
        s->held = false;
        s->stop = true;
        kvbm__cond_signal(&s->work_cv);
        kvbm__mutex_unlock(&s->mu);
        kvbm__thread_join(s->thread);
    }
    kvbm__cond_destroy(&s->work_cv);
    kvbm__mutex_destroy(&s->mu);
    kvbm__free(s);
}

static void *cpu_stream_native(void *state, void *stream)
{
    return NULL;
}

static kvbm_status_t cpu_stream_hold(void *state, void *stream, bool hold)
{
    cpu_stream_t *s = stream;
    if (s->synchronous)
        return KVBM_ERR_UNSUPPORTED;
    kvbm__mutex_lock(&s->mu);
    s->held = hold;
    kvbm__cond_signal(&s->work_cv);
    kvbm__mutex_unlock(&s->mu);
    return KVBM_OK;
}

static kvbm_status_t cpu_stream_wait_fence(void *state, void *stream, void *fence)
{
    cpu_fence_t *f = fence;
    cpu_item_t *it = kvbm__calloc(1, sizeof(*it));
    if (it == NULL)
        return KVBM_ERR_NO_MEMORY;
    it->kind = ITEM_WAIT;
    it->fence = f;
    kvbm__mutex_lock(&f->mu);
    f->refs++;
    it->gen = f->recorded;
    kvbm__mutex_unlock(&f->mu);
    stream_push(stream, it);
    return KVBM_OK;
}

/* ----------------------------------------------------------------- fences */

static kvbm_status_t cpu_fence_create(void *state, void **fence_out)
{
    kvbm_status_t st = KVBM_OK;
    cpu_fence_t *f = kvbm__calloc(1, sizeof(*f));
    if (f == NULL)
        return KVBM_ERR_NO_MEMORY;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&f->mu, NULL), st);
    if (st != KVBM_OK)
        goto err_free_fence;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&f->cv, NULL), st);
    if (st != KVBM_OK)
        goto err_destroy_mutex;
    f->refs = 1;
    f->status = KVBM_OK;
    *fence_out = f;
    return KVBM_OK;

err_destroy_mutex:
    kvbm__mutex_destroy(&f->mu);
err_free_fence:
    kvbm__free(f);
    return st;
}

static void cpu_fence_destroy(void *state, void *fence)
{
    fence_unref(fence);
}

static cpu_item_t *record_item_new(cpu_fence_t *f)
{
    cpu_item_t *it = kvbm__calloc(1, sizeof(*it));
    if (it != NULL) {
        it->kind = ITEM_RECORD;
        it->fence = f;
    }
    return it;
}

/* Numbers a record item and queues it. The number is taken with the stream
 * lock held (s->mu, held by the caller) so that records of one fence on one
 * stream complete in number order. */
static void record_enqueue_locked(cpu_stream_t *s, cpu_item_t *it)
{
    kvbm__mutex_lock(&it->fence->mu);
    it->fence->refs++;
    it->gen = ++it->fence->recorded;
    kvbm__mutex_unlock(&it->fence->mu);
    stream_enqueue_locked(s, it);
}

static kvbm_status_t cpu_fence_record(void *state, void *fence, void *stream)
{
    cpu_item_t *it = record_item_new(fence);
    if (it == NULL)
        return KVBM_ERR_NO_MEMORY;
    cpu_stream_t *s = stream;
    kvbm__mutex_lock(&s->mu);
    record_enqueue_locked(s, it);
    kvbm__mutex_unlock(&s->mu);
    return KVBM_OK;
}

/* The fence's answer, with the reason of a failure on the answering thread
 * (the only copy failure here is an injected one). */
static kvbm_status_t fence_answer(kvbm_status_t st)
{
    if (st == KVBM_ERR_COPY_FAILED)
        return kvbm__fail(st, "a copy covered by the fence failed on the cpu backend (a failure "
                              "injected for testing)");
    return st;
}

static kvbm_status_t cpu_fence_query(void *state, void *fence)
{
    cpu_fence_t *f = fence;
    kvbm__mutex_lock(&f->mu);
    kvbm_status_t st = f->completed >= f->recorded ? f->status : KVBM_ERR_BUSY;
    kvbm__mutex_unlock(&f->mu);
    return fence_answer(st);
}

static kvbm_status_t cpu_fence_wait(void *state, void *fence)
{
    cpu_fence_t *f = fence;
    kvbm__mutex_lock(&f->mu);
    uint64_t target = f->recorded;
    while (f->completed < target)
        kvbm__cond_wait(&f->cv, &f->mu);
    kvbm_status_t st = f->status;
    kvbm__mutex_unlock(&f->mu);
    return fence_answer(st);
}

/* ----------------------------------------------------------------- copies */

/* Both items (the copies, the fence's record) are made before either is
 * queued, so a shortage queues nothing: no copy is left running that no
 * fence covers. */
static kvbm_status_t cpu_copy_async(void *state, void *stream, const kvbm_copy_t *copies, size_t n,
                                    kvbm_copy_dir_t dir, bool fail, void *fence)
{
    if (n > (SIZE_MAX - sizeof(cpu_item_t)) / sizeof(kvbm_copy_t))
        return KVBM_ERR_OVERFLOW;
    cpu_item_t *copy = NULL, *record = NULL;
    if (n > 0) {
        copy = kvbm__alloc(1, sizeof(*copy) + n * sizeof(kvbm_copy_t));
        if (copy == NULL)
            return KVBM_ERR_NO_MEMORY;
        memset(copy, 0, sizeof(*copy));
        copy->kind = ITEM_COPY;
        copy->fail = fail;
        copy->n = n;
        memcpy(copy->copies, copies, n * sizeof(kvbm_copy_t));
    }
    if (fence != NULL && (record = record_item_new(fence)) == NULL) {
        kvbm__free(copy);
        return KVBM_ERR_NO_MEMORY;
    }
    cpu_stream_t *s = stream;
    kvbm__mutex_lock(&s->mu);
    if (copy != NULL)
        stream_enqueue_locked(s, copy);
    if (record != NULL)
        record_enqueue_locked(s, record);
    kvbm__mutex_unlock(&s->mu);
    return KVBM_OK;
}

/* Wrapped memory is ordinary memory here: nothing to learn or remember. */
static kvbm_status_t cpu_mem_wrap(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes,
                                  void **priv_out)
{
    (void)state;
    (void)kind;
    (void)ptr;
    (void)bytes;
    *priv_out = NULL;
    return KVBM_OK;
}

static void cpu_mem_unwrap(void *state, kvbm_mem_kind_t kind, void *ptr, size_t bytes, void *priv)
{
    (void)state;
    (void)kind;
    (void)ptr;
    (void)bytes;
    (void)priv;
}

static const kvbm__backend_ops_t cpu_ops = {
    .version = KVBM_BACKEND_OPS_VERSION,
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .stream_create = cpu_stream_create,
    .stream_wrap = cpu_stream_wrap,
    .stream_destroy = cpu_stream_destroy,
    .stream_native = cpu_stream_native,
    .stream_hold = cpu_stream_hold,
    .stream_wait_fence = cpu_stream_wait_fence,
    .fence_create = cpu_fence_create,
    .fence_destroy = cpu_fence_destroy,
    .fence_record = cpu_fence_record,
    .fence_query = cpu_fence_query,
    .fence_wait = cpu_fence_wait,
    .copy_async = cpu_copy_async,
    .mem_wrap = cpu_mem_wrap,
    .mem_unwrap = cpu_mem_unwrap,
};

const kvbm__backend_ops_t *kvbm__backend_cpu_ops(void)
{
    return &cpu_ops;
}
