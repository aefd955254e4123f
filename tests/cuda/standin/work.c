/*
 * The stand-in's streams (a worker thread draining a FIFO each), events,
 * copies and the copy kernel. Not real CUDA: see standin.h.
 *
 * Locks: a stream's mu guards its queue and counters; events_mu guards every
 * event and is taken inside a stream's mu never the other way round;
 * standin_mu (runtime.c) is a leaf.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_kernel/launch.h"
#include "internal.h"

typedef enum op_kind { OP_COPY, OP_KERNEL, OP_RECORD, OP_WAIT } op_kind_t;

typedef struct op {
    struct op *next;
    op_kind_t kind;
    struct CUevent_st *event; /* RECORD, WAIT */
    uint64_t gen;             /* RECORD: record number; WAIT: number waited for */
    size_t n;                 /* COPY, KERNEL: regions */
    kvbm__copy_desc_t desc[]; /* COPY, KERNEL */
} op_t;

struct CUstream_st {
    int device;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work queued, hold released, stop, or an op done */
    op_t *head, *tail; /* mu */
    uint64_t enqueued; /* mu */
    uint64_t done;     /* mu */
    bool held;         /* mu */
    bool stop;         /* mu */
    pthread_t thread;
};

struct CUevent_st {
    unsigned flags;
    uint64_t recorded;  /* events_mu */
    uint64_t completed; /* events_mu */
    int device;
    /* events_mu: the owner plus every queued record or wait naming it. As in
     * CUDA, destroying an event whose records and waits are still queued
     * only drops the owner's reference: a wait captured the record it waits
     * for when it was enqueued, so it is unaffected. */
    unsigned refs;
};

/* Drops one reference; called with events_mu held. */
static void event_unref_locked(struct CUevent_st *e)
{
    if (--e->refs == 0)
        free(e);
}

static pthread_mutex_t events_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t events_cv = PTHREAD_COND_INITIALIZER; /* any event completed */
static _Thread_local bool forbid_blocking;

void standin_forbid_blocking(bool forbid)
{
    forbid_blocking = forbid;
}

/* Counts a wait that has to block; false when the thread forbids it. */
static bool may_block(bool spin)
{
    standin_lock();
    if (forbid_blocking)
        standin.counters.forbidden_waits++;
    else {
        standin.counters.blocking_waits++;
        standin.counters.spin_waits += spin;
    }
    standin_unlock();
    return !forbid_blocking;
}

/* ------------------------------------------------------------- execution */

/* Faults the device instead of running, when a test armed it. */
static bool work_faults(int device)
{
    standin_lock();
    cudaError_t err = standin.fail_next_work;
    standin.fail_next_work = cudaSuccess;
    if (err != cudaSuccess)
        standin.sticky[device] = err;
    bool dead = standin.sticky[device] != cudaSuccess;
    standin_unlock();
    return dead;
}

static void run_copy(struct CUstream_st *s, op_t *op)
{
    if (work_faults(s->device))
        return;
    for (size_t i = 0; i < op->n; i++)
        memcpy(op->desc[i].dst, op->desc[i].src, op->desc[i].bytes);
}

/* The kernel: the device faults on the first byte it cannot reach, as a GPU
 * would (nothing is copied here then); otherwise the kernel's own per-region
 * code runs over a small grid, so the grid-stride loop wraps constantly. */
static void run_kernel(struct CUstream_st *s, op_t *op)
{
    if (work_faults(s->device))
        return;
    for (size_t i = 0; i < op->n; i++) {
        if (!standin_device_reaches(s->device, op->desc[i].src, op->desc[i].bytes) ||
            !standin_device_reaches(s->device, op->desc[i].dst, op->desc[i].bytes)) {
            standin_lock();
            standin.sticky[s->device] = cudaErrorIllegalAddress;
            standin.counters.illegal_accesses++;
            standin_unlock();
            return;
        }
    }
    enum { GRID = 7, THREADS = 32 };
    for (size_t block = 0; block < GRID; block++)
        for (size_t t = 0; t < THREADS; t++)
            kvbm__copy_regions_part(op->desc, op->n, block, GRID, t, THREADS);
}

static void run_op(struct CUstream_st *s, op_t *op)
{
    switch (op->kind) {
    case OP_COPY:
        run_copy(s, op);
        break;
    case OP_KERNEL:
        run_kernel(s, op);
        break;
    case OP_RECORD:
        pthread_mutex_lock(&events_mu);
        if (op->gen > op->event->completed)
            op->event->completed = op->gen;
        pthread_cond_broadcast(&events_cv);
        event_unref_locked(op->event);
        pthread_mutex_unlock(&events_mu);
        break;
    case OP_WAIT:
        pthread_mutex_lock(&events_mu);
        while (op->event->completed < op->gen)
            pthread_cond_wait(&events_cv, &events_mu);
        event_unref_locked(op->event);
        pthread_mutex_unlock(&events_mu);
        break;
    }
}

