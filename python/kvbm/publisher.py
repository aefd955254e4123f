"""KV events for routers (include/kvbm/events.h): a Publisher sends the event
records managers and caches produce to subscribers in vLLM's wire format
(ZMQ PUB, ROUTER for replay, msgpack payloads; docs/EVENTS.md).

A Manager or Cache given ``publisher=`` feeds it directly from C (the
records never enter Python); with ``on_events=`` too, the binding's sink
queues them for the callable and hands the same records to the publisher.

Lifetimes (docs/DECISIONS.md 115): whatever a publisher feeds keeps a
reference to it, and ``Publisher.close()`` refuses (BusyError) while a
manager, cache or batcher attached to it is open, so the C publisher is
never destroyed under a sink that still calls it.
"""
import dataclasses
import weakref

import numpy as np

from . import _core, errors
from ._cffi import constants, ffi
from ._core import U32, U64, as_count, as_index_array, fail, lib, refuse

#: kvbm_publisher_config_t.data_parallel_rank meaning "not set" (the batch
#: then has no rank field); KVBM_PUBLISHER_NO_RANK.
NO_RANK = -1
DEFAULT_ENDPOINT = "tcp://*:5557"

STORED = constants.KVBM_EVENT_STORED
REMOVED = constants.KVBM_EVENT_REMOVED
CLEARED = constants.KVBM_EVENT_CLEARED
KINDS = {"stored": STORED, "removed": REMOVED, "cleared": CLEARED}



def medium_name(medium):
    """kvbm_medium_t value -> "GPU", "CPU" or "DISK" (None outside the enum)."""
    medium = as_count(medium, "kvbm_medium_name", "medium", _core.UINT32_MAX)
    name = lib.kvbm_medium_name(medium)
    return None if name == ffi.NULL else _core.text(name)


#: Medium names as the library spells them -> kvbm_medium_t.
MEDIA = {medium_name(m): m for m in (constants.KVBM_MEDIUM_GPU, constants.KVBM_MEDIUM_CPU, constants.KVBM_MEDIUM_DISK)}

METRICS_FIELDS = tuple(name for name, _ in ffi.typeof("kvbm_publisher_metrics_t").fields)


def _numpy_type(ctype):
    """The numpy scalar type with the size and signedness of a cffi field type."""
    if ctype.kind == "pointer":
        return np.dtype("<u%d" % ffi.sizeof(ctype))
    if ctype.kind == "primitive" and ctype.cname == "_Bool":
        return np.dtype("?")
    if ctype.kind in ("primitive", "enum"):
        signed = int(ffi.cast(ctype, -1)) < 0
        return np.dtype("<%s%d" % ("i" if signed else "u", ffi.sizeof(ctype)))
    raise TypeError(ctype.kind)


def _record_dtype():
    t = ffi.typeof("kvbm_event_record_t")
    names = [name for name, _ in t.fields]
    return np.dtype({
        "names": names,
        "formats": [_numpy_type(f.type) for _, f in t.fields],
        "offsets": [f.offset for _, f in t.fields],
        "itemsize": ffi.sizeof(t),
    })


#: kvbm_event_record_t (include/kvbm/event_record.h) as a numpy structured
#: dtype: the same field names, offsets, sizes and signedness, pointers as
#: unsigned integers of pointer size. Publisher.publish builds its records
#: in an array of it and hands that array to C as it is.
EVENT_RECORD_DTYPE = _record_dtype()


@dataclasses.dataclass
class EventRecord:
    """One event for Publisher.publish (a kvbm_event_record_t).

    ``kind``: "stored", "removed" or "cleared". ``hashes``: the run (stored:
    in chain order, ``parent`` the parent of the first, None when the run
    starts a sequence). ``medium``: "GPU", "CPU" or "DISK". Stored only:
    ``tokens`` (block_size per block, or none), ``block_size``, ``lora_id``,
    ``lora_name``.
    """

    kind: str
    hashes: object = ()
    medium: str = "GPU"
    parent: object = None
    block_size: int = 0
    tokens: object = None
    lora_id: object = None
    lora_name: object = None


