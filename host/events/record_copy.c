/* Records copied into one block; see record_copy.h. */
#include "record_copy.h"

#include <string.h>

#include "core/event_batch.h"

static size_t round8(size_t bytes)
{
    return (bytes + 7) & ~(size_t)7;
}

size_t kvbm__record_copy_size(size_t count, const kvbm__events_size_t *size)
{
    return count * sizeof(kvbm_event_record_t) + size->n_hashes * sizeof(uint64_t) +
           round8(size->n_tokens * sizeof(uint32_t)) + size->name_bytes;
}

/* The copy's arrays, after its records. */
static kvbm__event_batch_t copy_arrays(char *at, size_t count, const kvbm__events_size_t *size)
{
    kvbm__event_batch_t arrays = {.records = (kvbm_event_record_t *)(void *)at, .n_records = count};
    arrays.hashes = (uint64_t *)(void *)(at + count * sizeof(kvbm_event_record_t));
    arrays.tokens = (uint32_t *)(void *)(arrays.hashes + size->n_hashes);
    arrays.names = (char *)arrays.tokens + round8(size->n_tokens * sizeof(uint32_t));
    return arrays;
}

/* Hashes to copy: a stretch of the caller's memory holding the hashes of
 * consecutive records, copied in one go (a batcher's records keep all their
 * hashes back to back: one stretch per batch). */
typedef struct stretch {
    const uint64_t *from; /* NULL: none yet */
    size_t count;
    uint64_t *to;
} stretch_t;

static void stretch_copy(stretch_t *s)
{
    if (s->count == 1)
        *s->to = *s->from;
    else if (s->count > 0)
        memcpy(s->to, s->from, s->count * sizeof(uint64_t));
    s->to += s->count;
    s->count = 0;
}

static inline void stretch_add(stretch_t *s, const uint64_t *hashes, size_t count)
{
    if (s->from == NULL || hashes != s->from + s->count) {
        stretch_copy(s);
        s->from = hashes;
    }
    s->count += count;
}

/* A stored record's tokens and name, after those copied before. */
static void copy_stored_arrays(const kvbm_event_record_t *r, uint32_t **tokens, char **names)
{
    if (r->n_tokens > 0) /* a record with a name only may have no token array */
        memcpy(*tokens, r->tokens, r->n_tokens * sizeof(uint32_t));
    *tokens += r->n_tokens;
    if (r->lora_name != NULL) {
        size_t len = strlen(r->lora_name) + 1;
        memcpy(*names, r->lora_name, len);
        *names += len;
    }
}

void kvbm__record_copy(const kvbm_event_record_t *records, size_t count,
                       const kvbm__events_size_t *size, char *to)
{
    kvbm__event_batch_t copy = copy_arrays(to, count, size);
    stretch_t hashes = {.to = copy.hashes};
    for (size_t i = 0; i < count; i++) {
        const kvbm_event_record_t *r = &records[i];
        kvbm_event_record_t *c = &copy.records[i];
        *c = *r;
        if (r->kind == KVBM_EVENT_CLEARED) {
            *c = (kvbm_event_record_t){.kind = KVBM_EVENT_CLEARED};
            continue;
        }
        if (r->count > 0 && r->hashes != NULL) /* checked: never NULL with a count */
            stretch_add(&hashes, r->hashes, r->count);
        if (r->kind == KVBM_EVENT_STORED && (r->n_tokens > 0 || r->lora_name != NULL)) {
            copy_stored_arrays(r, &copy.tokens, &copy.names);
        } else { /* what the view steps over: no tokens, no name */
            c->n_tokens = 0;
            c->lora_name = NULL;
        }
    }
    stretch_copy(&hashes);
}

void kvbm__record_copy_batch(const kvbm__event_batch_t *batch, const kvbm__events_size_t *size,
                             char *to)
{
    kvbm__event_batch_t copy = copy_arrays(to, batch->n_records, size);
    if (batch->n_records > 0)
        memcpy(copy.records, batch->records, batch->n_records * sizeof(kvbm_event_record_t));
    if (batch->n_hashes > 0)
        memcpy(copy.hashes, batch->hashes, batch->n_hashes * sizeof(uint64_t));
    if (batch->n_tokens > 0)
        memcpy(copy.tokens, batch->tokens, batch->n_tokens * sizeof(uint32_t));
    if (batch->n_names > 0)
        memcpy(copy.names, batch->names, batch->n_names);
}

const kvbm_event_record_t *kvbm__record_copy_view(char *at, size_t count,
                                                  const kvbm__events_size_t *size)
{
    kvbm__event_batch_t copy = copy_arrays(at, count, size);
    return kvbm__event_batch_view(&copy);
}
