/*
 * The logical block manager: reset, active and inactive pools over dense
 * block ids, a hash registry, and a pluggable inactive-pool policy.
 *
 * Locking: one mutex per manager (internal.h), taken once by each
 * public call for the whole call. A call validates all of its input before
 * it changes anything, so a refused call leaves every pool, count and the
 * policy exactly as they were.
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"
#include "core/error.h"
#include "policy/config.h"
#include "internal.h"

_Static_assert(sizeof(kvbm__block_t) == 32, "block metadata is budgeted at 32 bytes");

/* How many hashes ahead batched lookups prefetch registry buckets. */
#define PREFETCH_DISTANCE 4

static kvbm_policy_entry_t policy_entry_of(const kvbm_manager_t *manager, uint32_t id)
{
    const kvbm__block_t *block = &manager->blocks[id];
    return (kvbm_policy_entry_t){
        .block_id = id,
        .seq_hash = block->seq_hash,
        .parent_hash = block->parent_hash,
        .has_parent = block->has_parent != 0,
        .priority = block->priority,
    };
}

/* ------------------------------------------------------------------ create */

/* sizeof(kvbm_manager_config_t) at each published version (core/config.h). */
#define MANAGER_CONFIG_V1_SIZE 80u
_Static_assert(offsetof(kvbm_manager_config_t, medium) == MANAGER_CONFIG_V1_SIZE,
               "version 2 fields (the medium) start at version 1's size");
static const size_t manager_config_sizes[] = {MANAGER_CONFIG_V1_SIZE,
                                              sizeof(kvbm_manager_config_t)};

/* Imports the caller's config (and its policy config; struct_size 0 there
 * means the defaults), then checks it. */
static kvbm_status_t import_config(const kvbm_manager_config_t *caller,
                                   kvbm_manager_config_t *config)
{
    if (caller == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_manager_create: config is NULL");
    const kvbm_manager_config_t defaults = KVBM_MANAGER_CONFIG_INIT;
    kvbm_status_t status = KVBM__CONFIG_IMPORT(caller, manager_config_sizes, &defaults, config);
    if (status != KVBM_OK)
        return status;
    const kvbm_policy_config_t policy_config = config->policy_config;
    if (policy_config.struct_size == 0)
        config->policy_config = defaults.policy_config;
    else
        status = kvbm__policy_config_import(&policy_config, &config->policy_config);
    if (status != KVBM_OK)
        return status;
    if (config->num_blocks == 0 || config->num_blocks > KVBM_MANAGER_MAX_BLOCKS)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "manager config: num_blocks %u is not in 1..%u",
                          config->num_blocks, KVBM_MANAGER_MAX_BLOCKS);
    if (config->duplication != KVBM_DUPLICATION_ALLOW &&
        config->duplication != KVBM_DUPLICATION_REJECT)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "manager config: unknown duplication %d",
                          (int)config->duplication);
    if (kvbm_medium_name(config->medium) == NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "manager config: unknown medium %d",
                          (int)config->medium);
    /* Version 1's on_events took per-block events (kvbm_event_t), which
     * version 2's records replaced: an old caller's callback is refused
     * rather than called with the wrong type. */
    if (caller->version < 2 && config->on_events != NULL)
        return kvbm__fail(KVBM_ERR_UNSUPPORTED,
                          "manager config: a version-1 on_events (per-block events) is no longer "
                          "supported; use version 2 (event records)");
    /* Tables are appended to, never reordered: any version up to ours works. */
    if (config->policy != NULL &&
        (config->policy->version == 0 || config->policy->version > KVBM_POLICY_OPS_VERSION))
        return kvbm__fail(KVBM_ERR_VERSION,
                          "manager config: policy table version %u, this library knows 1..%u",
                          config->policy->version, KVBM_POLICY_OPS_VERSION);
    return KVBM_OK;
}

