/*
 * A ring of batches, oldest first. The publisher uses two: its bounded
 * queue of records (reserve refuses when full) and its replay history of
 * encoded batches (the oldest batch makes room for the newest). Buffers
 * stay in their slots or move out and back, so they are reused rather than
 * freed and allocated again.
 * Not locked: the owner says which lock guards each ring.
 */
#ifndef KVBM_HOST_EVENTS_BATCH_RING_H
#define KVBM_HOST_EVENTS_BATCH_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "chunk_ring.h"
#include "encode.h"
#include "payload.h"

/* A batch of the queue (its records, not yet encoded: ts, size, chunk,
 * n_records) or of the replay history (encoded: n_events and payload). */
typedef struct kvbm__batch {
    uint64_t seq;
    uint64_t n_events;
    double ts;                  /* queue: when it was published */
    kvbm__events_size_t size;   /* queue: what the records hold */
    kvbm__chunk_t chunk;        /* queue: the records (record_copy.h), or: */
    kvbm__event_batch_t arrays; /* queue: a batcher's batch taken whole (records not NULL) */
    size_t n_records;
    kvbm__payload_t payload; /* history: the encoded batch */
} kvbm__batch_t;

typedef struct kvbm__batch_ring {
    kvbm__batch_t *batches; /* capacity entries */
    uint32_t capacity;
    uint32_t head;  /* index of the oldest */
    uint32_t count; /* batches held */
} kvbm__batch_ring_t;

/* A ring of @p capacity batches (0 is allowed: it holds nothing). */
kvbm_status_t kvbm__batch_ring_init(kvbm__batch_ring_t *ring, uint32_t capacity);
void kvbm__batch_ring_fini(kvbm__batch_ring_t *ring);

/* The i-th oldest batch, i < count. */
kvbm__batch_t *kvbm__batch_ring_at(kvbm__batch_ring_t *ring, uint32_t i);

/* The entry after the newest, to fill before kvbm__batch_ring_commit();
 * NULL when the ring is full. Its payload is empty and may hold a buffer. */
kvbm__batch_t *kvbm__batch_ring_reserve(kvbm__batch_ring_t *ring);
void kvbm__batch_ring_commit(kvbm__batch_ring_t *ring);

/* Drops the oldest batch (count > 0), keeping its buffer for reuse. */
void kvbm__batch_ring_drop_oldest(kvbm__batch_ring_t *ring);

/*
 * Keeps a copy of @p payload (written around the caches, see
 * kvbm__payload_copy_uncached) as the newest batch, dropping the oldest when
 * full; a ring of capacity 0 keeps nothing. Out of memory, the oldest batch
 * is dropped and the new one not kept (a replay then cannot serve it, as
 * if the history were shorter); returns false then.
 */
bool kvbm__batch_ring_keep_copy(kvbm__batch_ring_t *ring, uint64_t seq, uint64_t n_events,
                                const kvbm__payload_t *payload);

#endif /* KVBM_HOST_EVENTS_BATCH_RING_H */
