/* Fixed-capacity open-addressing map; see u64_map.h for why it exists. */
#include "u64_map.h"

#include <assert.h>
#include <stdlib.h>

#include "core/mix.h"

/* Keys given by callers need not be well mixed (core/mix.h). */
static size_t slot_of(const kvbm__u64_map_t *map, uint64_t key)
{
    return (size_t)kvbm__mix64(key) & map->mask;
}

kvbm_status_t kvbm__u64_map_init(kvbm__u64_map_t *map, size_t max_entries)
{
    kvbm__u64_map_t fresh = {0};
    *map = fresh;
    /* At least twice the entries, so the load factor stays at or below 1/2. */
    size_t slots = 8;
    while (slots < max_entries * 2) {
        if (slots > SIZE_MAX / 2 / sizeof(uint64_t))
            return KVBM_ERR_OVERFLOW;
        slots *= 2;
    }
    fresh.keys = malloc(slots * sizeof(uint64_t));
    if (fresh.keys == NULL)
        goto err;
    fresh.values = malloc(slots * sizeof(uint64_t));
    if (fresh.values == NULL)
        goto err_free_keys;
    fresh.used = calloc(slots, 1);
    if (fresh.used == NULL)
        goto err_free_values;
    fresh.mask = slots - 1;
    fresh.max_size = max_entries;
    *map = fresh;
    return KVBM_OK;

err_free_values:
    free(fresh.values);
err_free_keys:
    free(fresh.keys);
err:
    return KVBM_ERR_NO_MEMORY;
}

void kvbm__u64_map_fini(kvbm__u64_map_t *map)
{
    free(map->keys);
    free(map->values);
    free(map->used);
    kvbm__u64_map_t empty = {0};
    *map = empty;
}

uint64_t *kvbm__u64_map_find(const kvbm__u64_map_t *map, uint64_t key)
{
    for (size_t i = slot_of(map, key);; i = (i + 1) & map->mask) {
        if (!map->used[i])
            return NULL;
        if (map->keys[i] == key)
            return &map->values[i];
    }
}

uint64_t *kvbm__u64_map_upsert(kvbm__u64_map_t *map, uint64_t key, uint64_t initial)
{
    size_t i = slot_of(map, key);
    for (; map->used[i]; i = (i + 1) & map->mask) {
        if (map->keys[i] == key)
            return &map->values[i];
    }
    assert(map->size < map->max_size || map->max_size == 0);
    assert(map->size < map->mask); /* one slot always stays empty */
    map->used[i] = 1;
    map->keys[i] = key;
    map->values[i] = initial;
    map->size++;
    return &map->values[i];
}

bool kvbm__u64_map_erase(kvbm__u64_map_t *map, uint64_t key)
{
    size_t i = slot_of(map, key);
    for (;; i = (i + 1) & map->mask) {
        if (!map->used[i])
            return false;
        if (map->keys[i] == key)
            break;
    }
    /*
     * Backward-shift deletion: walk the cluster after the hole and pull back
     * every entry whose home slot does not lie strictly between the hole and
     * its current slot (cyclically), so no probe sequence is broken.
     */
    size_t hole = i;
    for (size_t j = (hole + 1) & map->mask; map->used[j]; j = (j + 1) & map->mask) {
        size_t home = slot_of(map, map->keys[j]);
        bool home_in_gap = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (home_in_gap)
            continue;
        map->keys[hole] = map->keys[j];
        map->values[hole] = map->values[j];
        hole = j;
    }
    map->used[hole] = 0;
    map->size--;
    return true;
}
