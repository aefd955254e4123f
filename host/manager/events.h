/*
 * A manager's events (events.c): what one call changed in what the tier
 * holds, gathered under the manager lock. Exists only for managers with a
 * sink; a manager without one pays a NULL test per call and nothing else.
 *
 * Two ways to the same records, in the same order:
 * - a sink: the call's records are handed to it once, at the end of the
 *   call. Removals are gathered into arrays sized for every block at
 *   create, so no call allocates or zeroes anything; stored runs point into
 *   the caller's arrays (hashes, ids, tokens), which outlive the sink call.
 * - a batcher (the sink is kvbm_event_batcher_sink): the records go
 *   straight into the batcher's batch (core/event_batch.h), stored runs as
 *   they are registered, removals at the end of the call, which is what
 *   the sink would do with them, without a call per manager call; out of
 *   memory, the batcher delivers at once, so nothing is lost.
 */
#ifndef KVBM_HOST_MANAGER_EVENTS_H
#define KVBM_HOST_MANAGER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/event_batch.h"
#include "kvbm/manager.h"

typedef struct kvbm__manager_events {
    kvbm_event_batcher_t *batcher; /* the sink is a batcher: records go straight to it */
    kvbm_event_record_fn sink;     /* otherwise: the sink, called once per call */
    void *ctx;
    kvbm_medium_t medium;
    uint64_t *removed_hashes; /* num_blocks: this call's removals so far */
    uint32_t *removed_blocks; /* their blocks */
    size_t n_removed;
    size_t n_records;
    kvbm_event_record_t records[KVBM_MANAGER_EVENT_RECORDS];
} kvbm__manager_events_t;

/* The scratch of a manager with a sink; KVBM_ERR_NO_MEMORY. */
kvbm_status_t kvbm__manager_events_create(const kvbm_manager_config_t *config,
                                          kvbm__manager_events_t **events_out);
void kvbm__manager_events_destroy(kvbm__manager_events_t *events);

/* A hash left the tier (its last block lost it). */
static inline void kvbm__manager_events_removed(kvbm__manager_events_t *events, uint32_t block,
                                                uint64_t hash)
{
    events->removed_hashes[events->n_removed] = hash;
    events->removed_blocks[events->n_removed] = block;
    events->n_removed++;
}

/* Hands the records gathered so far to the sink (the array is full). */
void kvbm__manager_events_deliver_records(kvbm__manager_events_t *events);

/* The stored record of a run of hashes[first, end) registered on
 * ids[first, end): its parent the hash before it (or the options' parent). */
static inline void kvbm__manager_events_fill_stored(kvbm_event_record_t *record,
                                                    kvbm_medium_t medium, const uint32_t *ids,
                                                    const uint64_t *hashes, size_t first,
                                                    size_t end, const kvbm_register_opts_t *opts)
{
    bool opts_parent = first == 0 && opts != NULL && opts->has_parent;
    bool tokens = opts != NULL && opts->n_tokens > 0;
    *record = (kvbm_event_record_t){
        .kind = KVBM_EVENT_STORED,
        .medium = medium,
        .count = end - first,
        .hashes = hashes + first,
        .blocks = ids + first,
        .has_parent = first > 0 || opts_parent,
        .parent_hash = first > 0     ? hashes[first - 1]
                       : opts_parent ? opts->parent_hash
                                     : 0,
        .block_size = opts != NULL ? opts->block_size : 0,
        .has_lora_id = opts != NULL && opts->has_lora_id,
        .lora_id = opts != NULL ? opts->lora_id : 0,
        .lora_name = opts != NULL ? opts->lora_name : NULL,
        .n_tokens = tokens ? (end - first) * opts->block_size : 0,
        .tokens = tokens ? opts->tokens + first * opts->block_size : NULL,
    };
}

/* kvbm__manager_events_stored for anything but a plain run into a batcher. */
void kvbm__manager_events_stored_other(kvbm__manager_events_t *events, const uint32_t *ids,
                                       const uint64_t *hashes, size_t first, size_t end,
                                       const kvbm_register_opts_t *opts);

/* A run of hashes[first, end) entered the tier on ids[first, end). Inline
 * for the common case: a batcher, and no tokens or LoRA for the events. */
static inline void kvbm__manager_events_stored(kvbm__manager_events_t *events, const uint32_t *ids,
                                               const uint64_t *hashes, size_t first, size_t end,
                                               const kvbm_register_opts_t *opts)
{
    if (events->batcher == NULL ||
        (opts != NULL && (opts->n_tokens > 0 || opts->has_lora_id || opts->lora_name != NULL))) {
        kvbm__manager_events_stored_other(events, ids, hashes, first, end, opts);
        return;
    }
    bool opts_parent = first == 0 && opts != NULL && opts->has_parent;
    kvbm__event_batcher_stored_plain(events->batcher, events->medium, hashes + first, end - first,
                                     first > 0 || opts_parent,
                                     first > 0     ? hashes[first - 1]
                                     : opts_parent ? opts->parent_hash
                                                   : 0,
                                     opts != NULL ? opts->block_size : 0);
}

/* kvbm_manager_announce: @p hash (in the block's metadata, valid during
 * the call) is held, with its parent; no tokens, no block size. */
void kvbm__manager_events_announce(kvbm__manager_events_t *events, const uint64_t *hash,
                                   bool has_parent, uint64_t parent_hash);

/* kvbm__manager_events_deliver when the call has something to deliver. */
void kvbm__manager_events_deliver_any(kvbm__manager_events_t *events);

/* Hands the call's records to the sink (with a batcher: its removals; the
 * stored runs are there already) and empties the scratch. */
static inline void kvbm__manager_events_deliver(kvbm__manager_events_t *events)
{
    if (events->n_removed > 0 || events->n_records > 0)
        kvbm__manager_events_deliver_any(events);
}

#endif /* KVBM_HOST_MANAGER_EVENTS_H */
