"""kvbm's statuses as Python exceptions.

Every kvbm status other than KVBM_OK raises a subclass of :class:`KvbmError`
carrying the status value, its name ("KVBM_ERR_NO_BLOCKS"), the C call that
returned it and kvbm_last_error()'s detail for the calling thread. Arguments
the binding refuses before calling C raise the same classes (detail says
why; ``call`` is the wrapper's name), and the classes also derive from the
matching built-in exception where there is one (InvalidArgumentError is a
ValueError, NoMemoryError a MemoryError, OutOfRangeError an IndexError,
TimedOutError a TimeoutError, SizeOverflowError an OverflowError,
IOFailureError an OSError).
"""
from ._cffi import ffi


class KvbmError(Exception):
    """A kvbm call failed.

    Attributes: ``status`` (the negative kvbm_status_t value), ``name``
    ("KVBM_ERR_..."), ``detail`` (kvbm_last_error() right after the call, or
    the binding's reason), ``call`` (the C function or Python method).
    """

    status = None
    name = "KVBM_UNKNOWN"

    @property
    def detail(self):
        return self._detail

    @property
    def call(self):
        return self._call


def _status_class(class_name, status_name, *bases, doc=""):
    value = ffi.typeof("kvbm_status_t").relements[status_name]
    cls = type(class_name, (KvbmError,) + bases, {"status": value, "name": status_name, "__doc__": doc})
    cls.__module__ = __name__
    return cls


InvalidArgumentError = _status_class("InvalidArgumentError", "KVBM_ERR_INVALID_ARG", ValueError)
NoMemoryError = _status_class("NoMemoryError", "KVBM_ERR_NO_MEMORY", MemoryError)
NoBlocksError = _status_class("NoBlocksError", "KVBM_ERR_NO_BLOCKS")
OutOfRangeError = _status_class("OutOfRangeError", "KVBM_ERR_OUT_OF_RANGE", IndexError)
BadStateError = _status_class("BadStateError", "KVBM_ERR_BAD_STATE")
NotHeldError = _status_class("NotHeldError", "KVBM_ERR_NOT_HELD")
BusyError = _status_class("BusyError", "KVBM_ERR_BUSY")
UnsupportedError = _status_class("UnsupportedError", "KVBM_ERR_UNSUPPORTED")
NoDeviceError = _status_class("NoDeviceError", "KVBM_ERR_NO_DEVICE")
DeviceError = _status_class("DeviceError", "KVBM_ERR_DEVICE")
CopyFailedError = _status_class("CopyFailedError", "KVBM_ERR_COPY_FAILED")
TimedOutError = _status_class("TimedOutError", "KVBM_ERR_TIMEOUT", TimeoutError)
IOFailureError = _status_class("IOFailureError", "KVBM_ERR_IO", OSError)
ParseError = _status_class("ParseError", "KVBM_ERR_PARSE")
VersionError = _status_class("VersionError", "KVBM_ERR_VERSION")
SizeOverflowError = _status_class("SizeOverflowError", "KVBM_ERR_OVERFLOW", OverflowError)
IncompatibleError = _status_class("IncompatibleError", "KVBM_ERR_INCOMPATIBLE")
PeerError = _status_class("PeerError", "KVBM_ERR_PEER")
NotFoundError = _status_class("NotFoundError", "KVBM_ERR_NOT_FOUND")
NcclError = _status_class("NcclError", "KVBM_ERR_NCCL")
InternalError = _status_class("InternalError", "KVBM_ERR_INTERNAL")
AuthError = _status_class("AuthError", "KVBM_ERR_AUTH")

#: status value -> exception class, for every status the binding knows.
BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError, NoMemoryError, NoBlocksError, OutOfRangeError, BadStateError,
        NotHeldError, BusyError, UnsupportedError, NoDeviceError, DeviceError, CopyFailedError,
        TimedOutError, IOFailureError, ParseError, VersionError, SizeOverflowError, IncompatibleError,
        PeerError, NotFoundError, NcclError, InternalError, AuthError,
    )
}


def make(status, call, detail, name=None):
    """The exception for ``status`` (a class of BY_STATUS, else KvbmError
    named ``name``, the library's kvbm_status_name())."""
    cls = BY_STATUS.get(status, KvbmError)
    if cls is not KvbmError:
        name = cls.name
    name = name or "KVBM_UNKNOWN"
    text = "%s: %s" % (call, name)
    if detail:
        text += ": " + detail
    exc = cls(text)  # one argument: OSError subclasses keep it as the message
    exc._detail = detail
    exc._call = call
    if cls is KvbmError:
        exc.status = status
        exc.name = name
    return exc
