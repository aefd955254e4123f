/* The msgpack form of an event batch; see encode.h for the layout. */
#include "encode.h"

#include <msgpack.h>
#include <string.h>

#define TAG_STORED  "BlockStored"
#define TAG_REMOVED "BlockRemoved"
#define TAG_CLEARED "AllBlocksCleared"

/* Fields after the tag: BlockStored has 7, BlockRemoved 2. */
#define STORED_FIELDS  8
#define REMOVED_FIELDS 3

kvbm_status_t kvbm__events_check(const kvbm_event_record_t *records, size_t count)
{
    if (count > 0 && records == NULL)
        return KVBM_ERR_INVALID_ARG;
    if (count > UINT32_MAX)
        return KVBM_ERR_INVALID_ARG;
    for (size_t i = 0; i < count; i++) {
        const kvbm_event_record_t *r = &records[i];
        if (r->kind == KVBM_EVENT_CLEARED)
            continue;
        if (r->kind != KVBM_EVENT_STORED && r->kind != KVBM_EVENT_REMOVED)
            return KVBM_ERR_INVALID_ARG;
        if (kvbm_medium_name(r->medium) == NULL)
            return KVBM_ERR_INVALID_ARG;
        if ((r->count > 0 && r->hashes == NULL) || r->count > UINT32_MAX)
            return KVBM_ERR_INVALID_ARG;
        if (r->kind == KVBM_EVENT_STORED &&
            ((r->n_tokens > 0 && r->tokens == NULL) || r->n_tokens > UINT32_MAX))
            return KVBM_ERR_INVALID_ARG;
        if (r->kind == KVBM_EVENT_STORED && r->lora_name != NULL &&
            strlen(r->lora_name) > UINT32_MAX)
            return KVBM_ERR_INVALID_ARG;
    }
    return KVBM_OK;
}

static bool on_wire(const kvbm_event_record_t *record)
{
    return record->kind == KVBM_EVENT_CLEARED || record->count > 0;
}

size_t kvbm__events_count(const kvbm_event_record_t *records, size_t count)
{
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += on_wire(&records[i]);
    return n;
}

/* Upper bound of the encoded size, so the payload grows once per batch. */
static size_t encoded_bound(const kvbm_event_record_t *records, size_t count)
{
    size_t bytes = 32; /* batch header, ts, rank */
    for (size_t i = 0; i < count; i++) {
        const kvbm_event_record_t *r = &records[i];
        bytes += 64 + r->count * 9; /* tag, fields, medium; uint64 hashes */
        if (r->kind == KVBM_EVENT_STORED) {
            bytes += r->n_tokens * 5; /* uint32 token ids */
            if (r->lora_name != NULL)
                bytes += 5 + strlen(r->lora_name);
        }
    }
    return bytes;
}

static int pack_string_of(msgpack_packer *pk, const char *text, size_t len)
{
    int rc = msgpack_pack_str(pk, len);
    return rc == 0 ? msgpack_pack_str_body(pk, text, len) : rc;
}

static int pack_string(msgpack_packer *pk, const char *text)
{
    return pack_string_of(pk, text, strlen(text));
}

/* Tags are constants: their lengths are known at compile time. */
#define PACK_TAG(pk, tag) pack_string_of((pk), (tag), sizeof(tag) - 1)

static int pack_hashes(msgpack_packer *pk, const uint64_t *hashes, size_t count)
{
    int rc = msgpack_pack_array(pk, count);
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = msgpack_pack_uint64(pk, hashes[i]);
    return rc;
}

static int pack_stored(msgpack_packer *pk, const kvbm_event_record_t *r)
{
    int rc = msgpack_pack_array(pk, STORED_FIELDS);
    rc = rc != 0 ? rc : PACK_TAG(pk, TAG_STORED);
    rc = rc != 0 ? rc : pack_hashes(pk, r->hashes, r->count);
    if (rc == 0)
        rc = r->has_parent ? msgpack_pack_uint64(pk, r->parent_hash) : msgpack_pack_nil(pk);
    rc = rc != 0 ? rc : msgpack_pack_array(pk, r->n_tokens);
    for (size_t i = 0; i < r->n_tokens && rc == 0; i++)
        rc = msgpack_pack_uint32(pk, r->tokens[i]);
    rc = rc != 0 ? rc : msgpack_pack_uint32(pk, r->block_size);
    if (rc == 0)
        rc = r->has_lora_id ? msgpack_pack_int64(pk, r->lora_id) : msgpack_pack_nil(pk);
    rc = rc != 0 ? rc : pack_string(pk, kvbm_medium_name(r->medium));
    if (rc == 0)
        rc = r->lora_name != NULL ? pack_string(pk, r->lora_name) : msgpack_pack_nil(pk);
    return rc;
}

static int pack_removed(msgpack_packer *pk, const kvbm_event_record_t *r)
{
    int rc = msgpack_pack_array(pk, REMOVED_FIELDS);
    rc = rc != 0 ? rc : PACK_TAG(pk, TAG_REMOVED);
    rc = rc != 0 ? rc : pack_hashes(pk, r->hashes, r->count);
    rc = rc != 0 ? rc : pack_string(pk, kvbm_medium_name(r->medium));
    return rc;
}

static int pack_cleared(msgpack_packer *pk)
{
    int rc = msgpack_pack_array(pk, 1);
    return rc != 0 ? rc : PACK_TAG(pk, TAG_CLEARED);
}

kvbm_status_t kvbm__events_encode(kvbm__payload_t *out, double ts,
                                  const kvbm_event_record_t *records, size_t count, int32_t dp_rank)
{
    kvbm_status_t status = kvbm__payload_reserve(out, encoded_bound(records, count));
    if (status != KVBM_OK)
        return status;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, kvbm__payload_write);
    int rc = msgpack_pack_array(&pk, dp_rank >= 0 ? 3 : 2);
    rc = rc != 0 ? rc : msgpack_pack_double(&pk, ts);
    rc = rc != 0 ? rc : msgpack_pack_array(&pk, kvbm__events_count(records, count));
    for (size_t i = 0; i < count && rc == 0; i++) {
        const kvbm_event_record_t *r = &records[i];
        if (!on_wire(r))
            continue;
        if (r->kind == KVBM_EVENT_STORED)
            rc = pack_stored(&pk, r);
        else if (r->kind == KVBM_EVENT_REMOVED)
            rc = pack_removed(&pk, r);
        else
            rc = pack_cleared(&pk);
    }
    if (rc == 0 && dp_rank >= 0)
        rc = msgpack_pack_int32(&pk, dp_rank);
    return rc == 0 ? KVBM_OK : KVBM_ERR_NO_MEMORY;
}
