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
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/config.h"
#include "core/error.h"
#include "policy/config.h"
#include "internal.h"
#include "policy_batch.h"

_Static_assert(sizeof(kvbm__block_t) == 32, "block metadata is budgeted at 32 bytes");
/* policy_add copies a block record into a policy entry whole. */
_Static_assert(sizeof(kvbm__block_t) == sizeof(kvbm_policy_entry_t), "entry is a block copy");
_Static_assert(offsetof(kvbm__block_t, seq_hash) == offsetof(kvbm_policy_entry_t, seq_hash),
               "seq_hash where the entry has it");
_Static_assert(offsetof(kvbm__block_t, parent_hash) == offsetof(kvbm_policy_entry_t, parent_hash),
               "parent_hash where the entry has it");
_Static_assert(offsetof(kvbm__block_t, has_parent) == offsetof(kvbm_policy_entry_t, has_parent),
               "has_parent where the entry has it");
_Static_assert(offsetof(kvbm__block_t, priority) == offsetof(kvbm_policy_entry_t, priority),
               "priority where the entry has it");
_Static_assert(offsetof(kvbm_policy_entry_t, block_id) == 0 &&
                   offsetof(kvbm__block_t, seq_hash) == 8,
               "block_id covers only refcount and next_duplicate");

/* How many hashes (or blocks) ahead batched calls prefetch: far enough for
 * the loads to overlap, near enough to stay in L1. A power of two. */
#define PREFETCH_DISTANCE ((size_t)8)

/* References one block can carry. A call that could take a block past it is
 * refused before it changes anything (KVBM_ERR_OVERFLOW). */
#define REFCOUNT_MAX UINT32_MAX

/* Once a block's count passes this, calls that take references check every
 * block against their whole count before taking any. Below it, a call of
 * fewer than REFS_NEAR_LIMIT references cannot overflow a block, and the
 * calls skip that pass. */
#define REFS_NEAR_LIMIT (UINT32_MAX / 2)

/* Inactive blocks match_length remembers to unmark without a second lookup. */
#define MATCH_LENGTH_MARKS 128

/* Adds one operation on block @p id to the call's policy batch: the id alone
 * when the policy takes ids (policy_batch.h), else an entry: the block record copied whole (its
 * layout mirrors the entry's, checked above; the bytes the entry does not name are padding there),
 * then the id. */
static inline void policy_add(kvbm__policy_batch_t *batch, kvbm__policy_op_t op,
                              const kvbm__block_t *block, uint32_t id)
{
    if (batch->by_id && op != KVBM__POLICY_OP_TOUCH) {
        kvbm__policy_batch_add_id(batch, op, id);
        return;
    }
    kvbm_policy_entry_t *entry = kvbm__policy_batch_add(batch, op);
    memcpy(entry, block, sizeof(*entry));
    entry->block_id = id;
}

/* Starts loading the metadata of a block a caller named (a bad id loads
 * block 0 instead: it is refused when its turn comes). */
static inline void prefetch_block(const kvbm_manager_t *manager, uint32_t id)
{
    __builtin_prefetch(&manager->blocks[id < manager->num_blocks ? id : 0]);
}

/* ------------------------------------------------------------------ create */

/* A name goes verbatim into Prometheus label values and JSON strings, so it
 * holds only characters neither format escapes: printable ASCII other than
 * the double quote and the backslash. It must fit whole in the manager. */
static bool name_is_safe(const char *name)
{
    size_t length = 0;
    for (; name[length] != '\0'; length++) {
        unsigned char c = (unsigned char)name[length];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || length >= KVBM_MANAGER_NAME_MAX)
            return false;
    }
    return length > 0;
}

/* A caller's policy table has every operation its version defines (and a
 * name): a NULL slot would be called on the first eviction or registration,
 * long after create said yes. A table ends after the last field of its
 * version, so hint is read only from version 2 on, the batches from 3, the
 * batches by id from 4. */
static bool policy_ops_complete(const kvbm_policy_ops_t *ops)
{
    if (ops->name == NULL || ops->create == NULL || ops->destroy == NULL || ops->insert == NULL ||
        ops->remove == NULL || ops->pop_victim == NULL || ops->touch == NULL || ops->size == NULL)
        return false;
    if (ops->version >= 2 && ops->hint == NULL)
        return false;
    if (ops->version >= 3 && (ops->insert_batch == NULL || ops->acquire_batch == NULL ||
                              ops->touch_batch == NULL || ops->pop_victims == NULL))
        return false;
    return ops->version < 4 || (ops->insert_ids != NULL && ops->acquire_ids != NULL);
}

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
    if (config->name != NULL && !name_is_safe(config->name))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "manager config: name is empty, longer than %u bytes or holds a "
                          "character outside printable ASCII less '\"' and '\\'",
                          KVBM_MANAGER_NAME_MAX);
    if (config->policy != NULL && !policy_ops_complete(config->policy))
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "manager config: policy table without a name or with a NULL operation "
                          "of its version %u",
                          config->policy->version);
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

    kvbm_manager_t *manager = kvbm__calloc(1, sizeof(*manager));
    if (manager == NULL)
        return KVBM_ERR_NO_MEMORY;
    manager->num_blocks = config->num_blocks;
    manager->duplication = config->duplication;
    manager->policy = config->policy != NULL ? config->policy : kvbm_policy_lru();
    manager->policy_takes_hints =
        manager->policy->version >= 2 && manager->policy->hint != kvbm_policy_ignore_hint;
    manager->policy_touches_active = manager->policy->version < KVBM__POLICY_BATCH_VERSION ||
                                     manager->policy->touch_batch != kvbm_policy_ignore_touches;
    manager->policy_by_id = kvbm__policy_by_id(manager->policy);
    snprintf(manager->name, sizeof(manager->name), "%s",
             config->name != NULL ? config->name : "kvbm");

    if (config->on_events != NULL) {
        status = kvbm__manager_events_create(config, &manager->events);
        if (status != KVBM_OK)
            goto err_free_manager;
    }
    status = KVBM_ERR_NO_MEMORY;
    manager->blocks = kvbm__calloc(config->num_blocks, sizeof(kvbm__block_t));
    if (manager->blocks == NULL)
        goto err_destroy_events;
    status = kvbm__registry_init(&manager->registry, config->num_blocks);
    if (status != KVBM_OK)
        goto err_free_blocks;

    status =
        manager->policy->create(&config->policy_config, config->num_blocks, &manager->policy_state);
    if (status != KVBM_OK)
        goto err_destroy_registry;
    KVBM_PTHREAD_CHECK(pthread_mutex_init(&manager->lock, NULL), status);
    if (status != KVBM_OK)
        goto err_destroy_policy;

    /* Every block starts in the reset pool, as never used (calloc: state
     * BLOCK_RESET, no pages touched until a block is first handed out), so a
     * fresh manager hands out 0, 1, 2... */
    manager->reset_head = KVBM_BLOCK_NONE;
    manager->never_used = 0;
    manager->reset_count = config->num_blocks;
    *manager_out = manager;
    return KVBM_OK;

