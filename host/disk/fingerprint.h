/*
 * The namespace fingerprint of a G3 file: one 64-bit value standing for
 * everything that makes stored bytes incompatible with a reader. Two callers
 * share blocks exactly when their fingerprints are equal.
 */
#ifndef KVBM_HOST_DISK_FINGERPRINT_H
#define KVBM_HOST_DISK_FINGERPRINT_H

#include <stdint.h>

#include "kvbm/layout.h"

/*
 * XXH3-64 of a canonical little-endian encoding of: a format tag, the
 * layout's arrangement (kind, outer_contiguous), layers, outer dim, tokens
 * per block, inner dim (heads x head size), element size, the model id
 * (length and bytes; NULL is ""), the tensor-parallel rank and size (size 0
 * is taken as 1). Block count and alignment are not part of it: they change
 * where bytes live, not what they mean.
 */
uint64_t kvbm__disk_fingerprint(const kvbm_layout_config_t *layout, const char *model_id,
                                uint32_t tp_rank, uint32_t tp_size);

#endif /* KVBM_HOST_DISK_FINGERPRINT_H */
