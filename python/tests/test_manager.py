"""The manager's calls from Python, with numpy in and out."""
import json

import numpy as np
import pytest

import kvbm


def hashes(n, start=1):
    return np.arange(start, start + n, dtype=np.uint64)


def test_allocate_register_release_match_round_trip():
    with kvbm.Manager(16, name="unit") as m:
        assert m.num_blocks == 16 and m.policy_name == "lru"
        ids = m.allocate(4)
        assert ids.dtype == np.uint32 and len(set(ids)) == 4
        h = hashes(4)
        got = m.register(ids, h, parent=99, priority=70)
        assert list(got) == list(ids)
        m.release(got[::-1])
        assert m.counts() == {"total": 16, "reset": 12, "active": 0, "inactive": 4}
        assert m.match_length(h) == (4, 4)
        matched = m.match(np.concatenate([h, hashes(2, 100)]))
        assert list(matched) == list(ids)
        assert m.counts()["active"] == 4
        m.acquire(matched[:2])
        m.release(matched[:2])
        m.release(matched)
        assert all(m.contains(int(x)) for x in h) and not m.contains(12345)


def test_match_allocate_register_does_one_request_in_one_call():
    with kvbm.Manager(4) as m:
        ids, matched, dedups = m.match_allocate_register(hashes(3))
        assert matched == 0 and dedups == 0 and len(set(ids)) == 3
        m.release(ids[::-1])
        # 1 and 2 are cached; 5 and 6 take the free block and evict 3's.
        ids2, matched, dedups, ev = m.match_allocate_register([1, 2, 5, 6], request_blocks=4, evicted=True)
        assert matched == 2 and list(ids2[:2]) == list(ids[:2]) and dedups == 0
        assert list(ev["seq_hash"]) == [3]
        assert m.counts() == {"total": 4, "reset": 0, "active": 4, "inactive": 0}
        with pytest.raises(kvbm.KvbmError):
            m.match_allocate_register([7])  # every block held: nothing to allocate
        m.release(ids2[::-1])
        assert m.match_length([1, 2, 5, 6]) == (4, 4)


def test_lists_and_other_integer_arrays_work_like_numpy_arrays():
    with kvbm.Manager(8) as m:
        ids = m.allocate(2)
        out = m.register([int(i) for i in ids], [11, 12])
        m.release(out.astype(np.int64))
        assert list(m.match((11, 12))) == list(ids)


def test_allocate_reports_evictions():
    with kvbm.Manager(4) as m:
        ids = m.allocate(4)
        m.release(m.register(ids, hashes(4)))
        fresh, evicted = m.allocate(3, evicted=True)
        assert len(fresh) == 3 and len(evicted) == 3 and evicted.dtype == kvbm.EVICTED_DTYPE
        assert set(evicted["block_id"]) == set(fresh)
        assert set(evicted["seq_hash"]) <= set(hashes(4))
        assert m.metrics()["evictions"] == 3
        assert not any(m.contains(int(h)) for h in evicted["seq_hash"])


def test_out_arrays_are_filled_in_place():
    with kvbm.Manager(8) as m:
        buf = np.full(8, 7, np.uint32)
        ids = m.allocate(3, out=buf)
        assert ids.base is buf and list(buf[:3]) == list(ids) and buf[3] == 7
        res = np.empty(3, np.uint32)
        assert m.register(ids, hashes(3), out=res) is not None and list(res) == list(ids)
        with pytest.raises(kvbm.InvalidArgumentError, match="room"):
            m.allocate(3, out=np.empty(2, np.uint32))
        with pytest.raises(kvbm.InvalidArgumentError, match="uint32"):
            m.allocate(1, out=np.empty(2, np.int32))


def test_scan_reports_misses_as_block_none():
    with kvbm.Manager(8) as m:
        ids = m.allocate(2)
        m.release(m.register(ids, [5, 6]))
        got, found = m.scan([5, 77, 6], touch=False)
        assert found == 2 and list(got) == [ids[0], kvbm.BLOCK_NONE, ids[1]]
        m.release(got[got != kvbm.BLOCK_NONE])