kvbm_status_t kvbm_manager_create(const kvbm_manager_config_t *caller_config,
                                  kvbm_manager_t **manager_out)
{
    KVBM_REQUIRE_ARG(manager_out != NULL);
    kvbm_manager_config_t imported;
    kvbm_status_t status = import_config(caller_config, &imported);
    if (status != KVBM_OK)
        return status;
    const kvbm_manager_config_t *config = &imported;

    kvbm_manager_t *manager = calloc(1, sizeof(*manager));
    if (manager == NULL)
        return KVBM_ERR_NO_MEMORY;
    manager->num_blocks = config->num_blocks;
    manager->duplication = config->duplication;
    manager->policy = config->policy != NULL ? config->policy : kvbm_policy_lru();
    strncpy(manager->name, config->name != NULL ? config->name : "kvbm", sizeof(manager->name) - 1);

    if (config->on_events != NULL) {
        status = kvbm__manager_events_create(config, &manager->events);
        if (status != KVBM_OK)
            goto err_free_manager;
    }
    status = KVBM_ERR_NO_MEMORY;
    manager->blocks = calloc(config->num_blocks, sizeof(kvbm__block_t));
    if (manager->blocks == NULL)
        goto err_destroy_events;
    status = kvbm__registry_create(config->num_blocks, &manager->blocks[0].seq_hash,
                                   sizeof(kvbm__block_t), &manager->registry);
    if (status != KVBM_OK)
        goto err_free_blocks;

    status =
        manager->policy->create(&config->policy_config, config->num_blocks, &manager->policy_state);
    if (status != KVBM_OK)
        goto err_destroy_registry;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&manager->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_policy;

    /* The reset pool is a stack threaded through next_duplicate, lowest ids
     * on top so a fresh manager hands out 0, 1, 2... */
    for (uint32_t i = 0; i < config->num_blocks; i++)
        manager->blocks[i].next_duplicate = i + 1 < config->num_blocks ? i + 1 : KVBM_BLOCK_NONE;
    manager->reset_head = 0;
    manager->reset_count = config->num_blocks;
    *manager_out = manager;
    return KVBM_OK;

err_destroy_policy:
    manager->policy->destroy(manager->policy_state);
err_destroy_registry:
    kvbm__registry_destroy(manager->registry);
err_free_blocks:
    free(manager->blocks);
err_destroy_events:
    kvbm__manager_events_destroy(manager->events);
err_free_manager:
    free(manager);
    return status;
}

void kvbm_manager_destroy(kvbm_manager_t *manager)
{
    if (manager == NULL)
        return;
    kvbm__mutex_destroy(&manager->lock);
    manager->policy->destroy(manager->policy_state);
    kvbm__registry_destroy(manager->registry);
    free(manager->blocks);
    kvbm__manager_events_destroy(manager->events);
    free(manager);
}

/* ------------------------------------------------------------------ state transitions */

/*
 * The block state machine (manager.h draws it). These functions are the only
 * code that changes a block's state, moves it between pools or changes the
 * pool counts; each asserts the states it may start from.
 */

/* Takes a registered block's hash away from it, promoting a duplicate. When
 * no other block carries the hash, it left the tier: a removed event. */
static void unregister_block(kvbm_manager_t *manager, uint32_t id)
{
    kvbm__block_t *block = &manager->blocks[id];
    uint32_t first = kvbm__registry_first(manager->registry, block->entry);
    assert(first == kvbm__registry_find(manager->registry, block->seq_hash));
    if (first == id) {
        if (block->next_duplicate == KVBM_BLOCK_NONE) {
            kvbm__registry_remove(manager->registry, block->entry);
            if (manager->events != NULL)
                kvbm__manager_events_removed(manager->events, id, block->seq_hash);
        } else
            kvbm__registry_set_first(manager->registry, block->entry, block->next_duplicate);
    } else {
        uint32_t walk = first;
        while (manager->blocks[walk].next_duplicate != id) {
            walk = manager->blocks[walk].next_duplicate;
            assert(walk != KVBM_BLOCK_NONE);
        }
        manager->blocks[walk].next_duplicate = block->next_duplicate;
    }
    block->next_duplicate = KVBM_BLOCK_NONE;
}

/* reset -> mutable (allocate): the top of the reset stack, with one reference. */
static uint32_t block_reset_to_mutable(kvbm_manager_t *manager)
{
    uint32_t id = manager->reset_head;
    assert(id != KVBM_BLOCK_NONE && manager->reset_count > 0);
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_RESET);
    manager->reset_head = block->next_duplicate;
    block->next_duplicate = KVBM_BLOCK_NONE;
    manager->reset_count--;
    block->state = BLOCK_MUTABLE;
    block->refcount = 1;
    manager->active_count++;
    return id;
}

/* inactive -> mutable (allocate evicts): the policy already gave the block up
 * as its victim; it loses its hash and gets one reference. */
