/**
 * @file layout.h
 * @brief Where each block's KV data lives inside a memory pool.
 *
 * A layout describes a pool of @c num_blocks KV blocks. One block holds, for
 * each of @c num_layers layers and each of @c outer_dim outer slots (2 for
 * K and V, 1 for MLA), one @e chunk of
 * @c tokens_per_block x @c inner_dim x @c elem_size bytes.
 *
 * Two arrangements:
 * - KVBM_LAYOUT_FULLY_CONTIGUOUS: one slab per block, block-major, then layer,
 *   then outer. A block is one contiguous region. The slab stride is the slab
 *   size rounded up to @c alignment.
 * - KVBM_LAYOUT_LAYER_SEPARATE: one region per layer, block-major inside it.
 *   With @c outer_contiguous (the default) a block's K and V of one layer are
 *   adjacent, so a block is @c num_layers regions of outer_dim chunks each.
 *   Without it each (layer, outer) plane is separate (the K tensor / V tensor
 *   arrangement of many engines) and a block is num_layers x outer_dim regions
 *   of one chunk each. Each region start is aligned to @c alignment.
 *
 * Offsets are relative to the pool base; the pool must be aligned to at
 * least @c alignment. A layout is immutable after creation: every query is
 * pure and may be called from any thread at once.
 */
#ifndef KVBM_LAYOUT_H
#define KVBM_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/config_init.h"
#include "kvbm/export.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_LAYOUT_CONFIG_VERSION 1u

typedef enum kvbm_layout_kind {
    KVBM_LAYOUT_FULLY_CONTIGUOUS = 0,
    KVBM_LAYOUT_LAYER_SEPARATE = 1,
} kvbm_layout_kind_t;

/** Geometry and arrangement of a pool. All counts and sizes must be > 0. */
typedef struct kvbm_layout_config {
    uint32_t struct_size;      /**< sizeof(kvbm_layout_config_t) */
    uint32_t version;          /**< KVBM_LAYOUT_CONFIG_VERSION */
    kvbm_layout_kind_t kind;   /**< arrangement */
    uint32_t num_blocks;       /**< blocks in the pool */
    uint32_t num_layers;       /**< model layers */
    uint32_t outer_dim;        /**< 2 for K/V, 1 for MLA */
    uint32_t tokens_per_block; /**< tokens in one block */
    uint32_t inner_dim;        /**< kv heads x head dim */
    uint32_t elem_size;        /**< bytes per element */
    size_t alignment;          /**< region start alignment, a power of two */
    bool outer_contiguous;     /**< LAYER_SEPARATE only: K and V of a block adjacent */
} kvbm_layout_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_LAYOUT_CONFIG_DEFAULTS(X, P)                                                          \
    X(P, struct_size, sizeof(kvbm_layout_config_t))                                                \
    X(P, version, KVBM_LAYOUT_CONFIG_VERSION)                                                      \
    X(P, kind, KVBM_LAYOUT_FULLY_CONTIGUOUS)                                                       \
    X(P, outer_dim, 2)                                                                             \
    X(P, elem_size, 2)                                                                             \
    X(P, alignment, 256)                                                                           \
    X(P, outer_contiguous, true)

#ifdef __cplusplus
#define KVBM_LAYOUT_CONFIG_INIT KVBM_CONFIG_INIT_CXX(kvbm_layout_config_t, kvbm_layout_config_init)
#else
#define KVBM_LAYOUT_CONFIG_INIT                                                                    \
    {                                                                                              \
        KVBM_LAYOUT_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                       \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_LAYOUT_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_layout_config_init(kvbm_layout_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_LAYOUT_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/** One contiguous byte range of a pool. */
typedef struct kvbm_region {
    size_t offset; /**< from the pool base */
    size_t bytes;
} kvbm_region_t;

/** Opaque, immutable layout. */
typedef struct kvbm_layout kvbm_layout_t;

/**
 * @brief Validate a configuration and build a layout.
 * @param[in]  config     geometry; copied, the caller keeps ownership.
 * @param[out] layout_out the new layout, owned by the caller
 *                        (free with kvbm_layout_destroy); set only on success.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL pointer, zero count or size,
 *         alignment not a power of two, unknown kind); KVBM_ERR_VERSION
 *         (struct_size/version unknown); KVBM_ERR_OVERFLOW (a size does not fit
 *         in size_t); KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_layout_create(const kvbm_layout_config_t *config,
                                          kvbm_layout_t **layout_out);

/** @brief Free a layout. NULL is a no-op. No other thread may still use it. */
KVBM_API void kvbm_layout_destroy(kvbm_layout_t *layout);

/** @brief The validated configuration the layout was built from. */
KVBM_API const kvbm_layout_config_t *kvbm_layout_config(const kvbm_layout_t *layout);

/** @brief Bytes a pool must have for this layout. */
KVBM_API size_t kvbm_layout_total_bytes(const kvbm_layout_t *layout);

/** @brief Bytes of one (block, layer, outer) chunk. */
KVBM_API size_t kvbm_layout_chunk_bytes(const kvbm_layout_t *layout);

/** @brief Data bytes of one block (sum of its regions, padding excluded). */
KVBM_API size_t kvbm_layout_block_bytes(const kvbm_layout_t *layout);

/** @brief Number of regions kvbm_layout_block_regions() gives per block (1, L or L x O). */
KVBM_API size_t kvbm_layout_regions_per_block(const kvbm_layout_t *layout);

/**
 * @brief Offset of the chunk (block, layer, outer) from the pool base.
 * @param[out] offset_out set only on success.
 * @return KVBM_OK; KVBM_ERR_OUT_OF_RANGE (block, layer or outer too large);
 *         KVBM_ERR_INVALID_ARG (NULL pointer).
 */
KVBM_API kvbm_status_t kvbm_layout_offset(const kvbm_layout_t *layout, uint32_t block,
                                          uint32_t layer, uint32_t outer, size_t *offset_out);

/**
 * @brief Address of the chunk (block, layer, outer) in a pool at @p base.
 * @param[out] addr_out set only on success.
 * @return as kvbm_layout_offset().
 */
KVBM_API kvbm_status_t kvbm_layout_address(const kvbm_layout_t *layout, void *base, uint32_t block,
                                           uint32_t layer, uint32_t outer, void **addr_out);

/**
 * @brief The contiguous regions that make up a block, in increasing offset.
 * @param[out] regions   room for @p capacity regions; written only on success.
 * @param[in]  capacity  at least kvbm_layout_regions_per_block().
 * @param[out] count_out regions written; set only on success.
 * @return KVBM_OK; KVBM_ERR_OUT_OF_RANGE (block id); KVBM_ERR_INVALID_ARG
 *         (NULL pointer or capacity too small).
 */
KVBM_API kvbm_status_t kvbm_layout_block_regions(const kvbm_layout_t *layout, uint32_t block,
                                                 kvbm_region_t *regions, size_t capacity,
                                                 size_t *count_out);

/**
 * @brief Whether blocks can be copied chunk for chunk between two layouts:
 *        same layers, outer dim, tokens per block, inner dim and element
 *        size. Block count, arrangement and alignment may differ.
 * @return KVBM_OK when compatible, KVBM_ERR_INCOMPATIBLE when not,
 *         KVBM_ERR_INVALID_ARG for a NULL layout.
 */
KVBM_API kvbm_status_t kvbm_layout_compatible(const kvbm_layout_t *a, const kvbm_layout_t *b);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_LAYOUT_H */
