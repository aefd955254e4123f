/**
 * @file hash.h
 * @brief Block and sequence hashes (XXH3-64).
 *
 * A block hash covers one block's tokens: XXH3-64 of the tokens as 32-bit
 * little-endian integers, seeded with a salt. A sequence hash chains a block
 * hash onto its parent's sequence hash: XXH3-64 over the 16 bytes
 * (parent sequence hash, block hash), both little endian, with the same seed.
 * The first block of a sequence has no parent and its sequence hash is its
 * block hash. Equal sequence hashes therefore mean equal prefixes.
 *
 * All functions are pure and callable from any thread.
 */
#ifndef KVBM_HASH_H
#define KVBM_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "kvbm/export.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Hash of one block's tokens. @param[in] tokens may be NULL when count is 0. */
KVBM_API uint64_t kvbm_hash_block(const uint32_t *tokens, size_t count, uint64_t seed);

/** @brief Sequence hash of a block whose parent has sequence hash @p parent. */
KVBM_API uint64_t kvbm_hash_sequence(uint64_t parent, uint64_t block_hash, uint64_t seed);

/**
 * @brief Sequence hashes of every complete block of a token run.
 *
 * @param[in]  tokens        the token run; only full blocks are hashed.
 * @param[in]  count         number of tokens.
 * @param[in]  block_tokens  tokens per block, > 0.
 * @param[in]  seed          salt.
 * @param[out] hashes        room for count / block_tokens hashes.
 * @param[out] n_hashes_out  number of hashes written (count / block_tokens).
 * @return KVBM_OK, or KVBM_ERR_INVALID_ARG (NULL pointer, block_tokens 0);
 *         nothing is written on error.
 */
KVBM_API kvbm_status_t kvbm_hash_tokens(const uint32_t *tokens, size_t count, uint32_t block_tokens,
                                        uint64_t seed, uint64_t *hashes, size_t *n_hashes_out);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_HASH_H */
