/*
 * The hint op of the built-in policies that do not use registration hints
 * (kvbm_policy_ops_t.hint must never be NULL in a version-2 table).
 */
#ifndef KVBM_HOST_POLICY_IGNORE_HINT_H
#define KVBM_HOST_POLICY_IGNORE_HINT_H

#include "kvbm/policy.h"

/* Does nothing. */
void kvbm__policy_ignore_hint(void *state, const kvbm_policy_entry_t *entry,
                              const kvbm_policy_hint_t *hint);

#endif /* KVBM_HOST_POLICY_IGNORE_HINT_H */
