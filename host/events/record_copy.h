/*
 * A batch's records copied into one block of memory for the queue, in the
 * form of a compact batch's arrays (core/event_batch.h): the records (their
 * pointers not set), then all their hashes, then their tokens, then their
 * LoRA names, each in record order. The caller pays for this copy; the
 * publisher's thread points the records at their arrays
 * (kvbm__record_copy_view) and encodes them.
 */
#ifndef KVBM_HOST_EVENTS_RECORD_COPY_H
#define KVBM_HOST_EVENTS_RECORD_COPY_H

#include <stddef.h>

#include "encode.h"

/* Bytes a copy of @p count records measured by kvbm__events_check takes. */
size_t kvbm__record_copy_size(size_t count, const kvbm__events_size_t *size);

/* Copies the records (checked and measured: @p size) into @p to, 16-byte
 * aligned and kvbm__record_copy_size() long. */
void kvbm__record_copy(const kvbm_event_record_t *records, size_t count,
                       const kvbm__events_size_t *size, char *to);

/* Copies a compact batch (settled: kvbm__event_batch_settle) as it is:
 * its records and arrays, each in one piece, into @p to (16-byte aligned,
 * kvbm__record_copy_size() long, @p size from kvbm__events_check_batch). */
void kvbm__record_copy_batch(const kvbm__event_batch_t *batch, const kvbm__events_size_t *size,
                             char *to);

/* The records of a copy at @p at, pointed at their arrays. */
const kvbm_event_record_t *kvbm__record_copy_view(char *at, size_t count,
                                                  const kvbm__events_size_t *size);

#endif /* KVBM_HOST_EVENTS_RECORD_COPY_H */
