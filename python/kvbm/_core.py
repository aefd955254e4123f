"""What every wrapper uses: the loaded library, failures as exceptions,
strings and in-memory FILE streams, integer arrays checked before C sees them,
and owned handles with deterministic close."""
import weakref

import numpy as np

from . import _library, errors
from ._cffi import ffi, libc

lib, LIBRARY_PATH = _library.load()

# The batch calls' hot path: cffi's ffi.from_buffer(ctype, array) and
# ffi.new(ctype) are Python wrappers over these two functions of cffi's
# backend (they only turn a type string into a ctype first); the batch calls
# pass ctypes (ffi.typeof), so they call the backend directly and save a
# Python frame per array. Another cffi without them gets the public ones.
_backend = getattr(ffi, "_backend", None)
buffer_of = getattr(_backend, "from_buffer", ffi.from_buffer)
new_of = getattr(_backend, "newp", ffi.new)

U32 = np.dtype(np.uint32)
U64 = np.dtype(np.uint64)
UINT32_MAX = 0xFFFFFFFF
UINT64_MAX = 0xFFFFFFFFFFFFFFFF
_LIMITS = {U32: UINT32_MAX, U64: UINT64_MAX}


def text(cstr):
    """A C string as str ("" for NULL)."""
    return ffi.string(cstr).decode("utf-8", "replace") if cstr != ffi.NULL else ""


def fail(status, call):
    """Raise the exception of a failed call, with this thread's kvbm_last_error()."""
    raise errors.make(status, call, text(lib.kvbm_last_error()), text(lib.kvbm_status_name(status)))


def refuse(call, detail, cls=errors.InvalidArgumentError):
    """Raise for an argument the binding refuses before calling C."""
    raise errors.make(cls.status, call, detail)


def write_to_string(call, writer, *args):
    """Run ``writer(*args, FILE *)`` into an in-memory stream; its text."""
    buf = ffi.new("char **")
    size = ffi.new("size_t *")
    stream = libc.open_memstream(buf, size)
    if stream == ffi.NULL:
        raise MemoryError("%s: open_memstream failed" % call)
    try:
        status = writer(*args, stream)
    finally:
        libc.fclose(stream)  # also finishes *buf and *size
        out = ffi.unpack(buf[0], size[0]).decode("utf-8", "replace") if buf[0] != ffi.NULL else ""
        libc.free(buf[0])
    if status:
        fail(status, call)
    return out


# ------------------------------------------------------------------ arrays


def as_index_array(values, dtype, call, what):
    """``values`` as a 1-D C-contiguous array of ``dtype`` (U32 or U64).

    A contiguous 1-D array of that dtype passes through untouched (no copy,
    no per-element work). Other integer arrays are range-checked and cast;
    Python sequences must hold ints in range. Anything else is refused with
    InvalidArgumentError before C is called.
    """
    if type(values) is np.ndarray and values.dtype is dtype and values.ndim == 1 and values.flags.c_contiguous:
        return values
    return _coerce(values, dtype, call, what)


def _coerce(values, dtype, call, what):
    limit = _LIMITS[dtype]
    if isinstance(values, np.ndarray) or hasattr(values, "__array__"):
        a = np.asarray(values)
        if a.ndim != 1:
            refuse(call, "%s must be one-dimensional, not of shape %s" % (what, a.shape))
        if a.dtype.kind not in "ui" and not (a.size == 0 and a.dtype.kind == "f"):
            refuse(call, "%s must be integers, not %s" % (what, a.dtype))
        if a.dtype != dtype and a.size:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi > limit:
                refuse(call, "%s holds %d, outside 0..%d" % (what, lo if lo < 0 else hi, limit))
        return np.ascontiguousarray(a, dtype=dtype)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        refuse(call, "%s must be a sequence or an array of integers, not %s" % (what, type(values).__name__))
    items = list(values)
    for v in items:
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            refuse(call, "%s must be integers, not %s" % (what, type(v).__name__))
        if v < 0 or v > limit:
            refuse(call, "%s holds %d, outside 0..%d" % (what, v, limit))
    return np.array(items, dtype=dtype)


def as_count(value, call, what, limit=UINT64_MAX):
    """A non-negative int up to ``limit``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        refuse(call, "%s must be an integer, not %s" % (what, type(value).__name__))
    if value < 0 or value > limit:
        refuse(call, "%s %d is outside 0..%d" % (what, value, limit))
    return int(value)


def as_flag(value, call, what):
    if not isinstance(value, (bool, np.bool_)):
        refuse(call, "%s must be True or False, not %r" % (what, value))
    return bool(value)


def choice(value, names, call, what):
    """The C value of one of ``names`` (a dict name -> value)."""
    try:
        return names[value]
    except (KeyError, TypeError):
        refuse(call, "%s must be one of %s, not %r" % (what, ", ".join(map(repr, names)), value))


# ------------------------------------------------------------------ handles


def _destroy(destroy, ptr, keep):
    # Runs once: from close(), from the garbage collector, or at exit. `keep`
    # holds the Python objects this one borrows from (its backend, ...), so
    # they cannot be finalized first.
    destroy(ptr)


class Handle:
    """A C object this Python object owns (or borrows, with destroy None).

    close() frees it exactly once and is idempotent; ``with`` closes it; one
    left open is freed when collected (or at interpreter exit, children
    before parents, since a child keeps its parents alive until then). As in
    C, no call on an object may run in another thread while it is closed.
    """

    _ptr = None
    _finalizer = None

    def _adopt(self, ptr, destroy, keep=()):
        self._ptr = ptr
        self._keep = tuple(keep)
        if destroy is not None:
            self._finalizer = weakref.finalize(self, _destroy, destroy, ptr, self._keep)

    def _closed_error(self):
        return errors.make(
            errors.InvalidArgumentError.status, type(self).__name__, "%s is closed" % type(self).__name__
        )

    @property
    def closed(self):
        return self._ptr is None

    def _before_close(self):
        """Raise if the object cannot be closed yet (subclasses)."""

    def close(self):
        """Free the C object now. A second close does nothing."""
        if self._ptr is None:
            return
        self._before_close()
        self._ptr = None
        if self._finalizer is not None:
            self._finalizer()
        self._keep = ()

    def __enter__(self):
        if self._ptr is None:
            raise self._closed_error()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self._ptr is None else "open"
        return "<kvbm.%s %s>" % (type(self).__name__, state)
