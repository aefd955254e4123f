/*
 * White-box view of the adaptive policy for tests and docs: which victim
 * rule it follows now. Internal (kvbm__), not installed.
 */
#ifndef KVBM_HOST_POLICY_ADAPTIVE_H
#define KVBM_HOST_POLICY_ADAPTIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "segments.h"

/* The rules the adaptive policy chooses from, in index order:
 * X(name, tail, probation, protected, cold), each a bonus in capacities or a
 * +-KVBM__SEG_FAR multiple (segments.h). The first four treat the cold
 * segment as probation (they are the rules of the hint-less policy); the
 * last three evict cold blocks with the tails. */
#define KVBM__ADAPTIVE_RULES_LIST(X)                                                               \
    X(lru, 0, 0, 0, 0)                                                                             \
    X(lru_tails_first, -KVBM__SEG_FAR, 0, 0, 0)                                                    \
    X(protect_1x, -KVBM__SEG_FAR, 0, 1, 0)                                                         \
    X(slru, -KVBM__SEG_FAR, KVBM__SEG_FAR, 2 * KVBM__SEG_FAR, KVBM__SEG_FAR)                       \
    X(cold_first, -KVBM__SEG_FAR, 0, 0, -KVBM__SEG_FAR)                                            \
    X(cold_protect_1x, -KVBM__SEG_FAR, 0, 1, -KVBM__SEG_FAR)                                       \
    X(cold_slru, -KVBM__SEG_FAR, KVBM__SEG_FAR, 2 * KVBM__SEG_FAR, -KVBM__SEG_FAR)

/* The index of the rule followed now (0 = lru) and its name. */
uint32_t kvbm__adaptive_rule(const void *state);
/* The segment (KVBM__SEG_*) block @p id is in, KVBM__SEG_NONE if none. */
uint8_t kvbm__adaptive_segment(const void *state, uint32_t id);
const char *kvbm__adaptive_rule_name(uint32_t rule);
/* Whether a once-used block registered at @p position of a request of
 * @p request_blocks blocks is predicted, now, not to come back. */
bool kvbm__adaptive_class_cold(const void *state, uint32_t request_blocks, uint32_t position);

#endif /* KVBM_HOST_POLICY_ADAPTIVE_H */
