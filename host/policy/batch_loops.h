/*
 * The batch operations of kvbm_policy_ops_t (version 3) as loops over a
 * policy's single operations, for the policies with nothing to gain from
 * seeing a batch at once. A policy file named prefix_insert, prefix_remove,
 * prefix_pop_victim and prefix_touch writes
 *     KVBM__POLICY_BATCH_LOOPS(prefix)
 * after them and KVBM__POLICY_BATCH_SLOTS(prefix) in its ops table (which
 * also says the policy needs whole entries: no batches by id).
 */
#ifndef KVBM_HOST_POLICY_BATCH_LOOPS_H
#define KVBM_HOST_POLICY_BATCH_LOOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/policy.h"

#define KVBM__POLICY_BATCH_LOOPS(prefix)                                                           \
    static void prefix##_insert_batch(void *state, const kvbm_policy_entry_t *entries,             \
                                      size_t count)                                                \
    {                                                                                              \
        for (size_t i = 0; i < count; i++)                                                         \
            prefix##_insert(state, &entries[i]);                                                   \
    }                                                                                              \
    static void prefix##_acquire_batch(void *state, const kvbm_policy_entry_t *entries,            \
                                       size_t count)                                               \
    {                                                                                              \
        for (size_t i = 0; i < count; i++) {                                                       \
            prefix##_touch(state, &entries[i], true);                                              \
            prefix##_remove(state, entries[i].block_id);                                           \
        }                                                                                          \
    }                                                                                              \
    static void prefix##_touch_batch(void *state, const kvbm_policy_entry_t *entries,              \
                                     size_t count)                                                 \
    {                                                                                              \
        for (size_t i = 0; i < count; i++)                                                         \
            prefix##_touch(state, &entries[i], false);                                             \
    }                                                                                              \
    static size_t prefix##_pop_victims(void *state, uint32_t *block_ids_out, size_t count)         \
    {                                                                                              \
        size_t popped = 0;                                                                         \
        while (popped < count && prefix##_pop_victim(state, &block_ids_out[popped]))               \
            popped++;                                                                              \
        return popped;                                                                             \
    }

#define KVBM__POLICY_BATCH_SLOTS(prefix)                                                           \
    .insert_batch = prefix##_insert_batch, .acquire_batch = prefix##_acquire_batch,                \
    .touch_batch = prefix##_touch_batch, .pop_victims = prefix##_pop_victims,                      \
    .insert_ids = kvbm_policy_needs_entries, .acquire_ids = kvbm_policy_needs_entries

#endif /* KVBM_HOST_POLICY_BATCH_LOOPS_H */
