"""kvbm's log messages (include/kvbm/log.h) routed into Python's logging.

kvbm calls its log callback from any of its threads, sometimes with its locks
held. The callback installed by capture() only puts the message on a
SimpleQueue (no Python lock, no user code); a daemon thread takes it from
there and logs it on the "kvbm" logger (or the one given), outside every
kvbm lock. release() restores kvbm's default (stderr).
"""
import logging
import queue
import threading

from ._cffi import ffi
from ._core import lib

_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}
_queue = queue.SimpleQueue()
_state = {"logger": None, "thread": None}
_guard = threading.Lock()
_FLUSH = object()


@ffi.callback("void(void *, kvbm_log_level_t, const char *)")
def _sink(user, level, message):
    _queue.put((int(level), ffi.string(message).decode("utf-8", "replace")))


def _run():
    while True:
        item = _queue.get()
        if isinstance(item, tuple) and item[0] is _FLUSH:
            item[1].set()
            continue
        level, message = item
        logger = _state["logger"] or logging.getLogger("kvbm")
        logger.log(_LEVELS.get(level, logging.ERROR), "%s", message)


def capture(logger=None):
    """Send kvbm's messages to ``logger`` (default: logging.getLogger("kvbm"))."""
    with _guard:
        _state["logger"] = logger
        if _state["thread"] is None:
            t = threading.Thread(target=_run, name="kvbm-log", daemon=True)
            t.start()
            _state["thread"] = t
        lib.kvbm_log_set(_sink, ffi.NULL)


def release():
    """Send kvbm's messages to stderr again (kvbm's default)."""
    with _guard:
        lib.kvbm_log_set(ffi.NULL, ffi.NULL)


def flush(timeout=5.0):
    """Wait until every message kvbm gave so far has been logged."""
    if _state["thread"] is None:
        return True
    done = threading.Event()
    _queue.put((_FLUSH, done))
    return done.wait(timeout)
