/* Library version, from the macros in kvbm/version.h. */
#include "kvbm/version.h"

#define KVBM_STRINGIFY_(x) #x
#define KVBM_STRINGIFY(x)  KVBM_STRINGIFY_(x)

const char *kvbm_version(void)
{
    return KVBM_STRINGIFY(KVBM_VERSION_MAJOR) "." KVBM_STRINGIFY(
        KVBM_VERSION_MINOR) "." KVBM_STRINGIFY(KVBM_VERSION_PATCH);
}

int kvbm_version_code(void)
{
    return KVBM_VERSION_CODE;
}
