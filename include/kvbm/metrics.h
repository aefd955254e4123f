/**
 * @file metrics.h
 * @brief Manager metrics, generated from one X-macro list.
 *
 * The struct, the Prometheus text and the JSON output all come from
 * KVBM_MANAGER_METRICS_LIST, so a field added there shows up everywhere.
 */
#ifndef KVBM_METRICS_H
#define KVBM_METRICS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(field, prometheus type, help text) */
#define KVBM_MANAGER_METRICS_LIST(X)                                                               \
    X(allocations, counter, "blocks handed out by allocate")                                       \
    X(allocations_from_reset, counter, "blocks allocate took from the reset pool")                 \
    X(evictions, counter, "inactive blocks evicted to satisfy allocate")                           \
    X(allocation_failures, counter, "allocate calls refused for lack of blocks")                   \
    X(registrations, counter, "blocks registered under a new hash")                                \
    X(duplicates, counter, "registrations of a hash already held (allow policy)")                  \
    X(dedups, counter, "registrations replaced by the existing block (reject policy)")             \
    X(match_hashes, counter, "hashes asked for by match")                                          \
    X(match_blocks, counter, "blocks returned by match")                                           \
    X(scan_hashes, counter, "hashes asked for by scan")                                            \
    X(scan_blocks, counter, "blocks returned by scan")                                             \
    X(releases, counter, "references dropped by release")                                          \
    X(reset_blocks, gauge, "blocks in the reset pool")                                             \
    X(active_blocks, gauge, "blocks in use (mutable or referenced)")                               \
    X(inactive_blocks, gauge, "registered blocks cached with no reference")

typedef struct kvbm_manager_metrics {
#define KVBM_METRICS_FIELD(field, type, help) uint64_t field;
    KVBM_MANAGER_METRICS_LIST(KVBM_METRICS_FIELD)
#undef KVBM_METRICS_FIELD
} kvbm_manager_metrics_t;

#ifdef __cplusplus
}
#endif
#endif /* KVBM_METRICS_H */
