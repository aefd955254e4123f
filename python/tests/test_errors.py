"""Every kvbm status is a Python exception with its name and detail."""
import pytest

import kvbm
from kvbm import errors
from kvbm._cffi import ffi


def test_every_c_status_has_its_exception_class():
    values = ffi.typeof("kvbm_status_t").elements
    for value, name in values.items():
        if value == 0:
            continue
        cls = errors.BY_STATUS[value]
        assert cls.name == name == kvbm.status_name(value)
        assert issubclass(cls, kvbm.KvbmError)
        exc = errors.make(value, "kvbm_test_call", "the detail")
        assert isinstance(exc, cls) and exc.status == value
        assert str(exc) == "kvbm_test_call: %s: the detail" % name
        assert exc.detail == "the detail" and exc.call == "kvbm_test_call"
    assert len(errors.BY_STATUS) == len(values) - 1


def test_exceptions_are_also_the_matching_builtin_ones():
    assert issubclass(kvbm.InvalidArgumentError, ValueError)
    assert issubclass(kvbm.OutOfRangeError, IndexError)
    assert issubclass(kvbm.NoMemoryError, MemoryError)
    assert issubclass(kvbm.TimedOutError, TimeoutError)
    assert issubclass(kvbm.IOFailureError, OSError)
    e = errors.make(kvbm.IOFailureError.status, "c", "disk gone")
    assert str(e) == "c: KVBM_ERR_IO: disk gone"


def test_a_status_the_binding_does_not_know_still_raises():
    e = errors.make(-99, "kvbm_future_call", "", "KVBM_ERR_FUTURE")
    assert type(e) is kvbm.KvbmError and e.status == -99 and e.name == "KVBM_ERR_FUTURE"
    assert kvbm.status_name(-99) == "KVBM_UNKNOWN"


def test_a_failed_c_call_carries_kvbm_last_error():
    with kvbm.Manager(4) as m:
        with pytest.raises(kvbm.NoBlocksError) as e:
            m.allocate(5)
        assert e.value.call == "kvbm_manager_allocate"
        assert e.value.detail and e.value.detail == kvbm.last_error()
        with pytest.raises(kvbm.OutOfRangeError, match="block id 7 is not below 4"):
            m.release([7])
        with pytest.raises(kvbm.NotHeldError):
            m.release([0])
        ids = m.allocate(1)
        with pytest.raises(kvbm.BadStateError):
            m.acquire(ids)  # mutable, not registered


def test_c_refusals_of_configs_are_exceptions():
    with pytest.raises(kvbm.InvalidArgumentError, match="num_blocks 0"):
        kvbm.Manager(0)
    with pytest.raises(kvbm.InvalidArgumentError, match="alignment"):
        kvbm.Layout(4, 1, 4, 8, alignment=3)
    with pytest.raises(kvbm.InvalidArgumentError, match="thresholds"):
        kvbm.Manager(4, policy="multi-lru", multi_lru_thresholds=(9, 3, 15))


def test_closed_objects_raise_and_close_twice_is_fine():
    m = kvbm.Manager(4)
    m.close()
    m.close()
    assert m.closed
    for call in (lambda: m.allocate(1), m.counts, m.metrics, lambda: m.release([0]), lambda: m.match([1])):
        with pytest.raises(kvbm.InvalidArgumentError, match="closed"):
            call()
    with pytest.raises(kvbm.InvalidArgumentError):
        with m:
            pass


def test_python_side_refusals_name_the_argument():
    with kvbm.Manager(4) as m:
        with pytest.raises(kvbm.InvalidArgumentError, match="count"):
            m.allocate(-1)
        with pytest.raises(kvbm.InvalidArgumentError, match="ids has 2 entries but hashes has 1"):
            m.register([0, 1], [5])
        with pytest.raises(kvbm.InvalidArgumentError, match="priority"):
            m.register([0], [5], priority=101)
        with pytest.raises(kvbm.InvalidArgumentError, match="duplication"):
            kvbm.Manager(4, duplication="maybe")
        with pytest.raises(kvbm.InvalidArgumentError, match="unknown policy"):
            kvbm.Manager(4, policy="fifo")
        with pytest.raises(kvbm.UnsupportedError, match="belady"):
            kvbm.Manager(4, policy="belady")
        with pytest.raises(kvbm.InvalidArgumentError, match="touch"):
            m.scan([1], touch="yes")
        assert m.counts() == {"total": 4, "reset": 4, "active": 0, "inactive": 0}  # nothing changed
