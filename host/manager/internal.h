/*
 * Private layout of kvbm_manager_t, shared by the files that implement it
 * (manager.c for the pools and calls, metrics.c for export).
 */
#ifndef KVBM_HOST_MANAGER_INTERNAL_H
#define KVBM_HOST_MANAGER_INTERNAL_H

#include <pthread.h>
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

/* Per-block metadata, 32 bytes (checked in manager.c). Protected by kvbm_manager.lock. */
typedef struct kvbm__block {
    uint64_t seq_hash;    /* valid when REGISTERED */
    uint64_t parent_hash; /* valid when has_parent */
    uint32_t refcount;
    /* Registered: next block carrying the same hash (allow policy).
     * Reset: next block of the reset pool's stack. */
    uint32_t next_duplicate;
    uint32_t entry; /* registry entry of seq_hash, valid when REGISTERED */
    uint8_t state;  /* block_state_t */
    uint8_t has_parent;
    uint8_t priority;
    uint8_t in_call; /* scratch mark for repeat detection inside one call */
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
    char name[64];

    /* Under lock. */
    kvbm__manager_events_t *events; /* NULL without a sink */
    void *policy_state;
    kvbm__block_t *blocks; /* num_blocks */
    uint32_t reset_head;   /* top of the reset stack, through next_duplicate */
    uint32_t reset_count;
    uint32_t active_count;   /* mutable + referenced registered */
    uint32_t inactive_count; /* registered with refcount 0 == policy size */
    kvbm__registry_t *registry;
    kvbm_manager_metrics_t metrics; /* counters only; gauges filled on read */
};

#endif /* KVBM_HOST_MANAGER_INTERNAL_H */
