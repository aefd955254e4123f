/*
 * The registry: sequence hash -> the block(s) registered under it.
 *
 * One entry per distinct registered hash, drawn from a pool preallocated for
 * the manager's capacity (there can never be more distinct hashes than
 * blocks), indexed by uthash. Several blocks may carry one hash under the
 * allow duplication policy: the entry names the first, and the blocks chain
 * through a next-duplicate array owned by the manager.
 *
 * Only kvbm__registry_insert can fail (uthash may need to grow its bucket
 * array); lookups and removals never allocate. Not thread-safe: the owning
 * manager's lock protects it.
 */
#ifndef KVBM_HOST_REGISTRY_H
#define KVBM_HOST_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"

typedef struct kvbm__registry kvbm__registry_t;

/* block_hashes[id * stride bytes] is where the owner keeps block id's hash;
 * the registry points its keys there instead of copying them. The owner must
 * write a block's hash before inserting it and keep it while registered. */
kvbm_status_t kvbm__registry_create(uint32_t capacity, const uint64_t *block_hashes, size_t stride,
                                    kvbm__registry_t **registry_out);
void kvbm__registry_destroy(kvbm__registry_t *registry);

/* The first block registered under hash, or KVBM_BLOCK_NONE. */
uint32_t kvbm__registry_find(const kvbm__registry_t *registry, uint64_t hash);

/* The first block of a present entry. Entry indexes are stable while the
 * hash stays registered; blocks keep theirs (from insert) so removal and
 * promotion need no lookup. */
uint32_t kvbm__registry_first(const kvbm__registry_t *registry, uint32_t entry);

/* Adds hash -> block_id unless hash is present. *existing_out is the first
 * block already registered under hash (nothing added), or KVBM_BLOCK_NONE
 * when the hash was added and *entry_out is the new entry's index.
 * KVBM_ERR_NO_MEMORY leaves the registry unchanged. */
kvbm_status_t kvbm__registry_insert(kvbm__registry_t *registry, uint64_t hash, uint32_t block_id,
                                    uint32_t *entry_out, uint32_t *existing_out);

/* Points a present entry at another first block (duplicate promotion). */
void kvbm__registry_set_first(kvbm__registry_t *registry, uint32_t entry, uint32_t block_id);

/* Removes a present entry. Never fails. */
void kvbm__registry_remove(kvbm__registry_t *registry, uint32_t entry);

/* Starts loading the bucket a lookup of @p hash will read. Batched calls
 * prefetch a few hashes ahead so the bucket misses overlap; _chain, issued
 * later (once the bucket is loaded), loads the first entry of its chain. */
void kvbm__registry_prefetch(const kvbm__registry_t *registry, uint64_t hash);
void kvbm__registry_prefetch_chain(const kvbm__registry_t *registry, uint64_t hash);

/* Start loading an entry, and (once the entry itself is loaded) the
 * neighbours that removing it will rewrite. Eviction pipelines the two. */
void kvbm__registry_prefetch_entry(const kvbm__registry_t *registry, uint32_t entry);
void kvbm__registry_prefetch_neighbours(const kvbm__registry_t *registry, uint32_t entry);

#endif /* KVBM_HOST_REGISTRY_H */
