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

#include "kvbm/events.h"
#include "payload.h"

/* Checks every record (kinds, media, pointers against counts). */
kvbm_status_t kvbm__events_check(const kvbm_event_record_t *records, size_t count);

/* Events the records make on the wire: records with hashes, and clears. */
size_t kvbm__events_count(const kvbm_event_record_t *records, size_t count);

/*
 * Appends the batch to @p out (checked records, see kvbm__events_check).
 * @p dp_rank < 0 omits the rank. On error (out of memory) @p out holds a
 * partial batch: the caller empties it.
 */
kvbm_status_t kvbm__events_encode(kvbm__payload_t *out, double ts,
                                  const kvbm_event_record_t *records, size_t count,
                                  int32_t dp_rank);

#endif /* KVBM_HOST_EVENTS_ENCODE_H */
