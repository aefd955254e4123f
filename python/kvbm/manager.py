"""The logical block manager (include/kvbm/manager.h) from Python.

Batch calls take and return numpy arrays: block ids as uint32, sequence
hashes as uint64. Arrays of exactly that dtype, one-dimensional and
contiguous, go to C as they are; anything else is checked and converted
first (see kvbm._core.as_index_array). Nothing is done per block in Python.
"""
from . import _core, _events
from . import publisher as _publisher
from ._cffi import constants, ffi
from ._core import U32, U64, as_index_array, fail, lib, refuse
from ._structs import manager_config

import numpy as np

BLOCK_NONE = constants.KVBM_BLOCK_NONE
MAX_BLOCKS = constants.KVBM_MANAGER_MAX_BLOCKS

_DUPLICATION = {"allow": constants.KVBM_DUPLICATION_ALLOW, "reject": constants.KVBM_DUPLICATION_REJECT}

#: Manager metrics fields, in the order of KVBM_MANAGER_METRICS_LIST.
METRICS_FIELDS = tuple(name for name, _ in ffi.typeof("kvbm_manager_metrics_t").fields)

#: allocate(..., evicted=True): the blocks an allocation evicted.
EVICTED_DTYPE = np.dtype(
    {
        "names": ["block_id", "seq_hash"],
        "formats": ["<u4", "<u8"],
        "offsets": [ffi.offsetof("kvbm_evicted_t", f) for f in ("block_id", "seq_hash")],
        "itemsize": ffi.sizeof("kvbm_evicted_t"),
    }
)

_from_buffer = _core.buffer_of
_u32p = ffi.typeof("uint32_t[]")
_u64p = ffi.typeof("uint64_t[]")
_size_p = ffi.typeof("size_t *")
_new = _core.new_of
_empty = np.empty
_ndarray = np.ndarray


def policy_names():
    """Names of the built-in eviction policies, in KVBM_POLICY_LIST order."""
    names = lib.kvbm_policy_names()
    out = []
    i = 0
    while names[i] != ffi.NULL:
        out.append(_core.text(names[i]))
        i += 1
    return out


def find_policy(name, call):
    """The policy ops table of a built-in policy name (belady refused)."""
    if not isinstance(name, str):
        refuse(call, "policy must be a policy name (%s), not %r" % (", ".join(policy_names()), name))
    if name == "belady":
        refuse(call, "the belady policy needs an offline next-use oracle called under the manager "
               "lock; the Python binding does not offer it", _core.errors.UnsupportedError)
    ops = lib.kvbm_policy_find(name.encode())
    if ops == ffi.NULL:
        refuse(call, "unknown policy %r (known: %s)" % (name, ", ".join(policy_names())))
    return ops


def fill_policy_config(c, call, multi_lru_thresholds, sketch_width):
    t = tuple(multi_lru_thresholds)
    if len(t) != 3:
        refuse(call, "multi_lru_thresholds must be three counts, not %r" % (t,))
    c.multi_lru_thresholds = [_core.as_count(v, call, "multi_lru_thresholds", 255) for v in t]
    c.sketch_width = _core.as_count(sketch_width, call, "sketch_width", _core.UINT32_MAX)


def register_opts(parent, priority, call, request_blocks=None, first_position=None):
    """kvbm_register_opts_t for ``parent`` (hash or None), ``priority`` and the
    hints (``request_blocks``, ``first_position``), or NULL when none is given."""
    if parent is None and priority is None and request_blocks is None and first_position is None:
        return ffi.NULL
    opts = ffi.new("kvbm_register_opts_t *")
    opts.priority = 50
    if parent is not None:
        opts.parent_hash = _core.as_count(parent, call, "parent")
        opts.has_parent = True
    if priority is not None:
        opts.priority = _core.as_count(priority, call, "priority", 100)
    if first_position is not None and request_blocks is None:
        refuse(call, "first_position is a hint about a request: give request_blocks too")
    if request_blocks is not None:
        opts.request_blocks = _core.as_count(request_blocks, call, "request_blocks", _core.UINT32_MAX)
        if opts.request_blocks == 0:
            refuse(call, "request_blocks must be at least 1 (None: no hint)")
        opts.first_position = _core.as_count(first_position or 0, call, "first_position", _core.UINT32_MAX)
    return opts


