/*
 * The manager's one way to call its policy during a call: operations are
 * gathered in order into a batch on the stack and handed over one batch at
 * a time (kvbm_policy_ops_t version 2), or one by one to a version-1 table.
 * A batch holds one kind of operation; adding another kind, or a full
 * batch, hands the gathered ones over first, so the policy sees exactly the
 * order of the single operations. The entries are never zeroed: a batch
 * costs its count and its kind to start. A version-4 policy that orders
 * blocks by id alone gets bare ids for inserts, acquires and removes.
 *
 * Used under the manager lock only; every call flushes before it unlocks.
 */
#ifndef KVBM_HOST_MANAGER_POLICY_BATCH_H
#define KVBM_HOST_MANAGER_POLICY_BATCH_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/policy.h"

/* The first kvbm_policy_ops_t version with the batch operations. */
#define KVBM__POLICY_BATCH_VERSION 3u

/* The first kvbm_policy_ops_t version with the batches by block id. */
#define KVBM__POLICY_IDS_VERSION 4u

/* Entries a batch gathers before handing them over (2 KiB of stack). */
#define KVBM__POLICY_BATCH_ENTRIES 64

typedef enum kvbm__policy_op {
    KVBM__POLICY_OP_NONE = 0,
    KVBM__POLICY_OP_INSERT,  /* insert */
    KVBM__POLICY_OP_ACQUIRE, /* touch(inactive) then remove */
    KVBM__POLICY_OP_TOUCH,   /* touch(active) */
    KVBM__POLICY_OP_REMOVE,  /* remove, no access (acquire, invalidate) */
} kvbm__policy_op_t;

typedef struct kvbm__policy_batch {
    const kvbm_policy_ops_t *ops;
    void *state;
    /* The policy takes inserts, acquires and removes as bare ids
     * (kvbm__policy_by_id); touches still come as entries. */
    bool by_id;
    kvbm__policy_op_t op;
    size_t count;
    union {
        kvbm_policy_entry_t entries[KVBM__POLICY_BATCH_ENTRIES]; /* [0, count) valid */
        uint32_t ids[KVBM__POLICY_BATCH_ENTRIES]; /* instead, when by_id and not a touch */
    };
} kvbm__policy_batch_t;

/* Whether a policy table takes inserts and acquires by block id alone. */
static inline bool kvbm__policy_by_id(const kvbm_policy_ops_t *ops)
{
    return ops->version >= KVBM__POLICY_IDS_VERSION &&
           ops->insert_ids != kvbm_policy_needs_entries &&
           ops->acquire_ids != kvbm_policy_needs_entries;
}

/* @p by_id: kvbm__policy_by_id(ops), decided once by the owner. */
static inline void kvbm__policy_batch_start(kvbm__policy_batch_t *batch,
                                            const kvbm_policy_ops_t *ops, void *state, bool by_id)
{
    batch->ops = ops;
    batch->state = state;
    batch->by_id = by_id;
    batch->op = KVBM__POLICY_OP_NONE;
    batch->count = 0;
}

/* Hands a non-empty batch's operations to the policy; the batch is then
 * empty. Callers go through kvbm__policy_batch_flush. */
void kvbm__policy_batch_hand_over(kvbm__policy_batch_t *batch);

/* Hands the gathered operations to the policy; the batch is then empty.
 * Inline, so an empty batch (most calls' end) costs a compare, not a call. */
static inline void kvbm__policy_batch_flush(kvbm__policy_batch_t *batch)
{
    if (batch->count != 0)
        kvbm__policy_batch_hand_over(batch);
}

/* Makes room for one more operation of kind @p op; returns its index. */
static inline size_t kvbm__policy_batch_slot(kvbm__policy_batch_t *batch, kvbm__policy_op_t op)
{
    if (batch->op != op || batch->count == KVBM__POLICY_BATCH_ENTRIES) {
        kvbm__policy_batch_flush(batch);
        batch->op = op;
    }
    return batch->count++;
}

/* The entry to fill for one more operation of kind @p op (not by id). */
static inline kvbm_policy_entry_t *kvbm__policy_batch_add(kvbm__policy_batch_t *batch,
                                                          kvbm__policy_op_t op)
{
    return &batch->entries[kvbm__policy_batch_slot(batch, op)];
}

/* One more insert, acquire or remove of block @p id in a batch by id. */
static inline void kvbm__policy_batch_add_id(kvbm__policy_batch_t *batch, kvbm__policy_op_t op,
                                             uint32_t id)
{
    batch->ids[kvbm__policy_batch_slot(batch, op)] = id;
}

/* Inserts ids[0, count) in order, after what the batch gathered (a batch by
 * id only): the caller's array goes to the policy as it is. Inline, as are
 * the two below: one call into the policy per manager call, no layer
 * between. */
static inline void kvbm__policy_batch_insert_ids(kvbm__policy_batch_t *batch, const uint32_t *ids,
                                                 size_t count)
{
    assert(batch->by_id);
    kvbm__policy_batch_flush(batch);
    if (count > 0)
        batch->ops->insert_ids(batch->state, ids, count);
}

/* The same for acquires (touch, then remove) of inactive blocks. */
static inline void kvbm__policy_batch_acquire_ids(kvbm__policy_batch_t *batch, const uint32_t *ids,
                                                  size_t count)
{
    assert(batch->by_id);
    kvbm__policy_batch_flush(batch);
    if (count > 0)
        batch->ops->acquire_ids(batch->state, ids, count);
}

/* A version-1 or -2 table's victims one by one (kvbm__policy_pop_victims). */
size_t kvbm__policy_pop_victims_one_by_one(const kvbm_policy_ops_t *ops, void *state,
                                           uint32_t *ids_out, size_t count);

/* Up to @p count victims from the policy, in order; returns how many. */
static inline size_t kvbm__policy_pop_victims(const kvbm_policy_ops_t *ops, void *state,
                                              uint32_t *ids_out, size_t count)
{
    if (ops->version >= KVBM__POLICY_BATCH_VERSION)
        return ops->pop_victims(state, ids_out, count);
    return kvbm__policy_pop_victims_one_by_one(ops, state, ids_out, count);
}

#endif /* KVBM_HOST_MANAGER_POLICY_BATCH_H */
