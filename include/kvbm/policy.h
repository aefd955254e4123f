/**
 * @file policy.h
 * @brief The inactive-pool eviction policy interface.
 *
 * A policy orders the inactive (cached, evictable) blocks of one manager. The
 * manager owns the blocks; the policy only keeps an ordering over block ids
 * 0..capacity-1, preallocated at create time so no operation allocates.
 *
 * Threading: the manager calls every operation with its own lock held, so a
 * policy instance is never entered by two threads at once and needs no lock
 * of its own. A policy must not call back into the manager.
 *
 * The table is versioned like SQLite's VFS: fields are appended, never
 * reordered. Every slot is filled (no NULLs); an operation a policy has no use
 * for points at a function that does nothing. The manager accepts a table of
 * any published version, and calls the single operations of a table older
 * than version 3 where a version-3 table gets batches.
 */
#ifndef KVBM_POLICY_H
#define KVBM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/config_init.h"
#include "kvbm/export.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version 1 tables end at size; version 2 appends hint; version 3 the
 * batches after it. */
#define KVBM_POLICY_OPS_VERSION    3u
#define KVBM_POLICY_CONFIG_VERSION 1u

/** No block / no parent. */
#define KVBM_BLOCK_NONE UINT32_MAX

/** What a policy learns about a block when it enters the inactive pool. */
typedef struct kvbm_policy_entry {
    uint32_t block_id;    /**< dense id, < capacity */
    uint64_t seq_hash;    /**< the block's sequence hash */
    uint64_t parent_hash; /**< parent's sequence hash, valid when has_parent */
    bool has_parent;      /**< false for the first block of a sequence */
    uint8_t priority;     /**< 0..100 retention priority given at registration */
} kvbm_policy_entry_t;

/**
 * What the engine knows about a block when it registers it (the optional
 * hints of kvbm_register_opts_t), given to version-2 policies by the hint op.
 */
typedef struct kvbm_policy_hint {
    uint32_t request_blocks; /**< length in blocks of the request it belongs to (>= 1) */
    uint32_t position;       /**< its index in that request */
    bool last;               /**< position == request_blocks - 1 */
    uint8_t priority;        /**< the registration priority (0..100) */
} kvbm_policy_hint_t;

/**
 * Offline oracle for the belady bound: the logical time at which @p seq_hash
 * is next used, or UINT64_MAX if never. Called with the manager lock held.
 */
typedef uint64_t (*kvbm_next_use_fn)(void *ctx, uint64_t seq_hash);

/** Tuning shared by the built-in policies; each reads the fields it knows. */
typedef struct kvbm_policy_config {
    uint32_t struct_size; /**< sizeof(kvbm_policy_config_t) */
    uint32_t version;     /**< KVBM_POLICY_CONFIG_VERSION */
    /** multi-lru: access-count thresholds of levels 1..3 (defaults 3, 8, 15). */
    uint8_t multi_lru_thresholds[3];
    /** Frequency sketch width in counters; 0 sizes it from the capacity. */
    uint32_t sketch_width;
    /** belady: next-use oracle and its context. */
    kvbm_next_use_fn next_use;
    void *next_use_ctx;
} kvbm_policy_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_POLICY_CONFIG_DEFAULTS(X, P)                                                          \
    X(P, struct_size, sizeof(kvbm_policy_config_t))                                                \
    X(P, version, KVBM_POLICY_CONFIG_VERSION)                                                      \
    X(P, multi_lru_thresholds[0], 3)                                                               \
    X(P, multi_lru_thresholds[1], 8)                                                               \
    X(P, multi_lru_thresholds[2], 15)

