/* The built-in eviction policies of KVBM_POLICY_LIST (kvbm/policy.h), by name. */
#include <string.h>

#include "kvbm/policy.h"

typedef struct builtin_policy {
    const char *name;
    const kvbm_policy_ops_t *(*get)(void);
} builtin_policy_t;

static const builtin_policy_t builtin_policies[] = {
#define KVBM_POLICY_ROW(name, getter) {name, getter},
    KVBM_POLICY_LIST(KVBM_POLICY_ROW)
#undef KVBM_POLICY_ROW
};

static const char *const builtin_policy_names[] = {
#define KVBM_POLICY_NAME(name, getter) name,
    KVBM_POLICY_LIST(KVBM_POLICY_NAME)
#undef KVBM_POLICY_NAME
        NULL};

const kvbm_policy_ops_t *kvbm_policy_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(builtin_policies) / sizeof(builtin_policies[0]); i++) {
        if (strcmp(builtin_policies[i].name, name) == 0)
            return builtin_policies[i].get();
    }
    return NULL;
}

const char *const *kvbm_policy_names(void)
{
    return builtin_policy_names;
}
