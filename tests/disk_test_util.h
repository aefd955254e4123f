/* Helpers for the disk tier tests: temporary files, payload patterns,
 * aligned buffers and a store opened with test-sized defaults. */
#ifndef KVBM_TESTS_DISK_TEST_UTIL_H
#define KVBM_TESTS_DISK_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/format.h"
#include "disk/store.h"

/* A fresh path in a fresh temporary directory (static buffer). */
static inline const char *disk_test_path(void)
{
    static char path[128];
    char dir[] = "/tmp/kvbm-disk-test-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/g3.bin", dir);
    return path;
}

static inline void disk_test_remove(const char *path)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    unlink(path);
    if (slash != NULL) {
        *slash = '\0';
        rmdir(dir);
    }
}

/* The payload every test writes for a hash: reproducible, different per hash. */
static inline void disk_test_fill(uint8_t *payload, size_t bytes, uint64_t hash)
{
    uint64_t x = hash * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < bytes; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload[i] = (uint8_t)x;
    }
}

static inline int disk_test_payload_ok(const uint8_t *payload, size_t bytes, uint64_t hash)
{
    uint8_t *expected = malloc(bytes);
    if (expected == NULL)
        return 0;
    disk_test_fill(expected, bytes, hash);
    int same = memcmp(expected, payload, bytes) == 0;
    free(expected);
    return same;
}

static inline uint8_t *disk_test_buffers(size_t count, size_t slot_bytes)
{
    void *buf = NULL;
    if (posix_memalign(&buf, KVBM__DISK_MIN_ALIGN, count * slot_bytes) != 0)
        return NULL;
    memset(buf, 0, count * slot_bytes);
    return buf;
}

static inline kvbm__disk_store_config_t disk_test_config(const char *path, uint64_t payload,
                                                         uint64_t slots, uint64_t fingerprint)
{
    kvbm__disk_store_config_t config = {.path = path,
                                        .payload_bytes = payload,
                                        .slots = slots,
                                        .fingerprint = fingerprint,
                                        .io = KVBM_DISK_IO_AUTO,
                                        .direct = true,
                                        .queue_depth = 16,
                                        .io_threads = 2,
                                        .durability = KVBM_DISK_DURABLE_PROCESS,
                                        .preallocate = true};
    return config;
}

#endif /* KVBM_TESTS_DISK_TEST_UTIL_H */
