"""Memory as Python sees it: what an engine hands kvbm (numpy arrays, torch
tensors, CUDA arrays, writable buffers), and pools shown back as numpy
arrays, torch tensors and ``__cuda_array_interface__`` objects without a copy.

A view keeps its pool's Python object alive, and the pool refuses to close
while a view of it lives (as ``mmap`` refuses with exported buffers), so a
view can never outlive the memory it shows.
"""
import sys
import weakref

import numpy as np

from . import errors
from ._cffi import ffi
from ._core import refuse


def describe(memory, call, what="memory"):
    """(address, nbytes, where) of caller memory; ``where`` is "host" or "cuda".

    Accepts a C-contiguous numpy array, a contiguous torch tensor (CPU or
    CUDA), an object with ``__cuda_array_interface__`` (contiguous), or a
    writable buffer (bytearray, mmap, ...). Read-only memory is refused.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(memory, torch.Tensor):
        if not memory.is_contiguous():
            refuse(call, "%s: the tensor is not contiguous" % what)
        where = "cuda" if memory.is_cuda else "host"
        if memory.device.type not in ("cpu", "cuda"):
            refuse(call, "%s: tensors on %s are not supported" % (what, memory.device))
        return memory.data_ptr(), memory.numel() * memory.element_size(), where
    if isinstance(memory, np.ndarray):
        if not memory.flags.c_contiguous:
            refuse(call, "%s: the array is not C-contiguous" % what)
        if not memory.flags.writeable:
            refuse(call, "%s: the array is read-only" % what)
        return memory.ctypes.data, memory.nbytes, "host"
    cai = getattr(memory, "__cuda_array_interface__", None)
    if cai is not None:
        ptr, readonly = cai["data"]
        if readonly:
            refuse(call, "%s: the CUDA array is read-only" % what)
        itemsize = np.dtype(cai["typestr"]).itemsize
        shape = tuple(cai["shape"])
        if cai.get("strides") is not None and tuple(cai["strides"]) != _c_strides(shape, itemsize):
            refuse(call, "%s: the CUDA array is not C-contiguous" % what)
        return ptr, int(np.prod(shape, dtype=np.int64)) * itemsize, "cuda"
    try:
        cbuf = ffi.from_buffer(memory, require_writable=True)
    except BufferError:
        refuse(call, "%s: the buffer is read-only" % what)
    except TypeError:
        refuse(call, "%s must be a numpy array, a torch tensor, a CUDA array or a writable buffer, "
               "not %s" % (what, type(memory).__name__))
    return int(ffi.cast("uintptr_t", cbuf)), len(cbuf), "host"


def _c_strides(shape, itemsize):
    strides = []
    step = itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def layout_geometry(layout, pool_bytes, itemsize, call):
    """(shape, byte strides, byte offset of element 0) of a pool laid out by
    ``layout``: (num_blocks, num_layers, outer_dim, tokens_per_block,
    inner_dim), from kvbm_layout_offset. Checks the pool is big enough and
    the element size matches."""
    c = layout.config
    if itemsize != c["elem_size"]:
        refuse(call, "dtype has %d-byte elements but the layout's elem_size is %d" % (itemsize, c["elem_size"]))
    total = layout.total_bytes
    if pool_bytes < total:
        refuse(call, "the pool has %d bytes, the layout needs %d" % (pool_bytes, total))
    nb, nl, no = c["num_blocks"], c["num_layers"], c["outer_dim"]
    base = layout.offset(0, 0, 0)
    sb = layout.offset(1, 0, 0) - base if nb > 1 else 0
    sl = layout.offset(0, 1, 0) - base if nl > 1 else 0
    so = layout.offset(0, 0, 1) - base if no > 1 else 0
    # The arrangements are affine in (block, layer, outer); check the corners.
    for b in {0, nb - 1}:
        for layer in {0, nl - 1}:
            for o in {0, no - 1}:
                if layout.offset(b, layer, o) != base + b * sb + layer * sl + o * so:
                    raise errors.make(errors.InternalError.status, call, "layout is not affine")
    shape = (nb, nl, no, c["tokens_per_block"], c["inner_dim"])
    strides = (sb, sl, so, c["inner_dim"] * itemsize, itemsize)
    return shape, strides, base


class _HostMemory:
    """A pool's bytes as numpy sees them; keeps the pool object alive."""

    def __init__(self, pool, ptr, nbytes):
        self.pool = pool
        self.__array_interface__ = {
            "shape": (nbytes,),
            "typestr": "|u1",
            "data": (ptr, False),
            "version": 3,
        }


