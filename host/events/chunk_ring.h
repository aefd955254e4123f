/*
 * Memory for the publisher's queued batches: chunks taken and given back in
 * first-in, first-out order from one buffer made at create, wrapping around
 * its end, and starting over at its beginning whenever it empties (so the
 * bytes in use stay few and warm in the caches). A chunk that does not fit
 * comes from malloc instead, so the ring is a fast path, never a limit: the
 * queue allocates nothing while its thread keeps up. Not locked: the
 * publisher's lock guards it.
 */
#ifndef KVBM_HOST_EVENTS_CHUNK_RING_H
#define KVBM_HOST_EVENTS_CHUNK_RING_H

#include <stdbool.h>
#include <stddef.h>

#include "kvbm/status.h"

typedef struct kvbm__chunk_ring {
    char *data;
    size_t capacity;
    size_t start; /* offset of the oldest chunk in use */
    size_t end;   /* offset after the newest */
    size_t used;  /* bytes in use, with the skipped tail of a wrap */
} kvbm__chunk_ring_t;

typedef struct kvbm__chunk {
    char *at;    /* 16-byte aligned; NULL: no chunk */
    size_t size; /* as asked, rounded up to 16 */
    size_t skip; /* ring bytes left unused before it (a wrap) */
    bool heap;   /* from malloc, not the ring */
} kvbm__chunk_t;

/* A ring of @p capacity bytes (a multiple of 16; 0: every chunk from malloc). */
kvbm_status_t kvbm__chunk_ring_init(kvbm__chunk_ring_t *ring, size_t capacity);
void kvbm__chunk_ring_fini(kvbm__chunk_ring_t *ring);

/* A chunk of at least @p size bytes; false (nothing taken) when memory runs out. */
bool kvbm__chunk_get(kvbm__chunk_ring_t *ring, size_t size, kvbm__chunk_t *chunk_out);

/* Gives a chunk back: ring chunks in the order they were taken. */
void kvbm__chunk_put(kvbm__chunk_ring_t *ring, kvbm__chunk_t *chunk);

#endif /* KVBM_HOST_EVENTS_CHUNK_RING_H */
