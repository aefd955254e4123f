/**
 * @file events.h
 * @brief KV events for routers: a publisher that sends the event records a
 *        manager or cache produces (kvbm/event_record.h) to subscribers in
 *        vLLM's wire format (ZMQ PUB + ROUTER replay, msgpack payloads).
 *
 * A router (llm-d's KV cache manager, Dynamo's router, ...) keeps, for every
 * engine, the set of block hashes it holds per tier. It learns them from a
 * stream of batches, each carrying events of three kinds: stored (a run of
 * blocks now held by a tier), removed (blocks a tier no longer holds) and
 * cleared (the engine holds nothing any more). docs/EVENTS.md describes the
 * wire format field by field.
 *
 * Threads: kvbm_publisher_publish() may be called from any thread, also
 * with a caller's lock held: it never waits for the network. It encodes the
 * batch into a bounded queue that one publisher thread drains onto the
 * sockets; a full queue drops the batch and skips its sequence number, so
 * subscribers see a gap (nothing is lost silently).
 */
#ifndef KVBM_EVENTS_H
#define KVBM_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/config_init.h"
#include "kvbm/event_record.h"
#include "kvbm/export.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_PUBLISHER_CONFIG_VERSION 1u
/** vLLM's defaults: replay buffer depth, PUB high-water mark, queue depth. */
#define KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS 10000u
#define KVBM_PUBLISHER_DEFAULT_HWM          100000
#define KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH  100000u
#define KVBM_PUBLISHER_DEFAULT_ENDPOINT     "tcp://*:5557"
/** data_parallel_rank value meaning "not set": the batch's rank is omitted. */
#define KVBM_PUBLISHER_NO_RANK (-1)

typedef struct kvbm_publisher kvbm_publisher_t;

typedef struct kvbm_publisher_config {
    uint32_t struct_size; /**< sizeof(kvbm_publisher_config_t) */
    uint32_t version;     /**< KVBM_PUBLISHER_CONFIG_VERSION */
    /**
     * PUB socket endpoint; copied. As vLLM: an endpoint containing "*" or
     * "::", or an ipc:// or inproc:// one, is bound ("tcp://\*:5557");
     * any other is connected to ("tcp://router-host:5557").
     */
    const char *endpoint;
    /** ROUTER endpoint for replay requests (always bound); NULL: no replay. Copied. */
    const char *replay_endpoint;
    /** First frame of every batch; copied. NULL or "" for an empty frame. */
    const char *topic;
    /** Past batches kept for replay (0 keeps none: replay answers only the end marker). */
    uint32_t buffer_steps;
    /** ZMQ_SNDHWM of the PUB socket, in messages; 0 means no limit. */
    int hwm;
    /** Batches waiting for the publisher thread, at most; >= 1. */
    uint32_t queue_depth;
    /** Sent as the batch's third field; KVBM_PUBLISHER_NO_RANK omits it. */
    int32_t data_parallel_rank;
    /**
     * As vLLM: offset the TCP ports of both endpoints by data_parallel_rank
     * (inproc endpoints get "_dp<rank>" appended), so every rank of a
     * data-parallel engine can be configured with the same endpoints.
     */
    bool offset_ports_by_rank;
    /** How long destroy lets the sockets deliver what is queued, in ms. */
    int linger_ms;
    /**
     * While batches keep coming, the publisher thread wakes every
     * max_delay_ms to send what was queued, rather than being woken by
     * every publish (a system call each); so a batch reaches the socket at
     * most about this late. After a quiet period the thread sleeps and the
     * next publish wakes it at once. 0: every publish that finds the thread
     * waiting wakes it.
     */
    uint32_t max_delay_ms;
} kvbm_publisher_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_PUBLISHER_CONFIG_DEFAULTS(X, P)                                                       \
    X(P, struct_size, sizeof(kvbm_publisher_config_t))                                             \
    X(P, version, KVBM_PUBLISHER_CONFIG_VERSION)                                                   \
    X(P, endpoint, KVBM_PUBLISHER_DEFAULT_ENDPOINT)                                                \
    X(P, buffer_steps, KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS)                                        \
    X(P, hwm, KVBM_PUBLISHER_DEFAULT_HWM)                                                          \
    X(P, queue_depth, KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH)                                          \
    X(P, data_parallel_rank, KVBM_PUBLISHER_NO_RANK)                                               \
    X(P, linger_ms, 1000)                                                                          \
    X(P, max_delay_ms, 1)

#ifdef __cplusplus
#define KVBM_PUBLISHER_CONFIG_INIT                                                                 \
    KVBM_CONFIG_INIT_CXX(kvbm_publisher_config_t, kvbm_publisher_config_init)
