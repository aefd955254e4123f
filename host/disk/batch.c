/*
 * Batches of block writes and reads, and their completion. A write gets a
 * fresh generation and a header (with the payload's XXH3) in its buffer,
 * leaves the index before it starts (a crash mid-write must not find the
 * slot indexed), and is published (header copied into the table, the slot's
 * generation recorded) only once every byte is written. A read is accepted
 * only if every byte arrived and the header in the slot is the one this
 * store last published there: magic, version, header checksum, slot,
 * payload size, namespace fingerprint, sequence hash and generation, and
 * the payload's XXH3. Anything else is a miss, counted as corrupt.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "store_internal.h"

/* Writes are handed to the engine as soon as SUBMIT_CHUNK_BYTES of payload
 * (at least one block, at most SUBMIT_CHUNK blocks) have their checksums:
 * the disk starts on the first ones while the next are checksummed, and a
 * large block is never held back behind the checksums of others. */
#define SUBMIT_CHUNK       16
#define SUBMIT_CHUNK_BYTES ((uint64_t)512 * 1024)

kvbm_status_t kvbm__disk_batch_create(kvbm__disk_store_t *store, size_t capacity,
                                      kvbm__disk_batch_t **batch_out)
{
    KVBM_REQUIRE_ARG(store != NULL && batch_out != NULL && capacity > 0);
    kvbm__disk_batch_t *batch = kvbm__calloc(1, sizeof(*batch));
    if (batch == NULL)
        return KVBM_ERR_NO_MEMORY;
    batch->store = store;
    batch->capacity = capacity;
    batch->reqs = kvbm__calloc(capacity, sizeof(*batch->reqs));
    batch->req_ptrs = kvbm__calloc(capacity, sizeof(kvbm__disk_req_t *));
    batch->hashes = kvbm__calloc(capacity, sizeof(*batch->hashes));
    batch->generations = kvbm__calloc(capacity, sizeof(*batch->generations));
    batch->slots = kvbm__calloc(capacity, sizeof(*batch->slots));
    batch->outcomes = kvbm__calloc(capacity, sizeof(*batch->outcomes));
    if (batch->reqs == NULL || batch->req_ptrs == NULL || batch->hashes == NULL ||
        batch->generations == NULL || batch->slots == NULL || batch->outcomes == NULL) {
        kvbm__disk_batch_destroy(batch);
        return KVBM_ERR_NO_MEMORY;
    }
    *batch_out = batch;
    return KVBM_OK;
}

void kvbm__disk_batch_destroy(kvbm__disk_batch_t *batch)
{
    if (batch == NULL)
        return;
    if (batch->submitted)
        kvbm__disk_batch_wait(batch);
    kvbm__free(batch->reqs);
    kvbm__free(batch->req_ptrs);
    kvbm__free(batch->hashes);
    kvbm__free(batch->generations);
    kvbm__free(batch->slots);
    kvbm__free(batch->outcomes);
    kvbm__free(batch);
}

void kvbm__disk_batch_clear(kvbm__disk_batch_t *batch)
{
    assert(!batch->submitted || kvbm__disk_batch_done(batch));
    batch->n = 0;
    batch->submitted = false;
}

kvbm_status_t kvbm__disk_batch_add(kvbm__disk_batch_t *batch, uint32_t slot, uint64_t seq_hash,
                                   void *buf)
{
    KVBM_REQUIRE_ARG(!batch->submitted && batch->n < batch->capacity);
    KVBM_REQUIRE_ARG(buf != NULL && (uintptr_t)buf % KVBM__DISK_MIN_ALIGN == 0);
    if (slot >= batch->store->geometry.slots)
        return KVBM_ERR_OUT_OF_RANGE;
    size_t i = batch->n++;
    batch->slots[i] = slot;
    batch->hashes[i] = seq_hash;
    batch->outcomes[i] = KVBM__DISK_PENDING;
    kvbm__disk_req_t *req = &batch->reqs[i];
    memset(req, 0, sizeof(*req));
    req->buf = buf;
    req->bytes = batch->store->geometry.slot_bytes;
    req->offset = kvbm__disk_slot_offset(&batch->store->geometry, slot);
    req->owner = batch;
    req->index = (uint32_t)i;
    batch->req_ptrs[i] = req;
    return KVBM_OK;
}

