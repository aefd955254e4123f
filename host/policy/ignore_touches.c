/* kvbm_policy_ignore_touches: see kvbm/policy.h. */
#include "kvbm/policy.h"

void kvbm_policy_ignore_touches(void *state, const kvbm_policy_entry_t *entries, size_t count)
{
    (void)state;
    (void)entries;
    (void)count;
}
