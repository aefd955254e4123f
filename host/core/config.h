/*
 * The one importer of versioned configuration structs, used by every create.
 *
 * Every public config struct starts with `uint32_t struct_size; uint32_t
 * version;` (filled by its KVBM_..._CONFIG_INIT) and grows only by appending
 * fields, each version adding its fields at or after the previous version's
 * sizeof (so an older caller's tail padding is never read as a new field).
 * A module keeps, beside its create, the sizeof each published version had:
 *
 *     static const size_t manager_config_sizes[] = {sizeof(kvbm_manager_config_t)};
 *
 * (when version 2 appends a field, the literal v1 size goes first and a
 * static assert pins it). kvbm__config_import then accepts a caller built
 * against any published version: it copies what the caller has and takes
 * the rest from the defaults, as NCCL's parseCommConfig does, and refuses
 * (KVBM_ERR_VERSION) only a version it does not know or a size that is not
 * that version's.
 */
#ifndef KVBM_CORE_CONFIG_H
#define KVBM_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"

/* The two fields every versioned config struct starts with. */
typedef struct kvbm__config_header {
    uint32_t struct_size;
    uint32_t version;
} kvbm__config_header_t;

/*
 * Imports @p caller (a config struct of any published version) into @p out,
 * the current struct of @p size bytes, starting from @p defaults (a current
 * struct, typically its _CONFIG_INIT). @p sizes holds the sizeof of versions
 * 1..n_versions, so n_versions is the current version and sizes[n_versions - 1]
 * must be @p size. On success @p out carries the current struct_size and
 * version; on KVBM_ERR_VERSION it is left untouched.
 */
kvbm_status_t kvbm__config_import(const void *caller, const size_t *sizes, uint32_t n_versions,
                                  const void *defaults, size_t size, void *out);

/* kvbm__config_import for a sizes array whose length is the current version. */
#define KVBM__CONFIG_IMPORT(caller, sizes, defaults, out)                                          \
    kvbm__config_import((caller), (sizes), (uint32_t)(sizeof(sizes) / sizeof((sizes)[0])),         \
                        (defaults), sizeof(*(out)), (out))

#endif /* KVBM_CORE_CONFIG_H */
