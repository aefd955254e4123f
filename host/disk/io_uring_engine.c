/*
 * The io_uring engine: one ring per store, driven by one thread, the
 * reaper. submit() never waits and never starts a transfer itself: it
 * queues the requests in a FIFO and, unless one is on its way already,
 * sends the reaper a kick (a NOP completion) when the ring is at most half
 * full (otherwise its next completion does the same). The reaper blocks in
 * io_uring_wait_cqe; whenever it takes completions (or a kick) out of the
 * ring it first moves requests from the FIFO into the ring, up to
 * queue_depth, and submits them (one io_uring_enter), and only then runs the
 * completion callbacks, which may be slow (a read's XXH3 verification),
 * taking and refilling again between callbacks. So the device keeps
 * queue_depth requests while the callbacks run.
 *
 * Why only the reaper submits transfers: the kernel finishes a read or write
 * by running work in the thread that submitted it. A thread asleep on a
 * condition variable (a caller waiting for its batch) must be woken for
 * that before the reaper can see the completion, and on a loaded machine
 * each such wake-up left the disk short of requests; the reaper, waiting in
 * the ring itself, runs that work at once.
 *
 * Entries: at most queue_depth transfers, one kick and the stop NOP are in
 * the ring at once, so it has queue_depth + 2 entries and the completion
 * queue (twice that) never overflows.
 *
 * Locking: `lock` guards the FIFO, `in_ring`, `queued` and the submission
 * queue (the submitter and the reaper both fill it). The reaper takes it
 * after taking completions and before touching their requests, which also
 * orders the submitter's writes to a request before the reaper's use of it
 * (the kernel's ring does that for real, but sanitizers cannot see it).
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/check.h"
#include "io.h"

#define REAP_BATCH 64

typedef struct uring_engine {
    struct io_uring ring;
    kvbm__disk_io_config_t config;
    pthread_t reaper;
    pthread_mutex_t lock;
    pthread_cond_t idle;    /* signalled when nothing is queued or in the ring */
    kvbm__disk_req_t *head; /* FIFO of requests waiting for room, under lock */
    kvbm__disk_req_t *tail; /* under lock */
    uint64_t queued;        /* requests in the FIFO, under lock */
    uint64_t in_ring;       /* requests in the ring, not yet taken out, under lock */
    bool kick_pending;      /* a kick is in the ring, not yet taken out, under lock */
} uring_engine_t;

/* The user data of a kick; the stop NOP's is NULL. */
static char kick_marker;

/* A list of requests the reaper took out of the ring and has yet to
 * complete, linked through their `link`; the reaper's own. */
typedef struct done_list {
    kvbm__disk_req_t *head;
    kvbm__disk_req_t *tail;
} done_list_t;

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

/* Moves requests from the FIFO into the ring while it has room, and submits
 * them with one system call; by the reaper, with the lock held. An entry is
 * free for each (see the top of the file). */
static void fill_ring(uring_engine_t *engine)
{
    bool prepared = false;
    while (engine->head != NULL && engine->in_ring < engine->config.queue_depth) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&engine->ring);
        if (sqe == NULL)
            break; /* not reached: see above */
        kvbm__disk_req_t *req = engine->head;
        engine->head = req->link;
        if (engine->head == NULL)
            engine->tail = NULL;
        engine->queued--;
        prep(engine, sqe, req);
        engine->in_ring++;
        prepared = true;
    }
    if (prepared)
        flush_prepared(engine);
}

static void uring_submit(void *state, kvbm__disk_req_t *const *reqs, size_t n)
{
    uring_engine_t *engine = state;
    kvbm__mutex_lock(&engine->lock);
    for (size_t i = 0; i < n; i++) {
        reqs[i]->link = NULL;
        if (engine->tail != NULL)
            engine->tail->link = reqs[i];
        else
            engine->head = reqs[i];
        engine->tail = reqs[i];
        engine->queued++;
    }
    /* A kick on its way, or requests in the ring (each completion refills
     * it), already guarantee the reaper a fill after these were queued; a
     * ring more than half full is left to its completions, sparing the
     * caller a system call and the reaper a wake-up per batch. */
    if (n > 0 && !engine->kick_pending && engine->in_ring <= engine->config.queue_depth / 2) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&engine->ring);
        if (sqe != NULL) {
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data(sqe, &kick_marker);
            engine->kick_pending = true;
            flush_prepared(engine);
        }
    }
    kvbm__mutex_unlock(&engine->lock);
}

