"""Memory backends (include/kvbm/backend.h): pools, streams, fences and
batched copies, on CUDA or on the CPU fallback."""
import weakref

import numpy as np

from . import _core, _memory, errors
from ._cffi import constants, ffi
from ._core import U32, as_count, as_index_array, fail, lib, refuse
from ._structs import backend_config
from .layout import Layout

KINDS = {"auto": constants.KVBM_BACKEND_AUTO, "cpu": constants.KVBM_BACKEND_CPU,
         "cuda": constants.KVBM_BACKEND_CUDA}
_KIND_NAMES = {v: k for k, v in KINDS.items()}
MEM_KINDS = {"device": constants.KVBM_MEM_DEVICE, "host": constants.KVBM_MEM_HOST}
_MEM_NAMES = {v: k for k, v in MEM_KINDS.items()}
COPY_DIRS = {"d2h": constants.KVBM_COPY_D2H, "h2d": constants.KVBM_COPY_H2D,
             "d2d": constants.KVBM_COPY_D2D, "h2h": constants.KVBM_COPY_H2H}
PINNED_METHODS = {"default": constants.KVBM_PINNED_DEFAULT, "host_alloc": constants.KVBM_PINNED_HOST_ALLOC,
                  "register": constants.KVBM_PINNED_REGISTER}
COPY_METHODS = {"auto": constants.KVBM_COPY_METHOD_AUTO, "batch": constants.KVBM_COPY_METHOD_BATCH,
                "kernel": constants.KVBM_COPY_METHOD_KERNEL, "per_region": constants.KVBM_COPY_METHOD_PER_REGION}

#: One kvbm_copy_t (src, dst, bytes) as numpy sees it.
COPY_DTYPE = np.dtype(
    {
        "names": ["src", "dst", "bytes"],
        "formats": ["<u8", "<u8", "<u8"],
        "offsets": [ffi.offsetof("kvbm_copy_t", f) for f in ("src", "dst", "bytes")],
        "itemsize": ffi.sizeof("kvbm_copy_t"),
    }
)

_u32p = ffi.typeof("uint32_t[]")


def cuda_built():
    """Whether this libkvbm has the CUDA backend compiled in."""
    return bool(lib.kvbm_backend_cuda_built())


class _Parent(_core.Handle):
    """A handle other handles are made from; it closes after all of them."""

    def _init_children(self):
        self._children = weakref.WeakSet()

    def _before_close(self):
        live = [c for c in self._children if not c.closed]
        if live:
            names = sorted({type(c).__name__ for c in live})
            raise errors.make(errors.BusyError.status, "%s.close" % type(self).__name__,
                              "%d object(s) made from it are still open (%s); close them first"
                              % (len(live), ", ".join(names)))


def _check_handle(obj, cls, call, what, backend=None):
    if not isinstance(obj, cls):
        refuse(call, "%s must be a %s, not %s" % (what, cls.__name__, type(obj).__name__))
    p = obj._p()
    if backend is not None and getattr(obj, "backend", backend) is not backend:
        refuse(call, "%s belongs to another backend" % what)
    return p


