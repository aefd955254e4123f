/* The copy planner; the rules are in mem/copy_plan.h. */
#include <assert.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "copy_plan.h"
#include "core/error.h"

/* The merge rule of message-based plans, for one side. */
static bool rule_continues(const kvbm__geom_t *geom, const uint32_t *ids, size_t i, size_t unit)
{
    return i > 0 && geom->block_stride == unit && ids[i] == ids[i - 1] + 1u;
}

/* Whether a side's piece at @p ptr continues @p last; a side without
 * addresses never stands in the way. */
static bool address_continues(const void *last_start, size_t last_bytes, const void *ptr)
{
    return ptr == NULL || (const char *)last_start + last_bytes == (const char *)ptr;
}

static char *unit_base(const kvbm__geom_t *geom, size_t unit, size_t u)
{
    if (geom->region_base == NULL)
        return NULL;
    size_t per_region = geom->region_bytes / unit;
    return geom->region_base[u / per_region] + (u % per_region) * unit;
}

kvbm_status_t kvbm__copy_plan_build(const kvbm__geom_t *src, const uint32_t *src_ids,
                                    const kvbm__geom_t *dst, const uint32_t *dst_ids, size_t n,
                                    bool message_based, kvbm__copy_plan_t *plan_out)
{
    assert(src->region_base != NULL || dst->region_base != NULL);
    if (n == 0 || src->region_count == 0 || dst->region_count == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "copy plan: %zu blocks, %u and %u regions a block (each must be > 0)", n,
                          src->region_count, dst->region_count);
    size_t unit = src->region_bytes < dst->region_bytes ? src->region_bytes : dst->region_bytes;
    size_t block_bytes;
    if (unit == 0 || src->region_bytes % unit != 0 || dst->region_bytes % unit != 0 ||
        __builtin_mul_overflow(src->region_bytes, (size_t)src->region_count, &block_bytes) ||
        block_bytes != dst->region_bytes * dst->region_count)
        return kvbm__fail(KVBM_ERR_INCOMPATIBLE,
                          "copy plan: blocks of %u x %zu and %u x %zu bytes do not match unit for "
                          "unit",
                          src->region_count, src->region_bytes, dst->region_count,
                          dst->region_bytes);
    size_t units = block_bytes / unit, total_bytes;
    if (n > SIZE_MAX / sizeof(kvbm_copy_t) / units ||
        __builtin_mul_overflow(n, block_bytes, &total_bytes))
        return KVBM_ERR_OVERFLOW;
    kvbm_copy_t *pieces = kvbm__alloc(n * units, sizeof(*pieces));
    if (pieces == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t count = 0;
    for (size_t u = 0; u < units; u++) {
        char *src_base = unit_base(src, unit, u);
        char *dst_base = unit_base(dst, unit, u);
        for (size_t i = 0; i < n; i++) {
            const char *from = src_base ? src_base + (size_t)src_ids[i] * src->block_stride : NULL;
            char *to = dst_base ? dst_base + (size_t)dst_ids[i] * dst->block_stride : NULL;
            bool join = false;
            if (count > 0 && message_based) {
                join =
                    rule_continues(src, src_ids, i, unit) && rule_continues(dst, dst_ids, i, unit);
            } else if (count > 0) {
                const kvbm_copy_t *last = &pieces[count - 1];
                join = address_continues(last->src, last->bytes, from) &&
                       address_continues(last->dst, last->bytes, to);
            }
            if (join) {
                pieces[count - 1].bytes += unit;
            } else {
                pieces[count] = (kvbm_copy_t){.src = from, .dst = to, .bytes = unit};
                count++;
            }
        }
    }
    plan_out->pieces = pieces;
    plan_out->count = count;
    plan_out->bytes = total_bytes;
    return KVBM_OK;
}

void kvbm__copy_plan_free(kvbm__copy_plan_t *plan)
{
    kvbm__free(plan->pieces);
    plan->pieces = NULL;
    plan->count = 0;
    plan->bytes = 0;
}