static void block_inactive_to_mutable(kvbm_manager_t *manager, uint32_t id)
{
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_REGISTERED && block->refcount == 0);
    unregister_block(manager, id);
    manager->inactive_count--;
    block->state = BLOCK_MUTABLE;
    block->refcount = 1;
    block->has_parent = 0;
    manager->active_count++;
}

/* mutable -> registered, still held (register): its registry entry is already
 * in place; the block takes the hash and its lineage. */
static void block_mutable_to_registered(kvbm_manager_t *manager, uint32_t id, uint64_t hash,
                                        uint64_t parent, bool has_parent, uint8_t priority)
{
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_MUTABLE && block->refcount == 1);
    block->state = BLOCK_REGISTERED;
    block->seq_hash = hash;
    block->parent_hash = parent;
    block->has_parent = has_parent;
    block->priority = priority;
}

/* inactive -> active (acquire, match, scan, dedup): out of the policy, with
 * one reference. */
static void block_to_active(kvbm_manager_t *manager, uint32_t id)
{
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_REGISTERED && block->refcount == 0);
    manager->policy->remove(manager->policy_state, id);
    manager->inactive_count--;
    manager->active_count++;
    block->refcount = 1;
}

/* active -> inactive (release of the last reference of a registered block):
 * into the policy. */
static void block_to_inactive(kvbm_manager_t *manager, uint32_t id)
{
    assert(manager->blocks[id].state == BLOCK_REGISTERED && manager->blocks[id].refcount == 0);
    kvbm_policy_entry_t entry = policy_entry_of(manager, id);
    manager->policy->insert(manager->policy_state, &entry);
    manager->active_count--;
    manager->inactive_count++;
}

/*
 * -> reset, on top of the stack (LIFO: recently freed, cache-warm blocks go
 * out first). From mutable or withdrawn when their last reference goes
 * (release, or the reference a deduplicated registration moved away); from
 * inactive (invalidate, reset_inactive), when the policy has already given
 * the block up: then it loses its hash here.
 */
static void block_to_reset(kvbm_manager_t *manager, uint32_t id)
{
    kvbm__block_t *block = &manager->blocks[id];
    if (block->state == BLOCK_REGISTERED) {
        assert(block->refcount == 0);
        unregister_block(manager, id);
        manager->inactive_count--;
    } else {
        assert(block->state == BLOCK_MUTABLE || block->state == BLOCK_WITHDRAWN);
        manager->active_count--;
    }
    block->state = BLOCK_RESET;
    block->refcount = 0;
    block->has_parent = 0;
    block->next_duplicate = manager->reset_head;
    manager->reset_head = id;
    manager->reset_count++;
}

/* registered and held -> withdrawn (invalidate): the hash goes, the holders
 * keep their references; the last release sends the block to reset. */
static void block_to_withdrawn(kvbm_manager_t *manager, uint32_t id)
{
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_REGISTERED && block->refcount > 0);
    unregister_block(manager, id);
    block->state = BLOCK_WITHDRAWN;
}

/* Adds one reference to a registered block, telling the policy of the access
 * when @p touch is set. */
static void acquire_registered(kvbm_manager_t *manager, uint32_t id, bool touch)
{
    kvbm__block_t *block = &manager->blocks[id];
    bool inactive = block->refcount == 0;
    if (touch) {
        kvbm_policy_entry_t entry = policy_entry_of(manager, id);
        manager->policy->touch(manager->policy_state, &entry, inactive);
    }
    if (inactive)
        block_to_active(manager, id);
    else
        block->refcount++;
}

/* ------------------------------------------------------------------ allocate */

