/* Compact batches of event records; see event_batch.h. */
#include "event_batch.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "alloc.h"

/* Grows @p *array (elements of @p size) to hold @p more after @p used,
 * doubling; false, leaving it unchanged, when memory runs out. */
static __attribute__((noinline)) bool grow(void **array, size_t *capacity, size_t used, size_t more,
                                           size_t size)
{
    size_t wanted = *capacity > 0 ? *capacity : 64;
    while (wanted - used < more) {
        if (wanted > SIZE_MAX / 2 / size)
            return false;
        wanted *= 2;
    }
    void *grown = kvbm__realloc(*array, 1, wanted * size);
    if (grown == NULL)
        return false;
    *array = grown;
    *capacity = wanted;
    return true;
}

static inline bool room(void **array, size_t *capacity, size_t used, size_t more, size_t size)
{
    return more <= *capacity - used || grow(array, capacity, used, more, size);
}

typedef enum merge {
    MERGE_NONE = 0,
    MERGE_APPEND = 1,  /* r continues the last record */
    MERGE_PREPEND = 2, /* r leads into the last record (a tokenless stored run) */
} merge_t;

/* The last record's hashes end the hashes array: its last one in chain order. */
static inline uint64_t last_hash(const kvbm__event_batch_t *batch, const kvbm_event_record_t *last)
{
    return batch->last_reversed ? batch->hashes[batch->n_hashes - last->count]
                                : batch->hashes[batch->n_hashes - 1];
}

/* How @p r (with hashes) joins @p last, if it does (see event_batch.h). */
static inline merge_t merge_with(const kvbm__event_batch_t *batch, const kvbm_event_record_t *last,
                                 const kvbm_event_record_t *r)
{
    if (last->kind != r->kind || last->medium != r->medium || r->kind == KVBM_EVENT_CLEARED ||
        last->count == 0 || r->count > UINT32_MAX - last->count ||
        r->n_tokens > UINT32_MAX - last->n_tokens)
        return MERGE_NONE;
    if (r->kind == KVBM_EVENT_REMOVED)
        return MERGE_APPEND;
    if (r->block_size != last->block_size || r->has_lora_id != last->has_lora_id ||
        (r->has_lora_id && r->lora_id != last->lora_id) || r->lora_name != NULL ||
        last->lora_name != NULL || (r->n_tokens == 0) != (last->n_tokens == 0))
        return MERGE_NONE;
    if (r->has_parent && r->parent_hash == last_hash(batch, last))
        return MERGE_APPEND;
    if (r->n_tokens == 0 && last->has_parent && last->parent_hash == r->hashes[r->count - 1])
        return MERGE_PREPEND;
    return MERGE_NONE;
}

/* Puts the last record's hashes back in chain order if it grew by prepending. */
static void put_last_in_order(kvbm__event_batch_t *batch)
{
    if (!batch->last_reversed)
        return;
    size_t count = batch->records[batch->n_records - 1].count;
    uint64_t *hashes = batch->hashes + batch->n_hashes - count;
    for (size_t i = 0, j = count - 1; i < j; i++, j--) {
        uint64_t h = hashes[i];
        hashes[i] = hashes[j];
        hashes[j] = h;
    }
    batch->last_reversed = false;
}

/* @p r continues the last record: its hashes and tokens go after it. */
static inline void merge_append(kvbm__event_batch_t *batch, kvbm_event_record_t *last,
                                const kvbm_event_record_t *r)
{
    put_last_in_order(batch);
    kvbm__event_batch_copy_hashes(batch->hashes + batch->n_hashes, r->hashes, r->count);
    if (r->n_tokens > 0)
        memcpy(batch->tokens + batch->n_tokens, r->tokens, r->n_tokens * sizeof(uint32_t));
    last->count += r->count;
    last->n_tokens += r->n_tokens;
    batch->n_hashes += r->count;
    batch->n_tokens += r->n_tokens;
}

/* @p r leads into the last record (both tokenless): its hashes go first in
 * chain order, which is last in a run kept last-first. */
static inline void merge_prepend(kvbm__event_batch_t *batch, kvbm_event_record_t *last,
                                 const kvbm_event_record_t *r)
{
    uint64_t *end = batch->hashes + batch->n_hashes;
    if (batch->last_reversed || last->count == 1) {
        batch->last_reversed = true;
        for (size_t i = 0; i < r->count; i++)
            end[i] = r->hashes[r->count - 1 - i];
    } else {
        uint64_t *run = end - last->count;
        memmove(run + r->count, run, last->count * sizeof(uint64_t));
        memcpy(run, r->hashes, r->count * sizeof(uint64_t));
    }
    last->count += r->count;
    last->has_parent = r->has_parent;
    last->parent_hash = r->parent_hash;
    batch->n_hashes += r->count;
}

/* @p r as a record of its own (room for it was made). Its pointers are
 * the caller's until the view sets them; a non-NULL lora_name only says
 * there is a name. */
static void add_record(kvbm__event_batch_t *batch, const kvbm_event_record_t *r, size_t name_len)
{
    put_last_in_order(batch);
    kvbm_event_record_t *k = &batch->records[batch->n_records++];
    *k = *r;
    k->blocks = NULL; /* block ids of two tiers mean nothing to a router */
    if (r->count > 0)
        kvbm__event_batch_copy_hashes(batch->hashes + batch->n_hashes, r->hashes, r->count);
    if (r->n_tokens > 0)
        memcpy(batch->tokens + batch->n_tokens, r->tokens, r->n_tokens * sizeof(uint32_t));
    if (name_len > 0)
        memcpy(batch->names + batch->n_names, r->lora_name, name_len);
    batch->n_hashes += r->count;
    batch->n_tokens += r->n_tokens;
    batch->n_names += name_len;
    batch->n_events += r->kind == KVBM_EVENT_CLEARED || r->count > 0;
}

