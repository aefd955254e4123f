/**
 * @file kvbm.h
 * @brief Umbrella header and version of kvbm, the KV-cache block manager.
 */
#ifndef KVBM_KVBM_H
#define KVBM_KVBM_H

#include "kvbm/backend.h"
#include "kvbm/cache.h"
#include "kvbm/events.h"
#include "kvbm/hash.h"
#include "kvbm/layout.h"
#include "kvbm/manager.h"
#include "kvbm/metrics.h"
#include "kvbm/policy.h"
#include "kvbm/status.h"
#include "kvbm/xfer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_VERSION_MAJOR 0
#define KVBM_VERSION_MINOR 1
#define KVBM_VERSION_PATCH 0
/** Version as one comparable number: major * 10000 + minor * 100 + patch. */
#define KVBM_VERSION_CODE                                                                          \
    (KVBM_VERSION_MAJOR * 10000 + KVBM_VERSION_MINOR * 100 + KVBM_VERSION_PATCH)

/** @brief Version of the linked library as "major.minor.patch". */
const char *kvbm_version(void);

/** @brief KVBM_VERSION_CODE of the linked library (compare with the header's). */
int kvbm_version_code(void);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_KVBM_H */
