/*
 * A fixed-capacity map from 64-bit keys to 64-bit values, for policies that
 * must not allocate after create.
 *
 * Why not uthash (the house choice for hash tables): uthash grows its bucket
 * array with malloc while items are added, and the policy contract forbids
 * allocation outside create. This table is sized once for a known maximum
 * number of live entries and never grows: open addressing with linear probing
 * at a load factor of at most two thirds (exactly, the slot count is not
 * rounded to a power of two), and backward-shift deletion so there are no
 * tombstones and lookups stay short however long it runs.
 *
 * Not thread-safe: the owner's lock protects it. A pointer returned by find or
 * upsert is valid until the next erase (erase moves entries).
 */
#ifndef KVBM_HOST_U64_MAP_H
#define KVBM_HOST_U64_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"

typedef struct kvbm__u64_map {
    uint64_t *keys;
    uint64_t *values;
    uint8_t *used;   /* 1 where a slot holds an entry */
    size_t n_slots;  /* max_size * 3 / 2 + 1: the load factor is at most 2/3 */
    size_t size;     /* live entries */
    size_t max_size; /* the most live entries init was sized for */
} kvbm__u64_map_t;

/**
 * Size the map for at most @p max_entries live entries. On error nothing is
 * allocated and the map is left zeroed (fini on it is safe).
 * Returns KVBM_OK, KVBM_ERR_OVERFLOW or KVBM_ERR_NO_MEMORY.
 */
kvbm_status_t kvbm__u64_map_init(kvbm__u64_map_t *map, size_t max_entries);

/** Free the arrays; the map may be zeroed or already finished. */
void kvbm__u64_map_fini(kvbm__u64_map_t *map);

/** The value stored under @p key, or NULL. */
uint64_t *kvbm__u64_map_find(const kvbm__u64_map_t *map, uint64_t key);

/**
 * The value under @p key, inserting it with @p initial first if absent. The
 * caller must stay within max_entries (checked by a debug assert).
 */
uint64_t *kvbm__u64_map_upsert(kvbm__u64_map_t *map, uint64_t key, uint64_t initial);

/** Remove @p key; returns whether it was present. */
bool kvbm__u64_map_erase(kvbm__u64_map_t *map, uint64_t key);

#endif /* KVBM_HOST_U64_MAP_H */