err_destroy_policy:
    manager->policy->destroy(manager->policy_state);
err_destroy_registry:
    kvbm__registry_fini(&manager->registry);
err_free_blocks:
    kvbm__free(manager->blocks);
err_destroy_events:
    kvbm__manager_events_destroy(manager->events);
err_free_manager:
    kvbm__free(manager);
    return status;
}

void kvbm_manager_destroy(kvbm_manager_t *manager)
{
    if (manager == NULL)
        return;
    kvbm__mutex_destroy(&manager->lock);
    manager->policy->destroy(manager->policy_state);
    kvbm__registry_fini(&manager->registry);
    kvbm__free(manager->blocks);
    kvbm__manager_events_destroy(manager->events);
    kvbm__free(manager);
}

/* ------------------------------------------------------------------ state transitions */

/*
 * The block state machine (manager.h draws it). These functions are the only
 * code that changes a block's state, moves it between pools or changes the
 * pool counts; each asserts the states it may start from. Policy operations
 * go into the call's batch (policy_batch.h), in the order they happen.
 */

/* unregister_block's rarer case: @p id carries a hash other blocks carry
 * too (allow duplication). */
static void unregister_duplicate(kvbm_manager_t *manager, uint32_t id, kvbm__registry_slot_t *slot)
{
    kvbm__block_t *block = &manager->blocks[id];
    uint32_t first = kvbm__registry_slot_first(slot);
    if (first == id) {
        kvbm__registry_slot_set_first(slot, block->next_duplicate);
        return;
    }
    uint32_t walk = first;
    while (manager->blocks[walk].next_duplicate != id) {
        walk = manager->blocks[walk].next_duplicate;
        assert(walk != KVBM_BLOCK_NONE);
    }
    manager->blocks[walk].next_duplicate = block->next_duplicate;
}

/* Takes a registered block's hash away from it, promoting a duplicate.
 * When no other block carries the hash, it left the tier: a removed event
 * (the one place a hash leaves a tier, so no transition can forget it).
 * Always inlined: with the event it outgrew gcc's inlining limit, and a call
 * per evicted block cost 3% of the replay's instructions. */
static inline __attribute__((always_inline)) void unregister_block(kvbm_manager_t *manager,
                                                                   uint32_t id)
{
    kvbm__block_t *block = &manager->blocks[id];
    kvbm__registry_slot_t *slot =
        kvbm__registry_slot_of(&manager->registry, block->seq_hash, block->home);
    if (kvbm__registry_slot_first(slot) == id && block->next_duplicate == KVBM_BLOCK_NONE) {
        kvbm__registry_remove(&manager->registry, slot);
        if (manager->events != NULL)
            kvbm__manager_events_removed(manager->events, id, block->seq_hash);
    } else
        unregister_duplicate(manager, id, slot);
    block->next_duplicate = KVBM_BLOCK_NONE;
}

/* reset -> mutable (allocate): the top of the stack of released blocks, else
 * the lowest never-used block; with one reference. */
static uint32_t block_reset_to_mutable(kvbm_manager_t *manager)
{
    assert(manager->reset_count > 0);
    uint32_t id = manager->reset_head;
    kvbm__block_t *block;
    if (id != KVBM_BLOCK_NONE) {
        block = &manager->blocks[id];
        manager->reset_head = block->next_duplicate;
    } else {
        id = manager->never_used++;
        assert(id < manager->num_blocks);
        block = &manager->blocks[id];
    }
    assert(block->state == BLOCK_RESET);
    block->next_duplicate = KVBM_BLOCK_NONE;
    manager->reset_count--;
    block->state = BLOCK_MUTABLE;
    block->refcount = 1;
    manager->active_count++;
    return id;
}

/* inactive -> mutable (allocate evicts): the policy already gave the block up
 * as its victim; it loses its hash and gets one reference. */
static inline __attribute__((always_inline)) void block_inactive_to_mutable(kvbm_manager_t *manager,
                                                                            uint32_t id)
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

/* mutable -> registered, still held (register): its hash is already in the
 * registry; the block takes the hash and its lineage. */
static void block_mutable_to_registered(kvbm_manager_t *manager, uint32_t id, uint64_t hash,
                                        uint32_t home, const kvbm_register_opts_t *lineage)
{
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_MUTABLE && block->refcount == 1);
    block->state = BLOCK_REGISTERED;
    block->seq_hash = hash;
    block->home = home;
    block->parent_hash = lineage->parent_hash;
    block->has_parent = lineage->has_parent;
    block->priority = lineage->priority;
}

