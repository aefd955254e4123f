/* The queue's chunk ring; see chunk_ring.h. */
#include "chunk_ring.h"
#include "core/alloc.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16u

kvbm_status_t kvbm__chunk_ring_init(kvbm__chunk_ring_t *ring, size_t capacity)
{
    *ring = (kvbm__chunk_ring_t){0};
    assert(capacity % ALIGN == 0);
    if (capacity > 0) {
        ring->data = kvbm__alloc_aligned(ALIGN, 1, capacity);
        if (ring->data == NULL)
            return KVBM_ERR_NO_MEMORY;
        /* Every page touched now, so a producer never takes a page fault
         * when a backlog reaches further into the ring (decision 112). */
        memset(ring->data, 0, capacity);
    }
    ring->capacity = capacity;
    return KVBM_OK;
}

void kvbm__chunk_ring_fini(kvbm__chunk_ring_t *ring)
{
    kvbm__free(ring->data);
    *ring = (kvbm__chunk_ring_t){0};
}

/* Where @p size bytes fit in the ring, and the bytes skipped to get there;
 * false when they do not fit now. */
static bool ring_place(const kvbm__chunk_ring_t *ring, size_t size, size_t *at, size_t *skip)
{
    bool wrapped = ring->used > 0 && ring->end <= ring->start;
    if (!wrapped && ring->capacity - ring->end >= size) {
        *at = ring->end;
        *skip = 0;
        return true;
    }
    if (!wrapped && ring->start >= size) { /* wrap: the tail after end stays unused */
        *at = 0;
        *skip = ring->capacity - ring->end;
        return true;
    }
    if (wrapped && ring->start - ring->end >= size) {
        *at = ring->end;
        *skip = 0;
        return true;
    }
    return false;
}

bool kvbm__chunk_get(kvbm__chunk_ring_t *ring, size_t size, kvbm__chunk_t *chunk_out)
{
    if (size > SIZE_MAX - ALIGN)
        return false;
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (ring->used == 0)
        ring->start = ring->end = 0; /* start over where the bytes are warm */
    size_t at, skip;
    if (size > 0 && ring_place(ring, size, &at, &skip)) {
        ring->end = at + size;
        ring->used += skip + size;
        *chunk_out = (kvbm__chunk_t){.at = ring->data + at, .size = size, .skip = skip};
        return true;
    }
    char *heap = kvbm__alloc_aligned(ALIGN, 1, size > 0 ? size : ALIGN);
    if (heap == NULL)
        return false;
    *chunk_out = (kvbm__chunk_t){.at = heap, .size = size, .heap = true};
    return true;
}

void kvbm__chunk_put(kvbm__chunk_ring_t *ring, kvbm__chunk_t *chunk)
{
    if (chunk->at == NULL)
        return;
    if (chunk->heap) {
        kvbm__free(chunk->at);
    } else {
        assert(chunk->at == ring->data + (chunk->skip > 0 ? 0 : ring->start));
        ring->start = (size_t)(chunk->at - ring->data) + chunk->size;
        if (ring->start == ring->capacity)
            ring->start = 0; /* the next chunk, if any, wrapped to the beginning */
        ring->used -= chunk->skip + chunk->size;
    }
    *chunk = (kvbm__chunk_t){0};
}
