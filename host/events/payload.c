/* Growable payload buffers; see payload.h. */
#include "payload.h"
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#define PAYLOAD_MIN_CAPACITY 256

kvbm_status_t kvbm__payload_reserve(kvbm__payload_t *payload, size_t bytes)
{
    if (bytes > SIZE_MAX - payload->size)
        return KVBM_ERR_OVERFLOW;
    size_t needed = payload->size + bytes;
    if (needed <= payload->capacity)
        return KVBM_OK;
    size_t capacity = payload->capacity > 0 ? payload->capacity : PAYLOAD_MIN_CAPACITY;
    while (capacity < needed)
        capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
    char *data = kvbm__realloc(payload->data, 1, capacity);
    if (data == NULL)
        return KVBM_ERR_NO_MEMORY;
    payload->data = data;
    payload->capacity = capacity;
    return KVBM_OK;
}

kvbm_status_t kvbm__payload_copy_uncached(kvbm__payload_t *payload, const char *bytes, size_t size)
{
    payload->size = 0;
    kvbm_status_t status = kvbm__payload_reserve(payload, size);
    if (status != KVBM_OK)
        return status;
    size_t done = 0;
#if defined(__x86_64__)
    /* malloc'd memory is 16-byte aligned on x86-64: stream whole 16-byte
     * chunks, copy the tail normally. The caller fences once (sfence) after
     * a group of copies, before another thread may read them. */
    if (((uintptr_t)payload->data & 15u) == 0) {
        for (; done + 16 <= size; done += 16) {
            __m128i chunk = _mm_loadu_si128((const __m128i *)(const void *)(bytes + done));
            _mm_stream_si128((__m128i *)(void *)(payload->data + done), chunk);
        }
    }
#endif
    memcpy(payload->data + done, bytes + done, size - done);
    payload->size = size;
    return KVBM_OK;
}

void kvbm__payload_store_fence(void)
{
#if defined(__x86_64__)
    _mm_sfence();
#endif
}

void kvbm__payload_recycle(kvbm__payload_t *payload, size_t keep_capacity)
{
    payload->size = 0;
    if (payload->capacity > keep_capacity) {
        kvbm__free(payload->data);
        payload->data = NULL;
        payload->capacity = 0;
    }
}

void kvbm__payload_free(kvbm__payload_t *payload)
{
    kvbm__free(payload->data);
    *payload = (kvbm__payload_t){0};
}
