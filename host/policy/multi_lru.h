/*
 * White-box view of multi-lru and multi-lru-follow for tests: their
 * frequency sketch, so a test can age it without driving thousands of
 * accesses through it. Internal (kvbm__), not installed.
 */
#ifndef KVBM_HOST_POLICY_MULTI_LRU_H
#define KVBM_HOST_POLICY_MULTI_LRU_H

#include "freq_sketch.h"

/* The sketch of a multi-lru or multi-lru-follow state. */
kvbm__freq_sketch_t *kvbm__multi_lru_sketch(void *state);

#endif /* KVBM_HOST_POLICY_MULTI_LRU_H */
