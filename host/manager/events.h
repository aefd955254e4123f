/*
 * A manager's events (events.c): what one call changed in what the tier
 * holds, gathered under the manager lock and handed to the sink once at the
 * end of the call. Exists only for managers with a sink; a manager without
 * one pays a NULL test per call and nothing else.
 *
 * Removals are gathered into arrays sized for every block at create, so no
 * call allocates or zeroes anything; stored runs point into the caller's
 * arrays (hashes, ids, tokens), which outlive the sink call.
 */
#ifndef KVBM_HOST_MANAGER_EVENTS_H
#define KVBM_HOST_MANAGER_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "kvbm/manager.h"

typedef struct kvbm__manager_events {
    kvbm_event_record_fn sink;
    void *ctx;
    kvbm_medium_t medium;
    uint64_t *removed_hashes; /* num_blocks: this call's removals so far */
    uint32_t *removed_blocks; /* num_blocks: their blocks */
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

/* A run of hashes[first, end) entered the tier on ids[first, end): one
 * stored record, its parent the hash before it (or the options' parent). */
void kvbm__manager_events_stored(kvbm__manager_events_t *events, const uint32_t *ids,
                                 const uint64_t *hashes, size_t first, size_t end,
                                 const kvbm_register_opts_t *opts);

/* Hands the call's records to the sink (if any) and empties the scratch. */
void kvbm__manager_events_deliver(kvbm__manager_events_t *events);

#endif /* KVBM_HOST_MANAGER_EVENTS_H */