kvbm_status_t kvbm_manager_allocate(kvbm_manager_t *manager, size_t count, uint32_t *ids_out,
                                    kvbm_evicted_t *evicted_out, size_t *n_evicted_out)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids_out != NULL);
    kvbm__mutex_lock(&manager->lock);
    if (count > (size_t)manager->reset_count + manager->inactive_count) {
        manager->metrics.allocation_failures++;
        uint32_t reset = manager->reset_count, inactive = manager->inactive_count;
        kvbm__mutex_unlock(&manager->lock);
        return kvbm__fail(KVBM_ERR_NO_BLOCKS,
                          "manager %s: %zu blocks asked for, %u free and %u evictable",
                          manager->name, count, reset, inactive);
    }
    size_t from_reset = count < manager->reset_count ? count : manager->reset_count;
    size_t n_evicted = 0;
    for (size_t i = 0; i < from_reset; i++)
        ids_out[i] = block_reset_to_mutable(manager);
    /* Evict in two passes so the cache misses overlap: first take every
     * victim from the policy (and start loading its metadata), then
     * unregister them, loading registry entries a few victims ahead. */
    for (size_t i = from_reset; i < count; i++) {
        uint32_t id = KVBM_BLOCK_NONE;
        bool found = manager->policy->pop_victim(manager->policy_state, &id);
        assert(found && id < manager->num_blocks);
        (void)found;
        __builtin_prefetch(&manager->blocks[id]);
        ids_out[i] = id;
    }
    for (size_t i = from_reset; i < count; i++) {
        if (i + PREFETCH_DISTANCE < count)
            kvbm__registry_prefetch_entry(manager->registry,
                                          manager->blocks[ids_out[i + PREFETCH_DISTANCE]].entry);
        if (i + PREFETCH_DISTANCE / 2 < count)
            kvbm__registry_prefetch_neighbours(
                manager->registry, manager->blocks[ids_out[i + PREFETCH_DISTANCE / 2]].entry);
        uint32_t id = ids_out[i];
        const kvbm__block_t *block = &manager->blocks[id];
        if (evicted_out != NULL)
            evicted_out[n_evicted] = (kvbm_evicted_t){.block_id = id,
                                                      .seq_hash = block->seq_hash,
                                                      .parent_hash = block->parent_hash,
                                                      .has_parent = block->has_parent != 0};
        block_inactive_to_mutable(manager, id);
        n_evicted++;
    }
    manager->metrics.allocations += count;
    manager->metrics.allocations_from_reset += from_reset;
    manager->metrics.evictions += n_evicted;
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
    kvbm__mutex_unlock(&manager->lock);
    if (n_evicted_out != NULL)
        *n_evicted_out = evicted_out != NULL ? n_evicted : 0;
    return KVBM_OK;
}

/* ------------------------------------------------------------------ register */

/* Checks that every id is a mutable block named once. Leaves no marks. */
static kvbm_status_t check_mutable_unique(kvbm_manager_t *manager, const uint32_t *ids,
                                          size_t count)
{
    kvbm_status_t status = KVBM_OK;
    size_t checked = 0;
    for (; checked < count; checked++) {
        if (checked + PREFETCH_DISTANCE < count &&
            ids[checked + PREFETCH_DISTANCE] < manager->num_blocks)
            __builtin_prefetch(&manager->blocks[ids[checked + PREFETCH_DISTANCE]]);
        uint32_t id = ids[checked];
        if (id >= manager->num_blocks) {
            status = kvbm__fail(KVBM_ERR_OUT_OF_RANGE, "block id %u is not below %u", id,
                                manager->num_blocks);
            break;
        }
        kvbm__block_t *block = &manager->blocks[id];
        if (block->state != BLOCK_MUTABLE || block->in_call) {
            status =
                kvbm__fail(KVBM_ERR_BAD_STATE,
                           block->in_call ? "block %u is named twice"
                                          : "block %u is not mutable (allocated, unregistered)",
                           id);
            break;
        }
        block->in_call = 1;
    }
    for (size_t i = 0; i < checked; i++)
        manager->blocks[ids[i]].in_call = 0;
    return status;
}

/* Priority in range; tokens, when given, exactly block_size per block. */
static kvbm_status_t check_register_opts(const kvbm_register_opts_t *opts, size_t count)
{
    if (opts->priority > 100)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "kvbm_manager_register: priority %u is not in 0..100", opts->priority);
    if (opts->n_tokens == 0)
        return KVBM_OK;
    if (opts->tokens != NULL && opts->block_size > 0 && count <= SIZE_MAX / opts->block_size &&
        opts->n_tokens == count * opts->block_size)
        return KVBM_OK;
    return kvbm__fail(KVBM_ERR_INVALID_ARG,
                      "kvbm_manager_register: %zu tokens for %zu blocks of %u tokens",
                      opts->n_tokens, count, opts->block_size);
}

/*
 * Register's phase 1: the only step that can fail (uthash growing its
 * buckets) is adding hashes not yet registered. Adds all of them first and
 * removes them again if one fails, so a failure leaves the manager
 * untouched. A block whose hash was added here is marked in_call; a hash
 * repeated within the call is added once.
 */
