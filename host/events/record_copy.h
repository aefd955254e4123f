/*
 * A batch's records copied into one block of memory, for the queue: the
 * records, then all their hashes, tokens and LoRA names, the records'
 * pointers set into the copy. What the caller pays to publish is this copy;
 * the publisher's thread encodes it.
 */
#ifndef KVBM_HOST_EVENTS_RECORD_COPY_H
#define KVBM_HOST_EVENTS_RECORD_COPY_H

#include <stddef.h>

#include "encode.h"

/* Bytes a copy of @p count records measured by kvbm__events_check takes. */
size_t kvbm__record_copy_size(size_t count, const kvbm__events_size_t *size);

/* Copies the records (checked and measured: @p size) into @p to, 16-byte
 * aligned and kvbm__record_copy_size() long; block ids are not copied.
 * Returns the copied records, at @p to. */
kvbm_event_record_t *kvbm__record_copy(const kvbm_event_record_t *records, size_t count,
                                       const kvbm__events_size_t *size, char *to);

#endif /* KVBM_HOST_EVENTS_RECORD_COPY_H */
