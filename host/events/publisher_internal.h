/*
 * Private layout of kvbm_publisher_t, shared by publisher.c (create,
 * destroy, the producer side), publisher_thread.c (the thread that sends
 * and answers replay requests) and publisher_metrics.c.
 */
#ifndef KVBM_HOST_EVENTS_PUBLISHER_INTERNAL_H
#define KVBM_HOST_EVENTS_PUBLISHER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch_ring.h"
#include "kvbm/events.h"

/* Batches the thread takes out of the queue per lock acquisition. */
#define KVBM__PUBLISHER_TAKE_MAX 64

/* The ring the queued batches' records are copied into (chunk_ring.h):
 * while the thread keeps up, a few kilobytes of it are in use, starting
 * over at its beginning (only those pages are ever touched); a backlog
 * past it (some 8 000 batches of a replay, a thread starved of CPU) takes
 * memory from malloc, which costs the producer more. */
#define KVBM__PUBLISHER_SPACE_BYTES (16u << 20)

/* A publisher's batcher hands over its batch's arrays instead of copying
 * them, and takes back a spare set the thread emptied (decision 113). The
 * sets are made at create (room for SET_RECORDS records and SET_HASHES
 * hashes each, every page touched), so the caller never allocates for
 * them; when none is spare, the batch is copied into the ring. A set keeps
 * what a batch grew it to, up to the _MAX sizes (an announce's is made
 * anew by the thread), so a workload's large batches stop growing sets
 * after the first time. */
#define KVBM__PUBLISHER_ARRAY_SETS      64u
#define KVBM__PUBLISHER_SET_RECORDS     64u
#define KVBM__PUBLISHER_SET_HASHES      512u
#define KVBM__PUBLISHER_SET_RECORDS_MAX 1024u
#define KVBM__PUBLISHER_SET_HASHES_MAX  (16u << 10)
#define KVBM__PUBLISHER_SET_TOKENS_MAX  (64u << 10)
#define KVBM__PUBLISHER_SET_NAMES_MAX   4096u

struct kvbm_publisher {
    /* Immutable after create. */
    char *endpoint;        /* as bound or connected (after the rank offset) */
    char *replay_endpoint; /* as bound; NULL without replay */
    char *topic;
    size_t topic_len;
    int32_t dp_rank;  /* < 0: omitted from batches */
    int max_delay_ms; /* the thread's nap while batches keep coming; 0: none */
    void *zmq_context;
    /* The sockets are created by create, used only by the thread while it
     * runs (pthread_create and pthread_join order the hand-overs, as ZMQ
     * requires for moving a socket between threads) and closed by destroy. */
    void *pub;
    void *router; /* NULL without replay */
    int wake_fd;  /* eventfd: a producer wakes the thread sleeping in zmq_poll */
    pthread_t thread;

    /*
     * Guards the fields below. Producers hold it while they copy a batch's
     * records into the queue; the thread holds it only to take batches out and to
     * account for what it sent, never while sending. Lock order: whatever
     * a producer holds (a manager's lock), then this one; nothing is called
     * out of the publisher with it held.
     */
    pthread_mutex_t lock;
    pthread_cond_t progressed;   /* done_seq advanced, for flush */
    kvbm__batch_ring_t queue;    /* records not yet sent; seq increasing */
    kvbm__chunk_ring_t space;    /* the queued batches' records (kvbm__batch_t.chunk) */
    kvbm__event_batch_t *spares; /* KVBM__PUBLISHER_ARRAY_SETS: emptied arrays to swap in */
    uint32_t n_spares;
    uint64_t next_seq; /* the next batch's sequence number */
    uint64_t done_seq; /* every seq below it was sent or dropped */
    /* Set when a batch is dropped, cleared when a batch holding
     * AllBlocksCleared is queued; written with the lock, read without it
     * (relaxed: a hint that is acted on at the owner's next step). */
    atomic_bool resync_needed;
    bool sleeping;                    /* the thread waits for wake_fd with no timeout: wake it */
    bool woken;                       /* a producer woke the napping thread (queue half full) */
    bool stopping;                    /* destroy: drain the queue and exit */
    bool paused;                      /* tests only: the thread leaves the queue alone */
    uint32_t flush_waiters;           /* callers in kvbm_publisher_flush */
    kvbm_publisher_metrics_t metrics; /* queued_batches, next_seq filled on read */

    /* The thread's own. */
    kvbm__batch_ring_t history;                    /* sent batches kept for replay */
    kvbm__batch_t taken[KVBM__PUBLISHER_TAKE_MAX]; /* out of the queue, being sent */
    kvbm__payload_t encoded;                       /* the one being sent, encoded */
};

/* The publisher thread (publisher_thread.c). */
void *kvbm__publisher_thread(void *publisher);

/* Test hook: while paused the thread takes nothing out of the queue, so a
 * test can fill it deterministically. Never used outside tests. */
void kvbm__publisher_set_paused(kvbm_publisher_t *publisher, bool paused);

/* Maps a failed libzmq call's errno to a status and logs it once, here.
 * The one checking path for libzmq errors. */
kvbm_status_t kvbm__zmq_error(const char *what, const char *detail);

#endif /* KVBM_HOST_EVENTS_PUBLISHER_INTERNAL_H */
