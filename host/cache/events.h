/*
 * The tiered cache's events (events.c): the records of both tiers' managers
 * during one cache call, copied and kept in order, then handed to the
 * cache's sink once, as one batch, when the call ends (with the cache lock
 * held, so batches reach the sink in the order the calls ran). Adjacent
 * records that continue each other are merged: removals from one tier, and
 * stored runs of one tier where the next one's parent is the last hash of
 * the previous (a chain). The buffers keep their capacity between calls.
 *
 * All functions with the cache lock held.
 */
#ifndef KVBM_HOST_CACHE_EVENTS_H
#define KVBM_HOST_CACHE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/event_record.h"
#include "kvbm/status.h"

typedef struct kvbm__cache_events kvbm__cache_events_t;

kvbm_status_t kvbm__cache_events_create(kvbm_event_record_fn sink, void *ctx,
                                        kvbm__cache_events_t **events_out);
void kvbm__cache_events_destroy(kvbm__cache_events_t *events);

/* The managers' sink (ctx: the cache's events): keeps copies of the records. */
void kvbm__cache_events_forward(void *events, const kvbm_event_record_t *records, size_t count);

/* While set, the managers' records are dropped (a clear replaces them). */
void kvbm__cache_events_drop(kvbm__cache_events_t *events, bool drop);

/* Adds an AllBlocksCleared event. */
void kvbm__cache_events_cleared(kvbm__cache_events_t *events);

/* Hands everything kept to the sink in one call, and empties it. */
void kvbm__cache_events_deliver(kvbm__cache_events_t *events);

#endif /* KVBM_HOST_CACHE_EVENTS_H */
