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

/*
 * 32 well-spread bits of a key for tables that place it by its top bits
 * (the registry): Fibonacci hashing, the key times 2^64 / phi, high half
 * kept, after folding the key's high half into its low half so keys that
 * differ only in high bits spread too. One multiply. Sequential keys (the
 * replay's dense ids) land evenly apart rather than at random, so their
 * probe runs stay short and predictable; well-mixed keys (XXH3 hashes)
 * land at random, as with any mixer.
 */
static inline uint32_t kvbm__spread32(uint64_t key)
{
    return (uint32_t)(((key ^ (key >> 32)) * 0x9E3779B97F4A7C15ULL) >> 32);
}

#endif /* KVBM_CORE_MIX_H */
