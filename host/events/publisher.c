/*
 * The KV event publisher: create and destroy, and the producer side
 * (publish, flush). The thread that sends lives in publisher_thread.c.
 *
 * Locking: publisher->lock (publisher_internal.h). A producer checks its
 * records, then copies them into a queue slot (compact: the hashes in one
 * array) with the lock held; the thread encodes them, as vLLM's publisher
 * thread does, so the caller pays for a copy and not for msgpack.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "encode.h"
#include "endpoint.h"
#include "record_copy.h"
#include "publisher_internal.h"

/* Longest endpoint ZMQ_LAST_ENDPOINT reports back. */
#define ENDPOINT_MAX 1024

kvbm_status_t kvbm__zmq_error(const char *what, const char *detail)
{
    int err = zmq_errno();
    kvbm__log(KVBM_LOG_ERROR, "events: %s%s%s failed: %s", what, detail ? " " : "",
              detail ? detail : "", zmq_strerror(err));
    /* The reason goes to the caller's kvbm_last_error() whatever the status
     * (a busy port is KVBM_ERR_IO, and its caller must learn which). */
    bool bad_endpoint = err == EINVAL || err == EPROTONOSUPPORT || err == ENOCOMPATPROTO;
    if (bad_endpoint)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "events: %s%s%s failed: %s", what,
                          detail ? " " : "", detail ? detail : "", zmq_strerror(err));
    return kvbm__fail(err == ENOMEM ? KVBM_ERR_NO_MEMORY : KVBM_ERR_IO, "events: %s%s%s failed: %s",
                      what, detail ? " " : "", detail ? detail : "", zmq_strerror(err));
}

/* The sizeof each published version of kvbm_publisher_config_t had (core/config.h). */
static const size_t publisher_config_sizes[] = {sizeof(kvbm_publisher_config_t)};

/* Imports the caller's config (any published version), then checks it. */
static kvbm_status_t import_config(const kvbm_publisher_config_t *caller,
                                   kvbm_publisher_config_t *config)
{
    KVBM_REQUIRE_ARG(caller != NULL);
    const kvbm_publisher_config_t defaults = KVBM_PUBLISHER_CONFIG_INIT;
    kvbm_status_t status = KVBM__CONFIG_IMPORT(caller, publisher_config_sizes, &defaults, config);
    if (status != KVBM_OK)
        return status;
    if (config->endpoint == NULL || config->queue_depth == 0 || config->hwm < 0 ||
        config->linger_ms < 0 || config->data_parallel_rank < KVBM_PUBLISHER_NO_RANK ||
        config->max_delay_ms > INT_MAX)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "publisher config: needs an endpoint, queue_depth >= 1, hwm and "
                          "linger_ms >= 0, data_parallel_rank >= -1 (queue_depth %u, hwm %d, "
                          "linger_ms %d, rank %d)",
                          config->queue_depth, config->hwm, config->linger_ms,
                          (int)config->data_parallel_rank);
    return KVBM_OK;
}

/* Binds (replay sockets always) or connects, and reads back the endpoint. */
static kvbm_status_t attach_socket(void *socket, const char *endpoint, bool bind,
                                   char **attached_out)
{
    int rc = bind ? zmq_bind(socket, endpoint) : zmq_connect(socket, endpoint);
    if (rc != 0)
        return kvbm__zmq_error(bind ? "zmq_bind" : "zmq_connect", endpoint);
    char last[ENDPOINT_MAX];
    size_t len = sizeof(last);
    const char *attached = endpoint;
    if (bind && zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, last, &len) == 0 && len > 1)
        attached = last; /* the system's choice for a "*" port */
    char *copy = kvbm__strdup(attached);
    if (copy == NULL)
        return KVBM_ERR_NO_MEMORY;
    *attached_out = copy;
    return KVBM_OK;
}

static kvbm_status_t set_int_option(void *socket, int option, int value, const char *what)
{
    if (zmq_setsockopt(socket, option, &value, sizeof(value)) != 0)
        return kvbm__zmq_error("zmq_setsockopt", what);
    return KVBM_OK;
}

