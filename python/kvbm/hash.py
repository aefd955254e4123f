"""Block and sequence hashes (include/kvbm/hash.h): XXH3-64 of the tokens
as 32-bit little-endian integers, chained parent-first."""
import numpy as np

from . import _core
from ._cffi import ffi
from ._core import U32, U64, as_count, as_index_array, fail, lib

_u32p = ffi.typeof("uint32_t[]")


def hash_block(tokens, seed=0):
    """Hash of one block's tokens (uint32 values)."""
    call = "kvbm_hash_block"
    t = as_index_array(tokens, U32, call, "tokens")
    return lib.kvbm_hash_block(ffi.from_buffer(_u32p, t), len(t), as_count(seed, call, "seed"))


def hash_sequence(parent, block_hash, seed=0):
    """Sequence hash of a block whose parent has sequence hash ``parent``."""
    call = "kvbm_hash_sequence"
    return lib.kvbm_hash_sequence(
        as_count(parent, call, "parent"), as_count(block_hash, call, "block_hash"), as_count(seed, call, "seed")
    )


def hash_tokens(tokens, block_tokens, seed=0):
    """Sequence hashes of every complete block of a token run (uint64 array
    of len(tokens) // block_tokens)."""
    call = "kvbm_hash_tokens"
    t = as_index_array(tokens, U32, call, "tokens")
    bt = as_count(block_tokens, call, "block_tokens", _core.UINT32_MAX)
    if bt == 0:
        _core.refuse(call, "block_tokens must be at least 1")
    out = np.empty(len(t) // bt, U64)
    n = ffi.new("size_t *")
    st = lib.kvbm_hash_tokens(ffi.from_buffer(_u32p, t), len(t), bt, as_count(seed, call, "seed"),
                              ffi.from_buffer("uint64_t[]", out), n)
    if st:
        fail(st, call)
    return out[: n[0]]
