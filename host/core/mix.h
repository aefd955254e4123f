/* The library's one 64-bit mixer, for hash tables keyed by block hashes. */
#ifndef KVBM_CORE_MIX_H
#define KVBM_CORE_MIX_H

#include <stdint.h>

/*
 * The murmur3 fmix64 finalizer: every input bit affects every output bit.
 * Sequence hashes are XXH3 outputs and already well mixed, but callers such
 * as the trace replay use small dense integers, and tests use whatever keys
 * they like; tables spread all of them evenly over power-of-two buckets by
 * mixing first.
 */
static inline uint64_t kvbm__mix64(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return key;
}

#endif /* KVBM_CORE_MIX_H */