size_t kvbm__disk_batch_count(const kvbm__disk_batch_t *batch)
{
    return batch->n;
}

/* Marks the batch in flight before the first request can complete. */
static kvbm_status_t begin(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch, kvbm__disk_op_t op)
{
    KVBM_REQUIRE_ARG(store != NULL && batch != NULL && batch->store == store);
    KVBM_REQUIRE_ARG(!batch->submitted && batch->n > 0);
    batch->op = op;
    batch->submitted = true;
    kvbm__mutex_lock(&store->done_lock);
    batch->pending = batch->n;
    kvbm__mutex_unlock(&store->done_lock);
    return KVBM_OK;
}

static void prepare_write(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch, size_t i)
{
    kvbm__disk_req_t *req = &batch->reqs[i];
    uint8_t *buf = req->buf;
    uint64_t generation =
        atomic_fetch_add_explicit(&store->next_generation, 1, memory_order_relaxed);
    kvbm__disk_header_t header = {
        .slot = batch->slots[i],
        .payload_bytes = (uint32_t)store->geometry.payload_bytes,
        .seq_hash = batch->hashes[i],
        .fingerprint = store->config.fingerprint,
        .generation = generation,
        .payload_checksum = kvbm__disk_payload_checksum(buf + KVBM__DISK_HEADER_BYTES,
                                                        store->geometry.payload_bytes),
    };
    kvbm__disk_header_encode(&header, buf);
    batch->generations[i] = generation;
    req->op = KVBM__DISK_WRITE;
    req->dsync = store->config.durability == KVBM_DISK_DURABLE_POWER;
    kvbm__disk_store_forget(store, batch->slots[i]);
}

kvbm_status_t kvbm__disk_store_write(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch)
{
    kvbm_status_t status = begin(store, batch, KVBM__DISK_WRITE);
    if (status != KVBM_OK)
        return status;
    uint64_t payload = store->geometry.payload_bytes;
    size_t chunk = payload >= SUBMIT_CHUNK_BYTES ? 1 : SUBMIT_CHUNK_BYTES / payload;
    chunk = chunk < SUBMIT_CHUNK ? chunk : SUBMIT_CHUNK;
    for (size_t start = 0; start < batch->n; start += chunk) {
        size_t end = start + chunk < batch->n ? start + chunk : batch->n;
        for (size_t i = start; i < end; i++)
            prepare_write(store, batch, i);
        store->engine->submit(store->engine_state, batch->req_ptrs + start, end - start);
    }
    return KVBM_OK;
}

kvbm_status_t kvbm__disk_store_read(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch)
{
    kvbm_status_t status = begin(store, batch, KVBM__DISK_READ);
    if (status != KVBM_OK)
        return status;
    for (size_t i = 0; i < batch->n; i++)
        batch->reqs[i].op = KVBM__DISK_READ;
    store->engine->submit(store->engine_state, batch->req_ptrs, batch->n);
    return KVBM_OK;
}

/* Whether a slot read back holds exactly the block published there. */
static bool verify(const kvbm__disk_store_t *store, const kvbm__disk_batch_t *batch, size_t i)
{
    const uint8_t *buf = batch->reqs[i].buf;
    uint32_t slot = batch->slots[i];
    kvbm__disk_header_t header;
    if (!kvbm__disk_header_decode(buf, &header))
        return false;
    return header.slot == slot && header.payload_bytes == store->geometry.payload_bytes &&
           header.fingerprint == store->config.fingerprint && header.seq_hash == batch->hashes[i] &&
           header.generation != 0 && header.generation == store->slot_generation[slot] &&
           header.payload_checksum ==
               kvbm__disk_payload_checksum(buf + KVBM__DISK_HEADER_BYTES, header.payload_bytes);
}

