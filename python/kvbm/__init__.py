"""kvbm: the KV-cache block manager, from Python.

A small binding faithful to the C API (include/kvbm/): every object has an
explicit lifetime (close(), or a ``with`` block), every failed call raises a
KvbmError subclass carrying the status name and kvbm_last_error(), batch
calls take and return numpy arrays, and pools show as numpy arrays, torch
tensors or ``__cuda_array_interface__`` objects without a copy. See
docs/PYTHON.md.

The library is found as kvbm._library describes ($KVBM_LIBRARY overrides).
"""
from . import errors, log
from ._core import LIBRARY_PATH, lib as _lib, text as _text
from ._events import EVENT_DTYPE, REMOVED, STORED
from ._library import WRITTEN_FOR
from .backend import COPY_DTYPE, Backend, Fence, Pool, Stream, cuda_built
from .cache import Cache, DiskConfig, MatchResult, TierManager
from .errors import *  # noqa: F401,F403 (the exception classes)
from .errors import KvbmError
from .hash import hash_block, hash_sequence, hash_tokens
from .layout import Layout
from .manager import BLOCK_NONE, EVICTED_DTYPE, MAX_BLOCKS, Manager, policy_names
from ._memory import CudaArray
from .admission import Admission

#: Version of the loaded library ("major.minor.patch") and its code.
__version__ = _text(_lib.kvbm_version())
version_code = _lib.kvbm_version_code()


def status_name(status):
    """The C enumerator's name of a status value ("KVBM_ERR_NO_BLOCKS")."""
    return _text(_lib.kvbm_status_name(status))


def status_str(status):
    """The C library's description of a status value."""
    return _text(_lib.kvbm_status_str(status))


def last_error():
    """kvbm_last_error() of the calling thread (the exceptions carry it already)."""
    return _text(_lib.kvbm_last_error())


__all__ = [
    "Admission", "Backend", "Pool", "Stream", "Fence", "Layout", "Manager", "Cache", "DiskConfig", "MatchResult",
    "TierManager", "CudaArray", "KvbmError", "errors", "log", "hash_block", "hash_sequence", "hash_tokens",
    "policy_names", "cuda_built", "status_name", "status_str", "last_error", "BLOCK_NONE", "MAX_BLOCKS",
    "EVENT_DTYPE", "EVICTED_DTYPE", "COPY_DTYPE", "STORED", "REMOVED", "LIBRARY_PATH", "WRITTEN_FOR",
    "version_code",
] + [name for name in dir(errors) if name.endswith("Error") and name != "KvbmError"]
