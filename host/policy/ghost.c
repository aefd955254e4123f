/* Bounded memory of evicted hashes; see ghost.h. */
#include "ghost.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define VALUE_BITS 8u
#define VALUE_MASK 0xffu

kvbm_status_t kvbm__ghost_init(kvbm__ghost_t *ghost, size_t capacity)
{
    memset(ghost, 0, sizeof(*ghost));
    if (capacity == 0)
        capacity = 1;
    ghost->ring = kvbm__alloc(capacity, sizeof(uint64_t));
    if (ghost->ring == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t status = kvbm__u64_map_init(&ghost->map, capacity);
    if (status != KVBM_OK) {
        kvbm__free(ghost->ring);
        ghost->ring = NULL;
        return status;
    }
    ghost->capacity = capacity;
    return KVBM_OK;
}

void kvbm__ghost_fini(kvbm__ghost_t *ghost)
{
    if (ghost->ring == NULL)
        return;
    kvbm__u64_map_fini(&ghost->map);
    kvbm__free(ghost->ring);
    ghost->ring = NULL;
}

void kvbm__ghost_add(kvbm__ghost_t *ghost, uint64_t hash, uint8_t value)
{
    uint64_t seq = ghost->seq++;
    size_t slot = (size_t)(seq % ghost->capacity);
    if (seq >= ghost->capacity) {
        /* The ring is full: its oldest hash is forgotten unless re-added since. */
        uint64_t old = ghost->ring[slot];
        uint64_t *owner = kvbm__u64_map_find(&ghost->map, old);
        if (owner != NULL && (*owner >> VALUE_BITS) == seq - ghost->capacity)
            kvbm__u64_map_erase(&ghost->map, old);
    }
    ghost->ring[slot] = hash;
    uint64_t packed = seq << VALUE_BITS | value;
    *kvbm__u64_map_upsert(&ghost->map, hash, packed) = packed;
}

bool kvbm__ghost_take(kvbm__ghost_t *ghost, uint64_t hash, uint8_t *value_out)
{
    uint64_t *packed = kvbm__u64_map_find(&ghost->map, hash);
    if (packed == NULL)
        return false;
    if (value_out != NULL)
        *value_out = (uint8_t)(*packed & VALUE_MASK);
    kvbm__u64_map_erase(&ghost->map, hash);
    return true;
}
