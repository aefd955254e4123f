/* Growable payload buffers; see payload.h. */
#include "payload.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    char *data = realloc(payload->data, capacity);
    if (data == NULL)
        return KVBM_ERR_NO_MEMORY;
    payload->data = data;
    payload->capacity = capacity;
    return KVBM_OK;
}

int kvbm__payload_write(void *payload, const char *bytes, size_t len)
{
    kvbm__payload_t *p = payload;
    if (kvbm__payload_reserve(p, len) != KVBM_OK)
        return -1;
    memcpy(p->data + p->size, bytes, len);
    p->size += len;
    return 0;
}

void kvbm__payload_recycle(kvbm__payload_t *payload, size_t keep_capacity)
{
    payload->size = 0;
    if (payload->capacity > keep_capacity) {
        free(payload->data);
        payload->data = NULL;
        payload->capacity = 0;
    }
}

void kvbm__payload_free(kvbm__payload_t *payload)
{
    free(payload->data);
    *payload = (kvbm__payload_t){0};
}