def _records(events, call):
    """(array of EVENT_RECORD_DTYPE, objects its pointers point into)."""
    if isinstance(events, EventRecord):
        events = [events]
    events = list(events)
    out = np.zeros(len(events), EVENT_RECORD_DTYPE)
    keep = []
    for i, e in enumerate(events):
        if not isinstance(e, EventRecord):
            refuse(call, "events must be EventRecord objects, not %s" % type(e).__name__)
        r = out[i]
        r["kind"] = _core.choice(e.kind, KINDS, call, "kind")
        r["medium"] = _core.choice(e.medium, MEDIA, call, "medium")
        if r["kind"] == CLEARED:
            if len(e.hashes):
                refuse(call, "a cleared event carries no hashes")
            continue
        hashes = as_index_array(e.hashes, U64, call, "hashes")
        keep.append(hashes)
        r["count"] = len(hashes)
        r["hashes"] = hashes.ctypes.data if len(hashes) else 0
        if r["kind"] == REMOVED:
            if e.parent is not None or e.tokens is not None or e.lora_id is not None or e.lora_name is not None \
                    or e.block_size:
                refuse(call, "a removed event carries only hashes and a medium")
            continue
        if e.parent is not None:
            r["parent_hash"] = as_count(e.parent, call, "parent")
            r["has_parent"] = True
        r["block_size"] = as_count(e.block_size, call, "block_size", _core.UINT32_MAX)
        if e.tokens is not None:
            tokens = as_index_array(e.tokens, U32, call, "tokens")
            if len(tokens) != len(hashes) * int(r["block_size"]):
                refuse(call, "tokens must be block_size (%d) per hash: %d for %d hashes, not %d"
                       % (r["block_size"], len(hashes) * int(r["block_size"]), len(hashes), len(tokens)))
            keep.append(tokens)
            r["n_tokens"] = len(tokens)
            r["tokens"] = tokens.ctypes.data if len(tokens) else 0
        if e.lora_id is not None:
            if not isinstance(e.lora_id, (int, np.integer)) or isinstance(e.lora_id, bool) \
                    or not -2**63 <= e.lora_id < 2**63:
                refuse(call, "lora_id must be a 64-bit integer, not %r" % (e.lora_id,))
            r["lora_id"] = int(e.lora_id)
            r["has_lora_id"] = True
        if e.lora_name is not None:
            if not isinstance(e.lora_name, str) or "\0" in e.lora_name:
                refuse(call, "lora_name must be a str without NUL, not %r" % (e.lora_name,))
            name = ffi.new("char[]", e.lora_name.encode())
            keep.append(name)
            r["lora_name"] = int(ffi.cast("uintptr_t", name))
    return out, keep


def _text_arg(value, call, what, allow_none):
    if value is None and allow_none:
        return ffi.NULL
    if not isinstance(value, str) or "\0" in value:
        refuse(call, "%s must be a str without NUL%s, not %r" % (what, " or None" if allow_none else "", value))
    return ffi.new("char[]", value.encode())


def publisher_config():
    """kvbm_publisher_config_t with KVBM_PUBLISHER_CONFIG_INIT's defaults
    (the endpoint excepted: the caller sets it)."""
    c = ffi.new("kvbm_publisher_config_t *")
    c.struct_size = ffi.sizeof("kvbm_publisher_config_t")
    c.version = constants.KVBM_PUBLISHER_CONFIG_VERSION
    c.buffer_steps = constants.KVBM_PUBLISHER_DEFAULT_BUFFER_STEPS
    c.hwm = constants.KVBM_PUBLISHER_DEFAULT_HWM
    c.queue_depth = constants.KVBM_PUBLISHER_DEFAULT_QUEUE_DEPTH
    c.data_parallel_rank = NO_RANK
    c.linger_ms = 1000
    c.max_delay_ms = 1
    return c


