/*
 * Internal to cuda/mem: the address ranges the CUDA backend knows the device
 * can reach through their own pointers (its device pools, its pinned and
 * mapped host pools, wrapped pools it has checked). The copy kernel is only
 * given regions inside these ranges (or any host memory when the device
 * reads pageable memory), since a kernel touching anything else faults and
 * kills the context. Pinned pools registered in chunks also remember the
 * chunk size, so copy-engine copies can be cut where one registration ends.
 *
 * A sorted array; pure code (no CUDA, no locking: the owner locks).
 */
#ifndef KVBM_CUDA_RANGES_H
#define KVBM_CUDA_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"

typedef struct kvbm__range {
    uintptr_t base;
    size_t bytes;
    /* Registration unit for pinned pools registered in chunks (the pool is
     * registered as [base + k * chunk, base + (k + 1) * chunk)); 0 when the
     * range is one allocation or registration. */
    size_t chunk;
} kvbm__range_t;

typedef struct kvbm__range_set {
    kvbm__range_t *items; /* sorted by base; ranges never overlap */
    size_t count;
    size_t capacity;
} kvbm__range_set_t;

/* Adds a range. KVBM_ERR_INVALID_ARG if it is empty, wraps around or overlaps
 * one already there; KVBM_ERR_NO_MEMORY. Leaves the set unchanged on error. */
kvbm_status_t kvbm__range_set_add(kvbm__range_set_t *set, const void *base, size_t bytes,
                                  size_t chunk);

/* Removes the range starting at @p base; false when there is none. */
bool kvbm__range_set_remove(kvbm__range_set_t *set, const void *base);

/* The range holding address @p p, or NULL. */
const kvbm__range_t *kvbm__range_set_find(const kvbm__range_set_t *set, const void *p);

/* Whether [p, p + bytes) lies inside one range (true for bytes == 0). */
bool kvbm__range_set_covers(const kvbm__range_set_t *set, const void *p, size_t bytes);

/*
 * How many of the @p bytes at @p p can be copied before crossing the end of
 * a registration chunk of the range holding @p p: @p bytes when no chunk end
 * falls inside (or @p p is in no chunked range).
 */
size_t kvbm__range_set_run(const kvbm__range_set_t *set, const void *p, size_t bytes);

void kvbm__range_set_free(kvbm__range_set_t *set);

#endif /* KVBM_CUDA_RANGES_H */
