/* The G3 tier: a manager over a disk store's slots; see tier.h. */
#include "core/alloc.h"
#include "tier.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "fingerprint.h"

struct kvbm__disk_tier {
    kvbm__disk_store_t *store;
    kvbm_manager_t *manager;
    uint32_t blocks;
    uint32_t *slot_of;  /* block id -> slot, a permutation; immutable after open */
    uint8_t *from_file; /* per block id: still the block found at open; owner's lock */
};

static kvbm_status_t open_store(const kvbm__disk_tier_config_t *config,
                                const kvbm_disk_config_t *disk, kvbm__disk_store_t **out)
{
    kvbm__disk_store_config_t sc = {
        .path = disk->path,
        .payload_bytes = config->payload_bytes,
        .slots = disk->capacity_blocks,
        .file_bytes = disk->capacity_bytes,
        .min_free_bytes = disk->min_free_bytes,
        .fingerprint =
            kvbm__disk_fingerprint(config->layout, disk->model_id, disk->tp_rank, disk->tp_size),
        .io = config->io != KVBM_DISK_IO_AUTO ? config->io : disk->io,
        .direct = disk->direct,
        .queue_depth = disk->queue_depth,
        .io_threads = disk->io_threads,
        .durability = disk->durability,
        .preallocate = disk->preallocate,
    };
    return kvbm__disk_store_open(&sc, out);
}

static kvbm_status_t create_manager(kvbm__disk_tier_t *tier, const kvbm__disk_tier_config_t *config,
                                    const kvbm_disk_config_t *disk)
{
    kvbm_manager_config_t mc = KVBM_MANAGER_CONFIG_INIT;
    mc.num_blocks = tier->blocks;
    mc.duplication = KVBM_DUPLICATION_REJECT;
    mc.policy = disk->policy;
    mc.policy_config = config->policy_config;
    mc.name = "g3";
    mc.medium = KVBM_MEDIUM_DISK;
    if (config->events != NULL) {
        mc.on_events = kvbm_event_batcher_sink;
        mc.events_ctx = config->events;
    }
    return kvbm_manager_create(&mc, &tier->manager);
}

/* Gives the ids the manager handed out for recovered blocks their slots, and
 * every other id one of the remaining slots. */
static void map_slots(kvbm__disk_tier_t *tier, const uint32_t *ids,
                      const kvbm__disk_entry_t *entries, size_t n, uint8_t *slot_used)
{
    for (size_t i = 0; i < n; i++) {
        tier->slot_of[ids[i]] = entries[i].slot;
        tier->from_file[ids[i]] = 1;
        slot_used[entries[i].slot] = 1;
    }
    uint32_t next_slot = 0;
    for (uint32_t id = 0; id < tier->blocks; id++) {
        if (tier->from_file[id])
            continue;
        while (slot_used[next_slot])
            next_slot++;
        tier->slot_of[id] = next_slot++;
    }
}

/* Registers the recovered blocks one by one (they are not one sequence, so
 * none is the parent of the next), then releases them oldest first. */
static kvbm_status_t register_recovered(kvbm__disk_tier_t *tier, uint32_t *ids,
                                        const kvbm__disk_entry_t *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t registered;
        kvbm_status_t status = kvbm_manager_register(tier->manager, &ids[i], &entries[i].seq_hash,
                                                     1, NULL, &registered);
        if (status != KVBM_OK)
            return status;
        assert(registered == ids[i]); /* hashes are unique after the rebuild */
    }
    return kvbm_manager_release(tier->manager, ids, n);
}

static kvbm_status_t adopt_recovered(kvbm__disk_tier_t *tier)
{
    kvbm__disk_entry_t *entries = NULL;
    size_t n = 0;
    kvbm__disk_store_take_recovered(tier->store, &entries, &n);
    uint32_t *ids = kvbm__alloc(n, sizeof(uint32_t));
    uint8_t *slot_used = kvbm__calloc(tier->blocks, 1);
    kvbm_status_t status = KVBM_ERR_NO_MEMORY;
    if (ids != NULL && slot_used != NULL)
        status = kvbm_manager_allocate(tier->manager, n, ids, NULL, NULL);
    if (status == KVBM_OK) {
        map_slots(tier, ids, entries, n, slot_used);
        status = register_recovered(tier, ids, entries, n);
    }
    kvbm__free(slot_used);
    kvbm__free(ids);
    kvbm__free(entries);
    return status;
}

/* sizeof(kvbm_disk_config_t) at each published version (core/config.h). */
static const size_t disk_config_sizes[] = {sizeof(kvbm_disk_config_t)};