class _Fed:
    """What publishers and batchers share: the open objects they feed."""

    def _init_fed(self):
        self._fed = weakref.WeakSet()

    def _attach(self, obj):
        self._fed.add(obj)

    def _before_close(self):
        live = [o for o in self._fed if not o.closed]
        if live:
            names = sorted({type(o).__name__ for o in live})
            raise errors.make(errors.BusyError.status, "%s.close" % type(self).__name__,
                              "%d object(s) still send it their events (%s); close them first"
                              % (len(live), ", ".join(names)))

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p


class Publisher(_Fed, _core.Handle):
    """A KV event publisher (kvbm_publisher_t): binds or connects its PUB
    socket (``endpoint``, vLLM's convention: "*", "::", ipc:// or inproc://
    bind, anything else connects), binds the replay ROUTER
    (``replay_endpoint``, None: no replay) and starts its thread.

    ``topic``: the first frame of every batch. ``buffer_steps``: batches
    kept for replay. ``hwm``: the PUB socket's high-water mark (0: none).
    ``queue_depth``: batches waiting for the thread, at most.
    ``data_parallel_rank``: sent in every batch (None: omitted);
    ``offset_ports_by_rank``: add it to both TCP ports. ``linger_ms``: how
    long close() lets the sockets deliver. ``max_delay_ms``: how late the
    thread may pick up a batch while batches keep coming.
    """

    def __init__(self, endpoint=DEFAULT_ENDPOINT, *, replay_endpoint=None, topic="", buffer_steps=None, hwm=None,
                 queue_depth=None, data_parallel_rank=None, offset_ports_by_rank=False, linger_ms=1000,
                 max_delay_ms=1):
        call = "kvbm_publisher_create"
        c = publisher_config()
        u32 = _core.UINT32_MAX
        int_max = 2**31 - 1
        strings = [_text_arg(endpoint, call, "endpoint", False), _text_arg(replay_endpoint, call, "replay_endpoint", True),
                   _text_arg(topic, call, "topic", True)]
        c.endpoint, c.replay_endpoint, c.topic = strings
        if buffer_steps is not None:
            c.buffer_steps = as_count(buffer_steps, call, "buffer_steps", u32)
        if hwm is not None:
            c.hwm = as_count(hwm, call, "hwm", int_max)
        if queue_depth is not None:
            c.queue_depth = as_count(queue_depth, call, "queue_depth", u32)
            if c.queue_depth == 0:
                refuse(call, "queue_depth must be at least 1")
        if data_parallel_rank is not None:
            c.data_parallel_rank = as_count(data_parallel_rank, call, "data_parallel_rank", int_max)
        c.offset_ports_by_rank = _core.as_flag(offset_ports_by_rank, call, "offset_ports_by_rank")
        if offset_ports_by_rank and data_parallel_rank is None:
            refuse(call, "offset_ports_by_rank needs a data_parallel_rank")
        c.linger_ms = as_count(linger_ms, call, "linger_ms", int_max)
        c.max_delay_ms = as_count(max_delay_ms, call, "max_delay_ms", u32)
        out = ffi.new("kvbm_publisher_t **")
        st = lib.kvbm_publisher_create(c, out)  # copies the strings
        if st:
            fail(st, call)
        self._init_fed()
        self.topic = topic or ""
        self.data_parallel_rank = data_parallel_rank
        self._adopt(out[0], lib.kvbm_publisher_destroy)

    @property
    def endpoint(self):
        """The endpoint the PUB socket is bound or connected to, after the
        rank offset (for "tcp://*:0", the port the system chose)."""
        return _core.text(lib.kvbm_publisher_endpoint(self._p()))

    @property
    def replay_endpoint(self):
        """As ``endpoint``, for the replay socket; None without one."""
        e = lib.kvbm_publisher_replay_endpoint(self._p())
        return None if e == ffi.NULL else _core.text(e)

    def publish(self, events):
        """Queue one batch holding ``events`` (EventRecord objects, or one).
        Never waits for the network. BusyError: the queue was full, the batch
        was dropped (counted, its sequence number skipped)."""
        call = "kvbm_publisher_publish"
        p = self._p()
        records, keep = _records(events, call)
        st = lib.kvbm_publisher_publish(p, ffi.from_buffer("kvbm_event_record_t[]", records), len(records))
        del keep  # the pointers were read during the call only
        if st:
            fail(st, call)

    def flush(self, timeout_ms=10000):
        """Wait until every batch queued so far was handed to the socket
        (TimedOutError after ``timeout_ms``)."""
        st = lib.kvbm_publisher_flush(self._p(), as_count(timeout_ms, "kvbm_publisher_flush", "timeout_ms",
                                                          _core.UINT32_MAX))
        if st:
            fail(st, "kvbm_publisher_flush")

    @property
    def resync_needed(self):
        """Whether a batch was dropped since the last AllBlocksCleared was
        queued: then call Cache.announce() (one atomic load)."""
        return bool(lib.kvbm_publisher_resync_needed(self._p()))

    def metrics(self):
        """Counters and gauges (KVBM_PUBLISHER_METRICS_LIST) as a dict."""
        m = ffi.new("kvbm_publisher_metrics_t *")
        lib.kvbm_publisher_metrics(self._p(), m)
        return {name: getattr(m, name) for name in METRICS_FIELDS}

    def metrics_prometheus(self):
        """The metrics as Prometheus text (kvbm_events_*)."""
        return _core.write_to_string("kvbm_publisher_metrics_prometheus", lib.kvbm_publisher_metrics_prometheus,
                                     self._p())

    def batcher(self):
        """A new EventBatcher publishing through this publisher."""
        return EventBatcher(self)

    def _sink(self):
        """(kvbm_event_record_fn, context) a manager feeds this publisher with."""
        return lib.kvbm_publisher_sink, self._p()

    def close(self):
        """Send what is queued (waiting up to linger_ms), stop the thread,
        close the sockets. BusyError while an open manager, cache or batcher
        feeds it."""
        super().close()


