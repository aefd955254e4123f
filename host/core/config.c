/* The versioned config importer; the rules are in core/config.h. */
#include <assert.h>
#include <string.h>

#include "config.h"
#include "error.h"

kvbm_status_t kvbm__config_import(const void *caller, const size_t *sizes, uint32_t n_versions,
                                  const void *defaults, size_t size, void *out)
{
    assert(caller != NULL && caller != out && n_versions > 0 && sizes[n_versions - 1] == size);
    kvbm__config_header_t header;
    memcpy(&header, caller, sizeof(header));
    if (header.version == 0 || header.version > n_versions ||
        header.struct_size != sizes[header.version - 1] || header.struct_size > size)
        return kvbm__fail(KVBM_ERR_VERSION,
                          "config struct of version %u, %u bytes: this library knows versions "
                          "1..%u (version %u is %zu bytes)",
                          header.version, header.struct_size, n_versions, n_versions, size);
    memcpy(out, defaults, size);
    memcpy(out, caller, header.struct_size);
    kvbm__config_header_t current = {.struct_size = (uint32_t)size, .version = n_versions};
    memcpy(out, &current, sizeof(current));
    return KVBM_OK;
}