/* inactive -> active (acquire, match, scan, dedup): out of the policy, with
 * one reference; @p touch says whether the policy hears of the access. */
static inline __attribute__((always_inline)) void
block_to_active(kvbm_manager_t *manager, kvbm__policy_batch_t *batch, uint32_t id, bool touch)
{
    kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_REGISTERED && block->refcount == 0);
    policy_add(batch, touch ? KVBM__POLICY_OP_ACQUIRE : KVBM__POLICY_OP_REMOVE, block, id);
    manager->inactive_count--;
    manager->active_count++;
    block->refcount = 1;
}

/* active -> inactive (release of the last reference of a registered block):
 * into the policy. */
static void block_to_inactive(kvbm_manager_t *manager, kvbm__policy_batch_t *batch, uint32_t id)
{
    const kvbm__block_t *block = &manager->blocks[id];
    assert(block->state == BLOCK_REGISTERED && block->refcount == 0);
    policy_add(batch, KVBM__POLICY_OP_INSERT, block, id);
    manager->active_count--;
    manager->inactive_count++;
}

/* inactive -> active for each of ids[0, count), distinct inactive blocks a
 * match found, in order (policy by id): one reference each, and the policy
 * takes the array as it is. */
static void blocks_to_active_by_id(kvbm_manager_t *manager, kvbm__policy_batch_t *batch,
                                   const uint32_t *ids, size_t count)
{
    kvbm__block_t *blocks = manager->blocks;
    for (size_t i = 0; i < count; i++) {
        assert(blocks[ids[i]].state == BLOCK_REGISTERED && blocks[ids[i]].refcount == 0);
        blocks[ids[i]].refcount = 1;
    }
    kvbm__policy_batch_acquire_ids(batch, ids, count);
    manager->inactive_count -= count;
    manager->active_count += count;
}

/* active -> inactive for each of ids[0, count), registered blocks whose last
 * reference went, in order (release, policy by id): the policy takes the
 * array as it is. */
