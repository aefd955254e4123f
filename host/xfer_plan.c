/*
 * Transfer plans: the contiguous pieces of a block transfer, in stream order.
 *
 * The stream is region-major: region 0 of every block in list order, then
 * region 1, and so on. For a layer-separate slab (one region per layer) this
 * puts a layer's blocks next to each other, so a run of consecutive block ids
 * is one piece of memory; for a fully contiguous slab (one region per block)
 * the same holds for the whole block.
 */
#include <stdlib.h>

#include "xfer_internal.h"

/* Whether block i (i > 0) continues the run of block i-1 within a region. */
static bool continues(const kvbm__xfer_geom_t *geom, const uint32_t *ids, size_t i)
{
    return geom->block_stride == geom->region_bytes && ids[i] == ids[i - 1] + 1u;
}

kvbm_status_t kvbm__xfer_plan_build(const kvbm__xfer_geom_t *local, const uint32_t *local_ids,
                                    const kvbm__xfer_geom_t *remote, const uint32_t *remote_ids,
                                    size_t n, kvbm__xfer_plan_t *plan_out)
{
    if (n == 0 || local->region_count == 0)
        return KVBM_ERR_INVALID_ARG;
    if (n > SIZE_MAX / local->region_count)
        return KVBM_ERR_OVERFLOW;
    kvbm__xfer_chunk_t *chunks = malloc(n * local->region_count * sizeof(*chunks));
    if (chunks == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t count = 0, bytes = 0;
    for (uint32_t r = 0; r < local->region_count; r++) {
        char *base = local->region_base[r];
        for (size_t i = 0; i < n; i++) {
            char *ptr = base + (size_t)local_ids[i] * local->block_stride;
            bool join = i > 0 && continues(local, local_ids, i) &&
                        (remote == NULL || continues(remote, remote_ids, i));
            if (join) {
                chunks[count - 1].len += local->region_bytes;
            } else {
                chunks[count].ptr = ptr;
                chunks[count].len = local->region_bytes;
                count++;
            }
            bytes += local->region_bytes;
        }
    }
    plan_out->chunks = chunks;
    plan_out->count = count;
    plan_out->bytes = bytes;
    return KVBM_OK;
}

void kvbm__xfer_plan_free(kvbm__xfer_plan_t *plan)
{
    free(plan->chunks);
    plan->chunks = NULL;
    plan->count = 0;
    plan->bytes = 0;
}
