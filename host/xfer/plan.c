/*
 * Transfer plans: the contiguous pieces of a block transfer on one side, in
 * stream order.
 *
 * A block's bytes, in canonical (layer, outer, ...) order, are the
 * concatenation of its regions. The two sides of a transfer may cut a block
 * into different regions (a fully contiguous slab has one region per block, a
 * layer-separate one a region per layer); the stream uses the finer cut as
 * its unit and is unit-major: unit 0 of every block in list order, then unit
 * 1, and so on. A layer-separate slab thus sends a run of consecutive block
 * ids of one layer as one piece.
 *
 * For a byte-stream transport (sockets) pieces merge wherever this side's
 * addresses touch. For a message-based one (NCCL) both sides must cut at the
 * same places, so merging follows a rule each side can evaluate for both:
 * unit u of list entry i continues entry i-1 when both ids are consecutive on
 * both sides and each side's block stride equals the unit.
 */
#include <stdlib.h>

#include "internal.h"

size_t kvbm__xfer_unit_bytes(const kvbm__xfer_geom_t *a, const kvbm__xfer_geom_t *b)
{
    return a->region_bytes < b->region_bytes ? a->region_bytes : b->region_bytes;
}

static bool rule_continues(const kvbm__xfer_geom_t *geom, const uint32_t *ids, size_t i,
                           size_t unit)
{
    return i > 0 && geom->block_stride == unit && ids[i] == ids[i - 1] + 1u;
}

kvbm_status_t kvbm__xfer_plan_build(const kvbm__xfer_geom_t *local, const uint32_t *local_ids,
                                    const kvbm__xfer_geom_t *remote, const uint32_t *remote_ids,
                                    size_t n, bool message_based, kvbm__xfer_plan_t *plan_out)
{
    if (n == 0 || local->region_count == 0)
        return KVBM_ERR_INVALID_ARG;
    size_t unit = kvbm__xfer_unit_bytes(local, remote);
    size_t per_region = local->region_bytes / unit; /* checked compatible at bootstrap */
    size_t units = (size_t)local->region_count * per_region;
    if (units == 0 || n > SIZE_MAX / sizeof(kvbm__xfer_chunk_t) / units)
        return KVBM_ERR_OVERFLOW;
    kvbm__xfer_chunk_t *chunks = malloc(n * units * sizeof(*chunks));
    if (chunks == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t count = 0, bytes = 0;
    for (size_t u = 0; u < units; u++) {
        char *base = (char *)local->region_base[u / per_region] + (u % per_region) * unit;
        for (size_t i = 0; i < n; i++) {
            char *ptr = base + (size_t)local_ids[i] * local->block_stride;
            bool join;
            if (count == 0)
                join = false;
            else if (message_based)
                join = rule_continues(local, local_ids, i, unit) &&
                       rule_continues(remote, remote_ids, i, unit);
            else
                join = (char *)chunks[count - 1].ptr + chunks[count - 1].len == ptr;
            if (join) {
                chunks[count - 1].len += unit;
            } else {
                chunks[count].ptr = ptr;
                chunks[count].len = unit;
                count++;
            }
            bytes += unit;
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
