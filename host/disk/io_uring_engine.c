/*
 * The io_uring engine: one ring per store, requests prepared and submitted
 * in batches under a submit lock, completions reaped by one thread that
 * blocks in io_uring_wait_cqe. At most queue_depth requests are in flight,
 * so the completion queue (twice the ring's entries) never overflows.
 *
 * Locking: `lock` guards the submission queue, `in_flight` and `closing`.
 * The reaper takes it after reaping and before calling complete(), which
 * also orders the submitter's writes to a buffer before the reaper's reads
 * of it (the kernel's ring does that for real, but sanitizers cannot see it).
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "core/alloc.h"
#include "core/check.h"
#include "io.h"

#define REAP_BATCH 64

typedef struct uring_engine {
    struct io_uring ring;
    kvbm__disk_io_config_t config;
    pthread_t reaper;
    pthread_mutex_t lock;
    pthread_cond_t room; /* signalled when in_flight drops */
    uint64_t in_flight;  /* under lock */
} uring_engine_t;

/* Submits every prepared entry, with the lock held. The kernel refuses a
 * submission only for lack of resources (EAGAIN, EBUSY: retried) or for a
 * ring that is not valid, which cannot happen to an open engine. */
static void flush_prepared(uring_engine_t *engine)
{
    while (io_uring_sq_ready(&engine->ring) > 0) {
        int rc = io_uring_submit(&engine->ring);
        if (rc == -EAGAIN || rc == -EBUSY || rc == -EINTR)
            sched_yield();
        else if (rc < 0)
            return;
    }
}

static void prep(uring_engine_t *engine, struct io_uring_sqe *sqe, kvbm__disk_req_t *req)
{
    if (req->op == KVBM__DISK_READ) {
        io_uring_prep_read(sqe, engine->config.fd, req->buf, (unsigned)req->bytes, req->offset);
    } else {
        io_uring_prep_write(sqe, engine->config.fd, req->buf, (unsigned)req->bytes, req->offset);
        if (req->dsync)
            sqe->rw_flags = RWF_DSYNC;
    }
    io_uring_sqe_set_data(sqe, req);
}

/* Waits, with the lock held, until one more request may be in flight.
 * Requests prepared but not yet submitted are submitted first, or the wait
 * could be for them. */
static void wait_for_room(uring_engine_t *engine)
{
    while (engine->in_flight >= engine->config.queue_depth) {
        flush_prepared(engine);
        kvbm__cond_wait(&engine->room, &engine->lock);
    }
}

static void uring_submit(void *state, kvbm__disk_req_t *const *reqs, size_t n)
{
    uring_engine_t *engine = state;
    kvbm__mutex_lock(&engine->lock);
    for (size_t i = 0; i < n; i++) {
        wait_for_room(engine);
        /* The ring has queue_depth + 1 entries and at most queue_depth are
         * in flight, so after a flush there is always a free entry. */
        struct io_uring_sqe *sqe = io_uring_get_sqe(&engine->ring);
        if (sqe == NULL) {
            flush_prepared(engine);
            sqe = io_uring_get_sqe(&engine->ring);
        }
        prep(engine, sqe, reqs[i]);
        engine->in_flight++;
    }
    flush_prepared(engine);
    kvbm__mutex_unlock(&engine->lock);
}

/* Completes what one wait returned; false once the stop NOP was seen. The
 * lock is taken before the requests are touched: their submitter filled them
 * and released it after submitting, so this orders its writes before ours. */
static bool reap_some(uring_engine_t *engine)
{
    struct io_uring_cqe *cqes[REAP_BATCH];
    unsigned n = io_uring_peek_batch_cqe(&engine->ring, cqes, REAP_BATCH);
    kvbm__disk_req_t *done[REAP_BATCH];
    int32_t results[REAP_BATCH];
    bool stop = false;
    unsigned n_done = 0;
    for (unsigned i = 0; i < n; i++) {
        kvbm__disk_req_t *req = io_uring_cqe_get_data(cqes[i]);
        if (req == NULL) {
            stop = true;
            continue;
        }
        results[n_done] = cqes[i]->res;
        done[n_done++] = req;
    }
    io_uring_cq_advance(&engine->ring, n);
    kvbm__mutex_lock(&engine->lock);
    engine->in_flight -= n_done;
    kvbm__cond_broadcast(&engine->room);
    kvbm__mutex_unlock(&engine->lock);
    for (unsigned i = 0; i < n_done; i++) {
        done[i]->result = results[i];
        engine->config.complete(engine->config.complete_ctx, done[i]);
    }
    return !stop;
}

static void *reaper_main(void *arg)
{
    uring_engine_t *engine = arg;
    for (;;) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(&engine->ring, &cqe);
        if (rc == -EINTR || rc == -EAGAIN)
            continue;
        if (rc < 0)
            break; /* the ring itself failed; close() still waits for in_flight */
        if (!reap_some(engine))
            break;
    }
    return NULL;
}

static kvbm_status_t uring_open(const kvbm__disk_io_config_t *config, void **state_out)
{
    uring_engine_t *engine = kvbm__calloc(1, sizeof(*engine));
    if (engine == NULL)
        return KVBM_ERR_NO_MEMORY;
    engine->config = *config;
    /* One spare entry for the stop NOP. A refusal (ENOSYS, EPERM: no
     * io_uring here) is not logged: the caller falls back and says so. */
    int rc = io_uring_queue_init(config->queue_depth + 1, &engine->ring, 0);
    kvbm_status_t status = rc == -ENOMEM ? KVBM_ERR_NO_MEMORY : KVBM_ERR_UNSUPPORTED;
    if (rc < 0)
        goto err_free_engine;
    status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&engine->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_exit_ring;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&engine->room, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_lock;
    KVBM_PTHREAD_CHECK(pthread_create(&engine->reaper, NULL, reaper_main, engine), status);
    if (status != KVBM_OK)
        goto err_destroy_cond;
    *state_out = engine;
    return KVBM_OK;

err_destroy_cond:
    kvbm__cond_destroy(&engine->room);
err_destroy_lock:
    kvbm__mutex_destroy(&engine->lock);
err_exit_ring:
    io_uring_queue_exit(&engine->ring);
err_free_engine:
    kvbm__free(engine);
    return status;
}

static void uring_close(void *state)
{
    uring_engine_t *engine = state;
    if (engine == NULL)
        return;
    kvbm__mutex_lock(&engine->lock);
    while (engine->in_flight > 0)
        kvbm__cond_wait(&engine->room, &engine->lock);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&engine->ring);
    if (sqe != NULL) {
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, NULL);
        flush_prepared(engine);
    }
    kvbm__mutex_unlock(&engine->lock);
    kvbm__thread_join(engine->reaper);
    kvbm__cond_destroy(&engine->room);
    kvbm__mutex_destroy(&engine->lock);
    io_uring_queue_exit(&engine->ring);
    kvbm__free(engine);
}

static uint64_t uring_in_flight(void *state)
{
    uring_engine_t *engine = state;
    kvbm__mutex_lock(&engine->lock);
    uint64_t n = engine->in_flight;
    kvbm__mutex_unlock(&engine->lock);
    return n;
}

static const kvbm__disk_io_ops_t uring_ops = {
    .version = KVBM__DISK_IO_OPS_VERSION,
    .name = "io_uring",
    .open = uring_open,
    .close = uring_close,
    .submit = uring_submit,
    .in_flight = uring_in_flight,
};

const kvbm__disk_io_ops_t *kvbm__disk_io_uring_ops(void)
{
    return &uring_ops;
}
