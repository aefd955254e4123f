/* The namespace fingerprint; see fingerprint.h. */
#include "fingerprint.h"

#include <endian.h>
#include <string.h>
#include <xxhash.h>

static size_t put_u32(uint8_t *buf, size_t at, uint32_t value)
{
    value = htole32(value);
    memcpy(buf + at, &value, sizeof(value));
    return at + sizeof(value);
}

uint64_t kvbm__disk_fingerprint(const kvbm_layout_config_t *layout, const char *model_id,
                                uint32_t tp_rank, uint32_t tp_size)
{
    static const char tag[] = "kvbm-g3-namespace-v1";
    const char *model = model_id != NULL ? model_id : "";
    size_t length = strlen(model);
    uint8_t fields[sizeof(tag) + 10 * sizeof(uint32_t)];
    memcpy(fields, tag, sizeof(tag));
    size_t at = sizeof(tag);
    at = put_u32(fields, at, (uint32_t)layout->kind);
    at =
        put_u32(fields, at, layout->kind == KVBM_LAYOUT_LAYER_SEPARATE && layout->outer_contiguous);
    at = put_u32(fields, at, layout->num_layers);
    at = put_u32(fields, at, layout->outer_dim);
    at = put_u32(fields, at, layout->tokens_per_block);
    at = put_u32(fields, at, layout->inner_dim);
    at = put_u32(fields, at, layout->elem_size);
    at = put_u32(fields, at, tp_rank);
    at = put_u32(fields, at, tp_size == 0 ? 1 : tp_size);
    at = put_u32(fields, at, (uint32_t)length);
    /* The model id, of any length, is hashed with the fields' hash as seed. */
    return XXH3_64bits_withSeed(model, length, XXH3_64bits(fields, at));
}