static kvbm_status_t add_new_hashes(kvbm_manager_t *manager, const uint32_t *ids,
                                    const uint64_t *hashes, size_t count)
{
    kvbm_status_t status = KVBM_OK;
    size_t added = 0;
    for (size_t i = 0; i < count && i < PREFETCH_DISTANCE; i++)
        kvbm__registry_prefetch(manager->registry, hashes[i]);
    for (; added < count; added++) {
        if (added + PREFETCH_DISTANCE < count)
            kvbm__registry_prefetch(manager->registry, hashes[added + PREFETCH_DISTANCE]);
        if (added + PREFETCH_DISTANCE / 2 < count)
            kvbm__registry_prefetch_chain(manager->registry, hashes[added + PREFETCH_DISTANCE / 2]);
        kvbm__block_t *block = &manager->blocks[ids[added]];
        block->seq_hash = hashes[added]; /* the registry's key if added */
        uint32_t existing;
        status = kvbm__registry_insert(manager->registry, hashes[added], ids[added], &block->entry,
                                       &existing);
        if (status != KVBM_OK)
            break;
        block->in_call = existing == KVBM_BLOCK_NONE;
    }
    if (status == KVBM_OK)
        return KVBM_OK;
    for (size_t i = 0; i < added; i++) {
        if (manager->blocks[ids[i]].in_call) {
            kvbm__registry_remove(manager->registry, manager->blocks[ids[i]].entry);
            manager->blocks[ids[i]].in_call = 0;
        }
    }
    return status;
}

/*
 * Register's phase 2, which cannot fail (the hashes are in): registers each
 * block, or sends it back to reset when its hash was already there
 * (dedup), or chains it as a duplicate. Hashes new to the tier form stored
 * runs for the event sink; a hash the tier already had ends the run.
 */
static void register_blocks(kvbm_manager_t *manager, const uint32_t *ids, const uint64_t *hashes,
                            size_t count, const kvbm_register_opts_t *opts, uint32_t *ids_out)
{
    uint8_t priority = opts != NULL ? opts->priority : 50;
    kvbm__manager_events_t *events = manager->events;
    size_t run_start = 0;
    /* Version-1 policy tables have no hint op. */
    bool hinted = opts != NULL && opts->request_blocks != 0 && manager->policy->version >= 2;
    for (size_t i = 0; i < count; i++) {
        uint32_t id = ids[i];
        kvbm__block_t *block = &manager->blocks[id];
        bool has_parent = i > 0 || (opts != NULL && opts->has_parent);
        uint64_t parent = i > 0 ? hashes[i - 1] : (opts != NULL ? opts->parent_hash : 0);

        if (block->in_call) {
            block->in_call = 0;
        } else {
            if (events != NULL && run_start < i)
                kvbm__manager_events_stored(events, ids, hashes, run_start, i, opts);
            run_start = i + 1;
            uint32_t existing = kvbm__registry_find(manager->registry, hashes[i]);
            assert(existing != KVBM_BLOCK_NONE);
            if (manager->duplication == KVBM_DUPLICATION_REJECT) {
                /* The caller's reference moves to the existing block. */
                acquire_registered(manager, existing, true);
                block_to_reset(manager, id);
                manager->metrics.dedups++;
                ids_out[i] = existing;
                continue;
            }
            block->next_duplicate = manager->blocks[existing].next_duplicate;
            block->entry = manager->blocks[existing].entry;
            manager->blocks[existing].next_duplicate = id;
            manager->metrics.duplicates++;
        }
        block_mutable_to_registered(manager, id, hashes[i], parent, has_parent, priority);
        manager->metrics.registrations++;
        kvbm_policy_entry_t entry = policy_entry_of(manager, id);
        manager->policy->touch(manager->policy_state, &entry, false);
        if (hinted) {
            kvbm_policy_hint_t hint = {.request_blocks = opts->request_blocks,
                                       .position = opts->first_position + (uint32_t)i,
                                       .priority = priority};
            hint.last = hint.position + 1 == hint.request_blocks;
            manager->policy->hint(manager->policy_state, &entry, &hint);
        }
        ids_out[i] = id;
    }
    if (events != NULL) {
        if (run_start < count)
            kvbm__manager_events_stored(events, ids, hashes, run_start, count, opts);
        kvbm__manager_events_deliver(events);
    }
}

