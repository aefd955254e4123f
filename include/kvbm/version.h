/**
 * @file version.h
 * @brief Version of kvbm: the header's macros and the linked library's value.
 */
#ifndef KVBM_VERSION_H
#define KVBM_VERSION_H

#include "kvbm/export.h"

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
KVBM_API const char *kvbm_version(void);

/** @brief KVBM_VERSION_CODE of the linked library (compare with the header's). */
KVBM_API int kvbm_version_code(void);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_VERSION_H */
