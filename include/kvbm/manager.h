/**
 * @file manager.h
 * @brief The logical block manager: one tier of N blocks with three pools.
 *
 * Block states:
 *
 *                   allocate                     register
 *        reset ---------------------> mutable ---------------> active
 *         ^  ^  ^   release to 0       |  ^                (registered, refcount >= 1)
 *         |  |  +----------------------+  |                   |    ^       |
 *         |  |                  allocate  |      release to 0 |    |       | invalidate
 *         |  |                  (evicts)  |                   v    |       v
 *         |  +--- invalidate, ------- inactive <--------------+    |    withdrawn
 *         |       reset_inactive   (registered, refcount 0) -------+    (held, no hash)
 *         |                                acquire, match, scan            |
 *         +--------------------------- release to 0 -----------------------+
 *
 * The reset pool holds free blocks; the active pool holds mutable, withdrawn
 * and registered blocks with references; the inactive pool holds registered
 * blocks nobody references, ordered by the eviction policy. A withdrawn block
 * lost its hash to kvbm_manager_invalidate() while held: it cannot be found,
 * acquired or registered, and goes to reset on its last release. A
 * registration that finds its hash on another block (KVBM_DUPLICATION_REJECT)
 * sends its own block back to reset. Block ids are dense, 0..num_blocks-1,
 * fixed at creation.
 *
 * Every call either succeeds completely or changes nothing, and sets its
 * outputs only on success. Any thread may call any function; one manager lock
 * serialises the calls (see docs/ARCHITECTURE.md). References are counted, not
 * owned by threads: whoever holds a reference may release it from any thread.
 */
#ifndef KVBM_MANAGER_H
#define KVBM_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/config_init.h"
#include "kvbm/event_record.h"
#include "kvbm/export.h"
#include "kvbm/metrics.h"
#include "kvbm/policy.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_MANAGER_CONFIG_VERSION 2u /* 2: event records (on_events), medium */
/** Longest manager name accepted, in bytes (see kvbm_manager_config_t.name). */
#define KVBM_MANAGER_NAME_MAX 63u
/** Largest block count a manager accepts (ids must fit below KVBM_BLOCK_NONE). */
#define KVBM_MANAGER_MAX_BLOCKS (UINT32_MAX / 2u)

typedef struct kvbm_manager kvbm_manager_t;

/** What register does when a hash is already registered on another block. */
typedef enum kvbm_duplication {
    /** Keep both: the new block is registered too (counted as a duplicate). */
    KVBM_DUPLICATION_ALLOW = 0,
    /**
     * Keep one: the existing block is acquired (resurrected if inactive) and
     * returned in place of the new one, which goes back to reset (a dedup).
     */
    KVBM_DUPLICATION_REJECT = 1,
} kvbm_duplication_t;

typedef struct kvbm_manager_config {
    uint32_t struct_size; /**< sizeof(kvbm_manager_config_t) */
    uint32_t version;     /**< KVBM_MANAGER_CONFIG_VERSION */
    uint32_t num_blocks;  /**< 1..KVBM_MANAGER_MAX_BLOCKS */
    kvbm_duplication_t duplication;
    const kvbm_policy_ops_t *policy;    /**< NULL means LRU */
    kvbm_policy_config_t policy_config; /**< tuning for the policy */
    /**
     * Optional event sink for routers (kvbm/event_record.h; a publisher's
     * kvbm_publisher_sink for vLLM's wire format). Called with the manager
     * lock held, once per call that changed what the tier holds, with the
     * call's records in the order things happened: a hash is stored when
     * its first block is registered and removed when its last block loses
     * it (evicted, invalidated, reset). It must not call back into the
     * manager. A registration split into more than KVBM_MANAGER_EVENT_RECORDS
     * runs (by deduplicated hashes) is delivered in several calls.
     * Version 1's on_events took per-block kvbm_event_t: a version-1 config
     * that sets it gets KVBM_ERR_UNSUPPORTED.
     */
    kvbm_event_record_fn on_events;
    void *events_ctx;
    /**
     * Label for the metrics exports; copied; NULL means "kvbm". It is written
     * as is into Prometheus label values and JSON strings, so it must be 1 to
     * KVBM_MANAGER_NAME_MAX printable ASCII characters without '"' or '\\'
     * (anything else is refused with KVBM_ERR_INVALID_ARG, never cut or
     * escaped).
     */
    const char *name;
    kvbm_medium_t medium; /**< the tier, as events name it; default GPU (version 2) */
} kvbm_manager_config_t;