class Backend(_Parent):
    """A memory backend (kvbm_backend_t): "auto" (CUDA when a GPU is present,
    else CPU), "cpu" or "cuda". Pools, streams, fences and caches made from
    it must be closed first."""

    def __init__(self, kind="auto", *, device=0, synchronous=False, fail_nth_copy=0,
                 pinned_method="default", first_touch_threads=0, huge_pages=False, copy_method="auto",
                 kernel_threshold=65536, pinned_chunk_bytes=0):
        call = "kvbm_backend_create"
        c = backend_config()
        c.kind = _core.choice(kind, KINDS, call, "kind")
        if not isinstance(device, int) or isinstance(device, bool) or not -(2**31) <= device < 2**31:
            refuse(call, "device must be an int, not %r" % (device,))
        c.device = device
        c.synchronous = _core.as_flag(synchronous, call, "synchronous")
        c.fail_nth_copy = as_count(fail_nth_copy, call, "fail_nth_copy")
        c.pinned_method = _core.choice(pinned_method, PINNED_METHODS, call, "pinned_method")
        c.first_touch_threads = as_count(first_touch_threads, call, "first_touch_threads", _core.UINT32_MAX)
        c.huge_pages = _core.as_flag(huge_pages, call, "huge_pages")
        c.copy_method = _core.choice(copy_method, COPY_METHODS, call, "copy_method")
        c.kernel_threshold = as_count(kernel_threshold, call, "kernel_threshold")
        c.pinned_chunk_bytes = as_count(pinned_chunk_bytes, call, "pinned_chunk_bytes")
        out = ffi.new("kvbm_backend_t **")
        st = lib.kvbm_backend_create(c, out)
        if st:
            fail(st, call)
        self._init_children()
        self._adopt(out[0], lib.kvbm_backend_destroy)

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p

    @property
    def name(self):
        """"cpu" or "cuda"."""
        return _core.text(lib.kvbm_backend_name(self._p()))

    @property
    def kind(self):
        """The kind selected ("cpu" or "cuda", never "auto")."""
        return _KIND_NAMES[lib.kvbm_backend_kind(self._p())]

    def fail_nth_copy(self, n):
        """Test hook: the n-th copy call from now fails when it runs; 0 disarms."""
        st = lib.kvbm_backend_fail_nth_copy(self._p(), as_count(n, "kvbm_backend_fail_nth_copy", "n"))
        if st:
            fail(st, "kvbm_backend_fail_nth_copy")

    def _child(self, obj):
        self._children.add(obj)
        return obj

    def pool(self, nbytes, kind="device"):
        """A new pool of ``nbytes`` ("device": G1, "host": pinned G2)."""
        return self._child(Pool(self, nbytes, kind))

    def wrap(self, memory, kind="device"):
        """Memory the caller owns (numpy array, torch tensor, CUDA array,
        writable buffer) as a pool; kept alive by the pool, never freed by it."""
        return self._child(Pool(self, None, kind, memory=memory))

    def stream(self):
        """A new stream (CPU: a worker thread; CUDA: a non-blocking stream)."""
        return self._child(Stream(self))

    def wrap_stream(self, native):
        """A CUDA stream the caller owns (an int handle, or an object with
        ``cuda_stream`` such as torch.cuda.Stream) as a kvbm stream."""
        return self._child(Stream(self, native=native))

    def fence(self):
        """A new fence (complete until recorded)."""
        return self._child(Fence(self))

    # --------------------------------------------------------------- copies

    def copy(self, stream, copies, direction, fence=None):
        """Enqueue a batch of raw copies: ``copies`` a COPY_DTYPE array of
        (src address, dst address, bytes). The memory must stay valid until a
        fence recorded after the batch completes."""
        call = "kvbm_backend_copy"
        sp = _check_handle(stream, Stream, call, "stream", self)
        if not isinstance(copies, np.ndarray) or copies.dtype != COPY_DTYPE or copies.ndim != 1:
            refuse(call, "copies must be a one-dimensional array of kvbm.COPY_DTYPE")
        copies = np.ascontiguousarray(copies)
        fp = ffi.NULL if fence is None else _check_handle(fence, Fence, call, "fence", self)
        d = _core.choice(direction, COPY_DIRS, call, "direction")
        st = lib.kvbm_backend_copy(self._p(), sp, ffi.from_buffer("kvbm_copy_t[]", copies), len(copies), d, fp)
        if st:
            fail(st, call)

    def copy_blocks(self, stream, layout, src_pool, src_ids, dst_pool, dst_ids, direction, fence=None):
        """Copy whole blocks src_ids[i] -> dst_ids[i] between two pools of one layout."""
        call = "kvbm_backend_copy_blocks"
        args = self._copy_args(call, stream, src_pool, src_ids, dst_pool, dst_ids, direction, fence)
        sp, spool, sids, dpool, dids, n, d, fp = args
        lp = _check_handle(layout, Layout, call, "layout")
        st = lib.kvbm_backend_copy_blocks(self._p(), sp, lp, spool, ffi.from_buffer(_u32p, sids), dpool,
                                          ffi.from_buffer(_u32p, dids), n, d, fp)
        if st:
            fail(st, call)

    def copy_blocks_between(self, stream, src_layout, src_pool, src_ids, dst_layout, dst_pool, dst_ids,
                            direction, fence=None):
        """As copy_blocks between pools of two compatible layouts."""
        call = "kvbm_backend_copy_blocks_between"
        args = self._copy_args(call, stream, src_pool, src_ids, dst_pool, dst_ids, direction, fence)
        sp, spool, sids, dpool, dids, n, d, fp = args
        slp = _check_handle(src_layout, Layout, call, "src_layout")
        dlp = _check_handle(dst_layout, Layout, call, "dst_layout")
        st = lib.kvbm_backend_copy_blocks_between(self._p(), sp, slp, spool, ffi.from_buffer(_u32p, sids), dlp,
                                                  dpool, ffi.from_buffer(_u32p, dids), n, d, fp)
        if st:
            fail(st, call)

    def _copy_args(self, call, stream, src_pool, src_ids, dst_pool, dst_ids, direction, fence):
        sp = _check_handle(stream, Stream, call, "stream", self)
        spool = _check_handle(src_pool, Pool, call, "src_pool", self)
        dpool = _check_handle(dst_pool, Pool, call, "dst_pool", self)
        sids = as_index_array(src_ids, U32, call, "src_ids")
        dids = as_index_array(dst_ids, U32, call, "dst_ids")
        if len(sids) != len(dids):
            refuse(call, "src_ids has %d entries but dst_ids has %d" % (len(sids), len(dids)))
        d = _core.choice(direction, COPY_DIRS, call, "direction")
        fp = ffi.NULL if fence is None else _check_handle(fence, Fence, call, "fence", self)
        return sp, spool, sids, dpool, dids, len(sids), d, fp


