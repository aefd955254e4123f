/*
 * vLLM's KV event batch in msgpack, as msgspec encodes vLLM's array-like,
 * tagged structs (EventBatch, BlockStored, BlockRemoved, AllBlocksCleared):
 *
 *   batch   [ts: float64, [event...], data_parallel_rank?]
 *   stored  ["BlockStored", [hash...], parent|nil, [token...], block_size,
 *            lora_id|nil, medium, lora_name|nil]
 *   removed ["BlockRemoved", [hash...], medium]
 *   cleared ["AllBlocksCleared"]
 *
 * Integers take msgpack's smallest form, as msgspec writes them; the rank is
 * a trailing field at its default (None) when not set, and msgspec omits
 * such fields. docs/EVENTS.md has the field-by-field description.
 */
#ifndef KVBM_HOST_EVENTS_ENCODE_H
#define KVBM_HOST_EVENTS_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/event_batch.h"
#include "kvbm/events.h"
#include "payload.h"

/* What a batch of records takes on the wire, measured while checking it. */
typedef struct kvbm__events_size {
    size_t n_events;   /* events on the wire: records with hashes, and clears */
    size_t bound;      /* at least the encoded batch's bytes */
    size_t n_hashes;   /* the records' hashes, all together */
    size_t n_tokens;   /* their tokens */
    size_t name_bytes; /* their LoRA names, each with its NUL */
} kvbm__events_size_t;

/* Checks every record (kinds, media, pointers against counts) and measures
 * the batch, in one pass; *size_out is set on success. */
kvbm_status_t kvbm__events_check(const kvbm_event_record_t *records, size_t count,
                                 kvbm__events_size_t *size_out);

/* Checks a compact batch's records (kinds, media, counts; its arrays match
 * its counts by construction) and measures it; *size_out set on success. */
kvbm_status_t kvbm__events_check_batch(const kvbm__event_batch_t *batch,
                                       kvbm__events_size_t *size_out);

/*
 * Appends the batch to @p out: @p records as measured by kvbm__events_check
 * (@p size). @p dp_rank < 0 omits the rank. KVBM_ERR_NO_MEMORY (or
 * KVBM_ERR_INTERNAL, a bound too small) leaves @p out as it was.
 */
kvbm_status_t kvbm__events_encode(kvbm__payload_t *out, double ts,
                                  const kvbm_event_record_t *records, size_t count,
                                  const kvbm__events_size_t *size, int32_t dp_rank);

#endif /* KVBM_HOST_EVENTS_ENCODE_H */