class EventBatcher(_Fed, _core.Handle):
    """Gathers the events of several managers' calls into one batch for a
    publisher (kvbm_publisher_batcher_create): give it to managers as
    ``publisher=``, then flush() once per scheduler step. As in C it is not
    thread-safe: the managers it feeds and flush() must not run at once.
    Keeps its publisher open; refuses to close while a manager feeds it."""

    def __init__(self, publisher):
        call = "kvbm_publisher_batcher_create"
        if not isinstance(publisher, Publisher):
            refuse(call, "publisher must be a Publisher, not %s" % type(publisher).__name__)
        out = ffi.new("kvbm_event_batcher_t **")
        st = lib.kvbm_publisher_batcher_create(publisher._p(), out)
        if st:
            fail(st, call)
        self._init_fed()
        self.publisher = publisher
        self._adopt(out[0], lib.kvbm_event_batcher_destroy, (publisher,))
        publisher._attach(self)

    def flush(self):
        """Publish everything gathered as one batch (nothing if none)."""
        lib.kvbm_event_batcher_flush(self._p())

    def _sink(self):
        return lib.kvbm_event_batcher_sink, self._p()


def sink_of(publisher, call):
    """The (kvbm_event_record_fn, context) that feeds ``publisher`` (a
    Publisher or an EventBatcher), for a Manager being made; the Manager
    then registers with ``publisher._attach(self)`` once it exists."""
    if not isinstance(publisher, (Publisher, EventBatcher)):
        refuse(call, "publisher must be a Publisher or an EventBatcher, not %s" % type(publisher).__name__)
    return publisher._sink()