/* Imports the caller's disk config (any published version) into @p disk. */
static kvbm_status_t import_config(const kvbm__disk_tier_config_t *config, kvbm_disk_config_t *disk)
{
    if (config == NULL || config->disk == NULL || config->layout == NULL ||
        config->payload_bytes == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "g3 tier: needs a disk config, a layout and a block size");
    const kvbm_disk_config_t defaults = KVBM_DISK_CONFIG_INIT;
    return KVBM__CONFIG_IMPORT(config->disk, disk_config_sizes, &defaults, disk);
}

kvbm_status_t kvbm__disk_tier_open(const kvbm__disk_tier_config_t *config,
                                   kvbm__disk_tier_t **tier_out)
{
    kvbm_disk_config_t disk;
    kvbm_status_t status = import_config(config, &disk);
    if (status != KVBM_OK)
        return status;
    kvbm__disk_tier_t *tier = kvbm__calloc(1, sizeof(*tier));
    if (tier == NULL)
        return KVBM_ERR_NO_MEMORY;
    status = open_store(config, &disk, &tier->store);
    if (status != KVBM_OK)
        goto err_free_tier;
    tier->blocks = (uint32_t)kvbm__disk_store_geometry(tier->store)->slots;
    status = KVBM_ERR_NO_MEMORY;
    tier->slot_of = kvbm__alloc(tier->blocks, sizeof(uint32_t));
    tier->from_file = kvbm__calloc(tier->blocks, 1);
    if (tier->slot_of == NULL || tier->from_file == NULL)
        goto err_close_store;
    status = create_manager(tier, config, &disk);
    if (status != KVBM_OK)
        goto err_close_store;
    status = adopt_recovered(tier);
    if (status != KVBM_OK)
        goto err_destroy_manager;
    *tier_out = tier;
    return KVBM_OK;

err_destroy_manager:
    kvbm_manager_destroy(tier->manager);
err_close_store:
    kvbm__free(tier->slot_of);
    kvbm__free(tier->from_file);
    kvbm__disk_store_close(tier->store);
err_free_tier:
    kvbm__free(tier);
    return status;
}

void kvbm__disk_tier_close(kvbm__disk_tier_t *tier)
{
    if (tier == NULL)
        return;
    kvbm__disk_store_close(tier->store);
    kvbm_manager_destroy(tier->manager);
    kvbm__free(tier->slot_of);
    kvbm__free(tier->from_file);
    kvbm__free(tier);
}

kvbm_manager_t *kvbm__disk_tier_manager(kvbm__disk_tier_t *tier)
{
    return tier->manager;
}

kvbm__disk_store_t *kvbm__disk_tier_store(kvbm__disk_tier_t *tier)
{
    return tier->store;
}

uint32_t kvbm__disk_tier_slot(const kvbm__disk_tier_t *tier, uint32_t id)
{
    return tier->slot_of[id];
}

bool kvbm__disk_tier_from_file(const kvbm__disk_tier_t *tier, uint32_t id)
{
    return tier->from_file[id] != 0;
}

kvbm_status_t kvbm__disk_tier_take(kvbm__disk_tier_t *tier, uint32_t *id_out, bool *evicted_out)
{
    uint32_t id;
    kvbm_evicted_t victim;
    size_t n_evicted = 0;
    kvbm_status_t status = kvbm_manager_allocate(tier->manager, 1, &id, &victim, &n_evicted);
    if (status != KVBM_OK)
        return status;
    tier->from_file[id] = 0;
    kvbm__disk_store_forget(tier->store, tier->slot_of[id]);
    *id_out = id;
    *evicted_out = n_evicted > 0;
    return KVBM_OK;
}

size_t kvbm__disk_tier_finish_writes(kvbm__disk_tier_t *tier, const uint32_t *ids,
                                     const uint64_t *hashes, const uint64_t *parents,
                                     const uint8_t *has_parent, const kvbm__disk_batch_t *batch)
{
    size_t n = kvbm__disk_batch_count(batch), stored = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t block = ids[i], registered = block;
        kvbm_register_opts_t opts = {.parent_for_events_only =
                                         true, /* G3's order as without events */
                                     .has_parent = has_parent[i] != 0,
                                     .parent_hash = parents[i],
                                     .priority = 50};
        if (kvbm__disk_batch_outcome(batch, i) == KVBM__DISK_DONE &&
            kvbm_manager_register(tier->manager, &block, &hashes[i], 1, &opts, &registered) ==
                KVBM_OK)
            stored++;
        /* A failed block is still mutable: its release returns it to reset. */
        kvbm_status_t status = kvbm_manager_release(tier->manager, &registered, 1);
        assert(status == KVBM_OK);
        (void)status;
    }
    return stored;
}

void kvbm__disk_tier_withdraw(kvbm__disk_tier_t *tier, const uint32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++)
        kvbm__disk_store_forget(tier->store, tier->slot_of[ids[i]]);
    kvbm_status_t status = kvbm_manager_invalidate(tier->manager, ids, count);
    assert(status == KVBM_OK);
    (void)status;
}
