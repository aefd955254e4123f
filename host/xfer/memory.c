/*
 * This rank's memory as a transfer sees it: the one block geometry
 * (mem/geometry.h), made once at create from either a kvbm_layout_t over a
 * pool or the caller's explicit kvbm_xfer_memory_t, plus the compatibility
 * key peers compare; a peer's geometry from its wire description, and the
 * checks a description from the wire must pass before anything uses it.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "kvbm/hash.h"
#include "kvbm/layout.h"
#include "object.h"

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
    if (counts.total > geom->num_blocks) /* the manager's ids must index the slab */
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer memory: %u blocks, fewer than the manager's %zu", geom->num_blocks,
                          counts.total);
    return KVBM_OK;
}

kvbm_status_t kvbm__xfer_memory_check(const kvbm_xfer_memory_t *mem, kvbm_xfer_mem_kind_t kind,
                                      kvbm_manager_t *manager)
{
    if (mem->kind != kind || mem->num_blocks == 0 || mem->region_count == 0 ||
        mem->region_count > KVBM_XFER_MAX_REGIONS ||
        mem->region_bytes < KVBM__XFER_MIN_REGION_BYTES || mem->block_stride < mem->region_bytes ||
        mem->region_base == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer memory: kind %d (this transport's: %d), %u blocks, %u regions "
                          "(1..%u) of %zu bytes (at least %u), stride %zu, region_base %s",
                          (int)mem->kind, (int)kind, mem->num_blocks, mem->region_count,
                          KVBM_XFER_MAX_REGIONS, mem->region_bytes,
                          (unsigned)KVBM__XFER_MIN_REGION_BYTES, mem->block_stride,
                          mem->region_base == NULL ? "NULL" : "set");
    for (uint32_t r = 0; r < mem->region_count; r++)
        if (mem->region_base[r] == NULL)
            return kvbm__fail(KVBM_ERR_INVALID_ARG, "xfer memory: region_base[%u] is NULL", r);
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
    char **bases = kvbm__alloc(regions, sizeof(*bases));
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
    if (status == KVBM_OK && geom.region_bytes < KVBM__XFER_MIN_REGION_BYTES) {
        kvbm__log(KVBM_LOG_ERROR, "transfer regions of %zu bytes refused: at least %u needed",
                  geom.region_bytes, KVBM__XFER_MIN_REGION_BYTES);
        status = KVBM_ERR_UNSUPPORTED;
    }
    if (status != KVBM_OK) {
        kvbm__free(bases);
        return status;
    }
    kvbm_pool_counts_t counts;
    kvbm_manager_counts(config->manager, &counts);
    xfer->capacity = (uint32_t)counts.total;
    xfer->geom = geom;
    xfer->mem_kind = layout != NULL ? xfer->ops->mem_kind : mem->kind;
    xfer->layout_key = layout != NULL ? layout_key(layout) : mem->layout_key;
    xfer->grain = layout != NULL ? kvbm_layout_chunk_bytes(layout) : 0;
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

bool kvbm__xfer_desc_valid(const kvbm__wire_desc_t *desc, int rank, int size)
{
    const char *why = NULL;
    uint64_t block_bytes = 0, slab = 0;
    if (desc->rank != rank || desc->size != size)
        why = "rank or size not its own";
    else if (desc->transport != KVBM_XFER_SOCKET && desc->transport != KVBM_XFER_NCCL)
        why = "unknown transport";
    else if (desc->region_count == 0 || desc->region_count > KVBM_XFER_MAX_REGIONS)
        why = "region count out of range";
    else if (desc->region_bytes < KVBM__XFER_MIN_REGION_BYTES)
        why = "regions too small";
    else if (desc->block_stride < desc->region_bytes || desc->num_blocks == 0)
        why = "stride or block count out of range";
    else if (__builtin_mul_overflow(desc->region_bytes, (uint64_t)desc->region_count,
                                    &block_bytes) ||
             __builtin_mul_overflow(desc->block_stride, (uint64_t)desc->num_blocks, &slab))
        why = "sizes overflow";
    else if (desc->family != KVBM__WIRE_AF_RENDEZVOUS && desc->family != KVBM__WIRE_AF_INET &&
             desc->family != KVBM__WIRE_AF_INET6)
        why = "unknown address family";
    if (why == NULL)
        return true;
    kvbm__log(KVBM_LOG_ERROR,
              "rank %d refused: %s (rank %d of %d, %u regions of %" PRIu64 " B, stride %" PRIu64
              ", %u blocks)",
              rank, why, desc->rank, desc->size, desc->region_count, desc->region_bytes,
              desc->block_stride, desc->num_blocks);
    return false;
}

bool kvbm__xfer_desc_compatible(const kvbm__wire_desc_t *a, const kvbm__wire_desc_t *b)
{
    if (a->size != b->size || a->transport != b->transport || a->mem_kind != b->mem_kind) {
        kvbm__log(KVBM_LOG_ERROR, "ranks %d and %d refused: size %d/%d, transport %u/%u", a->rank,
                  b->rank, a->size, b->size, a->transport, b->transport);
        return false;
    }
    /* Both descriptions passed kvbm__xfer_desc_valid: no product overflows. */
    uint64_t lo = a->region_bytes < b->region_bytes ? a->region_bytes : b->region_bytes;
    uint64_t hi = a->region_bytes < b->region_bytes ? b->region_bytes : a->region_bytes;
    if (a->layout_key != b->layout_key ||
        a->region_count * a->region_bytes != b->region_count * b->region_bytes || hi % lo != 0) {
        kvbm__log(KVBM_LOG_ERROR,
                  "ranks %d and %d refused: incompatible block layouts (%u x %" PRIu64
                  " B, key %" PRIx64 ") and (%u x %" PRIu64 " B, key %" PRIx64 ")",
                  a->rank, b->rank, a->region_count, a->region_bytes, a->layout_key,
                  b->region_count, b->region_bytes, b->layout_key);
        return false;
    }
    return true;
}

bool kvbm__xfer_desc_fits(const kvbm_xfer_t *xfer, const kvbm__wire_desc_t *peer)
{
    if (!kvbm__xfer_desc_compatible(&xfer->descs[xfer->rank], peer))
        return false;
    /* A layout's regions are runs of whole chunks; so are a compatible
     * peer's, whatever its arrangement. */
    if (xfer->grain != 0 && peer->region_bytes % xfer->grain != 0) {
        kvbm__log(KVBM_LOG_ERROR,
                  "rank %d refused: its regions of %" PRIu64 " B are not whole chunks of %zu B",
                  peer->rank, peer->region_bytes, xfer->grain);
        return false;
    }
    return true;
}