static void blocks_to_inactive_by_id(kvbm_manager_t *manager, kvbm__policy_batch_t *batch,
                                     const uint32_t *ids, size_t count)
{
#ifndef NDEBUG
    for (size_t i = 0; i < count; i++)
        assert(manager->blocks[ids[i]].state == BLOCK_REGISTERED &&
               manager->blocks[ids[i]].refcount == 0);
#endif
    kvbm__policy_batch_insert_ids(batch, ids, count);
    manager->active_count -= count;
    manager->inactive_count += count;
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

/* Whether @p more references fit on the block. Calls that take references
 * check every block against their whole count, which bounds the repeats of
 * a block within the call, before they take any. */
static bool refs_fit(const kvbm__block_t *block, size_t more)
{
    return more <= (size_t)(REFCOUNT_MAX - block->refcount);
}

/* Whether a call taking up to @p count references must check its blocks
 * first (refs_fit): only once some count came near the limit. */
static bool refs_need_check(const kvbm_manager_t *manager, size_t count)
{
    return manager->refs_near_limit || count >= REFS_NEAR_LIMIT;
}

/* Adds one reference to a registered block, telling the policy of the access
 * when @p touch is set. The caller checked that it fits. */
static inline void acquire_registered(kvbm_manager_t *manager, kvbm__policy_batch_t *batch,
                                      uint32_t id, bool touch)
{
    kvbm__block_t *block = &manager->blocks[id];
    if (block->refcount == 0) {
        block_to_active(manager, batch, id, touch);
        return;
    }
    if (touch && manager->policy_touches_active)
        policy_add(batch, KVBM__POLICY_OP_TOUCH, block, id);
    if (++block->refcount >= REFS_NEAR_LIMIT)
        manager->refs_near_limit = true;
}

/* ------------------------------------------------------------------ hashes ahead */

/*
 * The home slots of the next PREFETCH_DISTANCE hashes of a batched call:
 * each hash's home is computed once, when its registry slot is prefetched,
 * and handed to the lookup PREFETCH_DISTANCE hashes later.
 */
typedef struct hashes_ahead {
    const kvbm__registry_t *registry;
    const uint64_t *hashes;
    size_t count;
    uint32_t homes[PREFETCH_DISTANCE];
} hashes_ahead_t;

static inline __attribute__((always_inline)) void
hashes_ahead_start(hashes_ahead_t *ahead, const kvbm__registry_t *registry, const uint64_t *hashes,
                   size_t count)
{
    ahead->registry = registry;
    ahead->hashes = hashes;
    ahead->count = count;
    for (size_t i = 0; i < count && i < PREFETCH_DISTANCE; i++) {
        ahead->homes[i] = kvbm__registry_home(registry, hashes[i]);
        kvbm__registry_prefetch(registry, ahead->homes[i]);
    }
}

/* The home slot of hashes[i] (called for i = 0, 1, 2... in order);
 * prefetches the slot of the hash PREFETCH_DISTANCE further on. */
static inline uint32_t hashes_ahead_home(hashes_ahead_t *ahead, size_t i)
{
    size_t ring = i % PREFETCH_DISTANCE;
    uint32_t home = ahead->homes[ring];
    if (i + PREFETCH_DISTANCE < ahead->count) {
        uint32_t later = kvbm__registry_home(ahead->registry, ahead->hashes[i + PREFETCH_DISTANCE]);
        ahead->homes[ring] = later;
        kvbm__registry_prefetch(ahead->registry, later);
    }
    return home;
}

/* ------------------------------------------------------------------ allocate */

/* Evicts the victims ids[0, count) (already taken from the policy), in order:
 * each loses its hash (reported in evicted_out when given) and becomes
 * mutable. Block metadata is loaded two distances ahead and the registry slot
 * one distance ahead, so the misses of successive victims overlap. */
static inline __attribute__((always_inline)) void evict_one(kvbm_manager_t *manager, uint32_t id,
                                                            kvbm_evicted_t *evicted)
{
    const kvbm__block_t *block = &manager->blocks[id];
    if (evicted != NULL) /* before it loses the hash (and its removed event) */
        *evicted = (kvbm_evicted_t){.block_id = id,
                                    .seq_hash = block->seq_hash,
                                    .parent_hash = block->parent_hash,
                                    .has_parent = block->has_parent != 0};
    block_inactive_to_mutable(manager, id);
}

static inline __attribute__((always_inline)) void evict_victims(kvbm_manager_t *manager,
                                                                const uint32_t *ids, size_t count,
                                                                kvbm_evicted_t *evicted_out)
{
    const kvbm__block_t *blocks = manager->blocks;
    for (size_t i = 0; i < count && i < 2 * PREFETCH_DISTANCE; i++)
        __builtin_prefetch(&blocks[ids[i]]);
    /* While both distances ahead are in the array, then the rest. */
    size_t i = 0;
    for (; i + 2 * PREFETCH_DISTANCE < count; i++) {
        __builtin_prefetch(&blocks[ids[i + 2 * PREFETCH_DISTANCE]]);
        kvbm__registry_prefetch(&manager->registry, blocks[ids[i + PREFETCH_DISTANCE]].home);
        evict_one(manager, ids[i], evicted_out != NULL ? &evicted_out[i] : NULL);
    }
    for (; i < count; i++) {
        if (i + PREFETCH_DISTANCE < count)
            kvbm__registry_prefetch(&manager->registry, blocks[ids[i + PREFETCH_DISTANCE]].home);
        evict_one(manager, ids[i], evicted_out != NULL ? &evicted_out[i] : NULL);
    }
}

/* Allocates @p count blocks, which the caller checked are there (reset +
 * inactive): reset ones first, then the policy's victims, all taken at once
 * and unregistered with their loads overlapped. Returns how many were
 * evicted. Inlined into its two callers: at one block per call the call
 * layer was a tenth of allocate's instructions. */
static inline __attribute__((always_inline)) size_t allocate_blocks(kvbm_manager_t *manager,
                                                                    size_t count, uint32_t *ids_out,
                                                                    kvbm_evicted_t *evicted_out)
{
    assert(count <= manager->reset_count + manager->inactive_count);
    size_t from_reset = count < manager->reset_count ? count : manager->reset_count;
    for (size_t i = 0; i < from_reset; i++)
        ids_out[i] = block_reset_to_mutable(manager);
    size_t n_evicted = count - from_reset;
    if (n_evicted > 0) {
        size_t popped = kvbm__policy_pop_victims(manager->policy, manager->policy_state,
                                                 ids_out + from_reset, n_evicted);
        assert(popped == n_evicted);
        (void)popped;
        evict_victims(manager, ids_out + from_reset, n_evicted, evicted_out);
    }
    manager->metrics.allocations += count;
    manager->metrics.allocations_from_reset += from_reset;
    manager->metrics.evictions += n_evicted;
    return n_evicted;
}

/* KVBM_ERR_NO_BLOCKS, counted and recorded: @p count blocks asked for, more
 * than the @p free reset and @p evictable inactive ones. */
static kvbm_status_t refuse_allocation(kvbm_manager_t *manager, size_t count, size_t free,
                                       size_t evictable)
{
    manager->metrics.allocation_failures++;
    return kvbm__fail(KVBM_ERR_NO_BLOCKS,
                      "manager %s: %zu blocks asked for, %zu free and %zu "
                      "evictable",
                      manager->name, count, free, evictable);
}

kvbm_status_t kvbm_manager_allocate(kvbm_manager_t *manager, size_t count, uint32_t *ids_out,
                                    kvbm_evicted_t *evicted_out, size_t *n_evicted_out)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids_out != NULL);
    kvbm__mutex_lock(&manager->lock);
    if (count > manager->reset_count + manager->inactive_count) {
        kvbm_status_t status =
            refuse_allocation(manager, count, manager->reset_count, manager->inactive_count);
        kvbm__mutex_unlock(&manager->lock);
        return status;
    }
    size_t n_evicted = allocate_blocks(manager, count, ids_out, evicted_out);
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
    kvbm__mutex_unlock(&manager->lock);
    if (n_evicted_out != NULL)
        *n_evicted_out = evicted_out != NULL ? n_evicted : 0;
    return KVBM_OK;
}

/* ------------------------------------------------------------------ register */

/*
 * Register's one validation pass: every id is a mutable block named once.
 * On success every block is left marked in_call (the second pass clears the
 * marks as it goes); on failure no mark is left. While refs_need_check, a
 * hash registered on another block must also have room for the reference a
 * deduplication would move onto it.
 */
