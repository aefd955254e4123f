/*
 * Importing a caller's kvbm_policy_config_t (core/config.h rules), for the
 * modules that hand one to a policy's create.
 */
#ifndef KVBM_POLICY_CONFIG_H
#define KVBM_POLICY_CONFIG_H

#include "kvbm/policy.h"

/* @p caller of any published version into @p out (current, defaults for
 * what the caller lacks). Returns KVBM_OK or KVBM_ERR_VERSION (out untouched). */
kvbm_status_t kvbm__policy_config_import(const kvbm_policy_config_t *caller,
                                         kvbm_policy_config_t *out);

#endif /* KVBM_POLICY_CONFIG_H */