def test_duplicates_reject_returns_the_existing_block_and_allow_keeps_both():
    with kvbm.Manager(8) as m:
        a = m.allocate(1)
        m.register(a, [42])
        b = m.allocate(1)
        assert list(m.register(b, [42])) == list(a)
        assert m.metrics()["dedups"] == 1
        m.release([a[0], a[0]])
    with kvbm.Manager(8, duplication="allow") as m:
        a, b = m.allocate(1), m.allocate(1)
        m.register(a, [42])
        assert list(m.register(b, [42])) == list(b)
        assert m.metrics()["duplicates"] == 1


def test_invalidate_and_reset_inactive():
    with kvbm.Manager(8) as m:
        ids = m.register(m.allocate(3), hashes(3))
        with pytest.raises(kvbm.BusyError):
            m.reset_inactive()
        m.invalidate(ids[:1])
        assert not m.contains(1) and m.contains(2)
        m.release(ids)
        m.reset_inactive()
        assert m.counts() == {"total": 8, "reset": 8, "active": 0, "inactive": 0}


def test_every_policy_but_belady_runs():
    names = kvbm.policy_names()
    assert names[0] == "lru" and "belady" in names
    for name in names:
        if name == "belady":
            continue
        with kvbm.Manager(8, policy=name, multi_lru_thresholds=(2, 4, 6), sketch_width=64) as m:
            assert m.policy_name == name
            m.release(m.register(m.allocate(8), hashes(8)))
            assert len(m.allocate(4)) == 4 and m.metrics()["evictions"] == 4


def test_metrics_as_dict_prometheus_and_json_agree():
    with kvbm.Manager(8, name="pm") as m:
        m.release(m.register(m.allocate(3), hashes(3)))
        d = m.metrics()
        assert list(d) == list(kvbm.manager.METRICS_FIELDS) and d["registrations"] == 3
        text = m.metrics_prometheus()
        assert 'kvbm_registrations_total{manager="pm"} 3' in text
        assert "# TYPE kvbm_inactive_blocks gauge" in text
        j = json.loads(m.metrics_json())
        assert all(j[k] == v for k, v in d.items() if k in j) and j["inactive_blocks"] == 3


def test_empty_batches_are_allowed():
    with kvbm.Manager(4) as m:
        assert len(m.allocate(0)) == 0
        assert len(m.register([], [])) == 0
        m.release([])
        m.acquire(np.empty(0, np.uint32))
        assert len(m.match([])) == 0
        assert m.match_length([]) == (0, 0)


def test_failed_calls_change_nothing():
    with kvbm.Manager(4) as m:
        ids = m.allocate(2)
        before = m.metrics()
        with pytest.raises(kvbm.BadStateError):
            m.register([ids[0], ids[0]], [1, 2])  # repeated block
        with pytest.raises(kvbm.OutOfRangeError):
            m.release([ids[0], 9])
        with pytest.raises(kvbm.NoBlocksError):
            m.allocate(3)
        after = m.metrics()
        after.pop("allocation_failures")
        before.pop("allocation_failures")
        assert after == before and m.counts()["active"] == 2


def test_big_hashes_round_trip_exactly():
    with kvbm.Manager(4) as m:
        top = [2**64 - 1, 2**63, 2**63 + 1]
        ids = m.register(m.allocate(3), top)
        m.release(ids)
        assert list(m.match(top)) == list(ids)
        assert m.contains(2**64 - 1)


def test_registration_hints_reach_the_policies_that_use_them():
    with kvbm.Manager(8, policy="adaptive") as m:
        ids = m.allocate(4)
        m.release(m.register(ids, hashes(4), request_blocks=6, first_position=2)[::-1])
        assert m.counts()["inactive"] == 4 and m.metrics()["registrations"] == 4
        with pytest.raises(kvbm.InvalidArgumentError, match="request_blocks"):
            m.register(m.allocate(1), [50], first_position=1)
        with pytest.raises(kvbm.InvalidArgumentError, match="request_blocks"):
            m.register([0], [50], request_blocks=0)
