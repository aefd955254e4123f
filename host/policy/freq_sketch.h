/*
 * A count-min sketch of 4-bit counters with periodic aging, the frequency
 * filter of TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly
 * Efficient Cache Admission Policy", ACM ToS 2017). It estimates how often a
 * 64-bit key was seen recently, in a fixed amount of memory.
 *
 * Four rows of `width` counters; a key maps to one counter per row and its
 * estimate is the smallest of the four, saturating at 15. After `sample_size`
 * (10 x width) counted increments every counter is halved, so old popularity
 * fades and the sketch follows a changing workload.
 *
 * Not thread-safe: the owner's lock protects it. Allocates only in init.
 */
#ifndef KVBM_HOST_FREQ_SKETCH_H
#define KVBM_HOST_FREQ_SKETCH_H

#include <stdint.h>

#include "kvbm/status.h"

#define KVBM__FREQ_SKETCH_ROWS 4
#define KVBM__FREQ_SKETCH_MAX  15u
/** Widest sketch init accepts (counters per row), to bound memory. */
#define KVBM__FREQ_SKETCH_MAX_WIDTH (1u << 28)

typedef struct kvbm__freq_sketch {
    uint64_t *words;      /* ROWS x (width / 16) words of 16 nibbles */
    uint32_t width;       /* counters per row, a power of two >= 16 */
    uint64_t sample_size; /* increments between two halvings */
    uint64_t additions;   /* increments since the last halving */
} kvbm__freq_sketch_t;

/**
 * Build a zeroed sketch with at least @p width counters per row (rounded up
 * to a power of two, at least 16, at most KVBM__FREQ_SKETCH_MAX_WIDTH).
 * On error nothing is allocated. Returns KVBM_OK, KVBM_ERR_INVALID_ARG
 * (width too large) or KVBM_ERR_NO_MEMORY.
 */
kvbm_status_t kvbm__freq_sketch_init(kvbm__freq_sketch_t *sketch, uint32_t width);

/** Free the counters; safe on a zeroed or finished sketch. */
void kvbm__freq_sketch_fini(kvbm__freq_sketch_t *sketch);

/** Count one access to @p key; may trigger an aging pass (O(width), amortised O(1)). */
void kvbm__freq_sketch_increment(kvbm__freq_sketch_t *sketch, uint64_t key);

/** Estimated recent access count of @p key, 0..15 (never below the true count since aging). */
uint32_t kvbm__freq_sketch_estimate(const kvbm__freq_sketch_t *sketch, uint64_t key);

/** Halve every counter now (the periodic aging step). */
void kvbm__freq_sketch_age(kvbm__freq_sketch_t *sketch);

#endif /* KVBM_HOST_FREQ_SKETCH_H */