static kvbm__disk_outcome_t complete_write(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch,
                                           size_t i)
{
    uint32_t slot = batch->slots[i];
    if (batch->reqs[i].result != (int64_t)store->geometry.slot_bytes) {
        kvbm__disk_count(store, KVBM__DISK_COUNTER_stores_failed, 1);
        return KVBM__DISK_FAILED;
    }
    store->slot_generation[slot] = batch->generations[i];
    memcpy(kvbm__disk_table_entry(store, slot), batch->reqs[i].buf, KVBM__DISK_HEADER_BYTES);
    if (store->config.durability == KVBM_DISK_DURABLE_POWER)
        kvbm__disk_table_sync(store, slot);
    kvbm__disk_count(store, KVBM__DISK_COUNTER_stores, 1);
    kvbm__disk_count(store, KVBM__DISK_COUNTER_store_bytes, store->geometry.payload_bytes);
    return KVBM__DISK_DONE;
}

static kvbm__disk_outcome_t complete_read(kvbm__disk_store_t *store, kvbm__disk_batch_t *batch,
                                          size_t i)
{
    if (batch->reqs[i].result != (int64_t)store->geometry.slot_bytes) {
        kvbm__disk_count(store, KVBM__DISK_COUNTER_loads_failed, 1);
        return KVBM__DISK_FAILED;
    }
    if (!verify(store, batch, i)) {
        kvbm__disk_count(store, KVBM__DISK_COUNTER_loads_corrupt, 1);
        return KVBM__DISK_CORRUPT;
    }
    kvbm__disk_count(store, KVBM__DISK_COUNTER_loads, 1);
    kvbm__disk_count(store, KVBM__DISK_COUNTER_load_bytes, store->geometry.payload_bytes);
    return KVBM__DISK_DONE;
}

void kvbm__disk_store_complete(void *ctx, kvbm__disk_req_t *req)
{
    kvbm__disk_store_t *store = ctx;
    kvbm__disk_batch_t *batch = req->owner;
    size_t i = req->index;
    kvbm__disk_outcome_t outcome = batch->op == KVBM__DISK_WRITE ? complete_write(store, batch, i)
                                                                 : complete_read(store, batch, i);
    kvbm__mutex_lock(&store->done_lock);
    batch->outcomes[i] = (uint8_t)outcome;
    if (--batch->pending == 0)
        kvbm__cond_broadcast(&store->done_cond);
    kvbm__mutex_unlock(&store->done_lock);
}

bool kvbm__disk_batch_done(kvbm__disk_batch_t *batch)
{
    kvbm__mutex_lock(&batch->store->done_lock);
    bool done = batch->pending == 0;
    kvbm__mutex_unlock(&batch->store->done_lock);
    return done;
}

void kvbm__disk_batch_wait(kvbm__disk_batch_t *batch)
{
    kvbm__disk_store_t *store = batch->store;
    kvbm__mutex_lock(&store->done_lock);
    while (batch->pending > 0)
        kvbm__cond_wait(&store->done_cond, &store->done_lock);
    kvbm__mutex_unlock(&store->done_lock);
}

kvbm__disk_outcome_t kvbm__disk_batch_outcome(const kvbm__disk_batch_t *batch, size_t i)
{
    return i < batch->n ? (kvbm__disk_outcome_t)batch->outcomes[i] : KVBM__DISK_PENDING;
}

kvbm__disk_fault_t kvbm__disk_store_fault(void *ctx, const kvbm__disk_req_t *req)
{
    kvbm__disk_store_t *store = ctx;
    kvbm__mutex_lock(&store->fault_lock);
    kvbm__disk_fault_fn hook = store->fault;
    void *hook_ctx = store->fault_ctx;
    kvbm__mutex_unlock(&store->fault_lock);
    return hook != NULL ? hook(hook_ctx, req) : KVBM__DISK_FAULT_NONE;
}