kvbm_status_t kvbm_manager_register(kvbm_manager_t *manager, const uint32_t *ids,
                                    const uint64_t *hashes, size_t count,
                                    const kvbm_register_opts_t *opts, uint32_t *ids_out)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || (ids != NULL && hashes != NULL && ids_out != NULL));
    kvbm_status_t status = opts != NULL ? check_register_opts(opts, count) : KVBM_OK;
    if (status != KVBM_OK)
        return status;
    kvbm__mutex_lock(&manager->lock);
    status = check_mutable_unique(manager, ids, count);
    if (status == KVBM_OK)
        status = add_new_hashes(manager, ids, hashes, count);
    if (status == KVBM_OK)
        register_blocks(manager, ids, hashes, count, opts, ids_out);
    kvbm__mutex_unlock(&manager->lock);
    return status;
}

/* ------------------------------------------------------------------ acquire / release */

/* KVBM_ERR_OUT_OF_RANGE, recorded, for the first id not below num_blocks. */
static kvbm_status_t check_ids_in_range(const kvbm_manager_t *manager, const uint32_t *ids,
                                        size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (ids[i] >= manager->num_blocks)
            return kvbm__fail(KVBM_ERR_OUT_OF_RANGE, "block id %u is not below %u", ids[i],
                              manager->num_blocks);
    return KVBM_OK;
}

kvbm_status_t kvbm_manager_acquire(kvbm_manager_t *manager, const uint32_t *ids, size_t count)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids != NULL);
    kvbm_status_t status = check_ids_in_range(manager, ids, count);
    if (status != KVBM_OK)
        return status;
    kvbm__mutex_lock(&manager->lock);
    for (size_t i = 0; i < count; i++) {
        const kvbm__block_t *block = &manager->blocks[ids[i]];
        if (block->state != BLOCK_REGISTERED || block->refcount >= UINT32_MAX - count) {
            kvbm__mutex_unlock(&manager->lock);
            return kvbm__fail(KVBM_ERR_BAD_STATE,
                              block->state != BLOCK_REGISTERED
                                  ? "block %u is not registered"
                                  : "block %u: its reference count would overflow",
                              ids[i]);
        }
    }
    for (size_t i = 0; i < count; i++)
        acquire_registered(manager, ids[i], false);
    kvbm__mutex_unlock(&manager->lock);
    return KVBM_OK;
}

/* Checks that every release has a reference to drop, counting repeats, by
 * dropping them tentatively and restoring the counts afterwards. */
static kvbm_status_t check_releasable(kvbm_manager_t *manager, const uint32_t *ids, size_t count)
{
    kvbm_status_t status = KVBM_OK;
    size_t dropped = 0;
    for (; dropped < count; dropped++) {
        if (ids[dropped] >= manager->num_blocks) {
            status = kvbm__fail(KVBM_ERR_OUT_OF_RANGE, "block id %u is not below %u", ids[dropped],
                                manager->num_blocks);
            break;
        }
        kvbm__block_t *block = &manager->blocks[ids[dropped]];
        if (block->state == BLOCK_RESET || block->refcount == 0) {
            status = kvbm__fail(KVBM_ERR_NOT_HELD, "block %u: no reference left to release",
                                ids[dropped]);
            break;
        }
        block->refcount--;
    }
    for (size_t i = 0; i < dropped; i++)
        manager->blocks[ids[i]].refcount++;
    return status;
}

kvbm_status_t kvbm_manager_release(kvbm_manager_t *manager, const uint32_t *ids, size_t count)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids != NULL);
    kvbm__mutex_lock(&manager->lock);
    kvbm_status_t status = check_releasable(manager, ids, count);
    if (status != KVBM_OK) {
        kvbm__mutex_unlock(&manager->lock);
        return status;
    }
    for (size_t i = 0; i < count; i++) {
        uint32_t id = ids[i];
        kvbm__block_t *block = &manager->blocks[id];
        if (--block->refcount > 0)
            continue;
        if (block->state == BLOCK_REGISTERED)
            block_to_inactive(manager, id);
        else
            block_to_reset(manager, id);
    }
    manager->metrics.releases += count;
    kvbm__mutex_unlock(&manager->lock);
    return KVBM_OK;
}

/* ------------------------------------------------------------------ match / scan */

