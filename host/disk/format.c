/* Encoding and decoding of the G3 on-disk structures; see format.h. */
#include "format.h"

#include <endian.h>
#include <string.h>
#include <xxhash.h>

#include "core/error.h"

#define SUPERBLOCK_USED 128u /* bytes of the superblock that carry fields */
static const uint8_t superblock_magic[8] = {'K', 'V', 'B', 'M', 'G', '3', '\r', '\n'};
static const uint32_t header_magic = 0x4b423347u; /* "G3BK" read as little endian */

static void put_u32(uint8_t *at, uint32_t value)
{
    value = htole32(value);
    memcpy(at, &value, sizeof(value));
}

static void put_u64(uint8_t *at, uint64_t value)
{
    value = htole64(value);
    memcpy(at, &value, sizeof(value));
}

static uint32_t get_u32(const uint8_t *at)
{
    uint32_t value;
    memcpy(&value, at, sizeof(value));
    return le32toh(value);
}

static uint64_t get_u64(const uint8_t *at)
{
    uint64_t value;
    memcpy(&value, at, sizeof(value));
    return le64toh(value);
}

static bool add_ok(uint64_t a, uint64_t b, uint64_t *sum)
{
    return !__builtin_add_overflow(a, b, sum) && *sum <= INT64_MAX;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *product)
{
    return !__builtin_mul_overflow(a, b, product) && *product <= INT64_MAX;
}

/* Rounds up to a power-of-two alignment; false on overflow. */
static bool align_up(uint64_t value, uint64_t align, uint64_t *out)
{
    uint64_t sum;
    if (!add_ok(value, align - 1, &sum))
        return false;
    *out = sum & ~(align - 1);
    return true;
}

kvbm_status_t kvbm__disk_geometry_init(uint64_t payload_bytes, uint64_t align, uint64_t slots,
                                       kvbm__disk_geometry_t *geometry_out)
{
    if (payload_bytes == 0 || payload_bytes > UINT32_MAX || slots == 0 || slots > UINT32_MAX ||
        align < KVBM__DISK_MIN_ALIGN || (align & (align - 1)) != 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "g3 geometry: %llu-byte blocks, %llu slots, %llu-byte alignment: needs "
                          "1..2^32-1 of each and a power-of-two alignment of at least %u",
                          (unsigned long long)payload_bytes, (unsigned long long)slots,
                          (unsigned long long)align, (unsigned)KVBM__DISK_MIN_ALIGN);
    kvbm__disk_geometry_t g = {.slots = slots, .payload_bytes = payload_bytes, .align = align};
    uint64_t table_raw, data_bytes;
    if (!align_up(KVBM__DISK_HEADER_BYTES + payload_bytes, align, &g.slot_bytes) ||
        !align_up(KVBM__DISK_SUPERBLOCK_BYTES, align, &g.table_offset) ||
        !mul_ok(slots, KVBM__DISK_HEADER_BYTES, &table_raw) ||
        !align_up(table_raw, align, &g.table_bytes) ||
        !add_ok(g.table_offset, g.table_bytes, &g.data_offset) ||
        !mul_ok(slots, g.slot_bytes, &data_bytes) ||
        !add_ok(g.data_offset, data_bytes, &g.file_bytes))
        return KVBM_ERR_OVERFLOW;
    *geometry_out = g;
    return KVBM_OK;
}

uint64_t kvbm__disk_geometry_slots_for_bytes(uint64_t payload_bytes, uint64_t align,
                                             uint64_t file_bytes)
{
    kvbm__disk_geometry_t one;
    if (kvbm__disk_geometry_init(payload_bytes, align, 1, &one) != KVBM_OK ||
        file_bytes < one.file_bytes)
        return 0;
    /* Each slot costs its bytes and a header in the table; the table's
     * rounding is corrected by stepping down. */
    uint64_t slots = (file_bytes - one.table_offset) / (one.slot_bytes + KVBM__DISK_HEADER_BYTES);
    if (slots > UINT32_MAX)
        slots = UINT32_MAX;
    kvbm__disk_geometry_t g;
    while (slots > 0 && (kvbm__disk_geometry_init(payload_bytes, align, slots, &g) != KVBM_OK ||
                         g.file_bytes > file_bytes))
        slots--;
    return slots;
}

void kvbm__disk_superblock_encode(const kvbm__disk_superblock_t *superblock,
                                  uint8_t out[KVBM__DISK_SUPERBLOCK_BYTES])
{
    memset(out, 0, KVBM__DISK_SUPERBLOCK_BYTES);
    memcpy(out, superblock_magic, sizeof(superblock_magic));
    put_u32(out + 8, superblock->version);
    put_u32(out + 12, KVBM__DISK_HEADER_BYTES);
    put_u64(out + 16, superblock->fingerprint);
    put_u64(out + 24, superblock->slots);
    put_u64(out + 32, superblock->payload_bytes);
    put_u64(out + 40, superblock->align);
    put_u64(out + SUPERBLOCK_USED - 8, XXH3_64bits(out, SUPERBLOCK_USED - 8));
}

kvbm_status_t kvbm__disk_superblock_decode(const uint8_t in[KVBM__DISK_SUPERBLOCK_BYTES],
                                           kvbm__disk_superblock_t *superblock_out)
{
    if (memcmp(in, superblock_magic, sizeof(superblock_magic)) != 0 ||
        get_u64(in + SUPERBLOCK_USED - 8) != XXH3_64bits(in, SUPERBLOCK_USED - 8))
        return KVBM_ERR_PARSE;
    if (get_u32(in + 8) != KVBM__DISK_FORMAT_VERSION || get_u32(in + 12) != KVBM__DISK_HEADER_BYTES)
        return KVBM_ERR_VERSION;
    superblock_out->version = get_u32(in + 8);
    superblock_out->fingerprint = get_u64(in + 16);
    superblock_out->slots = get_u64(in + 24);
    superblock_out->payload_bytes = get_u64(in + 32);
    superblock_out->align = get_u64(in + 40);
    return KVBM_OK;
}

void kvbm__disk_header_encode(const kvbm__disk_header_t *header,
                              uint8_t out[KVBM__DISK_HEADER_BYTES])
{
    put_u32(out, header_magic);
    put_u32(out + 4, KVBM__DISK_FORMAT_VERSION); /* u16 version, u16 flags (0) */
    put_u32(out + 8, header->slot);
    put_u32(out + 12, header->payload_bytes);
    put_u64(out + 16, header->seq_hash);
    put_u64(out + 24, header->fingerprint);
    put_u64(out + 32, header->generation);
    put_u64(out + 40, header->payload_checksum);
    put_u64(out + 48, 0);
    put_u64(out + 56, XXH3_64bits(out, 56));
}

bool kvbm__disk_header_decode(const uint8_t in[KVBM__DISK_HEADER_BYTES],
                              kvbm__disk_header_t *header_out)
{
    if (get_u32(in) != header_magic || get_u32(in + 4) != KVBM__DISK_FORMAT_VERSION ||
        get_u64(in + 56) != XXH3_64bits(in, 56))
        return false;
    header_out->slot = get_u32(in + 8);
    header_out->payload_bytes = get_u32(in + 12);
    header_out->seq_hash = get_u64(in + 16);
    header_out->fingerprint = get_u64(in + 24);
    header_out->generation = get_u64(in + 32);
    header_out->payload_checksum = get_u64(in + 40);
    return true;
}

uint64_t kvbm__disk_payload_checksum(const void *payload, size_t bytes)
{
    return XXH3_64bits(payload, bytes);
}