def out_array(out, count, dtype, call):
    """A fresh array of ``count`` entries, or ``out[:count]`` checked (``out``
    itself when it has exactly ``count``: no slice object on the hot path)."""
    if out is None:
        return _empty(count, dtype)
    if type(out) is not _ndarray or out.dtype is not dtype or out.ndim != 1:
        refuse(call, "out must be a contiguous one-dimensional %s array" % dtype)
    flags = out.flags
    if not flags.c_contiguous:
        refuse(call, "out must be a contiguous one-dimensional %s array" % dtype)
    if not flags.writeable:
        refuse(call, "out is read-only")
    size = len(out)
    if size == count:
        return out
    if size < count:
        refuse(call, "out has room for %d entries, %d needed" % (size, count))
    return out[:count]


def same_length(call, a, b, what_a, what_b):
    if len(a) != len(b):
        refuse(call, "%s has %d entries but %s has %d" % (what_a, len(a), what_b, len(b)))


class _ManagerReads:
    """The calls that read a manager (also a cache tier's, see Cache.tier)."""

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p

    def counts(self):
        """Pool sizes: dict of total, reset, active, inactive."""
        c = ffi.new("kvbm_pool_counts_t *")
        lib.kvbm_manager_counts(self._p(), c)
        return {"total": c.total, "reset": c.reset, "active": c.active, "inactive": c.inactive}

    def metrics(self):
        """Counters and gauges (KVBM_MANAGER_METRICS_LIST) as a dict."""
        m = ffi.new("kvbm_manager_metrics_t *")
        lib.kvbm_manager_metrics(self._p(), m)
        return {name: getattr(m, name) for name in METRICS_FIELDS}

    def metrics_prometheus(self):
        """The metrics as Prometheus text exposition."""
        return _core.write_to_string("kvbm_manager_metrics_prometheus", lib.kvbm_manager_metrics_prometheus, self._p())

    def metrics_json(self):
        """The metrics as kvbm's one-line JSON object (text)."""
        return _core.write_to_string("kvbm_manager_metrics_json", lib.kvbm_manager_metrics_json, self._p())

    @property
    def policy_name(self):
        return _core.text(lib.kvbm_manager_policy_name(self._p()))

    def contains(self, seq_hash):
        """Whether ``seq_hash`` is registered (takes no reference)."""
        h = _core.as_count(seq_hash, "kvbm_manager_contains", "seq_hash")
        return bool(lib.kvbm_manager_contains(self._p(), h))

    def match_length(self, hashes):
        """(matched, inactive): how long match() would match, acquiring nothing."""
        p = self._p()
        h = as_index_array(hashes, U64, "kvbm_manager_match_length", "hashes")
        n = ffi.new("size_t[2]")
        st = lib.kvbm_manager_match_length(p, _from_buffer(_u64p, h), len(h), n, n + 1)
        if st:
            fail(st, "kvbm_manager_match_length")
        return n[0], n[1]

    def registered_hashes(self):
        """Every hash the tier holds, each once, in block id order (uint64):
        what a router following its events holds."""
        p = self._p()
        out = np.empty(self.counts()["total"], U64)
        n = _new(_size_p)
        st = lib.kvbm_manager_registered_hashes(p, _from_buffer(_u64p, out), len(out), n)
        if st:
            fail(st, "kvbm_manager_registered_hashes")
        return out[: n[0]]