kvbm_status_t kvbm_manager_match(kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                                 uint32_t *ids_out, size_t *n_matched_out)
{
    KVBM_REQUIRE_ARG(manager != NULL && n_matched_out != NULL);
    KVBM_REQUIRE_ARG(count == 0 || (hashes != NULL && ids_out != NULL));
    kvbm__mutex_lock(&manager->lock);
    size_t matched = 0;
    for (size_t i = 0; i < count && i < PREFETCH_DISTANCE; i++)
        kvbm__registry_prefetch(manager->registry, hashes[i]);
    for (; matched < count; matched++) {
        if (matched + PREFETCH_DISTANCE < count)
            kvbm__registry_prefetch(manager->registry, hashes[matched + PREFETCH_DISTANCE]);
        if (matched + PREFETCH_DISTANCE / 2 < count)
            kvbm__registry_prefetch_chain(manager->registry,
                                          hashes[matched + PREFETCH_DISTANCE / 2]);
        uint32_t id = kvbm__registry_find(manager->registry, hashes[matched]);
        if (id == KVBM_BLOCK_NONE)
            break;
        acquire_registered(manager, id, true);
        ids_out[matched] = id;
    }
    manager->metrics.match_hashes += count;
    manager->metrics.match_blocks += matched;
    kvbm__mutex_unlock(&manager->lock);
    *n_matched_out = matched;
    return KVBM_OK;
}

kvbm_status_t kvbm_manager_match_length(kvbm_manager_t *manager, const uint64_t *hashes,
                                        size_t count, size_t *n_matched_out, size_t *n_inactive_out)
{
    KVBM_REQUIRE_ARG(manager != NULL && n_matched_out != NULL);
    KVBM_REQUIRE_ARG(count == 0 || hashes != NULL);
    kvbm__mutex_lock(&manager->lock);
    size_t matched = 0, inactive = 0;
    for (; matched < count; matched++) {
        uint32_t id = kvbm__registry_find(manager->registry, hashes[matched]);
        if (id == KVBM_BLOCK_NONE)
            break;
        inactive += manager->blocks[id].refcount == 0;
    }
    kvbm__mutex_unlock(&manager->lock);
    *n_matched_out = matched;
    if (n_inactive_out != NULL)
        *n_inactive_out = inactive;
    return KVBM_OK;
}

kvbm_status_t kvbm_manager_scan(kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                                bool touch, uint32_t *ids_out, size_t *n_found_out)
{
    KVBM_REQUIRE_ARG(manager != NULL && n_found_out != NULL);
    KVBM_REQUIRE_ARG(count == 0 || (hashes != NULL && ids_out != NULL));
    kvbm__mutex_lock(&manager->lock);
    size_t found = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t id = kvbm__registry_find(manager->registry, hashes[i]);
        ids_out[i] = id;
        if (id == KVBM_BLOCK_NONE)
            continue;
        acquire_registered(manager, id, touch);
        found++;
    }
    manager->metrics.scan_hashes += count;
    manager->metrics.scan_blocks += found;
    kvbm__mutex_unlock(&manager->lock);
    *n_found_out = found;
    return KVBM_OK;
}

kvbm_status_t kvbm_manager_invalidate(kvbm_manager_t *manager, const uint32_t *ids, size_t count)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids != NULL);
    kvbm_status_t status = check_ids_in_range(manager, ids, count);
    if (status != KVBM_OK)
        return status;
    kvbm__mutex_lock(&manager->lock);

    for (size_t i = 0; i < count; i++) {
        uint32_t id = ids[i];
        kvbm__block_t *block = &manager->blocks[id];
        if (block->state != BLOCK_REGISTERED)
            continue;
        if (block->refcount == 0) {
            manager->policy->remove(manager->policy_state, id);
            block_to_reset(manager, id);
        } else {
            block_to_withdrawn(manager, id);
        }
    }
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
    kvbm__mutex_unlock(&manager->lock);
    return KVBM_OK;
}

/* Whether block @p id is the one listed for its hash (duplicates: the first). */
static bool lists_its_hash(const kvbm_manager_t *manager, uint32_t id)
{
    const kvbm__block_t *block = &manager->blocks[id];
    return block->state == BLOCK_REGISTERED &&
           kvbm__registry_first(manager->registry, block->entry) == id;
}

kvbm_status_t kvbm_manager_registered_hashes(kvbm_manager_t *manager, uint64_t *hashes_out,
                                             size_t capacity, size_t *n_hashes_out)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(n_hashes_out != NULL);
    KVBM_REQUIRE_ARG(capacity == 0 || hashes_out != NULL);
    kvbm__mutex_lock(&manager->lock);
    size_t n = 0;
    for (uint32_t id = 0; id < manager->num_blocks; id++)
        n += lists_its_hash(manager, id);
    if (capacity < n) {
        kvbm__mutex_unlock(&manager->lock);
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "kvbm_manager_registered_hashes: room for %zu, the tier holds %zu",
                          capacity, n);
    }
    n = 0;
    for (uint32_t id = 0; id < manager->num_blocks; id++)
        if (lists_its_hash(manager, id))
            hashes_out[n++] = manager->blocks[id].seq_hash;
    kvbm__mutex_unlock(&manager->lock);
    *n_hashes_out = n;
    return KVBM_OK;
}