/* Room for @p r's arrays and, unless it merges, for itself. */
static bool room_for(kvbm__event_batch_t *batch, const kvbm_event_record_t *r, size_t name_len)
{
    return room((void **)&batch->hashes, &batch->hashes_capacity, batch->n_hashes, r->count,
                sizeof(uint64_t)) &&
           (r->n_tokens == 0 || room((void **)&batch->tokens, &batch->tokens_capacity,
                                     batch->n_tokens, r->n_tokens, sizeof(uint32_t))) &&
           (name_len == 0 ||
            room((void **)&batch->names, &batch->names_capacity, batch->n_names, name_len, 1));
}

/* Whether @p r is an event a batch can keep (see kvbm__event_batch_append). */
static bool record_valid(const kvbm_event_record_t *r, size_t name_len)
{
    if (r->kind == KVBM_EVENT_CLEARED)
        return true;
    if ((r->kind != KVBM_EVENT_STORED && r->kind != KVBM_EVENT_REMOVED) ||
        kvbm_medium_name(r->medium) == NULL || r->count > UINT32_MAX ||
        (r->count > 0 && r->hashes == NULL))
        return false;
    return r->kind != KVBM_EVENT_STORED ||
           (r->n_tokens <= UINT32_MAX && (r->n_tokens == 0 || r->tokens != NULL) &&
            name_len <= UINT32_MAX);
}

/* The copy a batch keeps of @p r: clears and removals carry no more than
 * their kind, tier and hashes. */
static kvbm_event_record_t kept_form(const kvbm_event_record_t *r)
{
    kvbm_event_record_t kept = *r;
    if (r->kind == KVBM_EVENT_CLEARED)
        kept = (kvbm_event_record_t){.kind = KVBM_EVENT_CLEARED};
    if (r->kind != KVBM_EVENT_STORED) {
        kept.n_tokens = 0;
        kept.lora_name = NULL;
    }
    return kept;
}

kvbm_status_t kvbm__event_batch_append(kvbm__event_batch_t *batch,
                                       const kvbm_event_record_t *record)
{
    const kvbm_event_record_t kept = kept_form(record);
    const kvbm_event_record_t *r = &kept;
    size_t name_len = r->lora_name != NULL ? strlen(r->lora_name) + 1 : 0;
    if (!record_valid(r, name_len))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "event record: kind %d, medium %d, %zu hashes, %zu tokens is not valid",
                          (int)r->kind, (int)r->medium, r->count, r->n_tokens);
    if (!room_for(batch, r, name_len))
        return KVBM_ERR_NO_MEMORY;
    if (batch->n_records > 0 && r->count > 0) {
        kvbm_event_record_t *last = &batch->records[batch->n_records - 1];
        merge_t merge = merge_with(batch, last, r);
        if (merge == MERGE_APPEND) {
            merge_append(batch, last, r);
            return KVBM_OK;
        }
        if (merge == MERGE_PREPEND) {
            merge_prepend(batch, last, r);
            return KVBM_OK;
        }
    }
    if (!room((void **)&batch->records, &batch->records_capacity, batch->n_records, 1,
              sizeof(kvbm_event_record_t)))
        return KVBM_ERR_NO_MEMORY;
    add_record(batch, r, name_len);
    return KVBM_OK;
}

void kvbm__event_batch_settle(kvbm__event_batch_t *batch)
{
    if (batch->n_records > 0)
        put_last_in_order(batch);
}

const kvbm_event_record_t *kvbm__event_batch_view(kvbm__event_batch_t *batch)
{
    kvbm__event_batch_settle(batch);
    const uint64_t *hashes = batch->hashes;
    const uint32_t *tokens = batch->tokens;
    const char *names = batch->names;
    for (size_t i = 0; i < batch->n_records; i++) {
        kvbm_event_record_t *r = &batch->records[i];
        r->hashes = r->count > 0 ? hashes : NULL;
        r->tokens = r->n_tokens > 0 ? tokens : NULL;
        hashes += r->count;
        tokens += r->n_tokens;
        if (r->lora_name != NULL) {
            r->lora_name = names;
            names += strlen(names) + 1;
        }
    }
    return batch->records;
}

void kvbm__event_batch_clear(kvbm__event_batch_t *batch)
{
    batch->n_records = 0;
    batch->n_hashes = 0;
    batch->n_tokens = 0;
    batch->n_names = 0;
    batch->n_events = 0;
    batch->last_reversed = false;
}

kvbm_status_t kvbm__event_batch_reserve(kvbm__event_batch_t *batch, size_t records, size_t hashes)
{
    if (!room((void **)&batch->records, &batch->records_capacity, batch->n_records, records,
              sizeof(kvbm_event_record_t)) ||
        !room((void **)&batch->hashes, &batch->hashes_capacity, batch->n_hashes, hashes,
              sizeof(uint64_t)))
        return KVBM_ERR_NO_MEMORY;
    memset(batch->records, 0, batch->records_capacity * sizeof(kvbm_event_record_t));
    memset(batch->hashes, 0, batch->hashes_capacity * sizeof(uint64_t));
    return KVBM_OK;
}

void kvbm__event_batch_free(kvbm__event_batch_t *batch)
{
    kvbm__free(batch->records);
    kvbm__free(batch->hashes);
    kvbm__free(batch->tokens);
    kvbm__free(batch->names);
    *batch = (kvbm__event_batch_t){0};
}
