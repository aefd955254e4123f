"""Event batches from kvbm's threads, delivered to Python on the Python side.

kvbm calls an event sink with the manager's (or cache's) lock held, from
whichever thread made the call. The sink installed here runs no user code:
it takes the GIL only to copy the batch into bytes and append them to a
deque (one C-level append, no Python lock), so it cannot re-enter kvbm and
holds the lock no longer than that. The batches are handed to the user's callable afterwards,
outside every kvbm lock: by the Python call that produced them, right after
it returns from C, or by poll()/flush(). One thread delivers at a time, in
the order kvbm produced the batches; a callback that calls back into kvbm
gets its own events after it returns, not nested inside it.
"""
import collections
import logging
import threading

import numpy as np

from ._cffi import ffi

#: One kvbm_event_t as numpy sees it (checked against C by test_cdefs.py).
EVENT_DTYPE = np.dtype(
    {
        "names": ["kind", "block_id", "seq_hash"],
        "formats": ["<i4", "<u4", "<u8"],
        "offsets": [ffi.offsetof("kvbm_event_t", f) for f in ("kind", "block_id", "seq_hash")],
        "itemsize": ffi.sizeof("kvbm_event_t"),
    }
)
STORED = 1
REMOVED = 2
_EVENT_BYTES = EVENT_DTYPE.itemsize
_log = logging.getLogger("kvbm")


@ffi.callback("void(void *, const kvbm_event_t *, size_t)")
def manager_sink(ctx, events, count):
    ffi.from_handle(ctx)._pending.append((None, ffi.buffer(events, count * _EVENT_BYTES)[:]))


@ffi.callback("void(void *, kvbm_tier_t, const kvbm_event_t *, size_t)")
def cache_sink(ctx, tier, events, count):
    ffi.from_handle(ctx)._pending.append((int(tier), ffi.buffer(events, count * _EVENT_BYTES)[:]))


class EventQueue:
    """Batches kvbm produced, waiting for ``deliver(tier, events)``.

    ``ctx`` is the pointer to give kvbm as the sink's context; the queue must
    outlive the C object (the owning handle keeps it until destroyed).
    """

    def __init__(self, deliver):
        self._pending = collections.deque()
        self._deliver = deliver
        self._lock = threading.Lock()
        self._owner = None  # ident of the thread delivering, for re-entry
        self.ctx = ffi.new_handle(self)
        self.delivered = 0  # batches handed to the callable
        self.failed = 0  # batches whose callable raised (logged on "kvbm")

    def __len__(self):
        return len(self._pending)

    def poll(self, wait=False):
        """Deliver what is queued, from this thread. If another thread is
        delivering, return at once (it takes these too), or with ``wait``
        wait for it and deliver what is left. Inside a callback: nothing."""
        while self._pending:
            if self._owner == threading.get_ident():
                return
            if not self._lock.acquire(blocking=wait):
                return
            self._owner = threading.get_ident()
            try:
                self._drain()
            finally:
                self._owner = None
                self._lock.release()

    def _drain(self):
        pending = self._pending
        while pending:
            tier, raw = pending.popleft()
            events = np.frombuffer(raw, dtype=EVENT_DTYPE)
            try:
                self._deliver(tier, events)
                self.delivered += 1
            except Exception:  # the kvbm call that produced them succeeded: keep going
                self.failed += 1
                _log.exception("kvbm: exception in an event callback (batch of %d events)", len(events))
