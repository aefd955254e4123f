/* The table of built-in eviction policies, looked up by name. */
#include <string.h>

#include "kvbm/policy.h"

/* X(name, getter). Appended to as policies land; order is the listing order. */
#define KVBM_BUILTIN_POLICIES(X)                                                                   \
    X("lru", kvbm_policy_lru)                                                                      \
    X("multi-lru", kvbm_policy_multi_lru)                                                          \
    X("lineage", kvbm_policy_lineage)                                                              \
    X("s3-fifo", kvbm_policy_s3fifo)                                                               \
    X("priority", kvbm_policy_priority)                                                            \
    X("slru", kvbm_policy_slru)                                                                    \
    X("belady", kvbm_policy_belady) /* offline bound: listed last, the ceiling */

typedef struct builtin_policy {
    const char *name;
    const kvbm_policy_ops_t *(*get)(void);
} builtin_policy_t;

static const builtin_policy_t builtin_policies[] = {
#define KVBM_POLICY_ROW(name, getter) {name, getter},
    KVBM_BUILTIN_POLICIES(KVBM_POLICY_ROW)
#undef KVBM_POLICY_ROW
};

static const char *const builtin_policy_names[] = {
#define KVBM_POLICY_NAME(name, getter) name,
    KVBM_BUILTIN_POLICIES(KVBM_POLICY_NAME)
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