/* Takes every completion the ring holds (without waiting), refills the ring
 * from the FIFO, and appends the completed requests, their results set, to
 * @p done. False once the stop NOP was taken. */
static bool take_completions(uring_engine_t *engine, done_list_t *done)
{
    struct io_uring_cqe *cqes[REAP_BATCH];
    kvbm__disk_req_t *reqs[REAP_BATCH];
    int32_t results[REAP_BATCH];
    bool stop = false;
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(&engine->ring, cqes, REAP_BATCH)) > 0) {
        unsigned n_reqs = 0;
        bool kicked = false;
        for (unsigned i = 0; i < n; i++) {
            void *data = io_uring_cqe_get_data(cqes[i]);
            stop = stop || data == NULL;
            kicked = kicked || data == &kick_marker;
            if (data == NULL || data == &kick_marker)
                continue;
            kvbm__disk_req_t *req = data;
            results[n_reqs] = cqes[i]->res;
            reqs[n_reqs++] = req;
        }
        io_uring_cq_advance(&engine->ring, n);
        kvbm__mutex_lock(&engine->lock);
        engine->in_ring -= n_reqs;
        engine->kick_pending = engine->kick_pending && !kicked;
        fill_ring(engine);
        if (engine->in_ring == 0 && engine->queued == 0)
            kvbm__cond_broadcast(&engine->idle);
        kvbm__mutex_unlock(&engine->lock);
        for (unsigned i = 0; i < n_reqs; i++) {
            reqs[i]->result = results[i];
            reqs[i]->link = NULL;
            if (done->tail != NULL)
                done->tail->link = reqs[i];
            else
                done->head = reqs[i];
            done->tail = reqs[i];
        }
    }
    return !stop;
}

/* Completes the requests taken, oldest first, taking (and refilling for)
 * any that complete meanwhile before each callback. False once the stop
 * NOP was taken. */
static bool complete_taken(uring_engine_t *engine, done_list_t *done)
{
    bool running = true;
    while (done->head != NULL) {
        if (io_uring_cq_ready(&engine->ring) > 0)
            running = take_completions(engine, done) && running;
        kvbm__disk_req_t *req = done->head;
        done->head = req->link;
        if (done->head == NULL)
            done->tail = NULL;
        engine->config.complete(engine->config.complete_ctx, req);
    }
    return running;
}

static void *reaper_main(void *arg)
{
    uring_engine_t *engine = arg;
    done_list_t done = {NULL, NULL};
    for (;;) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(&engine->ring, &cqe);
        if (rc == -EINTR || rc == -EAGAIN)
            continue;
        if (rc < 0)
            break; /* the ring itself failed; close() still waits for the requests */
        bool running = take_completions(engine, &done);
        if (!complete_taken(engine, &done) || !running)
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
    /* Spare entries for a kick and the stop NOP. A refusal (ENOSYS, EPERM:
     * no io_uring here) is not logged: the caller falls back and says so. */
    int rc = io_uring_queue_init(config->queue_depth + 2, &engine->ring, 0);
    kvbm_status_t status = rc == -ENOMEM ? KVBM_ERR_NO_MEMORY : KVBM_ERR_UNSUPPORTED;
    if (rc < 0)
        goto err_free_engine;
    status = KVBM_OK;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&engine->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_exit_ring;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&engine->idle, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_lock;
    KVBM_PTHREAD_CHECK(pthread_create(&engine->reaper, NULL, reaper_main, engine), status);
    if (status != KVBM_OK)
        goto err_destroy_cond;
    *state_out = engine;
    return KVBM_OK;

err_destroy_cond:
    kvbm__cond_destroy(&engine->idle);
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
    while (engine->in_ring > 0 || engine->queued > 0)
        kvbm__cond_wait(&engine->idle, &engine->lock);
    /* The reaper completes what it took before it takes the NOP and stops. */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&engine->ring);
    if (sqe != NULL) {
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, NULL);
        flush_prepared(engine);
    }
    kvbm__mutex_unlock(&engine->lock);
    kvbm__thread_join(engine->reaper);
    kvbm__cond_destroy(&engine->idle);
    kvbm__mutex_destroy(&engine->lock);
    io_uring_queue_exit(&engine->ring);
    kvbm__free(engine);
}

static uint64_t uring_in_flight(void *state)
{
    uring_engine_t *engine = state;
    kvbm__mutex_lock(&engine->lock);
    uint64_t n = engine->in_ring + engine->queued;
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
