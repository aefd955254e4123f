/* Rings of encoded batches; see batch_ring.h. */
#include "batch_ring.h"
#include "core/alloc.h"

#include <assert.h>
#include <stdlib.h>

kvbm_status_t kvbm__batch_ring_init(kvbm__batch_ring_t *ring, uint32_t capacity)
{
    *ring = (kvbm__batch_ring_t){0};
    if (capacity > 0) {
        ring->batches = kvbm__calloc(capacity, sizeof(*ring->batches));
        if (ring->batches == NULL)
            return KVBM_ERR_NO_MEMORY;
    }
    ring->capacity = capacity;
    return KVBM_OK;
}

void kvbm__batch_ring_fini(kvbm__batch_ring_t *ring)
{
    for (uint32_t i = 0; i < ring->capacity; i++)
        kvbm__payload_free(&ring->batches[i].payload);
    kvbm__free(ring->batches);
    *ring = (kvbm__batch_ring_t){0};
}

kvbm__batch_t *kvbm__batch_ring_at(kvbm__batch_ring_t *ring, uint32_t i)
{
    assert(i < ring->count);
    uint32_t index = ring->head + i;
    if (index >= ring->capacity)
        index -= ring->capacity;
    return &ring->batches[index];
}

kvbm__batch_t *kvbm__batch_ring_reserve(kvbm__batch_ring_t *ring)
{
    if (ring->count == ring->capacity)
        return NULL;
    uint32_t index = ring->head + ring->count;
    if (index >= ring->capacity)
        index -= ring->capacity;
    kvbm__batch_t *batch = &ring->batches[index];
    kvbm__payload_recycle(&batch->payload, KVBM__PAYLOAD_KEEP_CAPACITY);
    return batch;
}

void kvbm__batch_ring_commit(kvbm__batch_ring_t *ring)
{
    assert(ring->count < ring->capacity);
    ring->count++;
}

void kvbm__batch_ring_drop_oldest(kvbm__batch_ring_t *ring)
{
    assert(ring->count > 0);
    ring->head = ring->head + 1 == ring->capacity ? 0 : ring->head + 1;
    ring->count--;
    /* An empty ring starts over at its first entries, whose buffers are
     * already allocated and warm, instead of walking through all of them. */
    if (ring->count == 0)
        ring->head = 0;
}

bool kvbm__batch_ring_keep_copy(kvbm__batch_ring_t *ring, uint64_t seq, uint64_t n_events,
                                const kvbm__payload_t *payload)
{
    if (ring->capacity == 0)
        return true;
    if (ring->count == ring->capacity)
        kvbm__batch_ring_drop_oldest(ring);
    kvbm__batch_t *batch = kvbm__batch_ring_reserve(ring);
    if (kvbm__payload_copy_uncached(&batch->payload, payload->data, payload->size) != KVBM_OK)
        return false;
    batch->seq = seq;
    batch->n_events = n_events;
    kvbm__batch_ring_commit(ring);
    return true;
}
