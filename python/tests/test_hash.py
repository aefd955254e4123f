"""Hashing from Python gives the C test vectors of tests/test_hash.c."""
import numpy as np
import pytest

import kvbm


def test_empty_block_is_xxh3_of_nothing():
    assert kvbm.hash_block([]) == 0x2D06800538D394C2


def test_block_hash_vectors_are_pinned():
    assert kvbm.hash_block([1, 2, 3, 4]) == 0x6FC1EBD4F4D6EA31
    assert kvbm.hash_block(np.array([1, 2, 3, 4], np.uint32), seed=42) == 0xCABC6CF291A3BA46


def test_token_run_vectors_are_pinned_and_chain():
    tokens = np.arange(10, 20, dtype=np.uint32)
    h = kvbm.hash_tokens(tokens, 4, seed=7)
    assert h.dtype == np.uint64 and list(h) == [0x955A48AE47072821, 0xE912DACD681BC335]
    assert h[0] == kvbm.hash_block(tokens[:4], 7)
    assert h[1] == kvbm.hash_sequence(int(h[0]), kvbm.hash_block(tokens[4:8], 7), 7)


def test_sequence_hash_order_matters():
    p, b = 0x1122334455667788, 0x99AABBCCDDEEFF00
    assert kvbm.hash_sequence(p, b, 5) != kvbm.hash_sequence(b, p, 5)


def test_any_integer_input_gives_the_same_hashes():
    ref = kvbm.hash_tokens(np.arange(12, dtype=np.uint32), 4)
    assert list(kvbm.hash_tokens(list(range(12)), 4)) == list(ref)
    assert list(kvbm.hash_tokens(np.arange(12, dtype=np.int64), 4)) == list(ref)
    assert list(kvbm.hash_tokens(np.arange(24, dtype=np.uint32)[::2] // 2, 4)) == list(ref)  # strided input
    assert len(kvbm.hash_tokens([], 4)) == 0


@pytest.mark.parametrize("tokens", [[-1], [2**32], np.array([1.5]), "abcd", [1, None], np.zeros((2, 2), np.uint32)])
def test_bad_tokens_are_refused_before_c(tokens):
    with pytest.raises(kvbm.InvalidArgumentError) as e:
        kvbm.hash_tokens(tokens, 4)
    assert e.value.name == "KVBM_ERR_INVALID_ARG" and e.value.call == "kvbm_hash_tokens"


def test_bad_block_tokens_and_seeds_are_refused():
    with pytest.raises(kvbm.InvalidArgumentError, match="block_tokens"):
        kvbm.hash_tokens([1, 2], 0)
    with pytest.raises(kvbm.InvalidArgumentError, match="seed"):
        kvbm.hash_block([1], seed=-1)
    with pytest.raises(kvbm.InvalidArgumentError, match="parent"):
        kvbm.hash_sequence(2**64, 1)
