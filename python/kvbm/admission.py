"""The G2 admission filter (include/kvbm/admission.h) on its own, for an
engine that moves blocks between its tiers itself. The tiered cache has its
own (Cache(offload_admission=True)).

The C filter is not thread-safe (its owner serialises calls); this object
takes a lock around each call, so Python threads may share it.
"""
import math
import threading

from . import _core
from ._cffi import ffi
from ._core import as_count, as_flag, fail, lib, refuse
from ._structs import admission_config

_U32 = _core.UINT32_MAX


class Admission(_core.Handle):
    """Which blocks evicted from G1 are worth copying to G2 (kvbm_admission_t).

    ``g1_blocks``, ``g2_blocks``: the tiers' capacities (G1 ids are below
    g1_blocks). ``keep_ratio``: offload a class whose return rate is at least
    this times the overall rate (0 offloads everything). ``min_samples``:
    evictions a class needs before it can be refused.
    """

    def __init__(self, g1_blocks, g2_blocks, *, keep_ratio=0.65, min_samples=32):
        call = "kvbm_admission_create"
        c = admission_config()
        c.g1_blocks = as_count(g1_blocks, call, "g1_blocks", _U32)
        c.g2_blocks = as_count(g2_blocks, call, "g2_blocks", _U32)
        if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) \
                or not (math.isfinite(keep_ratio) and keep_ratio >= 0):
            refuse(call, "keep_ratio must be a finite number >= 0, not %r" % (keep_ratio,))
        c.keep_ratio = float(keep_ratio)
        c.min_samples = as_count(min_samples, call, "min_samples", _U32)
        out = ffi.new("kvbm_admission_t **")
        st = lib.kvbm_admission_create(c, out)
        if st:
            fail(st, call)
        self._lock = threading.Lock()
        self._adopt(out[0], lib.kvbm_admission_destroy)

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p

    def close(self):
        with self._lock:
            super().close()

    def hit(self, g1_id):
        """G1 block ``g1_id`` was matched (one more use of its hash)."""
        g1_id = as_count(g1_id, "kvbm_admission_hit", "g1_id", _U32)
        with self._lock:
            lib.kvbm_admission_hit(self._p(), g1_id)

    def registered(self, g1_id, seq_hash, request_blocks=0, position=0):
        """``seq_hash`` was registered on G1 block ``g1_id``, at ``position``
        of a request of ``request_blocks`` blocks (0: unknown)."""
        call = "kvbm_admission_registered"
        args = (as_count(g1_id, call, "g1_id", _U32), as_count(seq_hash, call, "seq_hash"),
                as_count(request_blocks, call, "request_blocks", _U32), as_count(position, call, "position", _U32))
        with self._lock:
            lib.kvbm_admission_registered(self._p(), *args)

    def evicted(self, g1_id, seq_hash, in_g2=False):
        """G1 evicted ``g1_id`` holding ``seq_hash``: record it; whether to copy
        it to G2 (always False when G2 already holds it, ``in_g2``)."""
        call = "kvbm_admission_evicted"
        args = (as_count(g1_id, call, "g1_id", _U32), as_count(seq_hash, call, "seq_hash"),
                as_flag(in_g2, call, "in_g2"))
        with self._lock:
            return bool(lib.kvbm_admission_evicted(self._p(), *args))

    @property
    def refused(self):
        """Evicted blocks refused so far."""
        with self._lock:
            return lib.kvbm_admission_refused(self._p())
