/**
 * @file admission.h
 * @brief G2 admission: which blocks evicted from G1 are worth copying to G2.
 *
 * Offloading every evicted block spends PCIe bandwidth and G2 room on
 * blocks that never come back (most of a prefix cache's blocks are used
 * once). An admission filter learns, online, how often evicted blocks of
 * each class come back, and offloads a block only when its class comes back
 * at least keep_ratio times as often as evicted blocks overall.
 *
 * Classes: a block used twice or more (counted by hash, remembered across
 * evictions by a ghost of 4 x (G1 + G2) hashes) is one class; a block used
 * once is classed by the length of the request that registered it (log2
 * buckets) and its distance from that request's end (0, 1, 2, 3+), both from
 * the registration hints, or "unknown" without them. Every G1 eviction
 * counts against its class and puts the hash in a ghost of 4 x G2 hashes; a
 * registration whose hash is in that ghost counts a return for the class it
 * was evicted from. Counts are halved every 4 x G2 evictions. Both rules
 * keep whole prefixes together: a request's blocks share their length, a
 * block's parent is used at least as often as the block, and the distance
 * from the end only drops a request's last blocks.
 *
 * docs/POLICIES.md ("G2 admission") gives the measurements and how
 * keep_ratio was chosen. Not thread-safe: the owner (the tiered cache, or a
 * replay) serialises calls. Nothing is allocated after create.
 */
#ifndef KVBM_ADMISSION_H
#define KVBM_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include "kvbm/config_init.h"
#include "kvbm/export.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_ADMISSION_CONFIG_VERSION 1u

typedef struct kvbm_admission kvbm_admission_t;

typedef struct kvbm_admission_config {
    uint32_t struct_size; /**< sizeof(kvbm_admission_config_t) */
    uint32_t version;     /**< KVBM_ADMISSION_CONFIG_VERSION */
    uint32_t g1_blocks;   /**< G1 capacity: block ids are below it (>= 1) */
    uint32_t g2_blocks;   /**< G2 capacity (>= 1) */
    /** Offload a class when its return rate is at least this times the
     *  overall rate; 0 offloads everything. Default 0.65. */
    double keep_ratio;
    /** Evictions a class needs before it can be refused (default 32). */
    uint32_t min_samples;
} kvbm_admission_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_ADMISSION_CONFIG_DEFAULTS(X, P)                                                       \
    X(P, struct_size, sizeof(kvbm_admission_config_t))                                             \
    X(P, version, KVBM_ADMISSION_CONFIG_VERSION)                                                   \
    X(P, keep_ratio, 0.65)                                                                         \
    X(P, min_samples, 32)

#ifdef __cplusplus
#define KVBM_ADMISSION_CONFIG_INIT                                                                 \
    KVBM_CONFIG_INIT_CXX(kvbm_admission_config_t, kvbm_admission_config_init)
#else
#define KVBM_ADMISSION_CONFIG_INIT                                                                 \
    {                                                                                              \
        KVBM_ADMISSION_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                    \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_ADMISSION_CONFIG_INIT does;
 *        for C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_admission_config_init(kvbm_admission_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_ADMISSION_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/**
 * @brief Create a filter.
 * @param[in]  config  copied.
 * @param[out] admission_out  set only on success; free with kvbm_admission_destroy().
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL, a capacity of 0, keep_ratio
 *         negative or not finite); KVBM_ERR_VERSION; KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_admission_create(const kvbm_admission_config_t *config,
                                             kvbm_admission_t **admission_out);

/** @brief Free a filter; NULL is a no-op. */
KVBM_API void kvbm_admission_destroy(kvbm_admission_t *admission);

/**
 * @brief A G1 block holding @p hash was matched (one more use of it).
 * Ids at or above g1_blocks are ignored.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL filter; nothing changes).
 */
KVBM_API kvbm_status_t kvbm_admission_hit(kvbm_admission_t *admission, uint32_t g1_id);

/**
 * @brief @p hash was registered on G1 block @p g1_id (a new use), at
 *        @p position of a request of @p request_blocks blocks (0: unknown).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL filter; nothing changes).
 */
KVBM_API kvbm_status_t kvbm_admission_registered(kvbm_admission_t *admission, uint32_t g1_id,
                                                 uint64_t hash, uint32_t request_blocks,
                                                 uint32_t position);

/**
 * @brief G1 evicted block @p g1_id holding @p hash: record it, and say
 *        whether to copy it to G2. Call it for every G1 eviction; when G2
 *        already holds the hash (@p in_g2) it is only recorded (false).
 * @param[out] offload_out set only on success: whether to copy it to G2.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL filter or output; nothing
 *         changes).
 */
KVBM_API kvbm_status_t kvbm_admission_evicted(kvbm_admission_t *admission, uint32_t g1_id,
                                              uint64_t hash, bool in_g2, bool *offload_out);

/**
 * @brief Evicted blocks the filter refused so far.
 * @param[out] refused_out set only on success.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (NULL filter or output).
 */
KVBM_API kvbm_status_t kvbm_admission_refused(const kvbm_admission_t *admission,
                                              uint64_t *refused_out);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_ADMISSION_H */
