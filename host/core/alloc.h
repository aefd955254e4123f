/*
 * The library's one way to allocate host memory. Every module allocates
 * through these (scripts/lint.sh refuses a bare malloc, calloc, realloc or
 * free in host/ and cuda/), for two reasons:
 *
 * - Every size is a count times an element size, and the product is checked:
 *   a count from a caller that would overflow gives NULL (reported as
 *   KVBM_ERR_NO_MEMORY, or refused earlier with a clearer status), never a
 *   short buffer.
 * - Fault injection: a test can make the Nth allocation from now fail, for
 *   every N a scenario reaches, and check that each call fails cleanly
 *   (tests/test_alloc_failure.c). Memory that is not malloc'd (the CPU
 *   backend's pools) asks kvbm__alloc_injected_failure() first, so it fails
 *   on the same count.
 *
 * The counter is process-wide (atomic, relaxed): with several threads
 * allocating, which one sees the injected failure is up to the schedule.
 */
#ifndef KVBM_CORE_ALLOC_H
#define KVBM_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* @p count elements of @p size bytes, uninitialised; NULL if the product
 * overflows, memory is short, or a failure is injected. A zero product
 * still returns a unique pointer (one byte), so NULL always means failure. */
void *kvbm__alloc(size_t count, size_t size);

/* As kvbm__alloc, zero-filled. */
void *kvbm__calloc(size_t count, size_t size);

/* Resizes @p ptr (NULL: allocates) to @p count elements of @p size; on
 * failure returns NULL and leaves @p ptr as it was. */
void *kvbm__realloc(void *ptr, size_t count, size_t size);

/* As kvbm__alloc, at an address aligned to @p alignment (a power of two and
 * a multiple of sizeof(void *); direct I/O buffers). */
void *kvbm__alloc_aligned(size_t alignment, size_t count, size_t size);

/* A copy of the string @p text; NULL as kvbm__alloc. */
char *kvbm__strdup(const char *text);

/* Frees what the functions above returned. NULL is a no-op. */
void kvbm__free(void *ptr);

/* Counts one allocation attempt that does not go through kvbm__alloc (a
 * pool mapping) and says whether it must fail. */
int kvbm__alloc_injected_failure(void);

/* Test hook: the @p n-th allocation attempt from now fails (1 is the next
 * one); 0 disarms. Only that one fails: the ones after succeed again, so a
 * retry shows whether the failure left anything behind. */
void kvbm__alloc_fail_nth(uint64_t n);

/* Allocation attempts so far (to size a fault-injection sweep). */
uint64_t kvbm__alloc_count(void);

/* Blocks allocated through these functions and not yet freed, process-wide
 * (what a test compares before and after, to find a leak). */
int64_t kvbm__alloc_live(void);

#endif /* KVBM_CORE_ALLOC_H */
