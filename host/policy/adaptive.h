/*
 * White-box view of the adaptive policy for tests and docs: which victim
 * rule it follows now. Internal (kvbm__), not installed.
 */
#ifndef KVBM_HOST_POLICY_ADAPTIVE_H
#define KVBM_HOST_POLICY_ADAPTIVE_H

#include <stdint.h>

#include "segments.h"

/* The rules the adaptive policy chooses from, in index order. */
#define KVBM__ADAPTIVE_RULES_LIST(X)                                                               \
    X(lru, 0, 0, 0)                                                                                \
    X(lru_tails_first, -KVBM__SEG_FAR, 0, 0)                                                       \
    X(protect_1x, -KVBM__SEG_FAR, 0, 1)                                                            \
    X(slru, -KVBM__SEG_FAR, KVBM__SEG_FAR, 2 * KVBM__SEG_FAR)

/* The index of the rule followed now (0 = lru) and its name. */
uint32_t kvbm__adaptive_rule(const void *state);
/* The segment (KVBM__SEG_*) block @p id is in, KVBM__SEG_NONE if none. */
uint8_t kvbm__adaptive_segment(const void *state, uint32_t id);
const char *kvbm__adaptive_rule_name(uint32_t rule);

#endif /* KVBM_HOST_POLICY_ADAPTIVE_H */
