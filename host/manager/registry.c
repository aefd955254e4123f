/* The hash -> block registry on uthash; see registry.h. */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#include "core/mix.h"
#include "kvbm/policy.h"

/* uthash's hash of a key: the 64-bit hash mixed (core/mix.h), so small dense
 * integers spread over the power-of-two buckets too. */
static inline unsigned registry_mix(const void *key)
{
    uint64_t k;
    memcpy(&k, key, sizeof(k));
    return (unsigned)kvbm__mix64(k);
}

/* A failed bucket expansion must not abort the process: uthash then rolls the
 * add back and reports it here, and insert returns KVBM_ERR_NO_MEMORY. */
#define HASH_NONFATAL_OOM                    1
#define uthash_nonfatal_oom(obj)             (registry_oom_seen = true)
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = registry_mix(keyptr))
#include <uthash.h>

/* The key is not stored in the entry: uthash keeps a pointer to it, and the
 * hash lives in the owner's table of block hashes (8 bytes per entry saved). */
typedef struct registry_entry {
    uint32_t first_block; /* on the free list: index of the next free entry */
    UT_hash_handle hh;
} registry_entry_t;

struct kvbm__registry {
    const uint64_t *key_of_block; /* the owner's block hashes, indexed by block id */
    size_t key_stride;            /* bytes between consecutive block hashes */
    registry_entry_t *entries;    /* capacity entries, preallocated */
    registry_entry_t *table;      /* uthash head */
    uint32_t free_head;           /* free list through first_block */
    uint32_t capacity;
};

kvbm_status_t kvbm__registry_create(uint32_t capacity, const uint64_t *block_hashes, size_t stride,
                                    kvbm__registry_t **registry_out)
{
    kvbm__registry_t *registry = calloc(1, sizeof(*registry));
    if (registry == NULL)
        return KVBM_ERR_NO_MEMORY;
    registry->entries = calloc(capacity, sizeof(registry_entry_t));
    if (registry->entries == NULL) {
        free(registry);
        return KVBM_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < capacity; i++)
        registry->entries[i].first_block = i + 1 < capacity ? i + 1 : KVBM_BLOCK_NONE;
    registry->free_head = capacity > 0 ? 0 : KVBM_BLOCK_NONE;
    registry->capacity = capacity;
    registry->key_of_block = block_hashes;
    registry->key_stride = stride;
    *registry_out = registry;
    return KVBM_OK;
}

void kvbm__registry_destroy(kvbm__registry_t *registry)
{
    if (registry == NULL)
        return;
    HASH_CLEAR(hh, registry->table);
    free(registry->entries);
    free(registry);
}

static const uint64_t *block_key(const kvbm__registry_t *registry, uint32_t block_id)
{
    return (const uint64_t *)((const char *)registry->key_of_block +
                              (size_t)block_id * registry->key_stride);
}

static registry_entry_t *registry_lookup(const kvbm__registry_t *registry, uint64_t hash)
{
    registry_entry_t *entry = NULL;
    HASH_FIND(hh, registry->table, &hash, sizeof(hash), entry);
    return entry;
}

uint32_t kvbm__registry_find(const kvbm__registry_t *registry, uint64_t hash)
{
    const registry_entry_t *entry = registry_lookup(registry, hash);
    return entry == NULL ? KVBM_BLOCK_NONE : entry->first_block;
}

uint32_t kvbm__registry_first(const kvbm__registry_t *registry, uint32_t entry)
{
    return registry->entries[entry].first_block;
}

kvbm_status_t kvbm__registry_insert(kvbm__registry_t *registry, uint64_t hash, uint32_t block_id,
                                    uint32_t *entry_out, uint32_t *existing_out)
{
    /* One hash computation serves both the lookup and the add. */
    unsigned hashv;
    HASH_VALUE(&hash, sizeof(hash), hashv);
    registry_entry_t *found = NULL;
    HASH_FIND_BYHASHVALUE(hh, registry->table, &hash, sizeof(hash), hashv, found);
    if (found != NULL) {
        *existing_out = found->first_block;
        return KVBM_OK;
    }
    *existing_out = KVBM_BLOCK_NONE;
    if (registry->free_head == KVBM_BLOCK_NONE)
        return KVBM_ERR_INTERNAL; /* more hashes than blocks: a manager bug */
    const uint64_t *key = block_key(registry, block_id);
    if (*key != hash)
        return KVBM_ERR_INTERNAL; /* the owner must store the hash first */
    registry_entry_t *entry = &registry->entries[registry->free_head];
    uint32_t next_free = entry->first_block;
    entry->first_block = block_id;
    bool registry_oom_seen = false;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, registry->table, key, sizeof(uint64_t), hashv, entry);
    if (registry_oom_seen) {
        entry->first_block = next_free;
        return KVBM_ERR_NO_MEMORY;
    }
    *entry_out = registry->free_head;
    registry->free_head = next_free;
    return KVBM_OK;
}

void kvbm__registry_set_first(kvbm__registry_t *registry, uint32_t entry_index, uint32_t block_id)
{
    registry_entry_t *entry = &registry->entries[entry_index];
    entry->first_block = block_id;
    entry->hh.key = block_key(registry, block_id); /* same value, new home */
}

void kvbm__registry_remove(kvbm__registry_t *registry, uint32_t entry_index)
{
    registry_entry_t *entry = &registry->entries[entry_index];
    HASH_DELETE(hh, registry->table, entry);
    entry->first_block = registry->free_head;
    registry->free_head = (uint32_t)(entry - registry->entries);
}

void kvbm__registry_prefetch(const kvbm__registry_t *registry, uint64_t hash)
{
    if (registry->table == NULL)
        return;
    const UT_hash_table *table = registry->table->hh.tbl;
    unsigned bucket = registry_mix(&hash) & (table->num_buckets - 1U);
    __builtin_prefetch(&table->buckets[bucket]);
}

void kvbm__registry_prefetch_chain(const kvbm__registry_t *registry, uint64_t hash)
{
    if (registry->table == NULL)
        return;
    const UT_hash_table *table = registry->table->hh.tbl;
    unsigned bucket = registry_mix(&hash) & (table->num_buckets - 1U);
    const UT_hash_handle *first = table->buckets[bucket].hh_head;
    if (first != NULL)
        __builtin_prefetch(first);
}

void kvbm__registry_prefetch_entry(const kvbm__registry_t *registry, uint32_t entry_index)
{
    __builtin_prefetch(&registry->entries[entry_index]);
}

void kvbm__registry_prefetch_neighbours(const kvbm__registry_t *registry, uint32_t entry_index)
{
    /* Removing an entry rewrites its neighbours in uthash's insertion-order
     * list and in its bucket's chain. */
    const UT_hash_handle *hh = &registry->entries[entry_index].hh;
    if (hh->prev != NULL)
        __builtin_prefetch(hh->prev);
    if (hh->next != NULL)
        __builtin_prefetch(hh->next);
    if (hh->hh_prev != NULL)
        __builtin_prefetch(hh->hh_prev);
    if (hh->hh_next != NULL)
        __builtin_prefetch(hh->hh_next);
}
