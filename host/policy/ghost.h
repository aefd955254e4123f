/*
 * A ghost: a bounded memory of recently evicted hashes, each with a small
 * value (a use count), forgotten oldest first. Policies use it to recognise
 * a block that comes back after they evicted it (s3-fifo, slru).
 *
 * A ring of the last `capacity` hashes added plus a map hash -> (ring
 * sequence number << 8 | value): a hash is forgotten when its own ring slot
 * is overwritten, or when it is taken. All memory is allocated by init;
 * add and take are O(1) expected. Not thread-safe: the owning policy is
 * serialised by its manager's lock.
 */
#ifndef KVBM_HOST_GHOST_H
#define KVBM_HOST_GHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"
#include "u64_map.h"

typedef struct kvbm__ghost {
    uint64_t *ring;
    size_t capacity;
    uint64_t seq; /* hashes added so far; the next goes to slot seq % capacity */
    kvbm__u64_map_t map;
} kvbm__ghost_t;

/* Remembers up to @p capacity (>= 1) hashes. KVBM_ERR_NO_MEMORY leaves
 * nothing to free. */
kvbm_status_t kvbm__ghost_init(kvbm__ghost_t *ghost, size_t capacity);
/* Frees what init allocated; safe on a zeroed or failed ghost. */
void kvbm__ghost_fini(kvbm__ghost_t *ghost);
/* Remembers @p hash with @p value (replacing an older memory of it),
 * forgetting the oldest hash when full. */
void kvbm__ghost_add(kvbm__ghost_t *ghost, uint64_t hash, uint8_t value);
/* Whether @p hash is remembered; a hit forgets it and gives its value. */
bool kvbm__ghost_take(kvbm__ghost_t *ghost, uint64_t hash, uint8_t *value_out);

#endif /* KVBM_HOST_GHOST_H */
