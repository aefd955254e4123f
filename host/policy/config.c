/* The policy config's published sizes and its importer (policy/config.h). */
#include "config.h"
#include "core/config.h"

/* sizeof(kvbm_policy_config_t) at each published version (core/config.h). */
static const size_t policy_config_sizes[] = {sizeof(kvbm_policy_config_t)};

kvbm_status_t kvbm__policy_config_import(const kvbm_policy_config_t *caller,
                                         kvbm_policy_config_t *out)
{
    const kvbm_policy_config_t defaults = KVBM_POLICY_CONFIG_INIT;
    kvbm_policy_config_t imported;
    kvbm_status_t status = KVBM__CONFIG_IMPORT(caller, policy_config_sizes, &defaults, &imported);
    if (status == KVBM_OK)
        *out = imported;
    return status;
}
