/* Known device-reachable address ranges; see ranges.h. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "ranges.h"
#include "core/error.h"

/* Index of the first range whose base is greater than @p p. */
static size_t upper_bound(const kvbm__range_set_t *set, uintptr_t p)
{
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->items[mid].base <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

kvbm_status_t kvbm__range_set_add(kvbm__range_set_t *set, const void *base, size_t bytes,
                                  size_t chunk)
{
    uintptr_t b = (uintptr_t)base;
    if (bytes == 0 || b + bytes < b)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "memory range at %p of %zu bytes is empty or wraps",
                          base, bytes);
    size_t at = upper_bound(set, b);
    if (at > 0) {
        const kvbm__range_t *prev = &set->items[at - 1];
        if (prev->base + prev->bytes > b)
            return kvbm__fail(KVBM_ERR_INVALID_ARG, "memory range at %p overlaps one already known",
                              base);
    }
    if (at < set->count && set->items[at].base < b + bytes)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "memory range at %p of %zu bytes overlaps one already known", base,
                          bytes);
    if (set->count == set->capacity) {
        size_t cap = set->capacity == 0 ? 8 : 2 * set->capacity;
        kvbm__range_t *items = kvbm__realloc(set->items, cap, sizeof(*items));
        if (items == NULL)
            return KVBM_ERR_NO_MEMORY;
        set->items = items;
        set->capacity = cap;
    }
    memmove(&set->items[at + 1], &set->items[at], (set->count - at) * sizeof(set->items[0]));
    set->items[at] = (kvbm__range_t){.base = b, .bytes = bytes, .chunk = chunk};
    set->count++;
    return KVBM_OK;
}

bool kvbm__range_set_remove(kvbm__range_set_t *set, const void *base)
{
    uintptr_t b = (uintptr_t)base;
    size_t at = upper_bound(set, b);
    if (at == 0 || set->items[at - 1].base != b)
        return false;
    at--;
    memmove(&set->items[at], &set->items[at + 1], (set->count - at - 1) * sizeof(set->items[0]));
    set->count--;
    return true;
}

const kvbm__range_t *kvbm__range_set_find(const kvbm__range_set_t *set, const void *p)
{
    uintptr_t a = (uintptr_t)p;
    size_t at = upper_bound(set, a);
    if (at == 0)
        return NULL;
    const kvbm__range_t *r = &set->items[at - 1];
    return a - r->base < r->bytes ? r : NULL;
}

bool kvbm__range_set_covers(const kvbm__range_set_t *set, const void *p, size_t bytes)
{
    if (bytes == 0)
        return true;
    const kvbm__range_t *r = kvbm__range_set_find(set, p);
    return r != NULL && bytes <= r->bytes - ((uintptr_t)p - r->base);
}

size_t kvbm__range_set_run(const kvbm__range_set_t *set, const void *p, size_t bytes)
{
    const kvbm__range_t *r = kvbm__range_set_find(set, p);
    if (r == NULL || r->chunk == 0)
        return bytes;
    size_t offset = (uintptr_t)p - r->base;
    size_t left_in_chunk = r->chunk - offset % r->chunk;
    return bytes < left_in_chunk ? bytes : left_in_chunk;
}

void kvbm__range_set_free(kvbm__range_set_t *set)
{
    kvbm__free(set->items);
    memset(set, 0, sizeof(*set));
}
