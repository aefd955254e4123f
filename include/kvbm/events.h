/**
 * @file events.h
 * @brief KV events for routers: the event record a manager or cache produces,
 *        and a publisher that sends records to subscribers in vLLM's wire
 *        format (ZMQ PUB + ROUTER replay, msgpack payloads).
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

#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What happened to the blocks of one record. Values are never renumbered. */
typedef enum kvbm_event_kind {
    KVBM_EVENT_STORED = 1,  /**< the tier now holds these blocks */
    KVBM_EVENT_REMOVED = 2, /**< the tier no longer holds these blocks */
    KVBM_EVENT_CLEARED = 3, /**< the engine holds no block in any tier */
} kvbm_event_kind_t;

/** The tier an event is about, as vLLM's `medium` string. */
typedef enum kvbm_medium {
    KVBM_MEDIUM_GPU = 0,  /**< "GPU": device memory (G1) */
    KVBM_MEDIUM_CPU = 1,  /**< "CPU": host memory (G2) */
    KVBM_MEDIUM_DISK = 2, /**< "DISK": local disk (G3) */
} kvbm_medium_t;

/** @brief "GPU", "CPU" or "DISK"; NULL for a value outside the enum. */
const char *kvbm_medium_name(kvbm_medium_t medium);

/**
 * One event: a run of blocks of one tier. The pointers are borrowed: a
 * record is valid only during the call that receives it.
 *
 * - STORED: hashes[0..count) is a run of one parent chain: hashes[i - 1]
 *   is the parent of hashes[i], and parent_hash (when has_parent) the parent
 *   of hashes[0]. token_ids, block_size and the LoRA fields are whatever
 *   the caller gave at registration (absent: none, 0, none).
 * - REMOVED: hashes[0..count) in any order; the other fields are ignored.
 * - CLEARED: no hashes; medium and the other fields are ignored.
 */
typedef struct kvbm_event_record {
    kvbm_event_kind_t kind;
    kvbm_medium_t medium;
    size_t count;           /**< number of hashes */
    const uint64_t *hashes; /**< @p count sequence hashes */
    const uint32_t *blocks; /**< optional: the block ids (never on the wire) */
    uint64_t parent_hash;   /**< STORED: parent of hashes[0], when has_parent */
    bool has_parent;        /**< STORED: false means the run starts a sequence */
    bool has_lora_id;       /**< STORED: whether lora_id is set */
    uint32_t block_size;    /**< STORED: tokens per block, 0 when unknown */
    size_t n_tokens;        /**< STORED: length of token_ids (0: none given) */
    const uint32_t *tokens; /**< STORED: the run's token ids, n_tokens of them */
    int64_t lora_id;        /**< STORED: the adapter id, when has_lora_id */
    const char *lora_name;  /**< STORED: optional adapter name, NULL for none */
} kvbm_event_record_t;

/**
 * Event sink: receives the records of one call, in the order they happened.
 * Managers call it with their lock held; it must not call back into them.
 */
typedef void (*kvbm_event_record_fn)(void *ctx, const kvbm_event_record_t *records, size_t count);

/* ------------------------------------------------------------------ publisher */

#define KVBM_PUBLISHER_CONFIG_VERSION 1u
/** vLLM's defaults: replay buffer depth, PUB high-water mark, queue depth. */
#define KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS 10000u
#define KVBM_PUBLISHER_DEFAULT_HWM          100000
#define KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH  100000u
#define KVBM_PUBLISHER_DEFAULT_ENDPOINT     "tcp://*:5557"
/** data_parallel_rank value meaning "not set": the batch's rank is omitted. */
#define KVBM_PUBLISHER_NO_RANK -1

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
} kvbm_publisher_config_t;

#define KVBM_PUBLISHER_CONFIG_INIT                                                                 \
    {                                                                                              \
        .struct_size = sizeof(kvbm_publisher_config_t), .version = KVBM_PUBLISHER_CONFIG_VERSION,  \
        .endpoint = KVBM_PUBLISHER_DEFAULT_ENDPOINT,                                               \
        .buffer_steps = KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS, .hwm = KVBM_PUBLISHER_DEFAULT_HWM,    \
        .queue_depth = KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH,                                         \
        .data_parallel_rank = KVBM_PUBLISHER_NO_RANK, .linger_ms = 1000                            \
    }

/* X(field, prometheus type, help) */
#define KVBM_PUBLISHER_METRICS_LIST(X)                                                             \
    X(batches_published, counter, "event batches sent on the PUB socket")                          \
    X(events_published, counter, "events in the batches sent")                                     \
    X(batches_dropped, counter,                                                                    \
      "batches dropped at a full queue (their sequence numbers skipped)")                          \
    X(events_dropped, counter, "events in the dropped batches")                                    \
    X(send_errors, counter, "batches the PUB socket refused (counted, not retried)")               \
    X(replay_requests, counter, "replay requests served")                                          \
    X(replay_batches, counter, "batches sent again to replay requests")                            \
    X(replay_invalid, counter, "malformed replay requests ignored")                                \
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
kvbm_status_t kvbm_publisher_create(const kvbm_publisher_config_t *config,
                                    kvbm_publisher_t **publisher_out);

/**
 * @brief Send what is queued (waiting at most linger_ms for the network),
 *        stop the thread, close the sockets, free everything. NULL is a
 *        no-op. No other call may run on it concurrently or after.
 */
void kvbm_publisher_destroy(kvbm_publisher_t *publisher);

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
kvbm_status_t kvbm_publisher_publish(kvbm_publisher_t *publisher,
                                     const kvbm_event_record_t *records, size_t count);

/**
 * @brief kvbm_event_record_fn that publishes: set a manager's or cache's
 *        event sink to it with the publisher as context. Drops are counted
 *        in the publisher's metrics.
 */
void kvbm_publisher_sink(void *publisher, const kvbm_event_record_t *records, size_t count);

/**
 * @brief Wait until every batch queued before this call has been handed to
 *        the PUB socket (not until subscribers received it).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_TIMEOUT after @p timeout_ms.
 */
kvbm_status_t kvbm_publisher_flush(kvbm_publisher_t *publisher, uint32_t timeout_ms);

/** @brief Snapshot of the counters and gauges (zeros for NULL). */
void kvbm_publisher_metrics(kvbm_publisher_t *publisher, kvbm_publisher_metrics_t *metrics_out);

/**
 * @brief Write the metrics as Prometheus text (`kvbm_events_*`).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_IO.
 */
kvbm_status_t kvbm_publisher_metrics_prometheus(kvbm_publisher_t *publisher, FILE *out);

/**
 * @brief The endpoint the PUB socket is bound or connected to, after the
 *        rank offset (for a bound "tcp://\*:0", the port the system chose).
 *        Valid until destroy.
 */
const char *kvbm_publisher_endpoint(const kvbm_publisher_t *publisher);

/** @brief As kvbm_publisher_endpoint() for the replay socket; NULL without one. */
const char *kvbm_publisher_replay_endpoint(const kvbm_publisher_t *publisher);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_EVENTS_H */
