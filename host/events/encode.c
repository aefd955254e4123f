/* The msgpack form of an event batch; see encode.h for the layout. */
#include "encode.h"

#include <string.h>

#include "core/error.h"
#include "pack.h"

#define TAG_STORED  "BlockStored"
#define TAG_REMOVED "BlockRemoved"
#define TAG_CLEARED "AllBlocksCleared"

/* Fields after the tag: BlockStored has 7, BlockRemoved 2. */
#define STORED_FIELDS  8
#define REMOVED_FIELDS 3

/* kvbm_medium_name's strings with their lengths, so encoding a record
 * measures nothing (tests/test_events.c checks that both agree). */
static const struct medium_string {
    const char *text;
    size_t len;
} MEDIA[] = {
    [KVBM_MEDIUM_GPU] = {"GPU", 3},
    [KVBM_MEDIUM_CPU] = {"CPU", 3},
    [KVBM_MEDIUM_DISK] = {"DISK", 4},
};

static bool on_wire(const kvbm_event_record_t *record)
{
    return record->kind == KVBM_EVENT_CLEARED || record->count > 0;
}

/* Checks a stored record's tokens and name; adds them to *size. */
static kvbm_status_t check_stored(const kvbm_event_record_t *r, kvbm__events_size_t *size)
{
    if ((r->n_tokens > 0 && r->tokens == NULL) || r->n_tokens > UINT32_MAX)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "stored event: %zu tokens%s", r->n_tokens,
                          r->tokens == NULL ? " and no token array" : " (at most 2^32 - 1)");
    size->n_tokens += r->n_tokens;
    if (r->lora_name != NULL) {
        size_t len = strlen(r->lora_name);
        if (len > UINT32_MAX)
            return kvbm__fail(KVBM_ERR_INVALID_ARG, "stored event: a LoRA name of %zu bytes", len);
        size->name_bytes += len + 1;
    }
    return KVBM_OK;
}

/* Checks one record; adds what it holds to *size. */
static inline kvbm_status_t check_record(const kvbm_event_record_t *r, kvbm__events_size_t *size)
{
    if (r->kind == KVBM_EVENT_CLEARED) {
        size->n_events++;
        return KVBM_OK;
    }
    if ((r->kind != KVBM_EVENT_STORED && r->kind != KVBM_EVENT_REMOVED) ||
        (unsigned)r->medium >= sizeof(MEDIA) / sizeof(MEDIA[0]) ||
        (r->count > 0 && r->hashes == NULL) || r->count > UINT32_MAX)
        return kvbm__fail(
            KVBM_ERR_INVALID_ARG, "event record: kind %d, medium %d, %zu hashes%s is not valid",
            (int)r->kind, (int)r->medium, r->count, r->hashes == NULL ? " (array NULL)" : "");
    size->n_hashes += r->count;
    size->n_events += r->count > 0;
    return r->kind == KVBM_EVENT_STORED && (r->n_tokens > 0 || r->lora_name != NULL)
               ? check_stored(r, size)
               : KVBM_OK;
}

/* At least the encoded bytes of @p count records holding @p size: the
 * batch's array, ts, events array and rank; per record its array, tag,
 * fields and medium (64) and a name's header (5); 9 bytes per hash
 * (uint64), 5 per token (uint32), the names themselves. */
static size_t bound(size_t count, const kvbm__events_size_t *size)
{
    return 32 + 69 * count + 9 * size->n_hashes + 5 * size->n_tokens + size->name_bytes;
}

kvbm_status_t kvbm__events_check(const kvbm_event_record_t *records, size_t count,
                                 kvbm__events_size_t *size_out)
{
    KVBM_REQUIRE_ARG(count == 0 || records != NULL);
    if (count > UINT32_MAX)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "events: %zu records in one batch", count);
    kvbm__events_size_t size = {0};
    for (size_t i = 0; i < count; i++) {
        kvbm_status_t status = check_record(&records[i], &size);
        if (status != KVBM_OK)
            return status;
    }
    size.bound = bound(count, &size);
    *size_out = size;
    return KVBM_OK;
}

