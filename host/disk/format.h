/*
 * The on-disk format of a G3 file, version 1 (docs/DISK_FORMAT.md): a
 * superblock, a table holding a copy of every slot's block header (the index
 * rebuilt at open), then the slots, each a block header followed by the
 * payload, padded to the filesystem's block size. Every integer is little
 * endian; every structure carries an XXH3-64 checksum of its other bytes.
 */
#ifndef KVBM_HOST_DISK_FORMAT_H
#define KVBM_HOST_DISK_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"

#define KVBM__DISK_FORMAT_VERSION   1u
#define KVBM__DISK_SUPERBLOCK_BYTES 4096u
#define KVBM__DISK_HEADER_BYTES     64u
/* Slots and the table start on multiples of this, at least. */
#define KVBM__DISK_MIN_ALIGN 4096u

/* Where everything lives in the file. Derived, never stored as such: the
 * superblock stores the inputs (slots, payload bytes, alignment). */
typedef struct kvbm__disk_geometry {
    uint64_t slots;
    uint64_t payload_bytes;
    uint64_t align;        /* slot size and offsets are multiples of it */
    uint64_t slot_bytes;   /* header + payload, rounded up to align */
    uint64_t table_offset; /* after the superblock */
    uint64_t table_bytes;  /* slots header copies, rounded up to align */
    uint64_t data_offset;  /* slot 0 */
    uint64_t file_bytes;
} kvbm__disk_geometry_t;

/*
 * Computes the geometry of @p slots slots of @p payload_bytes, aligned to
 * @p align (a power of two, at least KVBM__DISK_MIN_ALIGN).
 * KVBM_ERR_INVALID_ARG for zero sizes or a bad alignment, KVBM_ERR_OVERFLOW
 * when the file would not fit in 63 bits.
 */
kvbm_status_t kvbm__disk_geometry_init(uint64_t payload_bytes, uint64_t align, uint64_t slots,
                                       kvbm__disk_geometry_t *geometry_out);

/* The most slots a file of @p file_bytes can hold (0 when none fits). */
uint64_t kvbm__disk_geometry_slots_for_bytes(uint64_t payload_bytes, uint64_t align,
                                             uint64_t file_bytes);

/* File offset of a slot (slot < slots). */
static inline uint64_t kvbm__disk_slot_offset(const kvbm__disk_geometry_t *geometry, uint64_t slot)
{
    return geometry->data_offset + slot * geometry->slot_bytes;
}

/* What the superblock records. */
typedef struct kvbm__disk_superblock {
    uint32_t version;
    uint64_t fingerprint;
    uint64_t slots;
    uint64_t payload_bytes;
    uint64_t align;
} kvbm__disk_superblock_t;

void kvbm__disk_superblock_encode(const kvbm__disk_superblock_t *superblock,
                                  uint8_t out[KVBM__DISK_SUPERBLOCK_BYTES]);

/* KVBM_ERR_PARSE: not a G3 superblock or its checksum fails; KVBM_ERR_VERSION:
 * a G3 superblock of a format version this code does not read. */
kvbm_status_t kvbm__disk_superblock_decode(const uint8_t in[KVBM__DISK_SUPERBLOCK_BYTES],
                                           kvbm__disk_superblock_t *superblock_out);

/* A block header: at the start of its slot, and copied into the table. */
typedef struct kvbm__disk_header {
    uint32_t slot;
    uint32_t payload_bytes;
    uint64_t seq_hash;
    uint64_t fingerprint;
    uint64_t generation; /* store-wide write counter, never 0 for a written block */
    uint64_t payload_checksum;
} kvbm__disk_header_t;

void kvbm__disk_header_encode(const kvbm__disk_header_t *header,
                              uint8_t out[KVBM__DISK_HEADER_BYTES]);

/* False when the bytes are not a valid header (magic, version, checksum);
 * an all-zero entry (an empty table slot) is not valid. */
bool kvbm__disk_header_decode(const uint8_t in[KVBM__DISK_HEADER_BYTES],
                              kvbm__disk_header_t *header_out);

/* The payload checksum: XXH3-64 with seed 0. */
uint64_t kvbm__disk_payload_checksum(const void *payload, size_t bytes);

#endif /* KVBM_HOST_DISK_FORMAT_H */
