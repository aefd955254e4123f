/* Records copied into one block; see record_copy.h. */
#include "record_copy.h"

#include <string.h>

static size_t round8(size_t bytes)
{
    return (bytes + 7) & ~(size_t)7;
}

size_t kvbm__record_copy_size(size_t count, const kvbm__events_size_t *size)
{
    return count * sizeof(kvbm_event_record_t) + size->n_hashes * sizeof(uint64_t) +
           round8(size->n_tokens * sizeof(uint32_t)) + size->name_bytes;
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

/* Where @p r's hashes go in the copy, gathering them into the stretch. */
static uint64_t *stretch_add(stretch_t *s, const kvbm_event_record_t *r)
{
    if (s->from == NULL || r->hashes != s->from + s->count) {
        stretch_copy(s);
        s->from = r->hashes;
    }
    uint64_t *at = s->to + s->count;
    s->count += r->count;
    return at;
}

/* Points a stored record's tokens and name at copies made at *tokens and *names. */
static void copy_stored_arrays(kvbm_event_record_t *r, uint32_t **tokens, char **names)
{
    if (r->n_tokens > 0) {
        memcpy(*tokens, r->tokens, r->n_tokens * sizeof(uint32_t));
        r->tokens = *tokens;
        *tokens += r->n_tokens;
    } else {
        r->tokens = NULL;
    }
    if (r->lora_name != NULL) {
        size_t len = strlen(r->lora_name) + 1;
        memcpy(*names, r->lora_name, len);
        r->lora_name = *names;
        *names += len;
    }
}

kvbm_event_record_t *kvbm__record_copy(const kvbm_event_record_t *records, size_t count,
                                       const kvbm__events_size_t *size, char *to)
{
    kvbm_event_record_t *copy = (kvbm_event_record_t *)(void *)to;
    stretch_t hashes = {.to = (uint64_t *)(void *)(to + count * sizeof(kvbm_event_record_t))};
    uint32_t *tokens = (uint32_t *)(void *)(hashes.to + size->n_hashes);
    char *names = (char *)tokens + round8(size->n_tokens * sizeof(uint32_t));
    for (size_t i = 0; i < count; i++) {
        kvbm_event_record_t *r = &copy[i];
        *r = records[i];
        r->blocks = NULL;
        if (r->kind == KVBM_EVENT_CLEARED) {
            *r = (kvbm_event_record_t){.kind = KVBM_EVENT_CLEARED};
            continue;
        }
        r->hashes = r->count > 0 ? stretch_add(&hashes, r) : NULL;
        if (r->kind == KVBM_EVENT_STORED) {
            copy_stored_arrays(r, &tokens, &names);
        } else { /* a removal's other fields are not sent */
            r->n_tokens = 0;
            r->tokens = NULL;
            r->lora_name = NULL;
        }
    }
    stretch_copy(&hashes);
    return copy;
}