kvbm_status_t kvbm__events_check_batch(const kvbm__event_batch_t *batch,
                                       kvbm__events_size_t *size_out)
{
    /* The batch's records are valid events by construction. */
    if (batch->n_records > UINT32_MAX)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "events: %zu records in one batch",
                          batch->n_records);
    kvbm__events_size_t size = {.n_events = batch->n_events,
                                .n_hashes = batch->n_hashes,
                                .n_tokens = batch->n_tokens,
                                .name_bytes = batch->n_names};
    size.bound = bound(batch->n_records, &size);
    *size_out = size;
    return KVBM_OK;
}

static inline int pack_string(pack_cursor_t *c, const char *text, size_t len)
{
    return cursor_pack_str(c, len) | cursor_pack_str_body(c, text, len);
}

/* Tags are constants: their lengths are known at compile time. */
#define PACK_TAG(c, tag) pack_string((c), (tag), sizeof(tag) - 1)

static inline int pack_medium(pack_cursor_t *c, kvbm_medium_t medium)
{
    return pack_string(c, MEDIA[medium].text, MEDIA[medium].len);
}

static int pack_hashes(pack_cursor_t *c, const uint64_t *hashes, size_t count)
{
    int rc = cursor_pack_array(c, count);
    for (size_t i = 0; i < count; i++)
        rc |= cursor_pack_uint64(c, hashes[i]);
    return rc;
}

static int pack_stored(pack_cursor_t *c, const kvbm_event_record_t *r)
{
    int rc = cursor_pack_array(c, STORED_FIELDS);
    rc |= PACK_TAG(c, TAG_STORED);
    rc |= pack_hashes(c, r->hashes, r->count);
    rc |= r->has_parent ? cursor_pack_uint64(c, r->parent_hash) : cursor_pack_nil(c);
    rc |= cursor_pack_array(c, r->n_tokens);
    for (size_t i = 0; i < r->n_tokens; i++)
        rc |= cursor_pack_uint32(c, r->tokens[i]);
    rc |= cursor_pack_uint32(c, r->block_size);
    rc |= r->has_lora_id ? cursor_pack_int64(c, r->lora_id) : cursor_pack_nil(c);
    rc |= pack_medium(c, r->medium);
    if (r->lora_name != NULL)
        rc |= pack_string(c, r->lora_name, strlen(r->lora_name));
    else
        rc |= cursor_pack_nil(c);
    return rc;
}

static int pack_removed(pack_cursor_t *c, const kvbm_event_record_t *r)
{
    int rc = cursor_pack_array(c, REMOVED_FIELDS);
    rc |= PACK_TAG(c, TAG_REMOVED);
    rc |= pack_hashes(c, r->hashes, r->count);
    return rc | pack_medium(c, r->medium);
}

static int pack_cleared(pack_cursor_t *c)
{
    return cursor_pack_array(c, 1) | PACK_TAG(c, TAG_CLEARED);
}

kvbm_status_t kvbm__events_encode(kvbm__payload_t *out, double ts,
                                  const kvbm_event_record_t *records, size_t count,
                                  const kvbm__events_size_t *size, int32_t dp_rank)
{
    kvbm_status_t status = kvbm__payload_reserve(out, size->bound);
    if (status != KVBM_OK)
        return status;
    /* The room is the checked bound, so no value can fail to fit; if one
     * did (a wrong bound), nothing is kept. */
    pack_cursor_t c = {.at = out->data + out->size, .end = out->data + out->capacity};
    int rc = cursor_pack_array(&c, dp_rank >= 0 ? 3 : 2);
    rc |= cursor_pack_double(&c, ts);
    rc |= cursor_pack_array(&c, size->n_events);
    for (size_t i = 0; i < count; i++) {
        const kvbm_event_record_t *r = &records[i];
        if (!on_wire(r))
            continue;
        if (r->kind == KVBM_EVENT_STORED)
            rc |= pack_stored(&c, r);
        else if (r->kind == KVBM_EVENT_REMOVED)
            rc |= pack_removed(&c, r);
        else
            rc |= pack_cleared(&c);
    }
    if (dp_rank >= 0)
        rc |= cursor_pack_int32(&c, dp_rank);
    if (rc != 0)
        return KVBM_ERR_INTERNAL;
    out->size = (size_t)(c.at - out->data);
    return KVBM_OK;
}
