/*
 * The one block geometry of kvbm: where the bytes of every block of a slab
 * live. Block b is region_count contiguous regions of region_bytes each;
 * concatenated in order they are the block's bytes in canonical (layer,
 * outer, token, inner) order; region r of block b starts at
 * region_base[r] + b * block_stride.
 *
 * The public descriptions are turned into it once: a kvbm_layout_t over a
 * pool (kvbm__layout_geom, here), a transfer's kvbm_xfer_memory_t and a
 * peer's wire description (host/xfer, at create and at the rendezvous). The
 * copy planner (mem/copy_plan.h) works on it alone.
 */
#ifndef KVBM_MEM_GEOMETRY_H
#define KVBM_MEM_GEOMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "kvbm/layout.h"

typedef struct kvbm__geom {
    uint32_t num_blocks;
    uint32_t region_count;
    size_t region_bytes;
    size_t block_stride;
    /* region_count addresses; NULL for memory this process cannot address
     * (a peer's), which still gives the shape a plan must agree with. */
    char *const *region_base;
} kvbm__geom_t;

/*
 * Regions per block of a layout's geometry: its canonical chunks grouped
 * into the longest runs that are contiguous in memory, so a fully contiguous
 * layout has one, a layer-separate one a region per layer (K and V
 * adjacent) or per (layer, outer) plane. Computed once at layout create.
 */
size_t kvbm__layout_geom_regions(const kvbm_layout_t *layout);

/*
 * The geometry of @p layout over a pool at @p base. The region addresses go
 * to @p bases (room for kvbm__layout_geom_regions entries), which
 * geom_out->region_base points at.
 */
void kvbm__layout_geom(const kvbm_layout_t *layout, void *base, char **bases,
                       kvbm__geom_t *geom_out);

#endif /* KVBM_MEM_GEOMETRY_H */
