/* Checked, injectable allocation; see core/alloc.h. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Attempts so far, the attempt number that must fail (0: none), and blocks
 * allocated and not yet freed. Plain counters with no ordering to keep
 * (relaxed). */
static atomic_uint_fast64_t attempts;
static atomic_uint_fast64_t fail_at;
static atomic_int_fast64_t live;

int kvbm__alloc_injected_failure(void)
{
    uint64_t n = atomic_fetch_add_explicit(&attempts, 1, memory_order_relaxed) + 1;
    uint64_t target = atomic_load_explicit(&fail_at, memory_order_relaxed);
    return target != 0 && n == target;
}

void kvbm__alloc_fail_nth(uint64_t n)
{
    uint64_t now = atomic_load_explicit(&attempts, memory_order_relaxed);
    atomic_store_explicit(&fail_at, n == 0 ? 0 : now + n, memory_order_relaxed);
}

uint64_t kvbm__alloc_count(void)
{
    return atomic_load_explicit(&attempts, memory_order_relaxed);
}

int64_t kvbm__alloc_live(void)
{
    return atomic_load_explicit(&live, memory_order_relaxed);
}

static void *counted(void *ptr)
{
    if (ptr != NULL)
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return ptr;
}

/* count * size in *bytes_out (at least 1); 0 if it overflows. */
static int checked_bytes(size_t count, size_t size, size_t *bytes_out)
{
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes))
        return 0;
    *bytes_out = bytes > 0 ? bytes : 1;
    return 1;
}

void *kvbm__alloc(size_t count, size_t size)
{
    size_t bytes;
    if (kvbm__alloc_injected_failure() || !checked_bytes(count, size, &bytes))
        return NULL;
    return counted(malloc(bytes));
}

void *kvbm__calloc(size_t count, size_t size)
{
    size_t bytes;
    if (kvbm__alloc_injected_failure() || !checked_bytes(count, size, &bytes))
        return NULL;
    return counted(calloc(1, bytes));
}

void *kvbm__realloc(void *ptr, size_t count, size_t size)
{
    size_t bytes;
    if (kvbm__alloc_injected_failure() || !checked_bytes(count, size, &bytes))
        return NULL;
    void *grown = realloc(ptr, bytes);
    return ptr == NULL ? counted(grown) : grown;
}

void *kvbm__alloc_aligned(size_t alignment, size_t count, size_t size)
{
    size_t bytes;
    void *ptr = NULL;
    if (kvbm__alloc_injected_failure() || !checked_bytes(count, size, &bytes) ||
        posix_memalign(&ptr, alignment, bytes) != 0)
        return NULL;
    return counted(ptr);
}

char *kvbm__strdup(const char *text)
{
    size_t bytes = strlen(text) + 1;
    char *copy = kvbm__alloc(bytes, 1);
    if (copy != NULL)
        memcpy(copy, text, bytes);
    return copy;
}

void kvbm__free(void *ptr)
{
    if (ptr != NULL)
        atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    free(ptr);
}
