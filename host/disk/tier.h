/*
 * The G3 tier: a logical manager (its own eviction policy, its block ids)
 * over the slots of a disk store. Block id i lives in slot slot_of[i]; the
 * map is a permutation fixed at open, built so that the blocks found in the
 * file come back registered under their hashes, released oldest write
 * first (the policy sees them in the order they were written).
 *
 * Threads: the tier's calls are made by its owner (the tiered cache) under
 * its own lock; the manager and the store are thread-safe on their own.
 */
#ifndef KVBM_HOST_DISK_TIER_H
#define KVBM_HOST_DISK_TIER_H

#include <stdbool.h>
#include <stdint.h>

#include "kvbm/disk.h"
#include "kvbm/event_record.h"
#include "kvbm/layout.h"
#include "kvbm/manager.h"
#include "store.h"

typedef struct kvbm__disk_tier kvbm__disk_tier_t;

typedef struct kvbm__disk_tier_config {
    const kvbm_disk_config_t *disk;     /* the caller's configuration */
    const kvbm_layout_config_t *layout; /* the blocks' geometry (part of the namespace) */
    uint64_t payload_bytes;             /* bytes stored per block */
    kvbm_policy_config_t policy_config;
    kvbm_event_batcher_t *events; /* optional: the manager's records (medium DISK) join it */
    kvbm_disk_io_kind_t io;       /* overrides disk->io when not AUTO (the null engine) */
} kvbm__disk_tier_config_t;

/* KVBM_ERR_VERSION (disk config); errors of kvbm__disk_store_open() and
 * kvbm_manager_create(). */
kvbm_status_t kvbm__disk_tier_open(const kvbm__disk_tier_config_t *config,
                                   kvbm__disk_tier_t **tier_out);
/* Waits for the store's I/O, then closes; the file stays. NULL: no-op. */
void kvbm__disk_tier_close(kvbm__disk_tier_t *tier);

kvbm_manager_t *kvbm__disk_tier_manager(kvbm__disk_tier_t *tier);
kvbm__disk_store_t *kvbm__disk_tier_store(kvbm__disk_tier_t *tier);
uint32_t kvbm__disk_tier_slot(const kvbm__disk_tier_t *tier, uint32_t id);
/* Whether block id still holds a block found in the file at open. */
bool kvbm__disk_tier_from_file(const kvbm__disk_tier_t *tier, uint32_t id);

/*
 * One block to write into: free first, else the policy's victim, whose hash
 * is dropped (*evicted_out). The slot leaves the file's index at once.
 * KVBM_ERR_NO_BLOCKS when every block is in use.
 */
kvbm_status_t kvbm__disk_tier_take(kvbm__disk_tier_t *tier, uint32_t *id_out, bool *evicted_out);

/*
 * After a write batch: registers each written block (outcome DONE) under its
 * hash (with parents[i] as its parent when has_parent[i], for the stored
 * event) and releases every block in order, so that the policy sees them as
 * written one by one; failed ones go back to the free pool. Returns how many
 * were registered.
 */
size_t kvbm__disk_tier_finish_writes(kvbm__disk_tier_t *tier, const uint32_t *ids,
                                     const uint64_t *hashes, const uint64_t *parents,
                                     const uint8_t *has_parent, const kvbm__disk_batch_t *batch);

/* Withdraws blocks whose reads failed or did not verify: no later match
 * finds them, and their slots leave the file's index. */
void kvbm__disk_tier_withdraw(kvbm__disk_tier_t *tier, const uint32_t *ids, size_t count);

#endif /* KVBM_HOST_DISK_TIER_H */
