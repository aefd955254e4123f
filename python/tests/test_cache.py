"""The tiered cache from Python: acquire, register, release, check, progress,
sync, fences, the engine's own tensor as G1, G2 offloads and onboards checked
byte for byte, a failed copy as CopyFailedError, the disk tier."""
import numpy as np
import pytest

import kvbm

torch = pytest.importorskip("torch")

from conftest import small_layout  # noqa: E402


def fill(view, ids, hashes):
    """Write into each block a value derived from its hash (the "compute")."""
    for i, h in zip(ids, hashes):
        view[int(i)] = int(h) % 251


def offload_then_onboard(c, backend, g1_blocks):
    """Fill G1 with hashes 1..g1_blocks, push them all out into G2 with other
    hashes, then match them again: they come back through G2."""
    first = np.arange(1, g1_blocks + 1, dtype=np.uint64)
    ids, r = c.acquire(first)
    assert r == kvbm.MatchResult(0, 0, 0) and len(ids) == g1_blocks
    fill(c.numpy(), ids, first)
    c.release(c.register(ids, first)[::-1])
    other = first + 1000
    ids, r = c.acquire(other)
    fill(c.numpy(), ids, other)
    c.release(c.register(ids, other)[::-1])
    c.sync()
    with backend.fence() as ready:
        ids, r = c.acquire(first, ready=ready)
        ready.wait()
    return first, ids, r


def test_offloaded_blocks_come_back_from_g2_with_their_bytes(sync_backend):
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=16) as c:
        first, ids, r = offload_then_onboard(c, sync_backend, 4)
        assert r == kvbm.MatchResult(g1=0, onboarded=4, g3=0)
        c.check(ids)
        v = c.numpy()
        for i, h in zip(ids, first):
            assert (v[int(i)] == int(h) % 251).all()
        del v
        m = c.metrics()
        assert m["offloads"] == 8 and m["onboards"] == 4 and m["failed_copies"] == 0
        assert m["g2_hits"] == 4 and m["copies_in_flight"] == 0
        c.release(ids)


def test_match_allocate_scan_and_the_tiers(backend):
    with kvbm.Layout(**small_layout(6)) as lay, kvbm.Cache(backend, lay, g2_blocks=8, g1_policy="lru",
                                                            g2_policy="s3-fifo") as c:
        fresh = c.allocate(2)
        assert fresh.dtype == np.uint32 and len(fresh) == 2
        c.release(c.register(fresh, [7, 8], parent=3, priority=10))
        matched, r = c.match([7, 8, 9])
        assert list(matched) == list(fresh) and r == kvbm.MatchResult(2, 0, 0)
        c.release(matched)
        got, hits = c.scan([8, 99], touch=False)
        assert hits == 1 and got[1] == kvbm.BLOCK_NONE
        c.release(got[:1])
        g1, g2 = c.tier("g1"), c.tier(kvbm.cache.TIERS["g2"])
        assert g1.counts() == {"total": 6, "reset": 4, "active": 0, "inactive": 2}
        assert g1.contains(7) and not g2.contains(7) and g1.match_length([7, 8]) == (2, 2)
        assert g2.policy_name == "s3-fifo" and g2.counts()["total"] == 8
        assert c.tier("g3") is None and c.pool("g3") is None and c.layout("g3") is None
        assert c.g3_engine is None
        with pytest.raises(kvbm.InvalidArgumentError):
            c.disk_metrics()
        assert c.layout().config == lay.config and c.layout("g2").config["num_blocks"] == 8
        text = c.metrics_prometheus()
        assert "kvbm_cache_offloads_total 0" in text and 'kvbm_registrations_total{manager="g1"} 2' in text
        assert 'kvbm_registrations_total{manager="g1"} 2' in g1.metrics_prometheus()
        assert g1.metrics()["registrations"] == 2 and '"registrations":2' in g1.metrics_json().replace(" ", "")
        assert c.block_address(fresh[0], 1, 1) == c.pool().ptr + lay.offset(int(fresh[0]), 1, 1)
    with pytest.raises(kvbm.InvalidArgumentError, match="closed"):
        g1.counts()


