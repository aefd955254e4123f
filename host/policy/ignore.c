/* The do-nothing operations a policy table may point at (kvbm/policy.h). */
#include "kvbm/policy.h"

void kvbm_policy_ignore_hint(void *state, const kvbm_policy_entry_t *entry,
                             const kvbm_policy_hint_t *hint)
{
    (void)state;
    (void)entry;
    (void)hint;
}

void kvbm_policy_ignore_touches(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    (void)state;
    (void)entries;
    (void)count;
}

void kvbm_policy_needs_entries(void *state, const uint32_t *block_ids, size_t count)
{
    (void)state;
    (void)block_ids;
    (void)count;
}
