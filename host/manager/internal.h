/*
 * Private layout of kvbm_manager_t, shared by the files that implement it
 * (manager.c for the pools and calls, metrics.c for export).
 */
#ifndef KVBM_HOST_MANAGER_INTERNAL_H
#define KVBM_HOST_MANAGER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "events.h"
#include "kvbm/manager.h"
#include "registry.h"

typedef enum block_state {
    BLOCK_RESET = 0,      /* in the reset pool */
    BLOCK_MUTABLE = 1,    /* allocated, not registered; refcount 1 */
    BLOCK_REGISTERED = 2, /* carries a hash; active if refcount > 0, else inactive */
    BLOCK_WITHDRAWN = 3,  /* hash withdrawn by invalidate while held; reset on last release */
} block_state_t;

/*
 * Per-block metadata, 32 bytes (checked in manager.c). Protected by
 * kvbm_manager.lock. The hashes, has_parent and priority sit where
 * kvbm_policy_entry_t has them, so a policy entry is this record copied
 * whole with block_id written over refcount and next_duplicate (policy_add
 * in manager.c; the offsets are checked there).
 */
typedef struct kvbm__block {
    uint32_t refcount;
    /* Registered: next block carrying the same hash (allow policy).
     * Reset: next block of the stack of released blocks. */
    uint32_t next_duplicate;
    uint64_t seq_hash;    /* valid when REGISTERED */
    uint64_t parent_hash; /* valid when has_parent */
    uint8_t has_parent;   /* 0 or 1 (read as a bool in policy entries) */
    uint8_t priority;
    uint8_t state;   /* block_state_t */
    uint8_t in_call; /* scratch mark for repeat detection inside one call */
    uint32_t home;   /* kvbm__registry_home(seq_hash), valid when REGISTERED */
} kvbm__block_t;

struct kvbm_manager {
    /* Guards everything below except the fields marked immutable. It is the
     * only lock of a manager, taken once per public call and never held
     * while calling out, except into the policy (which must not re-enter)
     * and the event callback (documented not to re-enter). */
    pthread_mutex_t lock;

    /* Immutable after create. */
    uint32_t num_blocks;
    kvbm_duplication_t duplication;
    const kvbm_policy_ops_t *policy;
    /* Whether the policy hears of accesses to active blocks (false when its
     * touch_batch is kvbm_policy_ignore_touches: they are not gathered). */
    bool policy_touches_active;
    /* Whether the policy takes inserts and acquires by block id alone
     * (kvbm__policy_by_id). */
    bool policy_by_id;
    /* Whether the policy has a hint op other than kvbm_policy_ignore_hint. */
    bool policy_takes_hints;
    char name[KVBM_MANAGER_NAME_MAX + 1]; /* checked at create: safe in every export */

    /* Under lock. */
    kvbm__manager_events_t *events; /* NULL without a sink */
    void *policy_state;
    kvbm__block_t *blocks; /* num_blocks */
    /* The reset pool: the stack of released blocks (through next_duplicate)
     * on top of the blocks never handed out, never_used and above in id
     * order. Creating a manager touches no block. */
    uint32_t reset_head; /* top of the stack of released blocks */
    uint32_t never_used; /* blocks [never_used, num_blocks) were never allocated */
    /* The pool counts are size_t, not uint32_t like the block fields, so the
     * compiler knows a count update never writes a block (and keeps block
     * fields in registers across it in the hot loops). */
    size_t reset_count;
    size_t active_count;   /* mutable + referenced registered */
    size_t inactive_count; /* registered with refcount 0 == policy size */
    kvbm__registry_t registry;
    /* Set once some block's reference count passed REFS_NEAR_LIMIT: from
     * then on, calls that take references check every block first. */
    bool refs_near_limit;
    kvbm_manager_metrics_t metrics; /* counters only; gauges filled on read */
};

#endif /* KVBM_HOST_MANAGER_INTERNAL_H */
