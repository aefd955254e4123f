/* Policy operations in batches; see policy_batch.h. */
#include "policy_batch.h"

#include <assert.h>
#include <stdbool.h>

/* A table before the batches: the single operations, in order. */
static void flush_one_by_one(const kvbm__policy_batch_t *batch)
{
    const kvbm_policy_ops_t *ops = batch->ops;
    for (size_t i = 0; i < batch->count; i++) {
        const kvbm_policy_entry_t *entry = &batch->entries[i];
        switch (batch->op) {
        case KVBM__POLICY_OP_INSERT:
            ops->insert(batch->state, entry);
            break;
        case KVBM__POLICY_OP_ACQUIRE:
            ops->touch(batch->state, entry, true);
            ops->remove(batch->state, entry->block_id);
            break;
        case KVBM__POLICY_OP_TOUCH:
            ops->touch(batch->state, entry, false);
            break;
        case KVBM__POLICY_OP_REMOVE:
        case KVBM__POLICY_OP_NONE:
            ops->remove(batch->state, entry->block_id);
            break;
        }
    }
}

/* A batch by id: inserts and acquires go over as they are. */
static void flush_ids(const kvbm__policy_batch_t *batch)
{
    const kvbm_policy_ops_t *ops = batch->ops;
    if (batch->op == KVBM__POLICY_OP_INSERT) {
        ops->insert_ids(batch->state, batch->ids, batch->count);
    } else if (batch->op == KVBM__POLICY_OP_ACQUIRE) {
        ops->acquire_ids(batch->state, batch->ids, batch->count);
    } else {
        assert(batch->op == KVBM__POLICY_OP_REMOVE);
        for (size_t i = 0; i < batch->count; i++)
            ops->remove(batch->state, batch->ids[i]);
    }
}

void kvbm__policy_batch_hand_over(kvbm__policy_batch_t *batch)
{
    assert(batch->count > 0);
    const kvbm_policy_ops_t *ops = batch->ops;
    if (batch->by_id && batch->op != KVBM__POLICY_OP_TOUCH)
        flush_ids(batch);
    else if (ops->version < KVBM__POLICY_BATCH_VERSION || batch->op == KVBM__POLICY_OP_REMOVE)
        flush_one_by_one(batch); /* remove has no batch: it is never on a hot path */
    else if (batch->op == KVBM__POLICY_OP_INSERT)
        ops->insert_batch(batch->state, batch->entries, batch->count);
    else if (batch->op == KVBM__POLICY_OP_ACQUIRE)
        ops->acquire_batch(batch->state, batch->entries, batch->count);
    else
        ops->touch_batch(batch->state, batch->entries, batch->count);
    batch->count = 0;
}

size_t kvbm__policy_pop_victims_one_by_one(const kvbm_policy_ops_t *ops, void *state,
                                           uint32_t *ids_out, size_t count)
{
    size_t popped = 0;
    while (popped < count && ops->pop_victim(state, &ids_out[popped]))
        popped++;
    return popped;
}
