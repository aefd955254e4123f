/*
 * A growable byte buffer that batches are encoded into (encode.c). Payloads circulate
 * between the publisher's queue slots and its replay ring, keeping their
 * capacity, so steady-state publishing allocates nothing.
 */
#ifndef KVBM_HOST_EVENTS_PAYLOAD_H
#define KVBM_HOST_EVENTS_PAYLOAD_H

#include <stddef.h>

#include "kvbm/status.h"

/* Buffers above this size are freed when recycled, so one huge batch does
 * not pin its memory for the publisher's lifetime. */
#define KVBM__PAYLOAD_KEEP_CAPACITY (64u << 10)

typedef struct kvbm__payload {
    char *data;
    size_t size;     /* bytes written */
    size_t capacity; /* bytes allocated */
} kvbm__payload_t;

/* Makes room for @p bytes more; KVBM_ERR_NO_MEMORY leaves it unchanged. */
kvbm_status_t kvbm__payload_reserve(kvbm__payload_t *payload, size_t bytes);

/*
 * Makes @p payload a copy of @p size bytes at @p bytes, writing around the
 * CPU caches where the machine can (x86-64 streaming stores): the replay
 * history is written once per batch and read only by a rare replay
 * request, so caching it would only evict the engine's own hot data.
 * KVBM_ERR_NO_MEMORY leaves the payload as it was.
 */
kvbm_status_t kvbm__payload_copy_uncached(kvbm__payload_t *payload, const char *bytes, size_t size);

/* Orders the streaming stores of kvbm__payload_copy_uncached before later ones. */
void kvbm__payload_store_fence(void);

/* Empties the payload for reuse, giving back memory above @p keep_capacity. */
void kvbm__payload_recycle(kvbm__payload_t *payload, size_t keep_capacity);

void kvbm__payload_free(kvbm__payload_t *payload);

#endif /* KVBM_HOST_EVENTS_PAYLOAD_H */
