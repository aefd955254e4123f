/*
 * This rank's memory as a transfer sees it: the one block geometry
 * (mem/geometry.h), made once at create from either a kvbm_layout_t over a
 * pool or the caller's explicit kvbm_xfer_memory_t, plus the compatibility
 * key peers compare; and a peer's geometry from its wire description.
 */
#include <stdlib.h>
#include <string.h>

#include "object.h"
#include "kvbm/hash.h"
#include "kvbm/layout.h"

/* The geometry kvbm_layout_compatible compares; arrangement, alignment and
 * block count may differ between ranks. */
static uint64_t layout_key(const kvbm_layout_t *layout)
{
    const kvbm_layout_config_t *c = kvbm_layout_config(layout);
    uint32_t geometry[5] = {c->num_layers, c->outer_dim, c->tokens_per_block, c->inner_dim,
                            c->elem_size};
    return kvbm_hash_block(geometry, 5, 0x6b76626d786672ull /* "kvbmxfr" */);
}

/* What every rank's geometry must satisfy, however it was described. */
static kvbm_status_t check_geom(const kvbm__geom_t *geom, kvbm_manager_t *manager)
{
    if ((size_t)geom->num_blocks > SIZE_MAX / geom->block_stride)
        return KVBM_ERR_OVERFLOW;
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(manager, &counts);
    if (counts.total > geom->num_blocks)
        return KVBM_ERR_INVALID_ARG; /* the manager's ids must index the slab */
    return KVBM_OK;
}

kvbm_status_t kvbm__xfer_memory_check(const kvbm_xfer_memory_t *mem, kvbm_xfer_mem_kind_t kind,
                                      kvbm_manager_t *manager)
{
    if (mem->kind != kind || mem->num_blocks == 0 || mem->region_count == 0 ||
        mem->region_count > KVBM_XFER_MAX_REGIONS || mem->region_bytes == 0 ||
        mem->block_stride < mem->region_bytes || mem->region_base == NULL)
        return KVBM_ERR_INVALID_ARG;
    for (uint32_t r = 0; r < mem->region_count; r++)
        if (mem->region_base[r] == NULL)
            return KVBM_ERR_INVALID_ARG;
    kvbm__geom_t geom = {.num_blocks = mem->num_blocks, .block_stride = mem->block_stride};
    return check_geom(&geom, manager);
}

kvbm_status_t kvbm__xfer_memory_init(kvbm_xfer_t *xfer, const kvbm_xfer_config_t *config)
{
    const kvbm_xfer_memory_t *mem = &config->memory;
    const kvbm_layout_t *layout = config->layout;
    size_t regions = layout != NULL ? kvbm__layout_geom_regions(layout) : mem->region_count;
    if (regions > KVBM_XFER_MAX_REGIONS)
        return KVBM_ERR_UNSUPPORTED;
    char **bases = malloc(regions * sizeof(*bases));
    if (bases == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm__geom_t geom;
    if (layout != NULL) {
        kvbm__layout_geom(layout, config->layout_base, bases, &geom);
    } else {
        for (size_t r = 0; r < regions; r++)
            bases[r] = mem->region_base[r];
        geom = (kvbm__geom_t){
            .num_blocks = mem->num_blocks,
            .region_count = mem->region_count,
            .region_bytes = mem->region_bytes,
            .block_stride = mem->block_stride,
            .region_base = bases,
        };
    }
    kvbm_status_t status = check_geom(&geom, config->manager);
    if (status != KVBM_OK) {
        free(bases);
        return status;
    }
    xfer->geom = geom;
    xfer->mem_kind = layout != NULL ? xfer->ops->mem_kind : mem->kind;
    xfer->layout_key = layout != NULL ? layout_key(layout) : mem->layout_key;
    return KVBM_OK;
}

kvbm__geom_t kvbm__xfer_peer_geom(const kvbm__wire_desc_t *desc)
{
    return (kvbm__geom_t){
        .num_blocks = desc->num_blocks,
        .region_count = desc->region_count,
        .region_bytes = (size_t)desc->region_bytes,
        .block_stride = (size_t)desc->block_stride,
        .region_base = NULL,
    };
}
