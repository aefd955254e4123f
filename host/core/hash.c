/* Block and sequence hashing on XXH3-64; see include/kvbm/hash.h. */
#include "kvbm/hash.h"

#include <string.h>
#include <xxhash.h>

#include "error.h"

/* Store little endian regardless of the host so hashes agree across machines. */
static void store_le32(unsigned char *out, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(value >> (8 * i));
}

static void store_le64(unsigned char *out, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(value >> (8 * i));
}

static int host_is_little_endian(void)
{
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 1;
}

uint64_t kvbm_hash_block(const uint32_t *tokens, size_t count, uint64_t seed)
{
    if (count == 0 || tokens == NULL)
        return XXH3_64bits_withSeed(NULL, 0, seed);
    if (host_is_little_endian())
        return XXH3_64bits_withSeed(tokens, count * sizeof(uint32_t), seed);

    /* Big-endian hosts stream the tokens through a small LE buffer. */
    XXH3_state_t *state = XXH3_createState();
    if (state == NULL)
        return 0;
    XXH3_64bits_reset_withSeed(state, seed);
    unsigned char buffer[256 * 4];
    size_t done = 0;
    while (done < count) {
        size_t chunk = count - done < 256 ? count - done : 256;
        for (size_t i = 0; i < chunk; i++)
            store_le32(buffer + 4 * i, tokens[done + i]);
        XXH3_64bits_update(state, buffer, chunk * 4);
        done += chunk;
    }
    uint64_t hash = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return hash;
}

uint64_t kvbm_hash_sequence(uint64_t parent, uint64_t block_hash, uint64_t seed)
{
    unsigned char pair[16];
    store_le64(pair, parent);
    store_le64(pair + 8, block_hash);
    return XXH3_64bits_withSeed(pair, sizeof(pair), seed);
}

kvbm_status_t kvbm_hash_tokens(const uint32_t *tokens, size_t count, uint32_t block_tokens,
                               uint64_t seed, uint64_t *hashes, size_t *n_hashes_out)
{
    if (block_tokens == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_hash_tokens: block_tokens is 0");
    if (n_hashes_out == NULL || (count > 0 && (tokens == NULL || hashes == NULL)))
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "kvbm_hash_tokens: %s is NULL",
                          n_hashes_out == NULL ? "n_hashes_out"
                          : tokens == NULL     ? "tokens"
                                               : "hashes");
    size_t n_blocks = count / block_tokens;
    uint64_t parent = 0;
    for (size_t i = 0; i < n_blocks; i++) {
        uint64_t block = kvbm_hash_block(tokens + i * block_tokens, block_tokens, seed);
        hashes[i] = i == 0 ? block : kvbm_hash_sequence(parent, block, seed);
        parent = hashes[i];
    }
    *n_hashes_out = n_blocks;
    return KVBM_OK;
}
