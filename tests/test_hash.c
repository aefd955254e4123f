/* Hashing: pinned test vectors and the chaining rule of include/kvbm/hash.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kvbm/hash.h"

static void empty_block_is_xxh3_of_nothing(void **state)
{
    /* 0x2d06800538d394c2 is XXH3-64 of the empty input with seed 0, the value
     * published with xxHash's own sanity tests. */
    assert_int_equal(kvbm_hash_block(NULL, 0, 0), 0x2d06800538d394c2ULL);
}

static void block_hash_vectors_are_pinned(void **state)
{
    const uint32_t tokens[4] = {1, 2, 3, 4};
    assert_int_equal(kvbm_hash_block(tokens, 4, 0), 0x6fc1ebd4f4d6ea31ULL);
    assert_int_equal(kvbm_hash_block(tokens, 4, 42), 0xcabc6cf291a3ba46ULL);
}

static void block_hash_reads_tokens_as_little_endian_u32(void **state)
{
    const uint32_t tokens[2] = {0x01020304u, 0xa0b0c0d0u};
    const unsigned char bytes[8] = {0x04, 0x03, 0x02, 0x01, 0xd0, 0xc0, 0xb0, 0xa0};
    assert_int_equal(kvbm_hash_block(tokens, 2, 9), XXH3_64bits_withSeed(bytes, 8, 9));
}

static void sequence_hash_chains_parent_then_block(void **state)
{
    uint64_t parent = 0x1122334455667788ULL, block = 0x99aabbccddeeff00ULL;
    unsigned char pair[16];
    for (int i = 0; i < 8; i++) {
        pair[i] = (unsigned char)(parent >> (8 * i));
        pair[8 + i] = (unsigned char)(block >> (8 * i));
    }
    assert_int_equal(kvbm_hash_sequence(parent, block, 5), XXH3_64bits_withSeed(pair, 16, 5));
    assert_int_not_equal(kvbm_hash_sequence(parent, block, 5),
                         kvbm_hash_sequence(block, parent, 5));
}

static void token_run_hashes_full_blocks_only(void **state)
{
    const uint32_t tokens[10] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    uint64_t hashes[2] = {0, 0};
    size_t n = 99;
    assert_int_equal(kvbm_hash_tokens(tokens, 10, 4, 7, hashes, &n), KVBM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(hashes[0], 0x955a48ae47072821ULL);
    assert_int_equal(hashes[1], 0xe912dacd681bc335ULL);
    /* The first block's sequence hash is its block hash; the second chains. */
    assert_int_equal(hashes[0], kvbm_hash_block(tokens, 4, 7));
    assert_int_equal(hashes[1],
                     kvbm_hash_sequence(hashes[0], kvbm_hash_block(tokens + 4, 4, 7), 7));
}

static void equal_prefixes_give_equal_hashes_and_divergence_propagates(void **state)
{
    uint32_t a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint32_t b[12];
    memcpy(b, a, sizeof(a));
    b[5] = 600; /* differs in the second block */
    uint64_t ha[3], hb[3];
    size_t na, nb;
    assert_int_equal(kvbm_hash_tokens(a, 12, 4, 0, ha, &na), KVBM_OK);
    assert_int_equal(kvbm_hash_tokens(b, 12, 4, 0, hb, &nb), KVBM_OK);
    assert_int_equal(ha[0], hb[0]);
    assert_int_not_equal(ha[1], hb[1]);
    assert_int_not_equal(ha[2], hb[2]); /* same tokens, different parent */
}

static void token_run_rejects_bad_arguments_and_writes_nothing(void **state)
{
    const uint32_t tokens[4] = {1, 2, 3, 4};
    uint64_t hashes[1] = {77};
    size_t n = 5;
    assert_int_equal(kvbm_hash_tokens(tokens, 4, 0, 0, hashes, &n), KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_hash_tokens(NULL, 4, 4, 0, hashes, &n), KVBM_ERR_INVALID_ARG);
    assert_int_equal(kvbm_hash_tokens(tokens, 4, 4, 0, hashes, NULL), KVBM_ERR_INVALID_ARG);
    assert_int_equal(hashes[0], 77);
    assert_int_equal(n, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_block_is_xxh3_of_nothing),
        cmocka_unit_test(block_hash_vectors_are_pinned),
        cmocka_unit_test(block_hash_reads_tokens_as_little_endian_u32),
        cmocka_unit_test(sequence_hash_chains_parent_then_block),
        cmocka_unit_test(token_run_hashes_full_blocks_only),
        cmocka_unit_test(equal_prefixes_give_equal_hashes_and_divergence_propagates),
        cmocka_unit_test(token_run_rejects_bad_arguments_and_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