static kvbm_status_t check_registrable(kvbm_manager_t *manager, const uint32_t *ids,
                                       const uint64_t *hashes, size_t count)
{
    kvbm_status_t status = KVBM_OK;
    bool check_refs =
        manager->duplication == KVBM_DUPLICATION_REJECT && refs_need_check(manager, count);
    size_t checked = 0;
    for (; checked < count; checked++) {
        if (checked + PREFETCH_DISTANCE < count)
            prefetch_block(manager, ids[checked + PREFETCH_DISTANCE]);
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
        if (check_refs) {
            uint64_t hash = hashes[checked];
            uint32_t existing = kvbm__registry_find(&manager->registry, hash,
                                                    kvbm__registry_home(&manager->registry, hash));
            if (existing != KVBM_BLOCK_NONE && !refs_fit(&manager->blocks[existing], count)) {
                status = kvbm__fail(KVBM_ERR_OVERFLOW,
                                    "block %u: a deduplication would overflow its reference count",
                                    existing);
                checked++; /* this block is marked too */
                break;
            }
        }
    }
    if (status != KVBM_OK)
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

/* Hands the policy the registration hints of ids[i] (after its touch, so
 * the batch gathered so far goes first). */
static void hint_policy(kvbm_manager_t *manager, kvbm__policy_batch_t *batch, uint32_t id,
                        const kvbm_register_opts_t *opts, size_t i)
{
    kvbm__policy_batch_flush(batch);
    const kvbm__block_t *block = &manager->blocks[id];
    kvbm_policy_entry_t entry;
    memcpy(&entry, block, sizeof(entry));
    entry.block_id = id;
    kvbm_policy_hint_t hint = {.request_blocks = opts->request_blocks,
                               .position = opts->first_position + (uint32_t)i,
                               .priority = block->priority};
    hint.last = hint.position + 1 == hint.request_blocks;
    manager->policy->hint(manager->policy_state, &entry, &hint);
}

/* Registers hashes[i] on ids[i] for every i (register's second pass, after
 * check_registrable): a new hash takes the block; a hash present elsewhere
 * deduplicates (reject) or chains a duplicate (allow). Hashes new to the
 * tier form stored runs for the event sink; a hash the tier already had
 * ends the run. @p plain says the policy hears of no registration (no
 * touches of active blocks, no hints) and duplicates are rejected; @p
 * with_events that the manager has events. register_blocks passes both as
 * constants, so each of its inlined copies keeps only the branches it can
 * take. */
static inline __attribute__((always_inline)) void
register_loop(kvbm_manager_t *manager, kvbm__policy_batch_t *batch, const uint32_t *ids,
              const uint64_t *hashes, size_t count, const kvbm_register_opts_t *opts,
              uint32_t *ids_out, bool hinted, bool plain, bool with_events)
{
    hashes_ahead_t ahead;
    hashes_ahead_start(&ahead, &manager->registry, hashes, count);
    const bool reject = plain || manager->duplication == KVBM_DUPLICATION_REJECT;
    kvbm__manager_events_t *events = with_events ? manager->events : NULL;
    size_t run_start = 0;
    /* A parent for the events only is not the block's (policies and
     * evictions see none). */
    bool block_parent = opts != NULL && opts->has_parent && !opts->parent_for_events_only;
    kvbm_register_opts_t lineage = {.parent_hash = block_parent ? opts->parent_hash : 0,
                                    .has_parent = block_parent,
                                    .priority = opts != NULL ? opts->priority : 50};
    size_t registered = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t home = hashes_ahead_home(&ahead, i);
        uint32_t id = ids[i];
        kvbm__block_t *block = &manager->blocks[id];
        block->in_call = 0;
        uint32_t existing = kvbm__registry_insert(&manager->registry, hashes[i], home, id);
        if (existing != KVBM_BLOCK_NONE) { /* the tier had the hash: the run ends */
            if (events != NULL && run_start < i)
                kvbm__manager_events_stored(events, ids, hashes, run_start, i, opts);
            run_start = i + 1;
        }
        if (existing != KVBM_BLOCK_NONE && reject) {
            /* The caller's reference moves to the existing block. */
            acquire_registered(manager, batch, existing, true);
            block_to_reset(manager, id);
            manager->metrics.dedups++;
            ids_out[i] = existing;
        } else {
            if (existing != KVBM_BLOCK_NONE) {
                block->next_duplicate = manager->blocks[existing].next_duplicate;
                manager->blocks[existing].next_duplicate = id;
                manager->metrics.duplicates++;
            }
            block_mutable_to_registered(manager, id, hashes[i], home, &lineage);
            registered++;
            if (!plain && manager->policy_touches_active)
                policy_add(batch, KVBM__POLICY_OP_TOUCH, block, id);
            if (!plain && hinted)
                hint_policy(manager, batch, id, opts, i);
            ids_out[i] = id;
        }
        /* Every later block's parent is this hash. */
        lineage.parent_hash = hashes[i];
        lineage.has_parent = true;
    }
    if (events != NULL && run_start < count)
        kvbm__manager_events_stored(events, ids, hashes, run_start, count, opts);
    manager->metrics.registrations += registered;
}

static inline __attribute__((always_inline)) void
register_blocks(kvbm_manager_t *manager, kvbm__policy_batch_t *batch, const uint32_t *ids,
                const uint64_t *hashes, size_t count, const kvbm_register_opts_t *opts,
                uint32_t *ids_out)
{
    /* Version-1 policy tables have no hint op; the ignoring one gets none. */
    bool hinted = opts != NULL && opts->request_blocks != 0 && manager->policy_takes_hints;
    bool plain = !hinted && !manager->policy_touches_active &&
                 manager->duplication == KVBM_DUPLICATION_REJECT;
    if (plain && manager->events == NULL)
        register_loop(manager, batch, ids, hashes, count, opts, ids_out, false, true, false);
    else if (plain) /* the same loop with its stored runs for the events */
        register_loop(manager, batch, ids, hashes, count, opts, ids_out, false, true, true);
    else
        register_loop(manager, batch, ids, hashes, count, opts, ids_out, hinted, false,
                      manager->events != NULL);
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
    status = check_registrable(manager, ids, hashes, count);
    if (status != KVBM_OK) {
        kvbm__mutex_unlock(&manager->lock);
        return status;
    }
    /* Nothing below can fail: the registry holds a slot for every block. */
    kvbm__policy_batch_t batch;
    kvbm__policy_batch_start(&batch, manager->policy, manager->policy_state, manager->policy_by_id);
    register_blocks(manager, &batch, ids, hashes, count, opts, ids_out);
    kvbm__policy_batch_flush(&batch);
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
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
        if (block->state != BLOCK_REGISTERED || !refs_fit(block, count)) {
            kvbm__mutex_unlock(&manager->lock);
            if (block->state != BLOCK_REGISTERED)
                return kvbm__fail(KVBM_ERR_BAD_STATE, "block %u is not registered", ids[i]);
            return kvbm__fail(KVBM_ERR_OVERFLOW,
                              "block %u: %zu more references would overflow its count", ids[i],
                              count);
        }
    }
    kvbm__policy_batch_t batch;
    kvbm__policy_batch_start(&batch, manager->policy, manager->policy_state, manager->policy_by_id);
    for (size_t i = 0; i < count; i++)
        acquire_registered(manager, &batch, ids[i], false);
    kvbm__policy_batch_flush(&batch);
    kvbm__mutex_unlock(&manager->lock);
    return KVBM_OK;
}