/** Records one sink call holds at most (see kvbm_manager_config_t.on_events). */
#define KVBM_MANAGER_EVENT_RECORDS 32

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_MANAGER_CONFIG_DEFAULTS(X, P)                                                         \
    X(P, struct_size, sizeof(kvbm_manager_config_t))                                               \
    X(P, version, KVBM_MANAGER_CONFIG_VERSION)                                                     \
    X(P, duplication, KVBM_DUPLICATION_REJECT)                                                     \
    KVBM_POLICY_CONFIG_DEFAULTS(X, P policy_config.)

#ifdef __cplusplus
#define KVBM_MANAGER_CONFIG_INIT                                                                   \
    KVBM_CONFIG_INIT_CXX(kvbm_manager_config_t, kvbm_manager_config_init)
#else
#define KVBM_MANAGER_CONFIG_INIT                                                                   \
    {                                                                                              \
        KVBM_MANAGER_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                      \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_MANAGER_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_manager_config_init(kvbm_manager_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_MANAGER_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/** A block that allocate took from the inactive pool, with the hash it lost. */
typedef struct kvbm_evicted {
    uint64_t seq_hash;    /**< the hash it carried */
    uint64_t parent_hash; /**< the parent it was registered with, when has_parent */
    uint32_t block_id;    /**< now one of the allocated (mutable) blocks */
    bool has_parent;
} kvbm_evicted_t;

/**
 * Per-registration options; NULL means no parent, priority 50, and nothing
 * more for the events. The token ids, block size and LoRA fields only travel
 * on the stored events of this registration (routers such as llm-d and
 * Dynamo key blocks by their tokens); the manager does not keep them.
 */
typedef struct kvbm_register_opts {
    uint64_t parent_hash; /**< sequence hash of the parent of the first block */
    bool has_parent;      /**< whether parent_hash is set */
    uint8_t priority;     /**< 0..100, for the priority policy */
    /**
     * Hints (0 = not given): the length in blocks of the request these
     * blocks belong to, and the position in it of the first block of this
     * call (blocks before it were matched). Policies with a hint op and the
     * G2 admission filter use them; the rest ignore them.
     */
    uint32_t request_blocks;
    uint32_t first_position;
    bool has_lora_id;    /**< whether lora_id is set */
    uint32_t block_size; /**< tokens per block; 0 when unknown (then no tokens) */
    /** The tokens of the registered blocks, block_size per block in order:
     *  n_tokens is 0 (none given) or count * block_size. */
    const uint32_t *tokens;
    size_t n_tokens;
    int64_t lora_id;       /**< the LoRA adapter, when has_lora_id */
    const char *lora_name; /**< optional adapter name (borrowed during the call) */
    /**
     * The parent (has_parent, parent_hash) is for the stored event only: the
     * block is registered without one, so policies that order by parents
     * (lineage, slru's runs) and eviction reports see none. The tiered cache
     * registers offloads into G2 this way, keeping G2's order as before
     * events while routers still get the chain.
     */
    bool parent_for_events_only;
} kvbm_register_opts_t;

/**
 * @brief Create a manager with every block in the reset pool.
 * @param[in]  config   copied; the caller keeps ownership.
 * @param[out] manager_out  the new manager, owned by the caller.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, num_blocks 0 or too large,
 *         unknown duplication, a name that is empty, too long or holds a
 *         character outside the safe set, a policy table without a name or
 *         with a NULL operation of its version); KVBM_ERR_VERSION
 *         (struct_size/version, the policy table's version);
 *         KVBM_ERR_NO_MEMORY; or the policy's create error.
 */
KVBM_API kvbm_status_t kvbm_manager_create(const kvbm_manager_config_t *config,
                                           kvbm_manager_t **manager_out);

/** @brief Free the manager and everything in it. NULL is a no-op. No other
 *         call may run on it concurrently or after. */
KVBM_API void kvbm_manager_destroy(kvbm_manager_t *manager);

/**
 * @brief Allocate @p count mutable blocks, all or nothing.
 *
 * Draws from the reset pool first, then evicts inactive blocks in the
 * policy's order; each eviction unregisters the block's hash.
 *
 * @param[out] ids_out      @p count block ids, each with one reference.
 * @param[out] evicted_out  optional (NULL), room for @p count entries: the
 *                          evicted blocks and the hashes they carried.
 * @param[out] n_evicted_out optional; number of entries in evicted_out.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_NO_BLOCKS when reset +
 *         inactive < count (nothing changes).
 */
KVBM_API kvbm_status_t kvbm_manager_allocate(kvbm_manager_t *manager, size_t count,
                                             uint32_t *ids_out, kvbm_evicted_t *evicted_out,
                                             size_t *n_evicted_out);

/**
 * @brief Register mutable blocks under sequence hashes.
 *
 * hashes[i] goes to ids[i]; hashes[i-1] is taken as the parent of hashes[i],
 * and opts->parent_hash (if set) as the parent of hashes[0]. Under
 * KVBM_DUPLICATION_REJECT, a hash already registered elsewhere makes the
 * existing block acquired and placed in ids_out[i], and ids[i] goes back to
 * reset; under ALLOW both blocks carry it. The caller's reference on each
 * mutable block becomes a reference on the block in ids_out.
 *
 * @param[in]  ids     mutable blocks held by the caller, no repeats.
 * @param[in]  opts    optional; see kvbm_register_opts_t.
 * @param[out] ids_out the blocks now holding each hash (may alias ids).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (also: priority above 100, tokens
 *         that are not count * block_size, or NULL with n_tokens > 0);
 *         KVBM_ERR_OUT_OF_RANGE;
 *         KVBM_ERR_BAD_STATE (a block not mutable, or repeated);
 *         KVBM_ERR_OVERFLOW (a deduplicated block's reference count could
 *         pass its limit); KVBM_ERR_NO_MEMORY. Nothing changes on error.
 */
KVBM_API kvbm_status_t kvbm_manager_register(kvbm_manager_t *manager, const uint32_t *ids,
                                             const uint64_t *hashes, size_t count,
                                             const kvbm_register_opts_t *opts, uint32_t *ids_out);

/**
 * @brief Add one reference to each registered block (active or inactive).
 * @return KVBM_OK; KVBM_ERR_OUT_OF_RANGE; KVBM_ERR_BAD_STATE (reset or mutable);
 *         KVBM_ERR_OVERFLOW (a block's reference count could pass its limit,
 *         UINT32_MAX). Nothing changes on error.
 */
KVBM_API kvbm_status_t kvbm_manager_acquire(kvbm_manager_t *manager, const uint32_t *ids,
                                            size_t count);

/**
 * @brief Drop one reference from each block, in array order.
 *
 * A registered block whose count reaches zero becomes inactive (ids released
 * later are more recent: release a request's tail first so its head is the
 * most recently used); a mutable block goes back to reset. A block may appear
 * as often as references are held on it.
 *
 * @return KVBM_OK; KVBM_ERR_OUT_OF_RANGE; KVBM_ERR_NOT_HELD (more releases
 *         than references, or a free/inactive block). Nothing changes on error.
 */
KVBM_API kvbm_status_t kvbm_manager_release(kvbm_manager_t *manager, const uint32_t *ids,
                                            size_t count);

/**
 * @brief Longest registered prefix of @p hashes, acquired.
 *
 * Walks the hashes in order over active and inactive blocks and stops at the
 * first hash that is not registered. Every returned block gets a reference
 * (inactive ones leave the inactive pool).
 *
 * @param[out] ids_out room for @p count ids; the first *n_matched_out are set.
 * @param[out] n_matched_out length of the matched prefix.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_OVERFLOW (a matched block's
 *         reference count could pass its limit, UINT32_MAX: nothing changes,
 *         though ids_out may have been written).
 */
KVBM_API kvbm_status_t kvbm_manager_match(kvbm_manager_t *manager, const uint64_t *hashes,
                                          size_t count, uint32_t *ids_out, size_t *n_matched_out);

/** What kvbm_manager_match_allocate_register() did. */
typedef struct kvbm_request_counts {
    size_t matched;      /**< leading hashes found registered (acquired) */
    size_t evicted;      /**< entries written to evicted_out */
    size_t deduplicated; /**< hashes after the prefix found on another block */
} kvbm_request_counts_t;

/**
 * @brief One request's blocks in one call: kvbm_manager_match() of
 *        @p hashes, then kvbm_manager_allocate() of a block for each hash
 *        after the matched prefix, then kvbm_manager_register() of those
 *        hashes on them, under one hold of the lock, with the same results,
 *        policy operations, events and metrics as the three calls in a row.
 *
 * Nothing is checked twice: the blocks registered are the ones the call
 * just allocated. The registration's parent is hashes[matched - 1] when a
 * prefix matched, else opts->parent_hash; its first position is
 * opts->first_position + matched (so opts describe hashes[0]; tokens, when
 * given, are those of all @p count hashes, and the registration gets those
 * after the prefix). All or
 * nothing: a refused call changes nothing. The caller then holds one
 * reference on each block of ids_out, to release as usual.
 *
 * @param[in]  opts        as for kvbm_manager_register (NULL: no parent,
 *                         priority 50, no hints).
 * @param[out] ids_out     room for @p count ids: the blocks holding
 *                         hashes[0, count), matched ones first. A block after
 *                         the prefix is a fresh one to fill, or, for the
 *                         counts_out->deduplicated hashes (duplication
 *                         reject), the block already holding that hash.
 * @param[out] evicted_out optional (NULL), room for @p count entries: the
 *                         evicted blocks and the hashes they carried, in
 *                         eviction order.
 * @param[out] counts_out  matched, evicted, deduplicated.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, priority above 100, tokens
 *         not count * block_size); KVBM_ERR_NO_BLOCKS when reset + inactive blocks (after the
 *         prefix is acquired) are fewer than the hashes after it;
 *         KVBM_ERR_OVERFLOW (a reference count would overflow). Nothing
 *         changes on error. Thread-safe.
 */
KVBM_API kvbm_status_t kvbm_manager_match_allocate_register(
    kvbm_manager_t *manager, const uint64_t *hashes, size_t count, const kvbm_register_opts_t *opts,
    uint32_t *ids_out, kvbm_evicted_t *evicted_out, kvbm_request_counts_t *counts_out);

/**
 * @brief How long kvbm_manager_match() would match, without acquiring or
 *        touching anything (for routers choosing a worker, and for callers
 *        that must know whether a request fits before taking blocks).
 *
 * @param[out] n_matched_out  length of the registered prefix.
 * @param[out] n_inactive_out optional: how many distinct blocks of the prefix
 *                            are inactive (a match would take them out of the
 *                            evictable pool; a repeated hash counts once).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_manager_match_length(kvbm_manager_t *manager, const uint64_t *hashes,
                                                 size_t count, size_t *n_matched_out,
                                                 size_t *n_inactive_out);

/**
 * @brief Look up every hash, not stopping at misses; acquires every hit.
 *
 * With @p touch the hits count as accesses for the policy (frequency, and
 * recency for inactive blocks); without it the policy is not told.
 *
 * @param[out] ids_out   @p count entries: the block id, or KVBM_BLOCK_NONE.
 * @param[out] n_found_out number of hits.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_OVERFLOW (as for match).
 */
KVBM_API kvbm_status_t kvbm_manager_scan(kvbm_manager_t *manager, const uint64_t *hashes,
                                         size_t count, bool touch, uint32_t *ids_out,
                                         size_t *n_found_out);

/**
 * @brief Withdraw the hashes of registered blocks whose data turned out to be
 *        wrong (a failed copy), so no later match or scan returns them.
 *
 * An inactive block goes straight back to reset. An active block loses its
 * hash but keeps its references, and goes back to reset when the last one is
 * released; until then it cannot be registered again. Emits REMOVED events.
 * Blocks that are not registered (already withdrawn) are skipped.
 *
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_OUT_OF_RANGE (nothing changes).
 */
KVBM_API kvbm_status_t kvbm_manager_invalidate(kvbm_manager_t *manager, const uint32_t *ids,
                                               size_t count);

/**
 * @brief Tell the event sink everything the tier holds: one stored record
 *        per hash (each once, with its parent when it was registered with
 *        one, no tokens), a parent the tier holds always before its
 *        children. For resynchronising routers after events were lost (a
 *        publisher's full queue, kvbm_publisher_resync_needed()): send an
 *        AllBlocksCleared first, in the same batch (a batcher as the sink;
 *        kvbm_cache_announce() does it for a cache). Nothing changes in the
 *        tier. Without a sink, nothing is sent.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL); KVBM_ERR_NO_MEMORY (nothing
 *         sent).
 */
KVBM_API kvbm_status_t kvbm_manager_announce(kvbm_manager_t *manager);

/**
 * @brief Every hash the tier holds (registered, active or inactive), each
 *        once, in block id order: what a router following its events holds.
 * @param[out] hashes_out    room for @p capacity hashes.
 * @param[out] n_hashes_out  how many were written.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, or @p capacity below the
 *         number of registered hashes; nothing is written).
 */
KVBM_API kvbm_status_t kvbm_manager_registered_hashes(kvbm_manager_t *manager, uint64_t *hashes_out,
                                                      size_t capacity, size_t *n_hashes_out);

/** @brief Whether @p hash is registered (active or inactive); takes no reference. */
KVBM_API bool kvbm_manager_contains(kvbm_manager_t *manager, uint64_t hash);

/**
 * @brief Return every inactive block to the reset pool (one removed event
 *        with all their hashes).
 * @return KVBM_OK; KVBM_ERR_BUSY if any block is still active (mutable or
 *         referenced), in which case nothing changes.
 */
KVBM_API kvbm_status_t kvbm_manager_reset_inactive(kvbm_manager_t *manager);

/** Sizes of the three pools; they always add up to num_blocks. */
typedef struct kvbm_pool_counts {
    size_t total;
    size_t reset;
    size_t active;
    size_t inactive;
} kvbm_pool_counts_t;

/** @brief Consistent snapshot of the pool sizes. */
KVBM_API void kvbm_manager_counts(kvbm_manager_t *manager, kvbm_pool_counts_t *counts_out);

/** @brief Consistent snapshot of the counters and gauges. */
KVBM_API void kvbm_manager_metrics(kvbm_manager_t *manager, kvbm_manager_metrics_t *metrics_out);

/**
 * @brief Write the metrics as Prometheus text exposition to @p out.
 * @return KVBM_OK or KVBM_ERR_IO.
 */
KVBM_API kvbm_status_t kvbm_manager_metrics_prometheus(kvbm_manager_t *manager, FILE *out);

/**
 * @brief Write the metrics as one JSON object (and a newline) to @p out.
 * @return KVBM_OK or KVBM_ERR_IO.
 */
KVBM_API kvbm_status_t kvbm_manager_metrics_json(kvbm_manager_t *manager, FILE *out);

/** @brief Name of the manager's policy ("lru", ...). */
KVBM_API const char *kvbm_manager_policy_name(const kvbm_manager_t *manager);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_MANAGER_H */
