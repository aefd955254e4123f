/*
 * The copy planner, written once for the memory layer's block copies
 * (kvbm_backend_copy_blocks_between) and the transfers' plans (host/xfer):
 * blocks src_ids[i] of one geometry go to dst_ids[i] of another, as a list of
 * contiguous pieces.
 *
 * The two sides may cut a block into different regions; the plan uses the
 * finer cut as its unit and is unit-major: unit 0 of every block in list
 * order, then unit 1, and so on, so a run of consecutive ids in a
 * layer-separate slab is one piece per layer. Consecutive pieces merge:
 * - by address (message_based false): where every side this process can
 *   address continues the previous piece (both sides of a local copy; the
 *   local side of a byte-stream transfer);
 * - by rule (message_based true, NCCL): where both sides' ids are
 *   consecutive and both strides equal the unit, a rule the two ranks
 *   evaluate alike, so every send meets a receive of its size.
 * A side without addresses (a peer's) leaves its pointers NULL in the pieces.
 */
#ifndef KVBM_MEM_COPY_PLAN_H
#define KVBM_MEM_COPY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geometry.h"
#include "kvbm/backend.h"

typedef struct kvbm__copy_plan {
    kvbm_copy_t *pieces; /* count pieces, in stream order; owned */
    size_t count;
    size_t bytes; /* sum of the pieces */
} kvbm__copy_plan_t;

/*
 * Plans moving @p n >= 1 blocks. The sides must have equal bytes per block and
 * region sizes one of which divides the other (KVBM_ERR_INCOMPATIBLE), and
 * at least one side must have addresses. The ids are not checked here.
 * Returns KVBM_OK, KVBM_ERR_INVALID_ARG (n == 0), KVBM_ERR_INCOMPATIBLE,
 * KVBM_ERR_OVERFLOW or KVBM_ERR_NO_MEMORY; sets *plan_out only on success.
 */
kvbm_status_t kvbm__copy_plan_build(const kvbm__geom_t *src, const uint32_t *src_ids,
                                    const kvbm__geom_t *dst, const uint32_t *dst_ids, size_t n,
                                    bool message_based, kvbm__copy_plan_t *plan_out);

/* Frees the pieces and empties the plan; an empty plan is fine. */
void kvbm__copy_plan_free(kvbm__copy_plan_t *plan);

#endif /* KVBM_MEM_COPY_PLAN_H */