/* Blocks whose last reference one release call notes as it goes (1 KiB of
 * stack); a call releasing more blocks to zero takes a second pass. */
#define RELEASE_ZEROS 256

/* Takes the references drop_references dropped back: ids[0, count). */
static void restore_references(kvbm_manager_t *manager, const uint32_t *ids, size_t count)
{
    for (size_t i = 0; i < count; i++)
        manager->blocks[ids[i]].refcount++;
}

/* Where release notes the blocks whose last reference went: the registered
 * ones (to become inactive) from the front, in order; the others (to go to
 * reset) from the back, in order from the last slot down. */
typedef struct zeroed {
    uint32_t ids[RELEASE_ZEROS];
    size_t n_inactive; /* ids[0, n_inactive) */
    size_t n_reset;    /* ids[RELEASE_ZEROS - n_reset, RELEASE_ZEROS), last first */
} zeroed_t;

/*
 * Release's one checking pass: every reference is dropped, and the blocks
 * whose count reaches zero are noted in @p zeroed (a block reaches zero at
 * its last occurrence: a later one would find no reference left). A bad id,
 * or a block with no reference to drop, puts every count back and refuses
 * the call. *all_noted_out is false, with every count dropped and checked,
 * when more than RELEASE_ZEROS reached zero (only the first RELEASE_ZEROS
 * are noted). @p bounded: count <= RELEASE_ZEROS, so there is always room.
 */
static inline __attribute__((always_inline)) kvbm_status_t
drop_loop(kvbm_manager_t *manager, const uint32_t *ids, size_t count, zeroed_t *zeroed,
          bool *all_noted_out, bool bounded)
{
    kvbm__block_t *blocks = manager->blocks;
    const uint32_t num_blocks = manager->num_blocks; /* a local: block stores cannot change it */
    size_t n_inactive = 0, n_reset = 0, dropped = 0;
    for (; dropped < count; dropped++) {
        uint32_t id = ids[dropped];
        if (id >= num_blocks || blocks[id].refcount == 0) {
            /* out of range; or reset or inactive, which hold no reference */
            restore_references(manager, ids, dropped);
            if (id >= num_blocks)
                return kvbm__fail(KVBM_ERR_OUT_OF_RANGE, "block id %u is not below %u", id,
                                  num_blocks);
            return kvbm__fail(KVBM_ERR_NOT_HELD, "block %u: no reference left to release", id);
        }
        if (--blocks[id].refcount != 0)
            continue;
        bool room = bounded || n_inactive + n_reset < RELEASE_ZEROS;
        if (blocks[id].state == BLOCK_REGISTERED) {
            if (room)
                zeroed->ids[n_inactive] = id;
            n_inactive++;
        } else {
            if (room)
                zeroed->ids[RELEASE_ZEROS - 1 - n_reset] = id;
            n_reset++;
        }
    }
    zeroed->n_inactive = n_inactive;
    zeroed->n_reset = n_reset;
    *all_noted_out = n_inactive + n_reset <= RELEASE_ZEROS;
    return KVBM_OK;
}

/* drop_loop inlined twice: a call of at most RELEASE_ZEROS ids cannot note
 * more than there is room for, so its copy checks no room. (Release inlines
 * that copy a third time for its own first pass, sparing the common call a
 * call layer.) */
static kvbm_status_t drop_references(kvbm_manager_t *manager, const uint32_t *ids, size_t count,
                                     zeroed_t *zeroed, bool *all_noted_out)
{
    if (count <= RELEASE_ZEROS)
        return drop_loop(manager, ids, count, zeroed, all_noted_out, true);
    return drop_loop(manager, ids, count, zeroed, all_noted_out, false);
}

/* Moves the blocks whose last reference went: the registered ones become
 * inactive in release order (the policy hears of them in this order; a
 * policy by id gets the array as it is), the others go to reset, in release
 * order too (going to reset tells the policy nothing). */
static inline __attribute__((always_inline)) void
move_released(kvbm_manager_t *manager, kvbm__policy_batch_t *batch, const zeroed_t *zeroed)
{
    if (batch->by_id) {
        blocks_to_inactive_by_id(manager, batch, zeroed->ids, zeroed->n_inactive);
    } else {
        for (size_t i = 0; i < zeroed->n_inactive; i++)
            block_to_inactive(manager, batch, zeroed->ids[i]);
    }
    for (size_t i = 0; i < zeroed->n_reset; i++)
        block_to_reset(manager, zeroed->ids[RELEASE_ZEROS - 1 - i]);
}