def test_the_engines_tensor_is_g1_without_a_copy(sync_backend):
    with kvbm.Layout(**small_layout(4, inner_dim=16)) as lay:  # 768-byte blocks: no padding
        total = lay.total_bytes
        config = lay.config
    raw = torch.zeros(total + 256, dtype=torch.uint8)
    skip = -raw.data_ptr() % 256
    kv = raw[skip: skip + total].view(torch.float16).view(4, 3, 2, 4, 16)
    with kvbm.Cache(sync_backend, config, g2_blocks=8, g1_memory=kv) as c:
        assert c.pool().ptr == kv.data_ptr()
        ids, _ = c.acquire([5])
        kv[int(ids[0])] = 1.5  # the engine writes its tensor; kvbm's view sees it
        view = c.torch("g1", torch.float16)
        assert view.data_ptr() == kv.data_ptr() and (view[int(ids[0])] == 1.5).all()
        del view
        c.release(c.register(ids, [5]))
    misaligned = raw[skip + 2: skip + 2 + total]
    with pytest.raises(kvbm.InvalidArgumentError):
        kvbm.Cache(sync_backend, config, g1_memory=misaligned)
    with pytest.raises(kvbm.InvalidArgumentError):
        kvbm.Cache(sync_backend, config, g1_memory=raw[:64])


def test_a_failed_onboard_copy_is_copy_failed_and_never_served(sync_backend):
    # Write-through: the hashes reach G2 at registration, so the onboarding
    # is the only copy of the failing call.
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=16, offload_mode="write_through") as c:
        first = np.arange(1, 5, dtype=np.uint64)
        ids, _ = c.acquire(first)
        c.release(c.register(ids, first))
        ids, _ = c.acquire(first + 100)
        c.release(c.register(ids, first + 100))
        c.sync()
        sync_backend.fail_nth_copy(1)  # the next copy: the onboarding
        ids, r = c.acquire(first)
        assert r.onboarded == 4
        with pytest.raises(kvbm.CopyFailedError) as e:
            c.check(ids)
        assert e.value.detail
        c.release(ids)
        c.sync()
        assert c.metrics()["failed_copies"] == 4 and not c.tier("g1").contains(1)


def test_engine_stream_and_fences_order_the_copies(backend):
    with backend.stream() as engine:
        with kvbm.Cache(backend, small_layout(4), g2_blocks=8, engine_stream=engine) as c:
            with pytest.raises(kvbm.BusyError):
                engine.close()  # the cache uses it
            ids, _ = c.acquire([1, 2, 3, 4])
            c.release(c.register(ids, [1, 2, 3, 4]))
            engine.hold(True)  # the engine is "still computing"
            with backend.fence() as ready:
                ids, _ = c.acquire([5, 6, 7, 8], ready=ready)  # evicts: the offloads wait for the engine
                c.progress()
                assert c.metrics()["offloads"] == 0 and c.metrics()["copies_in_flight"] == 4
                assert ready.query() is False
                engine.hold(False)
                ready.wait()
            c.sync()
            assert c.metrics()["offloads"] == 4 and c.tier("g2").contains(1)
            c.release(ids)


def test_write_through_copies_at_registration(sync_backend):
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, offload_mode="write_through") as c:
        ids, _ = c.acquire([1, 2])
        c.release(c.register(ids, [1, 2]))
        c.sync()
        assert c.tier("g2").contains(1) and c.tier("g2").contains(2)
    with pytest.raises(kvbm.InvalidArgumentError, match="offload_mode"):
        kvbm.Cache(sync_backend, small_layout(4), offload_mode="sometimes")


