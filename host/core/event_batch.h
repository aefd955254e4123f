/*
 * A batch of event records in compact form: the records, and their hashes,
 * tokens and LoRA names, in record order, in three growable arrays that keep their capacity, so a
 * batch that is cleared and filled again allocates nothing. The public batcher
 * (kvbm_event_batcher_t) gathers calls' records into one.
 *
 * Appending a record merges it into the last one where it continues it:
 * removals from one tier; stored runs of one tier (same block size, LoRA,
 * tokens given or not) where the record's parent is the last run's last
 * hash (appended), or the record's last hash is the last run's parent
 * (prepended, tokenless runs only: evictions, and so offloads, come tail
 * first). A run grown by prepending keeps its hashes last-first and is put
 * in order once (when a record follows it, or by kvbm__event_batch_view),
 * so a chain of N one-block offloads costs N appends, not N moves of the
 * run.
 *
 * Not locked: the owner serialises every call on one batch.
 */
#ifndef KVBM_HOST_CORE_EVENT_BATCH_H
#define KVBM_HOST_CORE_EVENT_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kvbm/event_record.h"

typedef struct kvbm__event_batch {
    /* The records as they will be seen, but for their pointers (hashes,
     * tokens, lora_name: set by the view, since the arrays move as they
     * grow; blocks: always NULL). Each record's hashes, tokens and name
     * follow those of the records before it, so no offsets are kept. */
    kvbm_event_record_t *records;
    size_t n_records, records_capacity;
    size_t n_events;    /* records that are events on the wire: with hashes, or clears */
    bool last_reversed; /* the last record's hashes are last-first (it grew by prepending) */
    uint64_t *hashes;
    size_t n_hashes, hashes_capacity;
    uint32_t *tokens;
    size_t n_tokens, tokens_capacity;
    char *names;
    size_t n_names, names_capacity;
} kvbm__event_batch_t;

/*
 * Appends a copy of @p record (its arrays need not outlive the call),
 * merged into the last record where it continues it. Records without
 * hashes (other than clears) are kept as they are; a removal or clear
 * keeps no tokens or name. So that a batch's records are valid events by
 * construction, a record is refused (KVBM_ERR_INVALID_ARG) unless its kind
 * and tier are known and its counts fit msgpack's 32 bits with their
 * arrays present. KVBM_ERR_NO_MEMORY when memory runs out. On error nothing
 * changed. No record of a batch grows to 2^32 hashes or tokens.
 */
kvbm_status_t kvbm__event_batch_append(kvbm__event_batch_t *batch,
                                       const kvbm_event_record_t *record);

/* The batch's records, batch->n_records of them, with their pointers into
 * the batch (block ids are never kept: NULL). Valid until the batch changes.
 * The batch's arrays may be copied elsewhere (records, hashes, tokens and
 * names, in that order, each as long as its n_) and viewed there, through
 * a batch whose pointers and counts describe the copy. */
const kvbm_event_record_t *kvbm__event_batch_view(kvbm__event_batch_t *batch);

/* ------------------------------------------------------------------ the batcher */

/* kvbm_event_batcher_t (kvbm/event_record.h): a batch and the sink it is
 * flushed to. Defined here so a manager whose sink is
 * kvbm_event_batcher_sink can add its records straight into the batch,
 * without a call per manager call (host/manager/events.h). */
/* Takes a flushed batch whole (the publisher copies its arrays as they
 * are, with no view and no copy record by record); the batcher clears it
 * after. */
typedef void (*kvbm__event_batch_take_fn)(void *ctx, kvbm__event_batch_t *batch);

struct kvbm_event_batcher {
    kvbm_event_record_fn sink;      /* records: what a flush hands on, or what is
                                       delivered at once when memory runs out */
    kvbm__event_batch_take_fn take; /* NULL, or what a flush hands the batch to */
    void *ctx;
    kvbm__event_batch_t batch; /* what was kept since the last flush */
};

/* A batcher whose flush hands its batch to @p take; @p sink (same @p ctx)
 * receives records only when memory runs out. As kvbm_event_batcher_create. */
kvbm_status_t kvbm__event_batcher_create_taking(kvbm_event_record_fn sink,
                                                kvbm__event_batch_take_fn take, void *ctx,
                                                kvbm_event_batcher_t **batcher_out);

/* kvbm_event_batcher_sink for one record. */
static inline void kvbm__event_batcher_add(kvbm_event_batcher_t *batcher,
                                           const kvbm_event_record_t *record)
{
    if (kvbm__event_batch_append(&batcher->batch, record) != KVBM_OK)
        kvbm_event_batcher_sink(batcher, record, 1); /* delivers it at once, as it is */
}

/*
 * What a manager adds most, inline, with kvbm__event_batcher_add's result:
 * a call's removals from @p medium (they join the last record when that
 * removes from the same tier), and a stored run of @p count hashes without
 * tokens, LoRA id or name (it continues the last run, leads into it when it
 * is one block, or starts a record). Anything else, or a batch without room,
 * takes the general way.
 */
/* Copies @p count hashes; one (a call on one block) without a library call. */
static inline void kvbm__event_batch_copy_hashes(uint64_t *to, const uint64_t *from, size_t count)
{
    if (count == 1)
        *to = *from;
    else
        memcpy(to, from, count * sizeof(uint64_t));
}