kvbm_status_t kvbm_manager_release(kvbm_manager_t *manager, const uint32_t *ids, size_t count)
{
    KVBM_REQUIRE_ARG(manager != NULL);
    KVBM_REQUIRE_ARG(count == 0 || ids != NULL);
    kvbm__mutex_lock(&manager->lock);
    zeroed_t zeroed;
    bool all_noted = false;
    kvbm_status_t status = count <= RELEASE_ZEROS
                               ? drop_loop(manager, ids, count, &zeroed, &all_noted, true)
                               : drop_references(manager, ids, count, &zeroed, &all_noted);
    if (status != KVBM_OK) {
        kvbm__mutex_unlock(&manager->lock);
        return status;
    }
    kvbm__policy_batch_t batch;
    kvbm__policy_batch_start(&batch, manager->policy, manager->policy_state, manager->policy_by_id);
    if (all_noted) {
        move_released(manager, &batch, &zeroed);
    } else {
        /* Checked, but more zeros than noted: drop the references again in
         * pieces (none can fail now, none notes more than it has room for). */
        restore_references(manager, ids, count);
        for (size_t start = 0; start < count; start += RELEASE_ZEROS) {
            size_t piece = count - start < RELEASE_ZEROS ? count - start : RELEASE_ZEROS;
            kvbm_status_t piece_status =
                drop_references(manager, ids + start, piece, &zeroed, &all_noted);
            assert(piece_status == KVBM_OK && all_noted);
            (void)piece_status;
            move_released(manager, &batch, &zeroed);
        }
    }
    kvbm__policy_batch_flush(&batch);
    manager->metrics.releases += count;
    kvbm__mutex_unlock(&manager->lock);
    return KVBM_OK;
}

/* ------------------------------------------------------------------ match / scan */

/* Whether every block a lookup of @p hashes finds has room for @p count more
 * references (the check of refs_need_check); @p prefix stops at the first
 * hash not registered, as match does. */
static bool found_blocks_fit(const kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                             bool prefix)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t id = kvbm__registry_find(&manager->registry, hashes[i],
                                          kvbm__registry_home(&manager->registry, hashes[i]));
        if (id == KVBM_BLOCK_NONE && prefix)
            return true;
        if (id != KVBM_BLOCK_NONE && !refs_fit(&manager->blocks[id], count))
            return false;
    }
    return true;
}

kvbm_status_t kvbm_manager_match(kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                                 uint32_t *ids_out, size_t *n_matched_out)
{
    KVBM_REQUIRE_ARG(manager != NULL && n_matched_out != NULL);
    KVBM_REQUIRE_ARG(count == 0 || (hashes != NULL && ids_out != NULL));
    kvbm__mutex_lock(&manager->lock);
    if (refs_need_check(manager, count) && !found_blocks_fit(manager, hashes, count, true)) {
        kvbm__mutex_unlock(&manager->lock);
        return kvbm__fail(KVBM_ERR_OVERFLOW, "kvbm_manager_match: a block's reference count "
                                             "would overflow");
    }
    kvbm__policy_batch_t batch;
    kvbm__policy_batch_start(&batch, manager->policy, manager->policy_state, manager->policy_by_id);
    hashes_ahead_t ahead;
    hashes_ahead_start(&ahead, &manager->registry, hashes, count);
    size_t matched = 0;
    for (; matched < count; matched++) {
        uint32_t home = hashes_ahead_home(&ahead, matched);
        uint32_t id = kvbm__registry_find(&manager->registry, hashes[matched], home);
        if (id == KVBM_BLOCK_NONE)
            break;
        acquire_registered(manager, &batch, id, true);
        ids_out[matched] = id;
    }
    kvbm__policy_batch_flush(&batch);
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
    /* A hash repeated in the prefix names one block: an inactive block is
     * counted once, marked in_call while walking. The marks are cleared
     * before unlocking, from a short list (or, past it, by looking the
     * prefix up again). */
    uint32_t marked[MATCH_LENGTH_MARKS];
    size_t n_marked = 0;
    hashes_ahead_t ahead;
    hashes_ahead_start(&ahead, &manager->registry, hashes, count);
    size_t matched = 0, inactive = 0;
    for (; matched < count; matched++) {
        uint32_t home = hashes_ahead_home(&ahead, matched);
        uint32_t id = kvbm__registry_find(&manager->registry, hashes[matched], home);
        if (id == KVBM_BLOCK_NONE)
            break;
        kvbm__block_t *block = &manager->blocks[id];
        if (block->refcount == 0 && !block->in_call) {
            inactive++;
            block->in_call = 1;
            if (n_marked < MATCH_LENGTH_MARKS)
                marked[n_marked] = id;
            n_marked++;
        }
    }
    for (size_t i = 0; i < n_marked && i < MATCH_LENGTH_MARKS; i++)
        manager->blocks[marked[i]].in_call = 0;
    for (size_t i = 0; n_marked > MATCH_LENGTH_MARKS && i < matched; i++)
        manager
            ->blocks[kvbm__registry_find(&manager->registry, hashes[i],
                                         kvbm__registry_home(&manager->registry, hashes[i]))]
            .in_call = 0;
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
    if (refs_need_check(manager, count) && !found_blocks_fit(manager, hashes, count, false)) {
        kvbm__mutex_unlock(&manager->lock);
        return kvbm__fail(KVBM_ERR_OVERFLOW, "kvbm_manager_scan: a block's reference count "
                                             "would overflow");
    }
    kvbm__policy_batch_t batch;
    kvbm__policy_batch_start(&batch, manager->policy, manager->policy_state, manager->policy_by_id);
    hashes_ahead_t ahead;
    hashes_ahead_start(&ahead, &manager->registry, hashes, count);
    size_t found = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t home = hashes_ahead_home(&ahead, i);
        uint32_t id = kvbm__registry_find(&manager->registry, hashes[i], home);
        ids_out[i] = id;
        if (id == KVBM_BLOCK_NONE)
            continue;
        acquire_registered(manager, &batch, id, touch);
        found++;
    }
    kvbm__policy_batch_flush(&batch);
    manager->metrics.scan_hashes += count;
    manager->metrics.scan_blocks += found;
    kvbm__mutex_unlock(&manager->lock);
    *n_found_out = found;
    return KVBM_OK;
}

/* ------------------------------------------------------------------ match, allocate, register */