class Manager(_ManagerReads, _core.Handle):
    """One tier of ``num_blocks`` blocks (kvbm_manager_t).

    ``policy``: a name of policy_names() (belady is not offered).
    ``duplication``: "reject" (one block per hash) or "allow".
    ``on_events``: optional callable(events), ``events`` a numpy array of
    EVENT_DTYPE (kind, block_id, seq_hash), one batch per kvbm call that
    produced events, delivered outside the manager lock (kvbm._events).
    ``publisher``: a Publisher or EventBatcher the events also go to, from
    C (kept open while the manager is); ``medium``: the tier the events
    name ("GPU", "CPU" or "DISK").
    """

    def __init__(self, num_blocks, *, policy="lru", duplication="reject", name=None,
                 multi_lru_thresholds=(3, 8, 15), sketch_width=0, on_events=None, publisher=None,
                 medium="GPU"):
        call = "kvbm_manager_create"
        c = manager_config()
        c.num_blocks = _core.as_count(num_blocks, call, "num_blocks", _core.UINT32_MAX)
        c.duplication = _core.choice(duplication, _DUPLICATION, call, "duplication")
        c.policy = find_policy(policy, call)
        fill_policy_config(c.policy_config, call, multi_lru_thresholds, sketch_width)
        keep = []
        if name is not None:
            if not isinstance(name, str):
                refuse(call, "name must be a str, not %r" % (name,))
            cname = ffi.new("char[]", name.encode())
            c.name = cname
            keep.append(cname)  # read during create only; kept for clarity of lifetime
        c.medium = _core.choice(medium, _publisher.MEDIA, call, "medium")
        self._events = None
        forward = None
        if publisher is not None:
            forward = _publisher.sink_of(publisher, call)
            keep.append(publisher)
        if on_events is not None:
            if not callable(on_events):
                refuse(call, "on_events must be callable")
            self._events = _events.EventQueue(lambda tier, events: on_events(events), forward)
            c.on_events = _events.manager_sink
            c.events_ctx = self._events.ctx
            keep.append(self._events)
        elif forward is not None:
            c.on_events, c.events_ctx = forward
        out = ffi.new("kvbm_manager_t **")
        st = lib.kvbm_manager_create(c, out)
        if st:
            fail(st, call)
        self.num_blocks = int(num_blocks)
        self._adopt(out[0], lib.kvbm_manager_destroy, keep)
        if publisher is not None:
            publisher._attach(self)

    def _deliver(self):
        ev = self._events
        if ev is not None and ev._pending:
            ev.poll()

    def deliver_events(self, wait=True):
        """Deliver queued event batches now (with ``wait``, also waits for a
        delivery under way in another thread)."""
        if self._events is not None:
            self._events.poll(wait=wait)

    @property
    def pending_events(self):
        """Event batches queued but not yet delivered."""
        return 0 if self._events is None else len(self._events)

    def close(self):
        super().close()
        self.deliver_events()

    # ---------------------------------------------------------- batch calls

    def allocate(self, count, *, evicted=False, out=None):
        """``count`` mutable blocks, all or nothing: their ids (uint32), or
        with ``evicted`` (ids, evicted blocks as EVICTED_DTYPE)."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        if type(count) is not int or count < 0:
            count = _core.as_count(count, "kvbm_manager_allocate", "count")
        ids = out_array(out, count, U32, "kvbm_manager_allocate")
        if evicted:
            ev = _empty(count, EVICTED_DTYPE)
            n_ev = _new(_size_p)
            st = lib.kvbm_manager_allocate(p, count, _from_buffer(_u32p, ids),
                                           ffi.from_buffer("kvbm_evicted_t[]", ev), n_ev)
        else:
            st = lib.kvbm_manager_allocate(p, count, _from_buffer(_u32p, ids), ffi.NULL, ffi.NULL)
        if st:
            fail(st, "kvbm_manager_allocate")
        self._deliver()
        return (ids, ev[: n_ev[0]]) if evicted else ids

    def register(self, ids, hashes, *, parent=None, priority=None, request_blocks=None, first_position=None,
                 out=None):
        """Register mutable ``ids`` under ``hashes`` (hashes[i-1] is the parent
        of hashes[i], ``parent`` that of hashes[0]); the blocks now holding
        each hash (a duplicate's existing block under "reject").
        ``request_blocks`` and ``first_position``: optional hints (the
        request's length in blocks, the position of ids[0] in it) for the
        policies and the G2 admission filter that use them."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        call = "kvbm_manager_register"
        ids = as_index_array(ids, U32, call, "ids")
        hashes = as_index_array(hashes, U64, call, "hashes")
        n = len(ids)
        if len(hashes) != n:
            same_length(call, ids, hashes, "ids", "hashes")
        opts = register_opts(parent, priority, call, request_blocks, first_position)
        res = out_array(out, n, U32, call)
        st = lib.kvbm_manager_register(p, _from_buffer(_u32p, ids), _from_buffer(_u64p, hashes), n,
                                       opts, _from_buffer(_u32p, res))
        if st:
            fail(st, call)
        self._deliver()
        return res

    def acquire(self, ids):
        """One more reference on each registered block."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        ids = as_index_array(ids, U32, "kvbm_manager_acquire", "ids")
        st = lib.kvbm_manager_acquire(p, _from_buffer(_u32p, ids), len(ids))
        if st:
            fail(st, "kvbm_manager_acquire")
        self._deliver()

    def release(self, ids):
        """Drop one reference from each block, in array order."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        ids = as_index_array(ids, U32, "kvbm_manager_release", "ids")
        st = lib.kvbm_manager_release(p, _from_buffer(_u32p, ids), len(ids))
        if st:
            fail(st, "kvbm_manager_release")
        self._deliver()

    def match(self, hashes, *, out=None):
        """The longest registered prefix of ``hashes``, acquired: its ids."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        hashes = as_index_array(hashes, U64, "kvbm_manager_match", "hashes")
        n = len(hashes)
        ids = out_array(out, n, U32, "kvbm_manager_match")
        matched = _new(_size_p)
        st = lib.kvbm_manager_match(p, _from_buffer(_u64p, hashes), n, _from_buffer(_u32p, ids), matched)
        if st:
            fail(st, "kvbm_manager_match")
        self._deliver()
        k = matched[0]
        return ids if k == n else ids[:k]

    def match_allocate_register(self, hashes, *, parent=None, priority=None, request_blocks=None,
                                first_position=None, evicted=False):
        """match(), allocate() and register() of one request in one call
        (kvbm_manager_match_allocate_register): (ids of every hash, number
        matched, number of registrations deduplicated), with ``evicted``
        also the evicted blocks as EVICTED_DTYPE. ``parent`` and the hints
        describe hashes[0], as for register()."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        call = "kvbm_manager_match_allocate_register"
        hashes = as_index_array(hashes, U64, call, "hashes")
        n = len(hashes)
        opts = register_opts(parent, priority, call, request_blocks, first_position)
        ids = _empty(n, U32)
        counts = ffi.new("kvbm_request_counts_t *")
        ev = _empty(n, EVICTED_DTYPE) if evicted else None
        st = lib.kvbm_manager_match_allocate_register(
            p, _from_buffer(_u64p, hashes), n, opts, _from_buffer(_u32p, ids),
            ffi.from_buffer("kvbm_evicted_t[]", ev) if evicted else ffi.NULL, counts)
        if st:
            fail(st, call)
        self._deliver()
        if evicted:
            return ids, counts.matched, counts.deduplicated, ev[: counts.evicted]
        return ids, counts.matched, counts.deduplicated

    def scan(self, hashes, *, touch=True, out=None):
        """Every hash looked up, hits acquired: (ids with BLOCK_NONE for
        misses, number of hits)."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        call = "kvbm_manager_scan"
        hashes = as_index_array(hashes, U64, call, "hashes")
        touch = _core.as_flag(touch, call, "touch")
        n = len(hashes)
        ids = out_array(out, n, U32, call)
        found = _new(_size_p)
        st = lib.kvbm_manager_scan(p, _from_buffer(_u64p, hashes), n, touch, _from_buffer(_u32p, ids), found)
        if st:
            fail(st, call)
        self._deliver()
        return ids, found[0]

    def invalidate(self, ids):
        """Withdraw the hashes of registered blocks whose data is wrong."""
        p = self._ptr
        if p is None:
            raise self._closed_error()
        ids = as_index_array(ids, U32, "kvbm_manager_invalidate", "ids")
        st = lib.kvbm_manager_invalidate(p, _from_buffer(_u32p, ids), len(ids))
        if st:
            fail(st, "kvbm_manager_invalidate")
        self._deliver()

    def announce(self):
        """Send the event sink a stored event for every hash the tier holds
        (each once, parents first, no tokens), to resynchronise routers;
        nothing changes. Precede it with an AllBlocksCleared in the same
        batch (an EventBatcher) for a full resync."""
        st = lib.kvbm_manager_announce(self._p())
        if st:
            fail(st, "kvbm_manager_announce")
        self._deliver()

    def reset_inactive(self):
        """Every inactive block back to reset (BusyError while any is active)."""
        st = lib.kvbm_manager_reset_inactive(self._p())
        if st:
            fail(st, "kvbm_manager_reset_inactive")
        self._deliver()