static void *stream_main(void *arg)
{
    struct CUstream_st *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && (s->head == NULL || s->held))
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->head == NULL)
            break; /* stop, drained */
        op_t *op = s->head;
        s->head = op->next;
        if (s->head == NULL)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        run_op(s, op);
        free(op);
        pthread_mutex_lock(&s->mu);
        s->done++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int stream_start(struct CUstream_st *s, int device)
{
    memset(s, 0, sizeof(*s));
    s->device = device;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    return pthread_create(&s->thread, NULL, stream_main, s);
}

/* The legacy default stream: one worker for the process, never stopped. */
static struct CUstream_st legacy;
static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;

static void legacy_start(void)
{
    if (stream_start(&legacy, 0) == 0)
        pthread_detach(legacy.thread);
}

static bool is_legacy(cudaStream_t s)
{
    return s == NULL || s == cudaStreamLegacy;
}

static struct CUstream_st *stream_of(cudaStream_t s)
{
    if (is_legacy(s)) {
        pthread_once(&legacy_once, legacy_start);
        return &legacy;
    }
    return s;
}

static void push(struct CUstream_st *s, op_t *op)
{
    pthread_mutex_lock(&s->mu);
    op->next = NULL;
    if (s->tail != NULL)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->enqueued++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static op_t *op_new(op_kind_t kind, size_t n)
{
    op_t *op = calloc(1, sizeof(*op) + n * sizeof(kvbm__copy_desc_t));
    if (op != NULL) {
        op->kind = kind;
        op->n = n;
    }
    return op;
}

/* ---------------------------------------------------------------- streams */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    (void)flags;
    int device;
    cudaError_t err = standin_enter("cudaStreamCreateWithFlags", &device);
    if (err != cudaSuccess)
        return err;
    struct CUstream_st *s = malloc(sizeof(*s));
    if (s == NULL || stream_start(s, device) != 0) {
        free(s);
        return standin_fail(cudaErrorMemoryAllocation);
    }
    *stream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    cudaError_t err = standin_enter_release("cudaStreamDestroy");
    if (err != cudaSuccess)
        return err;
    if (is_legacy(stream))
        return standin_fail(cudaErrorInvalidResourceHandle);
    pthread_mutex_lock(&stream->mu);
    stream->stop = true;
    stream->held = false;
    pthread_cond_broadcast(&stream->cv);
    pthread_mutex_unlock(&stream->mu);
    pthread_join(stream->thread, NULL);
    pthread_cond_destroy(&stream->cv);
    pthread_mutex_destroy(&stream->mu);
    free(stream);
    return cudaSuccess;
}