/*
 * The fused call's lookup: the registered prefix of @p hashes, its blocks
 * written to ids_out, nothing acquired. *n_inactive_out counts the distinct
 * inactive blocks among them (each marked in_call when counted; the caller
 * clears the marks of ids_out[0, matched)).
 */
static size_t lookup_prefix(kvbm_manager_t *manager, const uint64_t *hashes, size_t count,
                            uint32_t *ids_out, size_t *n_inactive_out)
{
    hashes_ahead_t ahead;
    hashes_ahead_start(&ahead, &manager->registry, hashes, count);
    size_t matched = 0, inactive = 0;
    for (; matched < count; matched++) {
        uint32_t home = hashes_ahead_home(&ahead, matched);
        uint32_t id = kvbm__registry_find(&manager->registry, hashes[matched], home);
        if (id == KVBM_BLOCK_NONE)
            break;
        kvbm__block_t *block = &manager->blocks[id];
        if (block->refcount == 0 && !block->in_call) {
            block->in_call = 1;
            inactive++;
        }
        ids_out[matched] = id;
    }
    *n_inactive_out = inactive;
    return matched;
}

kvbm_status_t kvbm_manager_match_allocate_register(kvbm_manager_t *manager, const uint64_t *hashes,
                                                   size_t count, const kvbm_register_opts_t *opts,
                                                   uint32_t *ids_out, kvbm_evicted_t *evicted_out,
                                                   kvbm_request_counts_t *counts_out)
{
    KVBM_REQUIRE_ARG(manager != NULL && counts_out != NULL);
    KVBM_REQUIRE_ARG(count == 0 || (hashes != NULL && ids_out != NULL));
    kvbm_status_t status = opts != NULL ? check_register_opts(opts, count) : KVBM_OK;
    if (status != KVBM_OK)
        return status;
    kvbm__mutex_lock(&manager->lock);
    /* Every block found (matched, or deduplicated onto) takes at most count
     * references. */
    if (refs_need_check(manager, count) && !found_blocks_fit(manager, hashes, count, false)) {
        kvbm__mutex_unlock(&manager->lock);
        return kvbm__fail(KVBM_ERR_OVERFLOW, "kvbm_manager_match_allocate_register: a block's "
                                             "reference count would overflow");
    }
    size_t n_inactive = 0;
    size_t matched = lookup_prefix(manager, hashes, count, ids_out, &n_inactive);
    size_t need = count - matched;
    size_t evictable = manager->inactive_count - n_inactive; /* once the prefix is acquired */
    if (need > manager->reset_count + evictable) {
        for (size_t i = 0; i < matched; i++)
            manager->blocks[ids_out[i]].in_call = 0;
        status = refuse_allocation(manager, need, manager->reset_count, evictable);
        kvbm__mutex_unlock(&manager->lock);
        return status;
    }
    /* Nothing below can fail. The match: */
    kvbm__policy_batch_t batch;
    kvbm__policy_batch_start(&batch, manager->policy, manager->policy_state, manager->policy_by_id);
    for (size_t i = 0; i < matched; i++)
        manager->blocks[ids_out[i]].in_call = 0;
    if (batch.by_id && n_inactive == matched) {
        /* The usual case: every matched block was inactive, each once. */
        blocks_to_active_by_id(manager, &batch, ids_out, matched);
    } else {
        for (size_t i = 0; i < matched; i++)
            acquire_registered(manager, &batch, ids_out[i], true);
    }
    manager->metrics.match_hashes += count;
    manager->metrics.match_blocks += matched;
    /* The policy hears of the acquisitions before it gives up victims. */
    kvbm__policy_batch_flush(&batch);
    size_t n_evicted = allocate_blocks(manager, need, ids_out + matched, evicted_out);
    /* The evictions' removals go first, as the allocation's own call would
     * deliver them: a hash evicted here may be registered again below. */
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
    /* The registration of the fresh blocks, in place in ids_out. */
    kvbm_register_opts_t rest = opts != NULL ? *opts : (kvbm_register_opts_t){.priority = 50};
    if (matched > 0) {
        rest.parent_hash = hashes[matched - 1];
        rest.has_parent = true;
        rest.parent_for_events_only = false; /* the matched block is the real parent */
        if (rest.n_tokens > 0) {
            rest.tokens += matched * rest.block_size;
            rest.n_tokens -= matched * rest.block_size;
        }
    }
    rest.first_position += (uint32_t)matched;
    uint64_t dedups_before = manager->metrics.dedups;
    register_blocks(manager, &batch, ids_out + matched, hashes + matched, need, &rest,
                    ids_out + matched);
    size_t deduplicated = (size_t)(manager->metrics.dedups - dedups_before);
    kvbm__policy_batch_flush(&batch);
    if (manager->events != NULL)
        kvbm__manager_events_deliver(manager->events);
    kvbm__mutex_unlock(&manager->lock);
    *counts_out = (kvbm_request_counts_t){.matched = matched,
                                          .evicted = evicted_out != NULL ? n_evicted : 0,
                                          .deduplicated = deduplicated};
    return KVBM_OK;
}

/* ------------------------------------------------------------------ invalidate */

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
           kvbm__registry_find(&manager->registry, block->seq_hash, block->home) == id;
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
        id = block->has_parent
                 ? kvbm__registry_find(&manager->registry, block->parent_hash,
                                       kvbm__registry_home(&manager->registry, block->parent_hash))
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
    uint32_t *stack = kvbm__alloc(manager->num_blocks, sizeof(uint32_t));
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
    kvbm__free(stack);
    return KVBM_OK;
}

bool kvbm_manager_contains(kvbm_manager_t *manager, uint64_t hash)
{
    if (manager == NULL)
        return false;
    kvbm__mutex_lock(&manager->lock);
    bool present =
        kvbm__registry_find(&manager->registry, hash,
                            kvbm__registry_home(&manager->registry, hash)) != KVBM_BLOCK_NONE;
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
