/**
 * @file event_record.h
 * @brief What managers and caches tell routers: runs of blocks a tier now
 *        holds (stored), no longer holds (removed), and clears.
 *
 * A manager or cache hands these records to an event sink once per call,
 * in the order things happened; kvbm/events.h has a publisher that sends
 * them to routers in vLLM's wire format.
 */
#ifndef KVBM_EVENT_RECORD_H
#define KVBM_EVENT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/export.h"
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
KVBM_API const char *kvbm_medium_name(kvbm_medium_t medium);

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

/* ------------------------------------------------------------------ batcher */

/**
 * Gathers the records of several calls (a cache's two tiers, an engine's
 * several manager calls in one scheduler step) into one batch: use
 * kvbm_event_batcher_sink() as the managers' sink, then
 * kvbm_event_batcher_flush() hands everything gathered to the real sink in
 * one call. The records are copied (their pointers need not outlive the
 * calls); adjacent records that continue each other are merged: removals
 * from one tier, and stored runs of one tier where one run's parent is the
 * other's last hash (either order: evictions, and so offloads, come tail
 * first; a run prepended must carry no tokens). Buffers keep their capacity, so a steady
 * state allocates nothing. Records keep no block ids.
 *
 * Not thread-safe: the owner serialises the sink, flush and destroy (a
 * cache does it under its lock).
 */
typedef struct kvbm_event_batcher kvbm_event_batcher_t;

/**
 * @brief Create a batcher delivering to @p sink (with @p ctx).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL sink or output);
 *         KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_event_batcher_create(kvbm_event_record_fn sink, void *ctx,
                                                 kvbm_event_batcher_t **batcher_out);

/** @brief Free the batcher; records not flushed are lost. NULL is a no-op. */
KVBM_API void kvbm_event_batcher_destroy(kvbm_event_batcher_t *batcher);

/**
 * @brief kvbm_event_record_fn that keeps copies of the records (ctx: the
 *        batcher). If memory runs out, what was kept and then these records
 *        go to the sink at once, in order: nothing is lost, only batching.
 */
KVBM_API void kvbm_event_batcher_sink(void *batcher, const kvbm_event_record_t *records,
                                      size_t count);

/** @brief Hands everything kept to the sink in one call (none if nothing). */
KVBM_API void kvbm_event_batcher_flush(kvbm_event_batcher_t *batcher);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_EVENT_RECORD_H */