#else
#define KVBM_PUBLISHER_CONFIG_INIT                                                                 \
    {                                                                                              \
        KVBM_PUBLISHER_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                    \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_PUBLISHER_CONFIG_INIT does;
 *        for C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_publisher_config_init(kvbm_publisher_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_PUBLISHER_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/* X(field, prometheus type, help) */
#define KVBM_PUBLISHER_METRICS_LIST(X)                                                             \
    X(batches_published, counter, "event batches sent on the PUB socket")                          \
    X(events_published, counter, "events in the batches sent")                                     \
    X(batches_dropped, counter,                                                                    \
      "batches dropped at a full queue (their sequence numbers skipped)")                          \
    X(events_dropped, counter, "events in the dropped batches")                                    \
    X(resyncs, counter, "batches with AllBlocksCleared queued after a drop (resynchronised)")      \
    X(send_errors, counter, "batches the PUB socket refused (counted, not retried)")               \
    X(replay_requests, counter, "replay requests served")                                          \
    X(replay_batches, counter, "batches sent again to replay requests")                            \
    X(replay_invalid, counter, "malformed replay requests ignored")                                \
    X(history_lost, counter, "batches sent but not kept for replay (out of memory)")               \
    X(queued_batches, gauge, "batches waiting for the publisher thread")                           \
    X(next_seq, gauge, "sequence number the next batch will get")

typedef struct kvbm_publisher_metrics {
#define KVBM_PUBLISHER_METRICS_FIELD(field, type, help) uint64_t field;
    KVBM_PUBLISHER_METRICS_LIST(KVBM_PUBLISHER_METRICS_FIELD)
#undef KVBM_PUBLISHER_METRICS_FIELD
} kvbm_publisher_metrics_t;

/**
 * @brief Create a publisher: binds or connects its sockets and starts its thread.
 * @param[in]  config      copied (strings too); the caller keeps ownership.
 * @param[out] publisher_out set only on success; free with kvbm_publisher_destroy().
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, queue_depth 0, hwm or
 *         linger_ms negative, rank below -1, a malformed endpoint);
 *         KVBM_ERR_VERSION; KVBM_ERR_NO_MEMORY; KVBM_ERR_IO (an endpoint
 *         could not be bound, e.g. its port is in use; logged once).
 */
KVBM_API kvbm_status_t kvbm_publisher_create(const kvbm_publisher_config_t *config,
                                             kvbm_publisher_t **publisher_out);

/**
 * @brief Send what is queued (waiting at most linger_ms for the network),
 *        stop the thread, close the sockets, free everything. NULL is a
 *        no-op. No other call may run on it concurrently or after.
 */
KVBM_API void kvbm_publisher_destroy(kvbm_publisher_t *publisher);

/**
 * @brief Queue one batch holding the events of @p records, stamped with the
 *        current time. Never waits for the network or the publisher thread.
 *
 * Records with no hashes (other than CLEARED) add nothing; a call with
 * nothing to send sends no batch and uses no sequence number.
 *
 * @param[in] records borrowed; read during the call only.
 * @return KVBM_OK (queued); KVBM_ERR_INVALID_ARG (NULL publisher, records
 *         NULL with count > 0, an unknown kind or medium, hashes or tokens
 *         NULL where a count says there are some; nothing changes);
 *         KVBM_ERR_BUSY (the queue was full) or KVBM_ERR_NO_MEMORY (the
 *         batch could not be encoded): the batch is dropped, counted, and its
 *         sequence number skipped, so subscribers see the gap.
 */
KVBM_API kvbm_status_t kvbm_publisher_publish(kvbm_publisher_t *publisher,
                                              const kvbm_event_record_t *records, size_t count);

/**
 * @brief kvbm_event_record_fn that publishes: set a manager's or cache's
 *        event sink to it with the publisher as context. Drops are counted
 *        in the publisher's metrics.
 */
KVBM_API void kvbm_publisher_sink(void *publisher, const kvbm_event_record_t *records,
                                  size_t count);

/**
 * @brief A batcher (kvbm/event_record.h) whose flush publishes what it
 *        gathered as one batch, handed over whole: its arrays are copied
 *        into the queue as they are, where kvbm_publisher_sink would check
 *        and copy a view of them record by record. Give it to a cache
 *        (kvbm_cache_config_t.events_batcher) or, with
 *        kvbm_event_batcher_sink, to managers; flush it per call or per
 *        scheduler step. Drops are counted in the publisher's metrics. Free
 *        it with kvbm_event_batcher_destroy() before the publisher.
 * @param[out] batcher_out set on success.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL publisher or output);
 *         KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_publisher_batcher_create(kvbm_publisher_t *publisher,
                                                     kvbm_event_batcher_t **batcher_out);

/**
 * @brief Wait until every batch queued before this call has been handed to
 *        the PUB socket (not until subscribers received it).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_TIMEOUT after @p timeout_ms.
 */
KVBM_API kvbm_status_t kvbm_publisher_flush(kvbm_publisher_t *publisher, uint32_t timeout_ms);

/**
 * @brief Whether a batch was dropped at the full queue since the last batch
 *        holding AllBlocksCleared was queued: routers then miss events that
 *        replay cannot give them (the batch was never kept), and the owner
 *        should resynchronise them, with kvbm_cache_announce() (or an
 *        AllBlocksCleared and kvbm_manager_announce() in one batch). Cheap
 *        (one atomic load, no lock): fit to test after every engine step.
 *        Any thread. False for NULL.
 */
KVBM_API bool kvbm_publisher_resync_needed(const kvbm_publisher_t *publisher);

/** @brief Snapshot of the counters and gauges (zeros for NULL). */
KVBM_API void kvbm_publisher_metrics(kvbm_publisher_t *publisher,
                                     kvbm_publisher_metrics_t *metrics_out);

/**
 * @brief Write the metrics as Prometheus text (`kvbm_events_*`).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_IO.
 */
KVBM_API kvbm_status_t kvbm_publisher_metrics_prometheus(kvbm_publisher_t *publisher, FILE *out);

/**
 * @brief The endpoint the PUB socket is bound or connected to, after the
 *        rank offset (for a bound "tcp://\*:0", the port the system chose).
 *        Valid until destroy.
 */
KVBM_API const char *kvbm_publisher_endpoint(const kvbm_publisher_t *publisher);

/** @brief As kvbm_publisher_endpoint() for the replay socket; NULL without one. */
KVBM_API const char *kvbm_publisher_replay_endpoint(const kvbm_publisher_t *publisher);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_EVENTS_H */
