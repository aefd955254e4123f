"""Event batches from kvbm's threads, delivered to Python on the Python side.

kvbm calls an event sink with the manager's (or cache's) lock held, from
whichever thread made the call, with event records (kvbm/event_record.h:
runs of hashes of one tier). The sink installed here runs no user code: it
takes the GIL only to copy the records' hashes into one event per hash
(EVENT_DTYPE, as bytes) and append them to a deque, so it cannot re-enter
kvbm and holds the lock no longer than that. The batches are handed to the user's callable afterwards,
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

#: One event per hash: what happened, the block (NO_BLOCK where the record
#: carries none: a cache's events), the sequence hash.
EVENT_DTYPE = np.dtype([("kind", "<i4"), ("block_id", "<u4"), ("seq_hash", "<u8")])
STORED = 1
REMOVED = 2
NO_BLOCK = 0xFFFFFFFF
_log = logging.getLogger("kvbm")


def _record_events(record):
    """The stored or removed events of one record, one per hash."""
    n = record.count
    events = np.empty(n, EVENT_DTYPE)
    events["kind"] = record.kind
    events["seq_hash"] = np.frombuffer(ffi.buffer(record.hashes, n * 8), dtype="<u8")
    if record.blocks != ffi.NULL:
        events["block_id"] = np.frombuffer(ffi.buffer(record.blocks, n * 4), dtype="<u4")
    else:
        events["block_id"] = NO_BLOCK
    return events


def _grouped_by_tier(records, count):
    """(tier, events bytes) per run of records of one tier, in order; clears
    (no hashes) are left out: this API never had them."""
    groups = []
    for i in range(count):
        record = records[i]
        if record.kind not in (STORED, REMOVED) or record.count == 0:
            continue
        tier = int(record.medium) + 1  # GPU, CPU, DISK are G1, G2, G3
        if groups and groups[-1][0] == tier:
            groups[-1][1].append(_record_events(record))
        else:
            groups.append((tier, [_record_events(record)]))
    return [(tier, np.concatenate(parts).tobytes()) for tier, parts in groups]


@ffi.callback("void(void *, const kvbm_event_record_t *, size_t)")
def manager_sink(ctx, records, count):
    events = [ev for _, ev in _grouped_by_tier(records, count)]
    if events:
        ffi.from_handle(ctx)._pending.append((None, b"".join(events)))


@ffi.callback("void(void *, const kvbm_event_record_t *, size_t)")
def cache_sink(ctx, records, count):
    queue = ffi.from_handle(ctx)
    for tier, events in _grouped_by_tier(records, count):
        queue._pending.append((tier, events))


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