class Pool(_core.Handle):
    """Memory of a backend (kvbm_pool_t): its own, the caller's (wrap), or a
    cache's (borrowed, valid while the cache is open).

    numpy(), torch() and cuda_array() show the memory without a copy; the
    pool refuses to close while such a view lives.
    """

    def __init__(self, backend, nbytes, kind, *, memory=None):
        self._views = _memory.ViewTracker()
        self._owner = None
        if memory is None:
            call = "kvbm_pool_create"
            k = _core.choice(kind, MEM_KINDS, call, "kind")
            out = ffi.new("kvbm_pool_t **")
            st = lib.kvbm_pool_create(backend._p(), k, as_count(nbytes, call, "nbytes"), out)
            keep = (backend,)
        else:
            call = "kvbm_pool_wrap"
            k = _core.choice(kind, MEM_KINDS, call, "kind")
            ptr, size, where = _memory.describe(memory, call)
            _check_memory_place(backend, k, where, call)
            out = ffi.new("kvbm_pool_t **")
            st = lib.kvbm_pool_wrap(backend._p(), k, ffi.cast("void *", ptr), size, out)
            keep = (backend, memory)
        if st:
            fail(st, call)
        self.backend = backend
        self._adopt(out[0], lib.kvbm_pool_destroy, keep)

    @classmethod
    def _borrow(cls, ptr, backend, owner):
        self = cls.__new__(cls)
        self._views = _memory.ViewTracker()
        self._owner = owner
        self.backend = backend
        self._adopt(ptr, None, (owner,))
        return self

    def _p(self):
        p = self._ptr
        if p is None or (self._owner is not None and self._owner._ptr is None):
            raise self._closed_error()
        return p

    def _before_close(self):
        live = self._views.live()
        if live:
            raise _memory.busy("Pool.close", "the pool", live)

    @property
    def ptr(self):
        """Base address (a device pointer for CUDA device pools)."""
        return int(ffi.cast("uintptr_t", lib.kvbm_pool_ptr(self._p())))

    @property
    def nbytes(self):
        return lib.kvbm_pool_bytes(self._p())

    @property
    def kind(self):
        """"device" or "host"."""
        return _MEM_NAMES[lib.kvbm_pool_kind(self._p())]

    @property
    def on_cuda(self):
        """Whether the memory is CUDA device memory (not addressable by the CPU)."""
        return self.kind == "device" and self.backend.kind == "cuda"

    def _host_access(self, call):
        p = self._p()
        if self.on_cuda:
            raise errors.make(errors.UnsupportedError.status, call,
                              "a CUDA device pool is not CPU memory; use cuda_array()")
        return int(ffi.cast("uintptr_t", lib.kvbm_pool_ptr(p))), lib.kvbm_pool_bytes(p)

    def numpy(self, layout=None, dtype=None):
        """The pool as a numpy array, no copy: 1-D bytes (or ``dtype``), or
        with a Layout shaped (blocks, layers, outer, tokens, inner) with the
        layout's strides (dtype: one of elem_size bytes; default unsigned)."""
        ptr, nbytes = self._host_access("Pool.numpy")
        return _memory.numpy_view(self, ptr, nbytes, self._views, layout, dtype, "Pool.numpy")

    def torch(self, layout=None, dtype=None):
        """As numpy(), a torch tensor over the same memory (``dtype`` a torch.dtype)."""
        ptr, nbytes = self._host_access("Pool.torch")
        return _memory.torch_view(self, ptr, nbytes, self._views, layout, dtype, "Pool.torch")

    def cuda_array(self, layout=None, typestr=None):
        """A CUDA pool as an object with ``__cuda_array_interface__`` (v3):
        the bytes, or shaped by a Layout (``typestr`` a numpy type string such
        as "<f2")."""
        p = self._p()
        if not self.on_cuda:
            raise errors.make(errors.UnsupportedError.status, "Pool.cuda_array",
                              "the pool is not CUDA device memory; use numpy() or torch()")
        ptr, nbytes = int(ffi.cast("uintptr_t", lib.kvbm_pool_ptr(p))), lib.kvbm_pool_bytes(p)
        return _memory.cuda_view(self, ptr, nbytes, self._views, layout, typestr, "Pool.cuda_array")

    @property
    def __cuda_array_interface__(self):
        """The whole CUDA pool as bytes (see cuda_array())."""
        if not self.on_cuda:
            raise AttributeError("__cuda_array_interface__: the pool is not CUDA device memory")
        return _memory.CudaArray(self, self.ptr, (self.nbytes,), "|u1", None).__cuda_array_interface__


