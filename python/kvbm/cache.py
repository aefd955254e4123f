"""The tiered cache (include/kvbm/cache.h): G1 device blocks, a pinned host
tier G2 and an optional disk tier G3 (include/kvbm/disk.h), with offload on
eviction and onboarding on a prefix match."""
import collections
import dataclasses
import weakref

from . import _core, _events, _memory, errors
from ._cffi import constants, ffi
from ._core import U32, U64, as_count, as_index_array, fail, lib, refuse
from ._structs import cache_config, disk_config
from .backend import Backend, Fence, Pool, Stream, _check_handle, _check_memory_place
from .layout import FIELDS as LAYOUT_FIELDS
from .layout import Layout, fill_layout_config
from .manager import _ManagerReads, fill_policy_config, find_policy, out_array, register_opts

TIERS = {"g1": constants.KVBM_TIER_G1, "g2": constants.KVBM_TIER_G2, "g3": constants.KVBM_TIER_G3}
_TIER_NAMES = {v: k for k, v in TIERS.items()}
OFFLOAD_MODES = {"write_back": constants.KVBM_OFFLOAD_WRITE_BACK,
                 "write_through": constants.KVBM_OFFLOAD_WRITE_THROUGH}
DISK_IO = {"auto": constants.KVBM_DISK_IO_AUTO, "uring": constants.KVBM_DISK_IO_URING,
           "threads": constants.KVBM_DISK_IO_THREADS}
DURABILITY = {"process": constants.KVBM_DISK_DURABLE_PROCESS, "power": constants.KVBM_DISK_DURABLE_POWER}
METRICS_FIELDS = tuple(name for name, _ in ffi.typeof("kvbm_cache_metrics_t").fields)
DISK_METRICS_FIELDS = tuple(name for name, _ in ffi.typeof("kvbm_disk_metrics_t").fields)

#: What a match found: ids[:g1] were in G1, ids[g1:g1 + onboarded] are being
#: onboarded (the last g3 of them from disk).
MatchResult = collections.namedtuple("MatchResult", "g1 onboarded g3")

_from_buffer = _core.buffer_of
_new = _core.new_of
_size_p = ffi.typeof("size_t *")
_match_result_p = ffi.typeof("kvbm_cache_match_result_t *")
_u32p = ffi.typeof("uint32_t[]")
_u64p = ffi.typeof("uint64_t[]")


@dataclasses.dataclass
class DiskConfig:
    """The disk tier's configuration (kvbm_disk_config_t; defaults as C's)."""

    path: str
    capacity_blocks: int = 0
    capacity_bytes: int = 0
    min_free_bytes: int = 1 << 30
    model_id: str = ""
    tp_rank: int = 0
    tp_size: int = 1
    io: str = "auto"
    direct: bool = True
    queue_depth: int = 64
    io_threads: int = 4
    durability: str = "process"
    preallocate: bool = True
    staging_blocks: int = 256
    policy: str = "lru"

    def _to_c(self, call):
        """(kvbm_disk_config_t *, objects to keep alive during create)."""
        c = disk_config()
        u32 = _core.UINT32_MAX
        if not isinstance(self.path, str) or not self.path:
            refuse(call, "g3.path must be a non-empty str")
        if not isinstance(self.model_id, str):
            refuse(call, "g3.model_id must be a str")
        path = ffi.new("char[]", self.path.encode())
        model = ffi.new("char[]", self.model_id.encode())
        c.path = path
        c.model_id = model
        c.capacity_blocks = as_count(self.capacity_blocks, call, "g3.capacity_blocks", u32)
        c.capacity_bytes = as_count(self.capacity_bytes, call, "g3.capacity_bytes")
        c.min_free_bytes = as_count(self.min_free_bytes, call, "g3.min_free_bytes")
        c.tp_rank = as_count(self.tp_rank, call, "g3.tp_rank", u32)
        c.tp_size = as_count(self.tp_size, call, "g3.tp_size", u32)
        c.io = _core.choice(self.io, DISK_IO, call, "g3.io")
        c.direct = _core.as_flag(self.direct, call, "g3.direct")
        c.queue_depth = as_count(self.queue_depth, call, "g3.queue_depth", u32)
        c.io_threads = as_count(self.io_threads, call, "g3.io_threads", u32)
        c.durability = _core.choice(self.durability, DURABILITY, call, "g3.durability")
        c.preallocate = _core.as_flag(self.preallocate, call, "g3.preallocate")
        c.staging_blocks = as_count(self.staging_blocks, call, "g3.staging_blocks", u32)
        c.policy = find_policy(self.policy, call)
        return c, (path, model)