static inline void kvbm__event_batcher_removed(kvbm_event_batcher_t *batcher, kvbm_medium_t medium,
                                               const uint64_t *hashes, size_t count)
{
    kvbm__event_batch_t *batch = &batcher->batch;
    /* (records is never NULL with room in it; said for the analyzer) */
    if (count - 1 < batch->hashes_capacity - batch->n_hashes && count <= UINT32_MAX &&
        batch->n_records < batch->records_capacity && batch->records != NULL &&
        !batch->last_reversed) {
        uint64_t *end = batch->hashes + batch->n_hashes;
        kvbm_event_record_t *last =
            batch->n_records > 0 ? &batch->records[batch->n_records - 1] : NULL;
        if (last != NULL && last->kind == KVBM_EVENT_REMOVED && last->medium == medium &&
            last->count > 0 && count <= UINT32_MAX - last->count) {
            last->count += count;
        } else { /* a record of its own; its pointers are set by the view */
            kvbm_event_record_t *k = &batch->records[batch->n_records++];
            k->kind = KVBM_EVENT_REMOVED;
            k->medium = medium;
            k->count = count;
            k->blocks = NULL;
            k->n_tokens = 0;
            k->lora_name = NULL;
            batch->n_events++;
        }
        kvbm__event_batch_copy_hashes(end, hashes, count);
        batch->n_hashes += count;
        return;
    }
    const kvbm_event_record_t record = {
        .kind = KVBM_EVENT_REMOVED, .medium = medium, .count = count, .hashes = hashes};
    kvbm__event_batcher_add(batcher, &record);
}

/* A plain stored run into a batch with room for its hashes and one more
 * record; false, having done nothing, when a record would have to follow
 * a run kept last-first (the general way puts that in order first). */
static inline bool kvbm__event_batch_stored_plain(kvbm__event_batch_t *batch, kvbm_medium_t medium,
                                                  const uint64_t *hashes, size_t count,
                                                  bool has_parent, uint64_t parent_hash,
                                                  uint32_t block_size)
{
    kvbm_event_record_t *last = &batch->records[batch->n_records - 1];
    uint64_t *end = batch->hashes + batch->n_hashes;
    bool reversed = batch->last_reversed;
    if (last->kind == KVBM_EVENT_STORED && last->medium == medium && last->count > 0 &&
        last->n_tokens == 0 && last->lora_name == NULL && !last->has_lora_id &&
        last->block_size == block_size && count <= UINT32_MAX - last->count) {
        if (!reversed && has_parent && parent_hash == end[-1]) { /* continues it */
            kvbm__event_batch_copy_hashes(end, hashes, count);
            last->count += count;
            batch->n_hashes += count;
            return true;
        }
        if (count == 1 && (reversed || last->count == 1) && last->has_parent &&
            last->parent_hash == hashes[0]) { /* one block leading into it: kept last-first */
            *end = hashes[0];
            last->count++;
            last->has_parent = has_parent;
            last->parent_hash = parent_hash;
            batch->last_reversed = true;
            batch->n_hashes++;
            return true;
        }
    }
    if (reversed)
        return false;
    kvbm_event_record_t *k = last + 1; /* its pointers are set by the view */
    k->kind = KVBM_EVENT_STORED;
    k->medium = medium;
    k->count = count;
    k->blocks = NULL;
    k->parent_hash = parent_hash;
    k->has_parent = has_parent;
    k->has_lora_id = false;
    k->block_size = block_size;
    k->n_tokens = 0;
    k->lora_name = NULL;
    batch->n_records++;
    batch->n_events++;
    kvbm__event_batch_copy_hashes(end, hashes, count);
    batch->n_hashes += count;
    return true;
}

static inline void kvbm__event_batcher_stored_plain(kvbm_event_batcher_t *batcher,
                                                    kvbm_medium_t medium, const uint64_t *hashes,
                                                    size_t count, bool has_parent,
                                                    uint64_t parent_hash, uint32_t block_size)
{
    kvbm__event_batch_t *batch = &batcher->batch;
    /* count - 1 and n_records - 1 wrap for 0: those take the general way,
     * as do runs too long for one record. */
    if (count - 1 < batch->hashes_capacity - batch->n_hashes && count <= UINT32_MAX &&
        batch->n_records - 1 < batch->records_capacity - 1 &&
        kvbm__event_batch_stored_plain(batch, medium, hashes, count, has_parent, parent_hash,
                                       block_size))
        return;
    const kvbm_event_record_t record = {.kind = KVBM_EVENT_STORED,
                                        .medium = medium,
                                        .count = count,
                                        .hashes = hashes,
                                        .has_parent = has_parent,
                                        .parent_hash = parent_hash,
                                        .block_size = block_size};
    kvbm__event_batcher_add(batcher, &record);
}

/* Drops what the batcher kept since its last flush (kvbm_cache_clear: one
 * AllBlocksCleared says it all). */
void kvbm__event_batcher_discard(kvbm_event_batcher_t *batcher);

/* Puts a last run kept last-first in chain order (before its arrays are
 * copied elsewhere). */
void kvbm__event_batch_settle(kvbm__event_batch_t *batch);

/* Empties the batch, keeping its memory for reuse. */
void kvbm__event_batch_clear(kvbm__event_batch_t *batch);

/* Gives an empty batch room for @p records records and @p hashes hashes,
 * every page touched. On KVBM_ERR_NO_MEMORY it may hold some of that
 * memory: free it (kvbm__event_batch_free). */
kvbm_status_t kvbm__event_batch_reserve(kvbm__event_batch_t *batch, size_t records, size_t hashes);

/* Frees the batch's memory; it is then empty, as {0}. */
void kvbm__event_batch_free(kvbm__event_batch_t *batch);

#endif /* KVBM_HOST_CORE_EVENT_BATCH_H */