class CudaArray:
    """A CUDA pool (or a layout's view of it) as ``__cuda_array_interface__``
    (version 3), for ``torch.as_tensor(obj, device="cuda")`` or CuPy. Keeps
    the pool object alive; the pool cannot close while one lives."""

    def __init__(self, pool, ptr, shape, typestr, strides):
        self.pool = pool
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": typestr,
            "data": (ptr, False),
            "strides": None if strides is None else tuple(strides),
            "version": 3,
            "stream": None,  # kvbm orders copies with fences, not with the consumer's stream
        }


class ViewTracker:
    """Weak references to the live views of one pool."""

    def __init__(self):
        self._views = weakref.WeakSet()

    def add(self, holder):
        self._views.add(holder)
        return holder

    def live(self):
        return len(self._views)


def numpy_view(pool, ptr, nbytes, tracker, layout, dtype, call):
    """An ndarray over the pool's memory (no copy)."""
    if dtype is None:
        dtype = np.uint8 if layout is None else _default_dtype(layout, call)
    dtype = np.dtype(dtype)
    base = np.asarray(tracker.add(_HostMemory(pool, ptr, nbytes)))
    if layout is None:
        if nbytes % dtype.itemsize:
            refuse(call, "the pool's %d bytes are not a whole number of %s" % (nbytes, dtype))
        return base.view(dtype)
    shape, strides, offset = layout_geometry(layout, nbytes, dtype.itemsize, call)
    return np.ndarray(shape, dtype=dtype, buffer=base, offset=offset, strides=strides)


def _default_dtype(layout, call):
    size = layout.config["elem_size"]
    if size not in (1, 2, 4, 8):
        refuse(call, "give a dtype: no unsigned integer type has %d-byte elements" % size)
    return np.dtype("u%d" % size)


def torch_view(pool, ptr, nbytes, tracker, layout, dtype, call):
    """A torch tensor over the pool's memory (no copy)."""
    import torch

    dtype = torch.uint8 if dtype is None and layout is None else dtype
    if dtype is None:
        dtype = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(layout.config["elem_size"])
        if dtype is None:
            refuse(call, "give a dtype: no integer tensor type has %d-byte elements" % layout.config["elem_size"])
    if not isinstance(dtype, torch.dtype):
        refuse(call, "dtype must be a torch.dtype, not %r" % (dtype,))
    itemsize = torch.empty((), dtype=dtype).element_size()
    # numpy carries the strides and the reference to the pool; torch then
    # reinterprets elements of the same size (bfloat16 has no numpy twin).
    raw = {1: np.dtype(np.uint8), 2: np.dtype(np.int16), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}.get(itemsize)
    if raw is None:
        refuse(call, "dtype %s has %d-byte elements" % (dtype, itemsize))
    view = numpy_view(pool, ptr, nbytes, tracker, layout, raw, call)
    if any(s % itemsize for s in view.strides):
        refuse(call, "the layout's strides are not whole %s elements" % dtype)
    t = torch.from_numpy(view)
    return t if t.dtype == dtype else t.view(dtype)


def cuda_view(pool, ptr, nbytes, tracker, layout, typestr, call):
    """A CudaArray of the whole pool (bytes) or shaped by ``layout``."""
    if layout is None:
        itemsize = np.dtype(typestr or "|u1").itemsize
        if nbytes % itemsize:
            refuse(call, "the pool's %d bytes are not a whole number of %s" % (nbytes, typestr))
        return tracker.add(CudaArray(pool, ptr, (nbytes // itemsize,), np.dtype(typestr or "|u1").str, None))
    dtype = np.dtype(typestr) if typestr is not None else _default_dtype(layout, call)
    shape, strides, offset = layout_geometry(layout, nbytes, dtype.itemsize, call)
    return tracker.add(CudaArray(pool, ptr + offset, shape, dtype.str, strides))


def busy(call, what, live):
    return errors.make(
        errors.BusyError.status, call,
        "%s still has %d live array view(s); delete them (and tensors made from them) first" % (what, live),
    )

