/*
 * Describing a kvbm_layout_t (from the memory layer) as transfer memory:
 * the block's canonical chunks (layer, outer) are found with
 * kvbm_layout_offset, and the longest even grouping of chunks that are
 * adjacent in memory becomes the region. So a fully contiguous layout is one
 * region per block, a layer-separate one a region per layer (K and V
 * adjacent) or per (layer, outer) plane, whatever the arrangement's
 * internal order.
 */
#include <stdlib.h>

#include "kvbm/hash.h"
#include "kvbm/layout.h"
#include "internal.h"

uint64_t kvbm__xfer_layout_key(const kvbm_layout_t *layout)
{
    const kvbm_layout_config_t *c = kvbm_layout_config(layout);
    /* The geometry kvbm_layout_compatible compares; arrangement, alignment
     * and block count may differ between ranks. */
    uint32_t geometry[5] = {c->num_layers, c->outer_dim, c->tokens_per_block, c->inner_dim,
                            c->elem_size};
    return kvbm_hash_block(geometry, 5, 0x6b76626d786672ull /* "kvbmxfr" */);
}

kvbm_status_t kvbm__xfer_memory_from_layout(const kvbm_layout_t *layout, void *base,
                                            kvbm_xfer_mem_kind_t kind, void ***bases_out,
                                            kvbm_xfer_memory_t *memory_out)
{
    const kvbm_layout_config_t *c = kvbm_layout_config(layout);
    size_t chunk = kvbm_layout_chunk_bytes(layout);
    size_t n = (size_t)c->num_layers * c->outer_dim;
    if (n == 0 || chunk == 0)
        return KVBM_ERR_INVALID_ARG;
    size_t *off0 = malloc(n * sizeof(*off0));
    if (off0 == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm_status_t status = KVBM_OK;
    size_t stride = kvbm_layout_total_bytes(layout);
    for (uint32_t l = 0; l < c->num_layers && status == KVBM_OK; l++) {
        for (uint32_t o = 0; o < c->outer_dim && status == KVBM_OK; o++) {
            size_t k = (size_t)l * c->outer_dim + o;
            status = kvbm_layout_offset(layout, 0, l, o, &off0[k]);
            if (status == KVBM_OK && c->num_blocks > 1) {
                size_t off1;
                status = kvbm_layout_offset(layout, 1, l, o, &off1);
                /* Every chunk must move by the same stride from block to block. */
                if (status == KVBM_OK && k == 0)
                    stride = off1 - off0[0];
                else if (status == KVBM_OK && off1 - off0[k] != stride)
                    status = KVBM_ERR_UNSUPPORTED;
            }
        }
    }
    if (status != KVBM_OK)
        goto free_offsets;
    /* Largest group size g dividing n whose groups are contiguous. */
    size_t group = 1;
    for (size_t g = n; g > 1; g--) {
        if (n % g != 0)
            continue;
        bool contiguous = true;
        for (size_t k = 0; k + 1 < n && contiguous; k++)
            if ((k + 1) % g != 0 && off0[k + 1] != off0[k] + chunk)
                contiguous = false;
        if (contiguous) {
            group = g;
            break;
        }
    }
    size_t regions = n / group;
    if (regions > KVBM_XFER_MAX_REGIONS) {
        status = KVBM_ERR_UNSUPPORTED;
        goto free_offsets;
    }
    void **bases = malloc(regions * sizeof(*bases));
    if (bases == NULL) {
        status = KVBM_ERR_NO_MEMORY;
        goto free_offsets;
    }
    for (size_t r = 0; r < regions; r++)
        bases[r] = (char *)base + off0[r * group];
    *bases_out = bases;
    *memory_out = (kvbm_xfer_memory_t){
        .kind = kind,
        .num_blocks = c->num_blocks,
        .region_count = (uint32_t)regions,
        .region_bytes = group * chunk,
        .block_stride = stride,
        .region_base = bases,
        .layout_key = kvbm__xfer_layout_key(layout),
    };
free_offsets:
    free(off0);
    return status;
}