static kvbm_status_t open_pub(kvbm_publisher_t *p, const kvbm_publisher_config_t *config,
                              const char *endpoint)
{
    p->pub = zmq_socket(p->zmq_context, ZMQ_PUB);
    if (p->pub == NULL)
        return kvbm__zmq_error("zmq_socket", "PUB");
    kvbm_status_t status = set_int_option(p->pub, ZMQ_SNDHWM, config->hwm, "ZMQ_SNDHWM");
    if (status == KVBM_OK)
        status = set_int_option(p->pub, ZMQ_LINGER, config->linger_ms, "ZMQ_LINGER");
    if (status == KVBM_OK)
        status = attach_socket(p->pub, endpoint, kvbm__endpoint_binds(endpoint), &p->endpoint);
    return status;
}

static kvbm_status_t open_router(kvbm_publisher_t *p, const kvbm_publisher_config_t *config,
                                 const char *endpoint)
{
    p->router = zmq_socket(p->zmq_context, ZMQ_ROUTER);
    if (p->router == NULL)
        return kvbm__zmq_error("zmq_socket", "ROUTER");
    /* A ROUTER drops what exceeds a peer's high-water mark: leave room for
     * a whole replay (every buffered batch and the end marker), twice. */
    uint64_t room = 2 * ((uint64_t)config->buffer_steps + 1);
    int hwm = room > INT_MAX ? 0 : (int)room;
    kvbm_status_t status = set_int_option(p->router, ZMQ_SNDHWM, hwm, "ZMQ_SNDHWM");
    if (status == KVBM_OK)
        status = set_int_option(p->router, ZMQ_LINGER, config->linger_ms, "ZMQ_LINGER");
    if (status == KVBM_OK)
        status = attach_socket(p->router, endpoint, true, &p->replay_endpoint);
    return status;
}

/* Opens both sockets on their (rank-offset) endpoints. */
static kvbm_status_t open_sockets(kvbm_publisher_t *p, const kvbm_publisher_config_t *config)
{
    int32_t offset = config->offset_ports_by_rank ? config->data_parallel_rank : 0;
    char *endpoint = NULL, *replay = NULL;
    kvbm_status_t status = kvbm__endpoint_for_rank(config->endpoint, offset, &endpoint);
    if (status == KVBM_OK && config->replay_endpoint != NULL)
        status = kvbm__endpoint_for_rank(config->replay_endpoint, offset, &replay);
    if (status == KVBM_OK)
        status = open_pub(p, config, endpoint);
    if (status == KVBM_OK && replay != NULL)
        status = open_router(p, config, replay);
    kvbm__free(endpoint);
    kvbm__free(replay);
    return status;
}

static void close_sockets(kvbm_publisher_t *p)
{
    if (p->router != NULL)
        zmq_close(p->router);
    if (p->pub != NULL)
        zmq_close(p->pub);
    if (p->zmq_context != NULL)
        zmq_ctx_term(p->zmq_context); /* waits up to the linger for queued messages */
}

/* The queue, the space of its records and the replay history. */
static kvbm_status_t init_rings(kvbm_publisher_t *p, const kvbm_publisher_config_t *config)
{
    kvbm_status_t status = kvbm__batch_ring_init(&p->queue, config->queue_depth);
    if (status != KVBM_OK)
        return status;
    status = kvbm__chunk_ring_init(&p->space, KVBM__PUBLISHER_SPACE_BYTES);
    if (status != KVBM_OK)
        goto err_free_queue;
    status = kvbm__batch_ring_init(&p->history, config->buffer_steps);
    if (status != KVBM_OK)
        goto err_free_space;
    p->spares = kvbm__calloc(KVBM__PUBLISHER_ARRAY_SETS, sizeof(*p->spares));
    if (p->spares == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto err_free_history;
    }
    for (; p->n_spares < KVBM__PUBLISHER_ARRAY_SETS; p->n_spares++) {
        status = kvbm__event_batch_reserve(&p->spares[p->n_spares], KVBM__PUBLISHER_SET_RECORDS,
                                           KVBM__PUBLISHER_SET_HASHES);
        if (status != KVBM_OK)
            goto err_free_spares;
    }
    return KVBM_OK;

err_free_spares:
    for (uint32_t i = 0; i <= p->n_spares; i++) /* and the one half made */
        kvbm__event_batch_free(&p->spares[i]);
    kvbm__free(p->spares);
err_free_history:
    kvbm__batch_ring_fini(&p->history);
err_free_space:
    kvbm__chunk_ring_fini(&p->space);
err_free_queue:
    kvbm__batch_ring_fini(&p->queue);
    return status;
}

