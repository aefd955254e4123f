/* Fixed-capacity open-addressing map; see u64_map.h for why it exists. */
#include "u64_map.h"

#include <assert.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/mix.h"

/* Keys given by callers need not be well mixed (core/mix.h). The mixed key
 * is scaled onto the slots with a multiply, not a mask, so the slot count
 * need not be a power of two and the table costs exactly its load factor. */
static size_t slot_of(const kvbm__u64_map_t *map, uint64_t key)
{
    return (size_t)(((unsigned __int128)kvbm__mix64(key) * map->n_slots) >> 64);
}

static size_t next_slot(const kvbm__u64_map_t *map, size_t i)
{
    return i + 1 == map->n_slots ? 0 : i + 1;
}

kvbm_status_t kvbm__u64_map_init(kvbm__u64_map_t *map, size_t max_entries)
{
    kvbm__u64_map_t fresh = {0};
    *map = fresh;
    /* Half again the entries, and one slot that always stays empty (it ends
     * every probe): the load factor stays at or below 2/3. Rounding up to a
     * power of two would cost up to twice that (DECISIONS.md 66). */
    if (max_entries > SIZE_MAX / 2 / sizeof(uint64_t))
        return KVBM_ERR_OVERFLOW;
    size_t slots = max_entries + max_entries / 2 + 1;
    if (slots < 8)
        slots = 8;
    fresh.keys = kvbm__alloc(slots, sizeof(uint64_t));
    if (fresh.keys == NULL)
        goto err;
    fresh.values = kvbm__alloc(slots, sizeof(uint64_t));
    if (fresh.values == NULL)
        goto err_free_keys;
    fresh.used = kvbm__calloc(slots, 1);
    if (fresh.used == NULL)
        goto err_free_values;
    fresh.n_slots = slots;
    fresh.max_size = max_entries;
    *map = fresh;
    return KVBM_OK;

err_free_values:
    kvbm__free(fresh.values);
err_free_keys:
    kvbm__free(fresh.keys);
err:
    return KVBM_ERR_NO_MEMORY;
}

void kvbm__u64_map_fini(kvbm__u64_map_t *map)
{
    kvbm__free(map->keys);
    kvbm__free(map->values);
    kvbm__free(map->used);
    kvbm__u64_map_t empty = {0};
    *map = empty;
}

uint64_t *kvbm__u64_map_find(const kvbm__u64_map_t *map, uint64_t key)
{
    for (size_t i = slot_of(map, key);; i = next_slot(map, i)) {
        if (!map->used[i])
            return NULL;
        if (map->keys[i] == key)
            return &map->values[i];
    }
}

uint64_t *kvbm__u64_map_upsert(kvbm__u64_map_t *map, uint64_t key, uint64_t initial)
{
    size_t i = slot_of(map, key);
    for (; map->used[i]; i = next_slot(map, i)) {
        if (map->keys[i] == key)
            return &map->values[i];
    }
    assert(map->size < map->max_size || map->max_size == 0);
    assert(map->size + 1 < map->n_slots); /* one slot always stays empty */
    map->used[i] = 1;
    map->keys[i] = key;
    map->values[i] = initial;
    map->size++;
    return &map->values[i];
}

bool kvbm__u64_map_erase(kvbm__u64_map_t *map, uint64_t key)
{
    size_t i = slot_of(map, key);
    for (;; i = next_slot(map, i)) {
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
    for (size_t j = next_slot(map, hole); map->used[j]; j = next_slot(map, j)) {
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