def test_cache_arguments_are_checked_before_c(sync_backend):
    with pytest.raises(kvbm.InvalidArgumentError, match="backend"):
        kvbm.Cache("cpu", small_layout(4))
    with pytest.raises(kvbm.InvalidArgumentError, match="unknown layout fields"):
        kvbm.Cache(sync_backend, dict(small_layout(4), heads=8))
    with pytest.raises(kvbm.InvalidArgumentError, match="layout needs"):
        kvbm.Cache(sync_backend, {"num_blocks": 4})
    with pytest.raises(kvbm.InvalidArgumentError, match="g3"):
        kvbm.Cache(sync_backend, small_layout(4), g2_blocks=4, g3="/tmp/x")
    with pytest.raises(kvbm.InvalidArgumentError):  # C: a G3 needs a G2
        kvbm.Cache(sync_backend, small_layout(4), g3=kvbm.DiskConfig("/tmp/never-created", capacity_blocks=4))
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=4) as c:
        with pytest.raises(kvbm.NoBlocksError):
            c.acquire(np.arange(1, 6, dtype=np.uint64))
        assert c.tier("g1").counts()["reset"] == 4  # the refusal took nothing
        with pytest.raises(kvbm.InvalidArgumentError, match="tier"):
            c.pool("g4")
        with pytest.raises(kvbm.InvalidArgumentError, match="ready"):
            c.allocate(1, ready="fence")


def test_a_cache_refuses_to_close_while_a_view_of_its_pools_lives(sync_backend):
    c = kvbm.Cache(sync_backend, small_layout(4), g2_blocks=4)
    v = c.numpy("g2")
    with pytest.raises(kvbm.BusyError, match="g2"):
        c.close()
    with pytest.raises(kvbm.BusyError, match="Cache"):
        sync_backend.close()  # the cache is still open
    del v
    c.close()
    assert c.closed and c.pool is not None
    with pytest.raises(kvbm.InvalidArgumentError, match="closed"):
        c.acquire([1])


def test_the_disk_tier_takes_g2_victims_and_serves_them_back(sync_backend, tmp_path):
    disk = kvbm.DiskConfig(str(tmp_path / "g3.bin"), capacity_blocks=32, min_free_bytes=0, model_id="m",
                           io="threads", direct=False, io_threads=2, staging_blocks=8)
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=4, g3=disk) as c:
        assert c.g3_engine and c.tier("g3").counts()["total"] == 32
        hashes = np.arange(1, 5, dtype=np.uint64)
        for k in range(4):  # 16 hashes through a G1 of 4 and a G2 of 4
            h = hashes + 100 * k
            ids, _ = c.acquire(h)
            fill(c.numpy(), ids, h)
            c.release(c.register(ids, h)[::-1])
        c.sync()
        with sync_backend.fence() as ready:
            ids, r = c.acquire(hashes, ready=ready)
            ready.wait()
        assert r.onboarded == 4 and r.g3 == 4
        c.check(ids)
        v = c.numpy()
        assert all((v[int(i)] == int(h) % 251).all() for i, h in zip(ids, hashes))
        del v
        c.release(ids)
        c.sync()
        assert c.metrics()["g3_onboards"] == 4 and c.disk_metrics()
        assert "kvbm" in c.metrics_prometheus()
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=4, g3=disk) as c:  # reopened warm
        assert c.tier("g3").counts()["inactive"] > 0


def test_g2_admission_is_a_cache_option(sync_backend):
    with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, offload_admission=True,
                    admission_keep_ratio=0.5) as c:
        for k in range(3):
            h = np.arange(1, 5, dtype=np.uint64) + 10 * k
            ids, _ = c.acquire(h)
            c.release(c.register(ids, h, request_blocks=4, first_position=0)[::-1])
        c.sync()
        m = c.metrics()
        assert m["offloads"] + m["offload_refused"] + m["offload_skipped"] == 8  # every eviction accounted for
    with pytest.raises(kvbm.InvalidArgumentError):  # C: admission is write-back only
        kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, offload_admission=True, offload_mode="write_through")
    with pytest.raises(kvbm.InvalidArgumentError, match="admission_keep_ratio"):
        kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, admission_keep_ratio=-1.0)
