/* Batches of event records gathered from several calls; see kvbm/event_record.h. */
#include "kvbm/event_record.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One record kept: its arrays live in the shared buffers, found by offset
 * (the buffers may move as they grow) and turned into pointers on delivery. */
typedef struct kept_record {
    kvbm_event_record_t record;
    size_t hash_at;
    size_t token_at;
    size_t name_at; /* valid when record.lora_name != NULL */
} kept_record_t;

struct kvbm_event_batcher {
    kvbm_event_record_fn sink;
    void *ctx;
    kept_record_t *kept;
    size_t n_kept, kept_capacity;
    kvbm_event_record_t *out; /* kept_capacity entries, filled on delivery */
    uint64_t *hashes;
    size_t n_hashes, hash_capacity;
    uint32_t *tokens;
    size_t n_tokens, token_capacity;
    char *names;
    size_t n_names, name_capacity;
};

kvbm_status_t kvbm_event_batcher_create(kvbm_event_record_fn sink, void *ctx,
                                        kvbm_event_batcher_t **batcher_out)
{
    if (sink == NULL || batcher_out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_event_batcher_t *events = calloc(1, sizeof(*events));
    if (events == NULL)
        return KVBM_ERR_NO_MEMORY;
    events->sink = sink;
    events->ctx = ctx;
    *batcher_out = events;
    return KVBM_OK;
}

void kvbm_event_batcher_destroy(kvbm_event_batcher_t *events)
{
    if (events == NULL)
        return;
    free(events->kept);
    free(events->out);
    free(events->hashes);
    free(events->tokens);
    free(events->names);
    free(events);
}

/* Makes room for @p more elements of @p size after @p used; false if out of memory. */
static bool reserve(void **array, size_t *capacity, size_t used, size_t more, size_t size)
{
    if (more <= *capacity - used)
        return true;
    size_t wanted = *capacity > 0 ? *capacity : 64;
    while (wanted - used < more) {
        if (wanted > SIZE_MAX / 2 / size)
            return false;
        wanted *= 2;
    }
    void *grown = realloc(*array, wanted * size);
    if (grown == NULL)
        return false;
    *array = grown;
    *capacity = wanted;
    return true;
}

static bool reserve_record(kvbm_event_batcher_t *events)
{
    if (events->n_kept < events->kept_capacity)
        return true;
    size_t capacity = events->kept_capacity;
    if (!reserve((void **)&events->kept, &capacity, events->n_kept, 1, sizeof(kept_record_t)))
        return false;
    kvbm_event_record_t *out = realloc(events->out, capacity * sizeof(*out));
    if (out == NULL)
        return false; /* kept grew; kept_capacity still says the old size */
    events->out = out;
    events->kept_capacity = capacity;
    return true;
}

static bool same_lora(const kvbm_event_record_t *a, const kvbm_event_record_t *b)
{
    return a->has_lora_id == b->has_lora_id && (!a->has_lora_id || a->lora_id == b->lora_id) &&
           a->lora_name == NULL && b->lora_name == NULL;
}

typedef enum merge {
    MERGE_NONE = 0,
    MERGE_APPEND = 1,  /* r continues the last record */
    MERGE_PREPEND = 2, /* r leads into the last record (a stored run, tokenless) */
} merge_t;

/* How @p r joins the last kept record, if it does: removals of one tier
 * append; a stored run of one tier whose parent is the last record's last
 * hash appends, one whose last hash is the last record's parent prepends
 * (evictions, and so offloads, come tail first), if the metadata agree. */
static merge_t merge_with_last(const kvbm_event_batcher_t *events, const kvbm_event_record_t *r)
{
    if (events->n_kept == 0 || r->count == 0)
        return MERGE_NONE;
    const kept_record_t *last = &events->kept[events->n_kept - 1];
    const kvbm_event_record_t *prev = &last->record;
    if (prev->kind != r->kind || prev->medium != r->medium || r->kind == KVBM_EVENT_CLEARED ||
        prev->count == 0)
        return MERGE_NONE;
    if (r->kind == KVBM_EVENT_REMOVED)
        return MERGE_APPEND;
    if (r->block_size != prev->block_size || !same_lora(prev, r) ||
        (r->n_tokens == 0) != (prev->n_tokens == 0))
        return MERGE_NONE;
    if (r->has_parent && r->parent_hash == events->hashes[last->hash_at + prev->count - 1])
        return MERGE_APPEND;
    if (r->n_tokens == 0 && prev->has_parent && prev->parent_hash == r->hashes[r->count - 1])
        return MERGE_PREPEND;
    return MERGE_NONE;
}

/* Keeps a copy of one record; false (nothing kept) when out of memory. */
static bool keep(kvbm_event_batcher_t *events, const kvbm_event_record_t *r)
{
    size_t name_len = r->lora_name != NULL ? strlen(r->lora_name) + 1 : 0;
    if (!reserve((void **)&events->hashes, &events->hash_capacity, events->n_hashes, r->count,
                 sizeof(uint64_t)) ||
        !reserve((void **)&events->tokens, &events->token_capacity, events->n_tokens, r->n_tokens,
                 sizeof(uint32_t)) ||
        !reserve((void **)&events->names, &events->name_capacity, events->n_names, name_len, 1))
        return false;
    merge_t merge = merge_with_last(events, r);
    if (merge == MERGE_NONE && !reserve_record(events))
        return false;
    if (merge == MERGE_PREPEND) {
        /* The last record's hashes end the buffer: move them up, put r's first. */
        kept_record_t *last = &events->kept[events->n_kept - 1];
        uint64_t *at = events->hashes + last->hash_at;
        memmove(at + r->count, at, last->record.count * sizeof(uint64_t));
        memcpy(at, r->hashes, r->count * sizeof(uint64_t));
        last->record.count += r->count;
        last->record.has_parent = r->has_parent;
        last->record.parent_hash = r->parent_hash;
        events->n_hashes += r->count;
        return true;
    }
    if (r->count > 0)
        memcpy(events->hashes + events->n_hashes, r->hashes, r->count * sizeof(uint64_t));
    if (r->n_tokens > 0)
        memcpy(events->tokens + events->n_tokens, r->tokens, r->n_tokens * sizeof(uint32_t));
    if (merge == MERGE_APPEND) {
        kvbm_event_record_t *prev = &events->kept[events->n_kept - 1].record;
        prev->count += r->count;
        prev->n_tokens += r->n_tokens;
    } else {
        kept_record_t *k = &events->kept[events->n_kept++];
        k->record = *r;
        k->record.blocks = NULL; /* block ids of two tiers mean nothing to a router */
        k->hash_at = events->n_hashes;
        k->token_at = events->n_tokens;
        k->name_at = events->n_names;
        if (name_len > 0)
            memcpy(events->names + events->n_names, r->lora_name, name_len);
        events->n_names += name_len;
    }
    events->n_hashes += r->count;
    events->n_tokens += r->n_tokens;
    return true;
}

void kvbm_event_batcher_sink(void *batcher, const kvbm_event_record_t *records, size_t count)
{
    kvbm_event_batcher_t *events = batcher;
    for (size_t i = 0; i < count; i++) {
        if (!keep(events, &records[i])) {
            /* Out of memory: deliver what is kept, then the rest of these
             * records as they are (still valid now), so nothing is lost
             * and the order holds; only the batching suffers. */
            kvbm_event_batcher_flush(events);
            events->sink(events->ctx, records + i, count - i);
            return;
        }
    }
}

void kvbm_event_batcher_flush(kvbm_event_batcher_t *events)
{
    if (events->n_kept == 0)
        return;
    for (size_t i = 0; i < events->n_kept; i++) {
        const kept_record_t *k = &events->kept[i];
        kvbm_event_record_t *r = &events->out[i];
        *r = k->record;
        r->hashes = r->count > 0 ? events->hashes + k->hash_at : NULL;
        r->tokens = r->n_tokens > 0 ? events->tokens + k->token_at : NULL;
        if (r->lora_name != NULL)
            r->lora_name = events->names + k->name_at;
    }
    events->sink(events->ctx, events->out, events->n_kept);
    events->n_kept = 0;
    events->n_hashes = 0;
    events->n_tokens = 0;
    events->n_names = 0;
}