def _check_memory_place(backend, kind, where, call):
    on_cuda = backend.kind == "cuda" and kind == constants.KVBM_MEM_DEVICE
    if on_cuda and where != "cuda":
        refuse(call, "a CUDA device pool needs CUDA memory, not host memory")
    if not on_cuda and where == "cuda":
        refuse(call, "CUDA device memory can only be a device pool of a CUDA backend")


class Stream(_Parent):
    """An in-order work queue of a backend (kvbm_stream_t). Closing waits for
    its work; a cache using it as its engine stream must be closed first."""

    def __init__(self, backend, *, native=None):
        self._init_children()
        out = ffi.new("kvbm_stream_t **")
        if native is None:
            call = "kvbm_stream_create"
            st = lib.kvbm_stream_create(backend._p(), out)
            keep = (backend,)
        else:
            call = "kvbm_stream_wrap"
            handle = getattr(native, "cuda_stream", native)
            st = lib.kvbm_stream_wrap(backend._p(), ffi.cast("void *", as_count(handle, call, "native")), out)
            keep = (backend, native)
        if st:
            fail(st, call)
        self.backend = backend
        self._adopt(out[0], lib.kvbm_stream_destroy, keep)

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p

    @property
    def native(self):
        """The native handle (cudaStream_t as an int), or None on the CPU."""
        h = lib.kvbm_stream_native(self._p())
        return None if h == ffi.NULL else int(ffi.cast("uintptr_t", h))

    def hold(self, hold=True):
        """Test hook (CPU): while held the stream starts no queued work."""
        st = lib.kvbm_stream_hold(self._p(), _core.as_flag(hold, "kvbm_stream_hold", "hold"))
        if st:
            fail(st, "kvbm_stream_hold")

    def wait_fence(self, fence):
        """Work enqueued from now on waits for the fence's latest record."""
        fp = _check_handle(fence, Fence, "kvbm_stream_wait_fence", "fence", self.backend)
        st = lib.kvbm_stream_wait_fence(self._p(), fp)
        if st:
            fail(st, "kvbm_stream_wait_fence")


class Fence(_core.Handle):
    """A completion marker (kvbm_fence_t); a failed copy it covers raises
    from wait() and query()."""

    def __init__(self, backend):
        out = ffi.new("kvbm_fence_t **")
        st = lib.kvbm_fence_create(backend._p(), out)
        if st:
            fail(st, "kvbm_fence_create")
        self.backend = backend
        self._adopt(out[0], lib.kvbm_fence_destroy, (backend,))

    def _p(self):
        p = self._ptr
        if p is None:
            raise self._closed_error()
        return p

    def record(self, stream):
        """Complete once the work enqueued on ``stream`` so far has finished."""
        sp = _check_handle(stream, Stream, "kvbm_fence_record", "stream", self.backend)
        st = lib.kvbm_fence_record(self._p(), sp)
        if st:
            fail(st, "kvbm_fence_record")

    def query(self):
        """True when complete, False while pending; raises a covered copy's error."""
        st = lib.kvbm_fence_query(self._p())
        if st == constants.KVBM_ERR_BUSY:
            return False
        if st:
            fail(st, "kvbm_fence_query")
        return True

    def wait(self):
        """Block until complete (the GIL is released); raises a covered copy's error."""
        st = lib.kvbm_fence_wait(self._p())
        if st:
            fail(st, "kvbm_fence_wait")

