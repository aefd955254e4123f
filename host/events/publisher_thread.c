/*
 * The publisher thread: takes batches of records out of the queue, encodes
 * each (encode.c) and sends it as three frames on the PUB socket (topic, sequence number, payload),
 * keeps it for replay, and answers replay requests on the ROUTER socket.
 * It sleeps in zmq_poll on the ROUTER socket and the wake eventfd, so a
 * replay request is answered at once even when nothing is published.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "core/check.h"
#include "encode.h"
#include "publisher_internal.h"
#include "record_copy.h"

/* Replay end marker: -1 as 8 signed big-endian bytes. */
static const unsigned char END_SEQ[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void seq_bytes(uint64_t seq, unsigned char out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(seq & 0xff);
        seq >>= 8;
    }
}

static uint64_t seq_value(const unsigned char in[8])
{
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = seq << 8 | in[i];
    return seq;
}

/* One batch on the PUB socket. PUB never blocks: a subscriber past its
 * high-water mark loses the batch and sees the gap in the numbers. */
static bool send_batch(kvbm_publisher_t *p, uint64_t seq, const kvbm__payload_t *payload)
{
    unsigned char seq_frame[8];
    seq_bytes(seq, seq_frame);
    return zmq_send(p->pub, p->topic, p->topic_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
           zmq_send(p->pub, seq_frame, sizeof(seq_frame), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
           zmq_send(p->pub, payload->data, payload->size, ZMQ_DONTWAIT) >= 0;
}

/* [identity, empty, seq, payload] to one replay client. */
static void send_replay(kvbm_publisher_t *p, zmq_msg_t *identity, const unsigned char seq[8],
                        const void *payload, size_t size)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, identity);
    if (zmq_msg_send(&copy, p->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&copy);
        return;
    }
    zmq_send(p->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(p->router, seq, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(p->router, payload, size, ZMQ_DONTWAIT);
}

/* Receives one request; false when none is waiting. *valid says whether it
 * had the form [identity, empty, start_seq (8 bytes)]. */
static bool receive_request(kvbm_publisher_t *p, zmq_msg_t *identity, uint64_t *start, bool *valid)
{
    if (zmq_msg_recv(identity, p->router, ZMQ_DONTWAIT) < 0)
        return false;
    size_t frames = 1;
    bool ok = true;
    bool more = zmq_msg_more(identity);
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        /* The rest of a multipart message has arrived with its first part. */
        if (zmq_msg_recv(&part, p->router, 0) < 0) {
            zmq_msg_close(&part);
            ok = false;
            break;
        }
        frames++;
        if (frames == 2 && zmq_msg_size(&part) != 0)
            ok = false;
        if (frames == 3 && zmq_msg_size(&part) == 8)
            *start = seq_value(zmq_msg_data(&part));
        else if (frames == 3)
            ok = false;
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    *valid = ok && frames == 3;
    return true;
}

/* Answers every replay request waiting: each batch kept with seq >= the
 * start, oldest first, then the end marker. */
static void serve_replay(kvbm_publisher_t *p)
{
    uint64_t served = 0, batches = 0, invalid = 0;
    for (;;) {
        zmq_msg_t identity;
        zmq_msg_init(&identity);
        uint64_t start = 0;
        bool valid = false;
        if (!receive_request(p, &identity, &start, &valid)) {
            zmq_msg_close(&identity);
            break;
        }
        if (!valid) {
            invalid++;
            zmq_msg_close(&identity);
            continue;
        }
        for (uint32_t i = 0; i < p->history.count; i++) {
            const kvbm__batch_t *batch = kvbm__batch_ring_at(&p->history, i);
            if (batch->seq < start)
                continue;
            unsigned char seq[8];
            seq_bytes(batch->seq, seq);
            send_replay(p, &identity, seq, batch->payload.data, batch->payload.size);
            batches++;
        }
        send_replay(p, &identity, END_SEQ, "", 0);
        served++;
        zmq_msg_close(&identity);
    }
    if (served + invalid == 0)
        return;
    kvbm__mutex_lock(&p->lock);
    p->metrics.replay_requests += served;
    p->metrics.replay_batches += batches;
    p->metrics.replay_invalid += invalid;
    kvbm__mutex_unlock(&p->lock);
}

static bool replay_waiting(kvbm_publisher_t *p)
{
    if (p->router == NULL)
        return false;
    int events = 0;
    size_t len = sizeof(events);
    return zmq_getsockopt(p->router, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* Waits until a producer wakes the thread, a replay request arrives, or
 * @p timeout_ms passes (-1: no timeout). */
static void wait_for_work(kvbm_publisher_t *p, int timeout_ms)
{
    zmq_pollitem_t items[2] = {
        {.socket = NULL, .fd = p->wake_fd, .events = ZMQ_POLLIN},
        {.socket = p->router, .events = ZMQ_POLLIN},
    };
    int n_items = p->router != NULL ? 2 : 1;
    if (zmq_poll(items, n_items, timeout_ms) < 0)
        return; /* EINTR: the caller checks its conditions again */
    if (items[0].revents & ZMQ_POLLIN) {
        uint64_t count;
        ssize_t got = read(p->wake_fd, &count, sizeof(count));
        (void)got;
    }
    if (n_items == 2 && (items[1].revents & ZMQ_POLLIN))
        serve_replay(p);
}

/* Moves up to KVBM__PUBLISHER_TAKE_MAX batches out of the queue (with the
 * lock held): their records become the thread's to encode and send. */
static size_t take_batches(kvbm_publisher_t *p, uint64_t *done_after)
{
    size_t n = 0;
    while (p->queue.count > 0 && n < KVBM__PUBLISHER_TAKE_MAX) {
        kvbm__batch_t *batch = kvbm__batch_ring_at(&p->queue, 0);
        p->taken[n] = *batch;
        batch->chunk = (kvbm__chunk_t){0};
        batch->arrays = (kvbm__event_batch_t){0};
        kvbm__batch_ring_drop_oldest(&p->queue);
        n++;
    }
    /* Once these are sent, everything numbered before the next queued
     * batch is done (numbers in between were dropped). */
    *done_after = p->queue.count > 0 ? kvbm__batch_ring_at(&p->queue, 0)->seq : p->next_seq;
    return n;
}

/* What the thread did with the batches it took, for the metrics. */
typedef struct sent {
    uint64_t published, events, errors, history_lost;
} sent_t;

/* Encodes one batch taken out of the queue, sends it, keeps it for replay. */
static void send_taken(kvbm_publisher_t *p, kvbm__batch_t *batch, sent_t *sent)
{
    const kvbm_event_record_t *records =
        batch->arrays.records != NULL
            ? kvbm__event_batch_view(&batch->arrays)
            : kvbm__record_copy_view(batch->chunk.at, batch->n_records, &batch->size);
    const kvbm__events_size_t size = batch->size;
    p->encoded.size = 0;
    kvbm_status_t status =
        kvbm__events_encode(&p->encoded, batch->ts, records, batch->n_records, &size, p->dp_rank);
    if (status != KVBM_OK) { /* out of memory: neither sent nor kept */
        sent->errors++;
        sent->history_lost++;
        return;
    }
    if (send_batch(p, batch->seq, &p->encoded)) {
        sent->published++;
        sent->events += size.n_events;
    } else {
        sent->errors++;
    }
    /* Kept even if the socket refused it: a replay can still serve it. The
     * history gets a copy written around the caches, so the thread's buffer
     * stays warm and the history does not evict the engine's data. */
    sent->history_lost +=
        !kvbm__batch_ring_keep_copy(&p->history, batch->seq, size.n_events, &p->encoded);
}

/* A swapped set grown past the _MAX sizes (an announce's) is made anew,
 * before the lock is taken, so spares stay bounded; out of memory, it is
 * kept as it is. */
static void shrink_sets(kvbm_publisher_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kvbm__event_batch_t *arrays = &p->taken[i].arrays;
        if (arrays->records == NULL ||
            (arrays->records_capacity <= KVBM__PUBLISHER_SET_RECORDS_MAX &&
             arrays->hashes_capacity <= KVBM__PUBLISHER_SET_HASHES_MAX &&
             arrays->tokens_capacity <= KVBM__PUBLISHER_SET_TOKENS_MAX &&
             arrays->names_capacity <= KVBM__PUBLISHER_SET_NAMES_MAX))
            continue;
        kvbm__event_batch_t fresh = {0};
        if (kvbm__event_batch_reserve(&fresh, KVBM__PUBLISHER_SET_RECORDS,
                                      KVBM__PUBLISHER_SET_HASHES) != KVBM_OK) {
            kvbm__event_batch_free(&fresh);
            continue;
        }
        kvbm__event_batch_free(arrays);
        *arrays = fresh;
    }
}

/* Gives the sent batches' memory back (with the lock held), in the order
 * they were taken: ring chunks to the ring, swapped sets to the spares. */
static void give_back_batches(kvbm_publisher_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kvbm__batch_t *batch = &p->taken[i];
        if (batch->arrays.records != NULL) {
            kvbm__event_batch_clear(&batch->arrays);
            p->spares[p->n_spares++] = batch->arrays;
            batch->arrays = (kvbm__event_batch_t){0};
        } else {
            kvbm__chunk_put(&p->space, &batch->chunk);
        }
    }
}

/* Tells the scheduler this thread is a batch job: woken by its nap timer
 * or a producer, it waits for a free CPU or the end of the running
 * thread's slice instead of preempting it, so the engine's threads are not
 * interrupted for the events (decision 111). Refused (a seccomp or
 * scheduler policy), the thread runs as it was. */
static void yield_to_callers(void)
{
    const struct sched_param param = {.sched_priority = 0};
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
}

void *kvbm__publisher_thread(void *publisher)
{
    kvbm_publisher_t *p = publisher;
    yield_to_callers();
    bool busy = false; /* sent something since the last quiet nap */
    for (;;) {
        kvbm__mutex_lock(&p->lock);
        while ((p->queue.count == 0 || p->paused) && !p->stopping) {
            /* While batches keep coming, nap and send what gathered meanwhile;
             * once a nap passes with nothing to send, sleep until woken. */
            bool nap = busy && p->max_delay_ms > 0;
            p->sleeping = !nap;
            kvbm__mutex_unlock(&p->lock);
            wait_for_work(p, nap ? p->max_delay_ms : -1);
            kvbm__mutex_lock(&p->lock);
            p->sleeping = false;
            p->woken = false;
            if (nap && p->queue.count == 0)
                busy = false;
        }
        if (p->queue.count == 0) { /* stopping, and everything was sent */
            kvbm__mutex_unlock(&p->lock);
            break;
        }
        uint64_t done_after = 0;
        size_t n = take_batches(p, &done_after);
        kvbm__mutex_unlock(&p->lock);

        sent_t sent = {0};
        for (size_t i = 0; i < n; i++)
            send_taken(p, &p->taken[i], &sent);
        kvbm__payload_store_fence();
        shrink_sets(p, n);

        kvbm__mutex_lock(&p->lock);
        p->metrics.batches_published += sent.published;
        p->metrics.events_published += sent.events;
        p->metrics.send_errors += sent.errors;
        p->metrics.history_lost += sent.history_lost;
        give_back_batches(p, n);
        assert(done_after >= p->done_seq);
        p->done_seq = done_after;
        if (p->flush_waiters > 0)
            kvbm__cond_broadcast(&p->progressed);
        kvbm__mutex_unlock(&p->lock);

        busy = true;
        if (replay_waiting(p))
            serve_replay(p);
    }
    return NULL;
}