static void fini_rings(kvbm_publisher_t *p)
{
    for (uint32_t i = 0; i < p->n_spares; i++)
        kvbm__event_batch_free(&p->spares[i]);
    kvbm__free(p->spares);
    for (uint32_t i = 0; i < p->queue.capacity; i++) /* none: the thread sent them */
        kvbm__event_batch_free(&p->queue.batches[i].arrays);
    kvbm__batch_ring_fini(&p->history);
    kvbm__chunk_ring_fini(&p->space);
    kvbm__batch_ring_fini(&p->queue);
}

kvbm_status_t kvbm_publisher_create(const kvbm_publisher_config_t *caller_config,
                                    kvbm_publisher_t **publisher_out)
{
    KVBM_REQUIRE_ARG(publisher_out != NULL);
    kvbm_publisher_config_t imported;
    kvbm_status_t status = import_config(caller_config, &imported);
    if (status != KVBM_OK)
        return status;
    const kvbm_publisher_config_t *config = &imported;
    kvbm_publisher_t *p = kvbm__calloc(1, sizeof(*p));
    if (p == NULL)
        return KVBM_ERR_NO_MEMORY;
    p->wake_fd = -1;
    p->dp_rank = config->data_parallel_rank;
    p->max_delay_ms = (int)config->max_delay_ms;
    status = KVBM_ERR_NO_MEMORY;
    p->topic = kvbm__strdup(config->topic != NULL ? config->topic : "");
    if (p->topic == NULL)
        goto err_free;
    p->topic_len = strlen(p->topic);
    status = init_rings(p, config);
    if (status != KVBM_OK)
        goto err_free;
    p->zmq_context = zmq_ctx_new();
    if (p->zmq_context == NULL) {
        status = kvbm__zmq_error("zmq_ctx_new", NULL);
        goto err_free_rings;
    }
    status = open_sockets(p, config);
    if (status != KVBM_OK)
        goto err_close_sockets;
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wake_fd < 0) {
        status = KVBM_SYS_ERROR("eventfd");
        goto err_close_sockets;
    }
    /* Adaptive: a producer that finds the thread taking batches out spins
     * the few hundred nanoseconds that takes instead of sleeping in the
     * kernel (a futex round trip costs more than the wait itself). */
    pthread_mutexattr_t attr;
    KVBM_PTHREAD_CHECK(pthread_mutexattr_init(&attr), status);
    if (status != KVBM_OK)
        goto err_close_fd;
    KVBM_PTHREAD_CHECK(pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP), status);
    if (status == KVBM_OK)
        KVBM_PTHREAD_CHECK(pthread_mutex_init(&p->lock, &attr), status);
    pthread_mutexattr_destroy(&attr);
    if (status != KVBM_OK)
        goto err_close_fd;
    KVBM_PTHREAD_CHECK(pthread_cond_init(&p->progressed, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_mutex;
    KVBM_PTHREAD_CHECK(pthread_create(&p->thread, NULL, kvbm__publisher_thread, p), status);
    if (status != KVBM_OK)
        goto err_destroy_cond;
    *publisher_out = p;
    return KVBM_OK;

err_destroy_cond:
    kvbm__cond_destroy(&p->progressed);
err_destroy_mutex:
    kvbm__mutex_destroy(&p->lock);
err_close_fd:
    close(p->wake_fd);
err_close_sockets:
    close_sockets(p);
err_free_rings:
    fini_rings(p);
err_free:
    kvbm__free(p->endpoint);
    kvbm__free(p->replay_endpoint);
    kvbm__free(p->topic);
    kvbm__free(p);
    return status;
}

static void wake_thread(kvbm_publisher_t *p)
{
    uint64_t one = 1;
    /* A full counter (EAGAIN) still leaves the fd readable: the thread wakes. */
    ssize_t written = write(p->wake_fd, &one, sizeof(one));
    (void)written;
}

void kvbm_publisher_destroy(kvbm_publisher_t *publisher)
{
    if (publisher == NULL)
        return;
    kvbm_publisher_t *p = publisher;
    kvbm__mutex_lock(&p->lock);
    p->stopping = true;
    kvbm__mutex_unlock(&p->lock);
    wake_thread(p);
    kvbm__thread_join(p->thread); /* it sends what was queued first */
    close_sockets(p);
    close(p->wake_fd);
    kvbm__cond_destroy(&p->progressed);
    kvbm__mutex_destroy(&p->lock);
    kvbm__payload_free(&p->encoded);
    fini_rings(p);
    kvbm__free(p->endpoint);
    kvbm__free(p->replay_endpoint);
    kvbm__free(p->topic);
    kvbm__free(p);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wakes the thread only if it sleeps for good, or if half the queue (its
 * slots or its ring) is in use while it naps: a wake is a system call on
 * the caller's thread, and the woken thread often takes the caller's CPU,
 * so a busy producer leaves the thread to its naps (decision 110). With
 * the lock held; true: the caller wakes it. */
static bool wake_needed(kvbm_publisher_t *p)
{
    if (p->sleeping) {
        p->sleeping = false;
        return true;
    }
    if (!p->woken &&
        (p->space.used >= p->space.capacity / 2 || p->queue.count >= p->queue.capacity / 2)) {
        p->woken = true;
        return true;
    }
    return false;
}

/* What to publish: the caller's records, or a batcher's batch. */
typedef struct pending {
    const kvbm_event_record_t *records;
    kvbm__event_batch_t *batch; /* NULL: records */
    size_t count;
} pending_t;

/* Takes a batcher's arrays into @p slot whole, leaving the batcher a spare
 * set; false when none is spare, and the batch is to be copied. With the lock. */
static bool swap_arrays(kvbm_publisher_t *p, kvbm__batch_t *slot, kvbm__event_batch_t *batch)
{
    if (p->n_spares == 0)
        return false;
    slot->arrays = *batch;
    *batch = p->spares[--p->n_spares];
    slot->chunk = (kvbm__chunk_t){0};
    return true;
}

/* Copies the records (checked and measured: @p size) into the next queue
 * slot, for the thread to encode. With the lock. */
static kvbm_status_t enqueue(kvbm_publisher_t *p, uint64_t seq, double ts, const pending_t *what,
                             const kvbm__events_size_t *size)
{
    kvbm__batch_t *batch = kvbm__batch_ring_reserve(&p->queue);
    if (batch == NULL)
        return KVBM_ERR_BUSY;
    if (what->batch == NULL || !swap_arrays(p, batch, what->batch)) {
        kvbm__chunk_t chunk;
        if (!kvbm__chunk_get(&p->space, kvbm__record_copy_size(what->count, size), &chunk))
            return KVBM_ERR_NO_MEMORY;
        if (what->batch != NULL)
            kvbm__record_copy_batch(what->batch, size, chunk.at);
        else
            kvbm__record_copy(what->records, what->count, size, chunk.at);
        batch->chunk = chunk;
    }
    batch->n_records = what->count;
    batch->seq = seq;
    batch->ts = ts;
    batch->size = *size;
    kvbm__batch_ring_commit(&p->queue);
    return KVBM_OK;
}

/* Whether the batch holds an AllBlocksCleared (routers resynchronise on it). */
static bool clears_all(const pending_t *what)
{
    const kvbm_event_record_t *records = what->batch != NULL ? what->batch->records : what->records;
    for (size_t i = 0; i < what->count; i++)
        if (records[i].kind == KVBM_EVENT_CLEARED)
            return true;
    return false;
}

/* Queues checked records under the next sequence number, or drops them. */
static kvbm_status_t publish_checked(kvbm_publisher_t *p, const pending_t *what,
                                     const kvbm__events_size_t *size)
{
    double ts = now_seconds();
    kvbm__mutex_lock(&p->lock);
    /* (asked before enqueue, which may take a batcher's records away) */
    bool resyncs =
        atomic_load_explicit(&p->resync_needed, memory_order_relaxed) && clears_all(what);
    /* The number is taken even when the batch is dropped: the gap is how
     * subscribers learn of the loss. */
    uint64_t seq = p->next_seq++;
    kvbm_status_t status = enqueue(p, seq, ts, what, size);
    if (status != KVBM_OK) {
        p->metrics.batches_dropped++;
        p->metrics.events_dropped += size->n_events;
    }
    if (status != KVBM_OK)
        atomic_store_explicit(&p->resync_needed, true, memory_order_relaxed);
    else if (resyncs) {
        atomic_store_explicit(&p->resync_needed, false, memory_order_relaxed);
        p->metrics.resyncs++;
    }
    bool wake = status == KVBM_OK && wake_needed(p);
    kvbm__mutex_unlock(&p->lock);
    if (wake)
        wake_thread(p);
    return status;
}

kvbm_status_t kvbm_publisher_publish(kvbm_publisher_t *publisher,
                                     const kvbm_event_record_t *records, size_t count)
{
    KVBM_REQUIRE_ARG(publisher != NULL);
    kvbm__events_size_t size;
    kvbm_status_t status = kvbm__events_check(records, count, &size);
    if (status != KVBM_OK || size.n_events == 0)
        return status;
    const pending_t what = {.records = records, .count = count};
    return publish_checked(publisher, &what, &size);
}

/* A publisher batcher's flush: the batch is queued whole (its records are
 * valid events by construction). One too large to encode (2^32 records)
 * goes the way of kvbm_publisher_sink, which refuses it. */
static void take_batch(void *publisher, kvbm__event_batch_t *batch)
{
    kvbm__event_batch_settle(batch);
    kvbm__events_size_t size;
    if (kvbm__events_check_batch(batch, &size) != KVBM_OK) {
        kvbm_publisher_sink(publisher, kvbm__event_batch_view(batch), batch->n_records);
        return;
    }
    if (size.n_events == 0)
        return;
    const pending_t what = {.batch = batch, .count = batch->n_records};
    (void)publish_checked(publisher, &what, &size); /* a drop is counted */
}

kvbm_status_t kvbm_publisher_batcher_create(kvbm_publisher_t *publisher,
                                            kvbm_event_batcher_t **batcher_out)
{
    KVBM_REQUIRE_ARG(publisher != NULL);
    return kvbm__event_batcher_create_taking(kvbm_publisher_sink, take_batch, publisher,
                                             batcher_out);
}

void kvbm_publisher_sink(void *publisher, const kvbm_event_record_t *records, size_t count)
{
    /* Failures are counted in the metrics; a sink has no caller to tell. */
    (void)kvbm_publisher_publish(publisher, records, count);
}

kvbm_status_t kvbm_publisher_flush(kvbm_publisher_t *publisher, uint32_t timeout_ms)
{
    KVBM_REQUIRE_ARG(publisher != NULL);
    kvbm_publisher_t *p = publisher;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    kvbm_status_t status = KVBM_OK;
    wake_thread(p); /* rather than waiting out its nap */
    kvbm__mutex_lock(&p->lock);
    uint64_t target = p->next_seq;
    p->flush_waiters++;
    while (p->done_seq < target) {
        if (pthread_cond_timedwait(&p->progressed, &p->lock, &deadline) == ETIMEDOUT &&
            p->done_seq < target) {
            status = KVBM_ERR_TIMEOUT;
            break;
        }
    }
    p->flush_waiters--;
    kvbm__mutex_unlock(&p->lock);
    return status;
}

void kvbm__publisher_set_paused(kvbm_publisher_t *publisher, bool paused)
{
    kvbm__mutex_lock(&publisher->lock);
    publisher->paused = paused;
    kvbm__mutex_unlock(&publisher->lock);
    wake_thread(publisher);
}

bool kvbm_publisher_resync_needed(const kvbm_publisher_t *publisher)
{
    return publisher != NULL &&
           atomic_load_explicit(&publisher->resync_needed, memory_order_relaxed);
}

const char *kvbm_publisher_endpoint(const kvbm_publisher_t *publisher)
{
    return publisher == NULL ? NULL : publisher->endpoint;
}

const char *kvbm_publisher_replay_endpoint(const kvbm_publisher_t *publisher)
{
    return publisher == NULL ? NULL : publisher->replay_endpoint;
}