#ifdef __cplusplus
#define KVBM_POLICY_CONFIG_INIT KVBM_CONFIG_INIT_CXX(kvbm_policy_config_t, kvbm_policy_config_init)
#else
#define KVBM_POLICY_CONFIG_INIT                                                                    \
    {                                                                                              \
        KVBM_POLICY_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                       \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_POLICY_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_policy_config_init(kvbm_policy_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_POLICY_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

typedef struct kvbm_policy_ops {
    uint32_t version; /**< KVBM_POLICY_OPS_VERSION */
    const char *name; /**< short name: "lru", "multi-lru", ... */
    /**
     * Build an empty policy for block ids 0..capacity-1. @p config is never
     * NULL (the manager passes defaults). On error nothing is allocated.
     */
    kvbm_status_t (*create)(const kvbm_policy_config_t *config, uint32_t capacity,
                            void **state_out);
    /** Free everything create made; state may be NULL. */
    void (*destroy)(void *state);
    /** The block became inactive (it is not in the policy yet). */
    void (*insert)(void *state, const kvbm_policy_entry_t *entry);
    /** The block left the inactive pool without eviction (it was reacquired). */
    void (*remove)(void *state, uint32_t block_id);
    /**
     * Pick the next victim among the inactive blocks, remove it from the
     * policy and return its id. Returns false only when the policy is empty.
     */
    bool (*pop_victim)(void *state, uint32_t *block_id_out);
    /**
     * An access to a registered block (match or touching scan hit, or a
     * registration). @p inactive says whether it is currently in the policy.
     * Frequency policies count it; recency policies may refresh it.
     */
    void (*touch)(void *state, const kvbm_policy_entry_t *entry, bool inactive);
    /** Number of blocks the policy holds. */
    size_t (*size)(const void *state);
    /* ---- version 2 ---- */
    /**
     * Registration hints, called right after the registration touch of each
     * block when the caller gave them (kvbm_register_opts_t.request_blocks
     * != 0); never for version-1 tables. A policy with no use for them
     * points at a function that ignores them.
     */
    void (*hint)(void *state, const kvbm_policy_entry_t *entry, const kvbm_policy_hint_t *hint);

    /*
     * ---- version 3: batches ---- A manager call hands its policy operations over
     * in batches of up to a few dozen, in the order the single operations
     * would have come, so a policy pays one indirect call per batch and may
     * merge the steps of an operation (LRU's acquire is one unlink). Each is
     * defined as the single operations in a loop; a policy with nothing to
     * gain from a batch implements it as that loop.
     */
    /** insert(entry) for each entry, in order (blocks a release made inactive). */
    void (*insert_batch)(void *state, const kvbm_policy_entry_t *entries, size_t count);
    /**
     * touch(entry, true) then remove(entry->block_id) for each entry, in
     * order: inactive blocks that a match, a touching scan or a deduplicated
     * registration accessed and acquired.
     */
    void (*acquire_batch)(void *state, const kvbm_policy_entry_t *entries, size_t count);
    /** touch(entry, false) for each entry, in order: accesses to active
     *  blocks (registrations, matches of blocks already held). */
    void (*touch_batch)(void *state, const kvbm_policy_entry_t *entries, size_t count);
    /**
     * pop_victim up to @p count times, writing the victims in order to
     * @p block_ids_out; returns how many (fewer only if the policy empties).
     */
    size_t (*pop_victims)(void *state, uint32_t *block_ids_out, size_t count);
} kvbm_policy_ops_t;

/**
 * The built-in policies, in listing order: X(name, getter). Everything that
 * enumerates policies comes from this one list: the getters' prototypes
 * below, kvbm_policy_find(), kvbm_policy_names(), the replay's --help and
 * sweep, and the tests. Adding a policy is its file in host/policy/ plus
 * one line here. Each getter returns a static table; thread-safe. See
 * docs/POLICIES.md for each one's rule, cost and configuration.
 *
 * - "lru": release order, oldest first; an inactive touch refreshes.
 * - "multi-lru": four LRU levels chosen by a TinyLFU sketch's access count
 *   (config.multi_lru_thresholds, config.sketch_width); coldest level first.
 *   create returns KVBM_ERR_INVALID_ARG if the thresholds decrease or the
 *   sketch width is above 2^28.
 * - "multi-lru-follow": multi-lru whose levels follow the sketch down as it
 *   ages (the oldest block of each upper level is re-estimated before every
 *   eviction and demoted while its count is below its level). Same
 *   configuration and errors as multi-lru.
 * - "lineage": only blocks without inactive children are evicted, oldest first.
 * - "s3-fifo": S3-FIFO (small, main and ghost FIFOs), scan resistant.
 * - "priority": lowest entry priority first, LRU among equals.
 * - "slru": segmented LRU with access counts remembered by hash across
 *   evictions (a ghost of 4 x capacity hashes). Victim: once-used deepest
 *   blocks of a release run, then once-used blocks, then reused blocks, each
 *   oldest release first.
 * - "adaptive": the slru segments (tails, once-used, reused) plus a cold one
 *   under one of seven victim rules (lru; lru with tails first; lru with
 *   reused blocks kept one capacity longer; slru; and the last three with
 *   cold blocks evicted with the tails), chosen online by miniature
 *   simulations of each rule on a hash sample; lru unless another rule is
 *   measurably better. Takes its tail segment from the last-block hint when
 *   given; cold blocks are once-used blocks of request length/position
 *   classes (from the hints) whose learned reuse rate is low.
 * - "belady": farthest next use first (config.next_use, required: create
 *   returns KVBM_ERR_INVALID_ARG without it). An offline bound for replays,
 *   listed last: the ceiling.
 */
#define KVBM_POLICY_LIST(X)                                                                        \
    X("lru", kvbm_policy_lru)                                                                      \
    X("multi-lru", kvbm_policy_multi_lru)                                                          \
    X("multi-lru-follow", kvbm_policy_multi_lru_follow)                                            \
    X("lineage", kvbm_policy_lineage)                                                              \
    X("s3-fifo", kvbm_policy_s3fifo)                                                               \
    X("priority", kvbm_policy_priority)                                                            \
    X("slru", kvbm_policy_slru)                                                                    \
    X("adaptive", kvbm_policy_adaptive)                                                            \
    X("belady", kvbm_policy_belady)

#define KVBM_POLICY_GETTER(name, getter) KVBM_API const kvbm_policy_ops_t *getter(void);
KVBM_POLICY_LIST(KVBM_POLICY_GETTER)
#undef KVBM_POLICY_GETTER

/**
 * @brief A hint op for policies that do not use registration hints: it does
 *        nothing, and a manager whose policy table points its hint here
 *        never builds the hints. Thread-safe.
 */
KVBM_API void kvbm_policy_ignore_hint(void *state, const kvbm_policy_entry_t *entry,
                                      const kvbm_policy_hint_t *hint);

/**
 * @brief A touch_batch for policies that ignore accesses to active blocks
 *        (LRU does): it does nothing, and a manager whose policy table
 *        points its touch_batch here skips gathering those accesses at all.
 *        Thread-safe.
 */
KVBM_API void kvbm_policy_ignore_touches(void *state, const kvbm_policy_entry_t *entries,
                                         size_t count);

/**
 * @brief Find a built-in policy by name (a name of KVBM_POLICY_LIST).
 *        Returns NULL when the name is unknown. Thread-safe.
 */
KVBM_API const kvbm_policy_ops_t *kvbm_policy_find(const char *name);

/**
 * @brief Names of the built-in policies, NULL-terminated, in the order of
 *        KVBM_POLICY_LIST. Static; thread-safe.
 */
KVBM_API const char *const *kvbm_policy_names(void);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_POLICY_H */