void standin_stream_hold(cudaStream_t stream, bool hold)
{
    struct CUstream_st *s = stream_of(stream);
    pthread_mutex_lock(&s->mu);
    s->held = hold;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    cudaError_t err = standin_enter("cudaStreamQuery", NULL);
    if (err != cudaSuccess)
        return err;
    struct CUstream_st *s = stream_of(stream);
    pthread_mutex_lock(&s->mu);
    bool idle = s->done == s->enqueued;
    pthread_mutex_unlock(&s->mu);
    return idle ? cudaSuccess : cudaErrorNotReady; /* NotReady is not recorded */
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    int device;
    cudaError_t err = standin_enter("cudaStreamSynchronize", &device);
    if (err != cudaSuccess)
        return err;
    struct CUstream_st *s = stream_of(stream);
    pthread_mutex_lock(&s->mu);
    uint64_t target = s->enqueued;
    bool must_wait = s->done < target;
    pthread_mutex_unlock(&s->mu);
    if (must_wait && !may_block(true))
        return standin_fail(cudaErrorNotPermitted);
    pthread_mutex_lock(&s->mu);
    while (s->done < target)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    err = standin_sticky(s->device);
    return err == cudaSuccess ? cudaSuccess : standin_fail(err);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    (void)flags;
    cudaError_t err = standin_enter("cudaStreamWaitEvent", NULL);
    if (err != cudaSuccess)
        return err;
    op_t *op = op_new(OP_WAIT, 0);
    if (op == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    pthread_mutex_lock(&events_mu);
    op->event = event;
    op->gen = event->recorded; /* never recorded: 0, nothing to wait for */
    event->refs++;
    pthread_mutex_unlock(&events_mu);
    push(stream_of(stream), op);
    return cudaSuccess;
}

/* ----------------------------------------------------------------- events */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    int device;
    cudaError_t err = standin_enter("cudaEventCreateWithFlags", &device);
    if (err != cudaSuccess)
        return err;
    struct CUevent_st *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    e->flags = flags;
    e->device = device;
    e->refs = 1;
    *event = e;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    cudaError_t err = standin_enter_release("cudaEventDestroy");
    if (err != cudaSuccess)
        return err;
    pthread_mutex_lock(&events_mu);
    event_unref_locked(event);
    pthread_mutex_unlock(&events_mu);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    cudaError_t err = standin_enter("cudaEventRecord", NULL);
    if (err != cudaSuccess)
        return err;
    op_t *op = op_new(OP_RECORD, 0);
    if (op == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    struct CUstream_st *s = stream_of(stream);
    /* The record number is taken in queue order: under the stream's lock. */
    pthread_mutex_lock(&s->mu);
    pthread_mutex_lock(&events_mu);
    op->event = event;
    op->gen = ++event->recorded;
    event->refs++;
    pthread_mutex_unlock(&events_mu);
    op->next = NULL;
    if (s->tail != NULL)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->enqueued++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    cudaError_t err = standin_enter("cudaEventQuery", NULL);
    if (err != cudaSuccess)
        return err;
    pthread_mutex_lock(&events_mu);
    bool done = event->completed >= event->recorded;
    pthread_mutex_unlock(&events_mu);
    if (!done)
        return cudaErrorNotReady; /* not an error: the last-error slot is untouched */
    err = standin_sticky(event->device);
    return err == cudaSuccess ? cudaSuccess : standin_fail(err);
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    cudaError_t err = standin_enter("cudaEventSynchronize", NULL);
    if (err != cudaSuccess)
        return err;
    pthread_mutex_lock(&events_mu);
    uint64_t target = event->recorded;
    bool must_wait = event->completed < target;
    pthread_mutex_unlock(&events_mu);
    if (must_wait && !may_block((event->flags & cudaEventBlockingSync) == 0))
        return standin_fail(cudaErrorNotPermitted);
    pthread_mutex_lock(&events_mu);
    while (event->completed < target)
        pthread_cond_wait(&events_cv, &events_mu);
    pthread_mutex_unlock(&events_mu);
    err = standin_sticky(event->device);
    return err == cudaSuccess ? cudaSuccess : standin_fail(err);
}

/* ----------------------------------------------------------------- copies */

static void count_crossings(const kvbm__copy_desc_t *desc, size_t n)
{
    uint64_t crossed = 0;
    for (size_t i = 0; i < n; i++)
        crossed += standin_crosses_registrations(desc[i].src, desc[i].bytes) ||
                   standin_crosses_registrations(desc[i].dst, desc[i].bytes);
    standin_lock();
    standin.counters.crossed_registrations += crossed;
    standin_unlock();
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    (void)kind;
    cudaError_t err = standin_enter("cudaMemcpyAsync", NULL);
    if (err != cudaSuccess)
        return err;
    op_t *op = op_new(OP_COPY, 1);
    if (op == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    op->desc[0] = (kvbm__copy_desc_t){.src = src, .dst = dst, .bytes = bytes};
    count_crossings(op->desc, 1);
    standin_lock();
    standin.counters.memcpy_calls++;
    standin_unlock();
    push(stream_of(stream), op);
    return cudaSuccess;
}

cudaError_t cudaMemcpyBatchAsync(void *const *dsts, const void *const *srcs, const size_t *sizes,
                                 size_t count, struct cudaMemcpyAttributes *attrs,
                                 size_t *attrs_idxs, size_t num_attrs, cudaStream_t stream)
{
    cudaError_t err = standin_enter("cudaMemcpyBatchAsync", NULL);
    if (err != cudaSuccess)
        return err;
    standin_lock();
    standin.counters.batch_calls++;
    standin.counters.batch_on_legacy += is_legacy(stream);
    standin_unlock();
    /* What the header documents as refused. */
    if (is_legacy(stream) || count == 0 || num_attrs == 0 || num_attrs > count ||
        attrs_idxs[0] != 0 || attrs[0].srcAccessOrder == cudaMemcpySrcAccessOrderInvalid)
        return standin_fail(cudaErrorInvalidValue);
    for (size_t i = 0; i < count; i++) {
        if (sizes[i] == 0)
            return standin_fail(cudaErrorInvalidValue);
    }
    op_t *op = op_new(OP_COPY, count);
    if (op == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    for (size_t i = 0; i < count; i++)
        op->desc[i] = (kvbm__copy_desc_t){.src = srcs[i], .dst = dsts[i], .bytes = sizes[i]};
    count_crossings(op->desc, count);
    push(stream_of(stream), op);
    return cudaSuccess;
}

cudaError_t kvbm__copy_kernel_launch(const kvbm__copy_launch_t *launch, cudaStream_t stream)
{
    cudaError_t err = standin_enter("kvbm__copy_kernel_launch", NULL);
    if (err != cudaSuccess)
        return err;
    if (launch->n == 0 || launch->n > KVBM__COPY_LAUNCH_MAX)
        return standin_fail(cudaErrorInvalidValue);
    op_t *op = op_new(OP_KERNEL, launch->n);
    if (op == NULL)
        return standin_fail(cudaErrorMemoryAllocation);
    memcpy(op->desc, launch->desc, launch->n * sizeof(launch->desc[0]));
    standin_lock();
    standin.counters.kernel_launches++;
    standin_unlock();
    push(stream_of(stream), op);
    return cudaSuccess;
}
