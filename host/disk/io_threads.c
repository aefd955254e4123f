/*
 * The fallback engine: a pool of threads doing pread/pwrite, for kernels or
 * containers without io_uring. Requests wait in one FIFO; each thread takes
 * the oldest, transfers it with one system call and completes it, so up to
 * `threads` requests are in flight in the kernel at once. submit() never
 * waits: the FIFO holds whatever the threads have not yet taken.
 *
 * Locking: `lock` guards the queue, `in_flight` and `stopping`.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/check.h"
#include "io.h"

typedef struct threads_engine {
    kvbm__disk_io_config_t config;
    pthread_mutex_t lock;
    pthread_cond_t work;    /* signalled when a request is queued or on stop */
    kvbm__disk_req_t *head; /* FIFO, under lock */
    kvbm__disk_req_t *tail; /* under lock */
    uint64_t in_flight;     /* queued or running, under lock */
    bool stopping;          /* under lock */
    uint32_t started;       /* threads running; immutable after open */
    pthread_t threads[];
} threads_engine_t;

static int64_t transfer(int fd, kvbm__disk_req_t *req)
{
    struct iovec iov = {.iov_base = req->buf, .iov_len = req->bytes};
    ssize_t rc;
    do {
        if (req->op == KVBM__DISK_READ)
            rc = preadv2(fd, &iov, 1, (off_t)req->offset, 0);
        else
            rc = pwritev2(fd, &iov, 1, (off_t)req->offset, req->dsync ? RWF_DSYNC : 0);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -(int64_t)errno : (int64_t)rc;
}

static void *worker_main(void *arg)
{
    threads_engine_t *engine = arg;
    kvbm__mutex_lock(&engine->lock);
    for (;;) {
        while (engine->head == NULL && !engine->stopping)
            kvbm__cond_wait(&engine->work, &engine->lock);
        if (engine->head == NULL)
            break; /* stopping, and nothing left */
        kvbm__disk_req_t *req = engine->head;
        engine->head = req->link;
        if (engine->head == NULL)
            engine->tail = NULL;
        kvbm__mutex_unlock(&engine->lock);
        req->result = transfer(engine->config.fd, req);
        /* Out of the count before it completes, so that a caller woken by
         * the completion sees the queue without it. */
        kvbm__mutex_lock(&engine->lock);
        engine->in_flight--;
        kvbm__mutex_unlock(&engine->lock);
        engine->config.complete(engine->config.complete_ctx, req);
        kvbm__mutex_lock(&engine->lock);
    }
    kvbm__mutex_unlock(&engine->lock);
    return NULL;
}

static void threads_submit(void *state, kvbm__disk_req_t *const *reqs, size_t n)
{
    threads_engine_t *engine = state;
    kvbm__mutex_lock(&engine->lock);
    for (size_t i = 0; i < n; i++) {
        reqs[i]->link = NULL;
        if (engine->tail != NULL)
            engine->tail->link = reqs[i];
        else
            engine->head = reqs[i];
        engine->tail = reqs[i];
        engine->in_flight++;
        kvbm__cond_signal(&engine->work);
    }
    kvbm__mutex_unlock(&engine->lock);
}

static void stop_workers(threads_engine_t *engine)
{
    kvbm__mutex_lock(&engine->lock);
    engine->stopping = true;
    kvbm__cond_broadcast(&engine->work);
    kvbm__mutex_unlock(&engine->lock);
    for (uint32_t i = 0; i < engine->started; i++)
        kvbm__thread_join(engine->threads[i]);
}

static void threads_close(void *state)
{
    threads_engine_t *engine = state;
    if (engine == NULL)
        return;
    stop_workers(engine); /* workers drain the queue before they stop */
    kvbm__cond_destroy(&engine->work);
    kvbm__mutex_destroy(&engine->lock);
    kvbm__free(engine);
}

static kvbm_status_t threads_open(const kvbm__disk_io_config_t *config, void **state_out)
{
    uint32_t n = config->threads > 0 ? config->threads : 1;
    threads_engine_t *engine = kvbm__calloc(1, sizeof(*engine) + sizeof(pthread_t) * n);
    if (engine == NULL)
        return KVBM_ERR_NO_MEMORY;
    engine->config = *config;
    kvbm_status_t status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&engine->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_free_engine;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&engine->work, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_lock;
    for (; engine->started < n && status == KVBM_OK; engine->started++)
        KVBM_PTHREAD_CHECK(
            pthread_create(&engine->threads[engine->started], NULL, worker_main, engine), status);
    if (status != KVBM_OK) {
        engine->started--; /* the failed one did not start */
        goto err_stop_workers;
    }
    *state_out = engine;
    return KVBM_OK;

err_stop_workers:
    stop_workers(engine);
    kvbm__cond_destroy(&engine->work);
err_destroy_lock:
    kvbm__mutex_destroy(&engine->lock);
err_free_engine:
    kvbm__free(engine);
    return status;
}

static uint64_t threads_in_flight(void *state)
{
    threads_engine_t *engine = state;
    kvbm__mutex_lock(&engine->lock);
    uint64_t n = engine->in_flight;
    kvbm__mutex_unlock(&engine->lock);
    return n;
}

static const kvbm__disk_io_ops_t threads_ops = {
    .version = KVBM__DISK_IO_OPS_VERSION,
    .name = "threads",
    .open = threads_open,
    .close = threads_close,
    .submit = threads_submit,
    .in_flight = threads_in_flight,
};

const kvbm__disk_io_ops_t *kvbm__disk_io_threads_ops(void)
{
    return &threads_ops;
}