def _tier(tier, call):
    if isinstance(tier, int) and not isinstance(tier, bool) and tier in _TIER_NAMES:
        return tier
    return _core.choice(tier, TIERS, call, "tier")


class TierManager(_ManagerReads):
    """The manager of one cache tier, for reading (counts, metrics, contains,
    match_length, Prometheus/JSON text). Changes go through the cache."""

    def __init__(self, ptr, cache):
        self._raw = ptr
        self._cache = cache

    @property
    def _ptr(self):
        return self._raw if self._cache._ptr is not None else None

    @property
    def closed(self):
        return self._cache._ptr is None

    def _closed_error(self):
        return self._cache._closed_error()


class Cache(_core.Handle):
    """A tiered KV cache (kvbm_cache_t) over a Backend.

    ``layout``: a Layout (its geometry is copied; num_blocks is the G1
    capacity) or a dict of Layout's arguments. ``g2_blocks``: the pinned host
    tier (0: none). ``g3``: a DiskConfig (needs G2). ``g1_memory``: the
    engine's own KV memory for G1 (a tensor or array of at least the
    layout's total bytes, aligned to its alignment), kept alive by the cache.
    ``engine_stream``: the engine's compute Stream. ``on_events``: callable
    (tier name, events array), delivered as Manager's.
    ``offload_admission``: offload to G2 only evicted blocks of classes that
    come back often enough (include/kvbm/admission.h; write-back only),
    ``admission_keep_ratio`` its threshold (0: the filter's default).
    """

    def __init__(self, backend, layout, *, g2_blocks=0, g1_policy="lru", g2_policy="lru",
                 offload_mode="write_back", engine_stream=None, on_events=None, g1_memory=None,
                 g3=None, multi_lru_thresholds=(3, 8, 15), sketch_width=0, offload_admission=False,
                 admission_keep_ratio=0.0):
        call = "kvbm_cache_create"
        if not isinstance(backend, Backend):
            refuse(call, "backend must be a Backend, not %s" % type(backend).__name__)
        c = cache_config()
        c.backend = backend._p()
        if isinstance(layout, Layout):
            geometry = layout.config
        elif isinstance(layout, dict):
            unknown = set(layout) - set(LAYOUT_FIELDS)
            if unknown:
                refuse(call, "unknown layout fields: %s" % ", ".join(sorted(unknown)))
            geometry = dict(kind="fully_contiguous", outer_dim=2, elem_size=2, alignment=256,
                            outer_contiguous=True)
            geometry.update(layout)
            missing = [f for f in LAYOUT_FIELDS if f not in geometry]
            if missing:
                refuse(call, "layout needs %s" % ", ".join(missing))
        else:
            refuse(call, "layout must be a Layout or a dict, not %s" % type(layout).__name__)
        fill_layout_config(c.layout, call, geometry["num_blocks"], geometry["num_layers"],
                           geometry["tokens_per_block"], geometry["inner_dim"], geometry["outer_dim"],
                           geometry["elem_size"], geometry["kind"], geometry["alignment"],
                           geometry["outer_contiguous"])
        c.g2_blocks = as_count(g2_blocks, call, "g2_blocks", _core.UINT32_MAX)
        c.g1_policy = find_policy(g1_policy, call)
        c.g2_policy = find_policy(g2_policy, call)
        fill_policy_config(c.policy_config, call, multi_lru_thresholds, sketch_width)
        c.offload_mode = _core.choice(offload_mode, OFFLOAD_MODES, call, "offload_mode")
        c.offload_admission = _core.as_flag(offload_admission, call, "offload_admission")
        if isinstance(admission_keep_ratio, bool) or not isinstance(admission_keep_ratio, (int, float)) \
                or not 0.0 <= admission_keep_ratio < float("inf"):
            refuse(call, "admission_keep_ratio must be a finite number >= 0, not %r" % (admission_keep_ratio,))
        c.admission_keep_ratio = float(admission_keep_ratio)
        keep = [backend]
        if engine_stream is not None:
            c.engine_stream = _check_handle(engine_stream, Stream, call, "engine_stream", backend)
            keep.append(engine_stream)
        if g1_memory is not None:
            ptr, size, where = _memory.describe(g1_memory, call, "g1_memory")
            _check_memory_place(backend, constants.KVBM_MEM_DEVICE, where, call)
            c.g1_memory = ffi.cast("void *", ptr)
            c.g1_memory_bytes = size
            keep.append(g1_memory)
        during_create = []
        if g3 is not None:
            if not isinstance(g3, DiskConfig):
                refuse(call, "g3 must be a DiskConfig, not %s" % type(g3).__name__)
            disk, strings = g3._to_c(call)
            c.g3 = disk
            during_create += [disk, strings]
        self._events = None
        if on_events is not None:
            if not callable(on_events):
                refuse(call, "on_events must be callable")
            self._events = _events.EventQueue(lambda tier, events: on_events(_TIER_NAMES[tier], events))
            keep.append(self._events)
        # The cache hands its records to a batcher, which must outlive it:
        # destroyed right after the cache.
        batcher = ffi.NULL
        if self._events is not None:
            out_batcher = ffi.new("kvbm_event_batcher_t **")
            st = lib.kvbm_event_batcher_create(_events.cache_sink, self._events.ctx, out_batcher)
            if st:
                fail(st, call)
            batcher = out_batcher[0]
            c.events_batcher = batcher
        out = ffi.new("kvbm_cache_t **")
        st = lib.kvbm_cache_create(c, out)
        if st:
            lib.kvbm_event_batcher_destroy(batcher)
            fail(st, call)
        del during_create  # read at create only
        self.backend = backend
        self._borrowed_pools = weakref.WeakValueDictionary()

        def destroy(cache, batcher=batcher):
            lib.kvbm_cache_destroy(cache)
            lib.kvbm_event_batcher_destroy(batcher)

        self._adopt(out[0], destroy, keep)
        backend._child(self)
        if engine_stream is not None:
            engine_stream._children.add(self)

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p

    def _before_close(self):
        for pool in list(self._borrowed_pools.values()):
            live = pool._views.live()
            if live:
                raise _memory.busy("Cache.close", "the cache's %s pool" % pool._tier_name, live)

    def close(self):
        """Wait for every copy and disk write, then free the cache (the G3
        file stays). Refused while an array view of its pools lives."""
        super().close()
        self.deliver_events()

    def deliver_events(self, wait=True):
        if self._events is not None:
            self._events.poll(wait=wait)

    @property
    def pending_events(self):
        return 0 if self._events is None else len(self._events)

    def _deliver(self):
        ev = self._events
        if ev is not None and ev._pending:
            ev.poll()

    def _fence(self, ready, call):
        return ffi.NULL if ready is None else _check_handle(ready, Fence, call, "ready", self.backend)

    # ---------------------------------------------------------- batch calls

    def allocate(self, count, *, ready=None, out=None):
        """``count`` mutable G1 blocks (offloading what they evict)."""
        p = self._p()
        call = "kvbm_cache_allocate"
        if type(count) is not int or count < 0:
            count = as_count(count, call, "count")
        ids = out_array(out, count, U32, call)
        st = lib.kvbm_cache_allocate(p, count, _from_buffer(_u32p, ids), self._fence(ready, call))
        if st:
            fail(st, call)
        self._deliver()
        return ids

    def _match_call(self, fn, call, hashes, ready, out, whole):
        p = self._p()
        hashes = as_index_array(hashes, U64, call, "hashes")
        n = len(hashes)
        ids = out_array(out, n, U32, call)
        r = _new(_match_result_p)
        st = fn(p, _from_buffer(_u64p, hashes), n, _from_buffer(_u32p, ids), r, self._fence(ready, call))
        if st:
            fail(st, call)
        self._deliver()
        result = MatchResult(r.g1, r.onboarded, r.g3)
        return (ids if whole else ids[: r.g1 + r.onboarded]), result

    def match(self, hashes, *, ready=None, out=None):
        """The prefix held in G1 then G2 (then G3), acquired in G1 (lower
        tiers onboarded): (ids of the prefix, MatchResult)."""
        return self._match_call(lib.kvbm_cache_match, "kvbm_cache_match", hashes, ready, out, False)

    def acquire(self, hashes, *, ready=None, out=None):
        """A whole request: match, then fresh blocks for the rest: (ids for
        every hash, MatchResult); ids[g1 + onboarded:] are mutable."""
        return self._match_call(lib.kvbm_cache_acquire, "kvbm_cache_acquire", hashes, ready, out, True)

    def register(self, ids, hashes, *, parent=None, priority=None, request_blocks=None, first_position=None,
                 out=None):
        """Register mutable G1 blocks (see Manager.register)."""
        p = self._p()
        call = "kvbm_cache_register"
        ids = as_index_array(ids, U32, call, "ids")
        hashes = as_index_array(hashes, U64, call, "hashes")
        n = len(ids)
        if len(hashes) != n:
            refuse(call, "ids has %d entries but hashes has %d" % (n, len(hashes)))
        opts = register_opts(parent, priority, call, request_blocks, first_position)
        res = out_array(out, n, U32, call)
        st = lib.kvbm_cache_register(p, _from_buffer(_u32p, ids), _from_buffer(_u64p, hashes), n, opts,
                                     _from_buffer(_u32p, res))
        if st:
            fail(st, call)
        self._deliver()
        return res

    def release(self, ids):
        """Drop one reference from each G1 block."""
        p = self._p()
        ids = as_index_array(ids, U32, "kvbm_cache_release", "ids")
        st = lib.kvbm_cache_release(p, _from_buffer(_u32p, ids), len(ids))
        if st:
            fail(st, "kvbm_cache_release")
        self._deliver()

    def scan(self, hashes, *, touch=True, out=None):
        """Manager.scan on G1 (no onboarding): (ids, hits)."""
        p = self._p()
        call = "kvbm_cache_scan"
        hashes = as_index_array(hashes, U64, call, "hashes")
        touch = _core.as_flag(touch, call, "touch")
        ids = out_array(out, len(hashes), U32, call)
        found = _new(_size_p)
        st = lib.kvbm_cache_scan(p, _from_buffer(_u64p, hashes), len(hashes), touch, _from_buffer(_u32p, ids), found)
        if st:
            fail(st, call)
        self._deliver()
        return ids, found[0]

    def check(self, ids):
        """Wait for the copies loading these G1 blocks; CopyFailedError if a
        block's data failed to load (do not use it)."""
        p = self._p()
        ids = as_index_array(ids, U32, "kvbm_cache_check", "ids")
        st = lib.kvbm_cache_check(p, _from_buffer(_u32p, ids), len(ids))
        self._deliver()
        if st:
            fail(st, "kvbm_cache_check")

    def progress(self):
        """Process completed copies without waiting."""
        st = lib.kvbm_cache_progress(self._p())
        self._deliver()
        if st:
            fail(st, "kvbm_cache_progress")

    def sync(self):
        """Wait for every copy in flight and process it."""
        st = lib.kvbm_cache_sync(self._p())
        self._deliver()
        if st:
            fail(st, "kvbm_cache_sync")

    # ---------------------------------------------------------------- reads

    def block_address(self, block, layer=0, outer=0):
        """Address (int) of G1 block ``block``'s chunk (layer, outer)."""
        call = "kvbm_cache_block_address"
        u32 = _core.UINT32_MAX
        out = ffi.new("void **")
        st = lib.kvbm_cache_block_address(self._p(), as_count(block, call, "block", u32),
                                          as_count(layer, call, "layer", u32), as_count(outer, call, "outer", u32),
                                          out)
        if st:
            fail(st, call)
        return int(ffi.cast("uintptr_t", out[0]))

    def pool(self, tier="g1"):
        """A tier's pool (the cache's; valid while it is open), or None."""
        t = _tier(tier, "kvbm_cache_pool")
        pool = self._borrowed_pools.get(t)
        if pool is None:
            ptr = lib.kvbm_cache_pool(self._p(), t)
            if ptr == ffi.NULL:
                return None
            pool = Pool._borrow(ptr, self.backend, self)
            pool._tier_name = _TIER_NAMES[t]
            self._borrowed_pools[t] = pool
        return pool

    def layout(self, tier="g1"):
        """A tier's layout (the cache's; valid while it is open), or None."""
        ptr = lib.kvbm_cache_layout(self._p(), _tier(tier, "kvbm_cache_layout"))
        return None if ptr == ffi.NULL else Layout._borrow(ptr, self)

    def tier(self, tier):
        """A tier's manager, for reading, or None when the cache lacks the tier."""
        ptr = lib.kvbm_cache_manager(self._p(), _tier(tier, "kvbm_cache_manager"))
        return None if ptr == ffi.NULL else TierManager(ptr, self)

    def numpy(self, tier="g1", dtype=None):
        """A tier's pool as a numpy array shaped by its layout (no copy)."""
        return self._pool_or_fail(tier, "Cache.numpy").numpy(self.layout(tier), dtype)

    def torch(self, tier="g1", dtype=None):
        """A tier's pool as a torch tensor shaped by its layout (no copy)."""
        return self._pool_or_fail(tier, "Cache.torch").torch(self.layout(tier), dtype)

    def _pool_or_fail(self, tier, call):
        pool = self.pool(tier)
        if pool is None:
            raise errors.make(errors.NotFoundError.status, call, "the cache has no %s pool" % tier)
        return pool

    def metrics(self):
        """The cache's counters (KVBM_CACHE_METRICS_LIST) as a dict."""
        m = ffi.new("kvbm_cache_metrics_t *")
        lib.kvbm_cache_metrics(self._p(), m)
        return {name: getattr(m, name) for name in METRICS_FIELDS}

    def disk_metrics(self):
        """The disk tier's store counters as a dict (InvalidArgumentError without G3)."""
        m = ffi.new("kvbm_disk_metrics_t *")
        st = lib.kvbm_cache_disk_metrics(self._p(), m)
        if st:
            fail(st, "kvbm_cache_disk_metrics")
        return {name: getattr(m, name) for name in DISK_METRICS_FIELDS}

    @property
    def g3_engine(self):
        """The disk tier's I/O engine ("io_uring+direct", ...), None without G3."""
        e = lib.kvbm_cache_g3_engine(self._p())
        return None if e == ffi.NULL else _core.text(e)

    def metrics_prometheus(self):
        """The cache's and every tier's metrics as Prometheus text."""
        return _core.write_to_string("kvbm_cache_metrics_prometheus", lib.kvbm_cache_metrics_prometheus, self._p())