/*
 * Stored records for block @p id's hash and, first, for every ancestor the
 * tier holds that was not announced yet (block->in_call marks those that
 * were), so a router always knows a block's parent before the block.
 * @p stack has room for every block.
 */
static void announce_chain(kvbm_manager_t *manager, uint32_t id, uint32_t *stack)
{
    size_t depth = 0;
    while (id != KVBM_BLOCK_NONE && !manager->blocks[id].in_call) {
        manager->blocks[id].in_call = 1;
        stack[depth++] = id;
        const kvbm__block_t *block = &manager->blocks[id];
        id = block->has_parent ? kvbm__registry_find(manager->registry, block->parent_hash)
                               : KVBM_BLOCK_NONE;
    }
    while (depth > 0) {
        const kvbm__block_t *block = &manager->blocks[stack[--depth]];
        kvbm__manager_events_announce(manager->events, &block->seq_hash, block->has_parent != 0,
                                      block->parent_hash);
    }
}

kvbm_status_t kvbm_manager_announce(kvbm_manager_t *manager)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    uint32_t *stack = malloc(sizeof(uint32_t) * manager->num_blocks);
    if (stack == NULL)
        return KVBM_ERR_NO_MEMORY;
    kvbm__mutex_lock(&manager->lock);
    if (manager->events != NULL) {
        for (uint32_t id = 0; id < manager->num_blocks; id++)
            if (lists_its_hash(manager, id))
                announce_chain(manager, id, stack);
        for (uint32_t id = 0; id < manager->num_blocks; id++)
            manager->blocks[id].in_call = 0;
        kvbm__manager_events_deliver(manager->events);
    }
    kvbm__mutex_unlock(&manager->lock);
    free(stack);
    return KVBM_OK;
}

bool kvbm_manager_contains(kvbm_manager_t *manager, uint64_t hash)
{
    if (manager == NULL)
        return false;
    kvbm__mutex_lock(&manager->lock);
    bool present = kvbm__registry_find(manager->registry, hash) != KVBM_BLOCK_NONE;
    kvbm__mutex_unlock(&manager->lock);
    return present;
}

/* ------------------------------------------------------------------ reset_inactive */

kvbm_status_t kvbm_manager_reset_inactive(kvbm_manager_t *manager)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    kvbm__mutex_lock(&manager->lock);
    if (manager->active_count > 0) {
        uint32_t active = manager->active_count;
        kvbm__mutex_unlock(&manager->lock);
        return kvbm__fail(KVBM_ERR_BUSY, "manager %s: %u blocks are still active", manager->name,
                          active);
    }
    uint32_t id;
    while (manager->policy->pop_victim(manager->policy_state, &id))
        block_to_reset(manager, id);
    assert(manager->inactive_count == 0);
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
    kvbm__mutex_unlock(&manager->lock);
    return KVBM_OK;
}

/* ------------------------------------------------------------------ snapshots */

void kvbm_manager_counts(kvbm_manager_t *manager, kvbm_pool_counts_t *counts_out)
{
    if (manager == NULL || counts_out == NULL)
        return;
    kvbm__mutex_lock(&manager->lock);
    counts_out->total = manager->num_blocks;
    counts_out->reset = manager->reset_count;
    counts_out->active = manager->active_count;
    counts_out->inactive = manager->inactive_count;
    kvbm__mutex_unlock(&manager->lock);
}

void kvbm_manager_metrics(kvbm_manager_t *manager, kvbm_manager_metrics_t *metrics_out)
{
    if (manager == NULL || metrics_out == NULL)
        return;
    kvbm__mutex_lock(&manager->lock);
    *metrics_out = manager->metrics;
    metrics_out->reset_blocks = manager->reset_count;
    metrics_out->active_blocks = manager->active_count;
    metrics_out->inactive_blocks = manager->inactive_count;
    kvbm__mutex_unlock(&manager->lock);
}

const char *kvbm_manager_policy_name(const kvbm_manager_t *manager)
{
    return manager == NULL ? "" : manager->policy->name;
}
