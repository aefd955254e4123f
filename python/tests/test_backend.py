"""Backends, pools, streams, fences and copies; pools as numpy arrays and
torch tensors without copying, checked through kvbm's own copies."""
import numpy as np
import pytest

import kvbm

torch = pytest.importorskip("torch")

from conftest import small_layout  # noqa: E402


def test_backend_properties(backend):
    assert backend.name == "cpu" and backend.kind == "cpu"
    assert isinstance(kvbm.cuda_built(), bool)
    with pytest.raises(kvbm.InvalidArgumentError, match="kind"):
        kvbm.Backend("tpu")
    with pytest.raises(kvbm.InvalidArgumentError):
        kvbm.Backend("cpu", fail_nth_copy=-1)


def test_pool_is_a_numpy_array_without_copy(backend):
    with backend.pool(4096, "host") as pool:
        assert pool.nbytes == 4096 and pool.kind == "host" and not pool.on_cuda
        a = pool.numpy()
        assert a.dtype == np.uint8 and a.shape == (4096,)
        assert a.ctypes.data == pool.ptr
        a[:] = 7
        b = pool.numpy(dtype=np.uint32)
        assert b[0] == 0x07070707
        del a, b


def test_views_shaped_by_the_layout_match_kvbm_offsets(backend):
    for kw in ({}, {"kind": "layer_separate"}, {"kind": "layer_separate", "outer_contiguous": False}):
        with kvbm.Layout(**small_layout(5), **kw) as lay, backend.pool(lay.total_bytes) as pool:
            v = pool.numpy(lay, np.float16)
            assert v.shape == (5, 3, 2, 4, 8)
            for b, layer, o in ((0, 0, 0), (4, 2, 1), (2, 1, 0)):
                assert v[b, layer, o].ctypes.data == pool.ptr + lay.offset(b, layer, o)
            t = pool.torch(lay, torch.bfloat16)
            assert t.shape == (5, 3, 2, 4, 8) and t.dtype == torch.bfloat16
            assert t[4, 2, 1].data_ptr() == pool.ptr + lay.offset(4, 2, 1)
            del v, t


def _read_block_through_c(backend, stream, lay, pool, block, dtype):
    """Block ``block`` of ``pool`` as kvbm copies it (kvbm_backend_copy_blocks)
    into a pool wrapped around a fresh numpy array."""
    dst = np.zeros(lay.total_bytes, np.uint8)
    with backend.wrap(dst, "host") as dst_pool, backend.fence() as f:
        backend.copy_blocks(stream, lay, pool, [block], dst_pool, [0], "d2h", f)
        f.wait()
    regions = lay.block_regions(0)
    return np.concatenate([dst[o:o + n] for o, n in regions]).view(dtype)


def test_numpy_and_torch_writes_are_what_kvbm_copies(backend):
    with kvbm.Layout(**small_layout(4)) as lay, backend.pool(lay.total_bytes) as pool, backend.stream() as s:
        v = pool.numpy(lay, np.float16)
        v[2] = np.arange(v[2].size, dtype=np.float16).reshape(v[2].shape)
        got = _read_block_through_c(backend, s, lay, pool, 2, np.float16)
        assert np.array_equal(got, v[2].reshape(-1))
        t = pool.torch(lay, torch.float16)
        t[1].fill_(3.5)
        got = _read_block_through_c(backend, s, lay, pool, 1, np.float16)
        assert (got == 3.5).all()
        del v, t


def test_kvbm_copies_are_visible_through_the_views(backend):
    with kvbm.Layout(**small_layout(4)) as lay, backend.pool(lay.total_bytes) as g1, \
            backend.pool(lay.total_bytes, "host") as g2, backend.stream() as s, backend.fence() as f:
        src, dst = g1.torch(lay, torch.float16), g2.torch(lay, torch.float16)
        src.copy_(torch.randn(src.shape).to(torch.float16))
        backend.copy_blocks(s, lay, g1, [0, 3], g2, [1, 2], "d2h", f)
        f.wait()
        assert f.query() is True
        assert torch.equal(dst[1], src[0]) and torch.equal(dst[2], src[3])
        # Between layouts of different arrangement and size.
        with kvbm.Layout(**small_layout(2, kind="layer_separate")) as other, \
                backend.pool(other.total_bytes, "host") as g3:
            o = g3.torch(other, torch.float16)
            backend.copy_blocks_between(s, lay, g1, [3], other, g3, [1], "d2h", f)
            f.wait()
            assert torch.equal(o[1], src[3])
            del o
        del src, dst


def test_raw_copies_and_fence_errors(backend):
    src = np.arange(256, dtype=np.uint8)
    dst = np.zeros(256, np.uint8)
    copies = np.zeros(2, kvbm.COPY_DTYPE)
    copies[0] = (src.ctypes.data, dst.ctypes.data, 100)
    copies[1] = (src.ctypes.data + 100, dst.ctypes.data + 100, 156)
    with backend.stream() as s, backend.fence() as f:
        backend.copy(s, copies, "h2h", f)
        f.wait()
        assert np.array_equal(src, dst)
        backend.fail_nth_copy(1)
        backend.copy(s, copies[:1], "h2h", f)
        with pytest.raises(kvbm.CopyFailedError):
            f.wait()
        with pytest.raises(kvbm.InvalidArgumentError, match="COPY_DTYPE"):
            backend.copy(s, np.zeros(3, np.uint64), "h2h")


def test_streams_hold_and_wait_on_fences(backend):
    with backend.stream() as a, backend.stream() as b, backend.fence() as fa, backend.fence() as fb:
        assert a.native is None
        src = np.ones(64, np.uint8)
        dst = np.zeros(64, np.uint8)
        copies = np.array([(src.ctypes.data, dst.ctypes.data, 64)], kvbm.COPY_DTYPE)
        a.hold(True)
        backend.copy(a, copies, "h2h", fa)
        assert fa.query() is False  # held: not run yet
        fb.record(b)
        b.wait_fence(fa)
        fb.record(b)
        assert fb.query() is False  # b waits for a
        a.hold(False)
        fb.wait()
        assert fa.query() is True and dst.sum() == 64
        with pytest.raises(kvbm.UnsupportedError):
            backend.wrap_stream(1234)


def test_a_pool_refuses_to_close_while_a_view_lives(backend):
    pool = backend.pool(1024)
    view = pool.numpy()
    t = torch.from_numpy(view[:16])
    del view
    with pytest.raises(kvbm.BusyError, match="view"):
        pool.close()
    del t
    pool.close()
    assert pool.closed


def test_a_view_keeps_its_pool_alive(backend):
    view = backend.pool(1024).numpy()  # the Pool object itself is not kept
    view[:] = 1
    assert view.sum() == 1024
    del view  # now the pool is collected and freed


def test_the_backend_closes_after_what_was_made_from_it():
    b = kvbm.Backend("cpu")
    pool = b.pool(64)
    s = b.stream()
    with pytest.raises(kvbm.BusyError, match="Pool, Stream"):
        b.close()
    pool.close()
    s.close()
    b.close()
    with pytest.raises(kvbm.InvalidArgumentError, match="closed"):
        b.pool(64)


def test_wrapping_caller_memory(backend):
    arr = np.zeros(4096, np.uint8)
    with backend.wrap(arr) as p:
        assert p.ptr == arr.ctypes.data and p.nbytes == 4096
        p.numpy()[:10] = 9
    assert arr[:10].sum() == 90
    t = torch.zeros(1024, dtype=torch.float32)
    with backend.wrap(t, "host") as p:
        assert p.ptr == t.data_ptr() and p.nbytes == 4096
    with backend.wrap(bytearray(128)) as p:
        assert p.nbytes == 128
    with pytest.raises(kvbm.InvalidArgumentError, match="contiguous"):
        backend.wrap(np.zeros((8, 8))[:, ::2])
    with pytest.raises(kvbm.InvalidArgumentError, match="read-only"):
        ro = np.zeros(8)
        ro.flags.writeable = False
        backend.wrap(ro)
    with pytest.raises(kvbm.InvalidArgumentError):
        backend.wrap(b"immutable bytes")


def test_views_refuse_mismatched_dtypes_and_small_pools(backend):
    with kvbm.Layout(**small_layout(4)) as lay, backend.pool(lay.total_bytes // 2) as small, \
            backend.pool(lay.total_bytes) as pool:
        with pytest.raises(kvbm.InvalidArgumentError, match="needs"):
            small.numpy(lay)
        with pytest.raises(kvbm.InvalidArgumentError, match="elem_size"):
            pool.numpy(lay, np.float32)
        with pytest.raises(kvbm.UnsupportedError, match="not CUDA"):
            pool.cuda_array()
        assert not hasattr(pool, "__cuda_array_interface__")


def test_cuda_array_interface_describes_the_layout():
    # Built directly (no GPU here): what a CUDA pool would hand torch or CuPy.
    from kvbm import _memory

    with kvbm.Layout(**small_layout(4, kind="layer_separate")) as lay:
        tracker = _memory.ViewTracker()
        arr = _memory.cuda_view(object(), 1 << 40, lay.total_bytes, tracker, lay, "<f2", "test")
        cai = arr.__cuda_array_interface__
        assert cai["shape"] == (4, 3, 2, 4, 8) and cai["typestr"] == "<f2" and cai["version"] == 3
        assert cai["data"] == ((1 << 40) + lay.offset(0, 0, 0), False)
        assert cai["strides"] == (lay.offset(1) - lay.offset(0), lay.offset(0, 1) - lay.offset(0),
                                  lay.offset(0, 0, 1) - lay.offset(0), 16, 2)
        assert tracker.live() == 1
        whole = _memory.cuda_view(object(), 1 << 40, lay.total_bytes, tracker, None, None, "test")
        assert whole.__cuda_array_interface__["shape"] == (lay.total_bytes,)


@pytest.mark.skipif(not (kvbm.cuda_built() and torch.cuda.is_available()), reason="needs a CUDA GPU and a CUDA torch")
def test_cuda_pool_as_a_torch_tensor():
    with kvbm.Backend("cuda") as b, kvbm.Layout(**small_layout(4)) as lay, b.pool(lay.total_bytes) as pool:
        t = torch.as_tensor(pool.cuda_array(lay, "<f2"), device="cuda")
        t.fill_(2.0)
        torch.cuda.synchronize()
        with b.pool(lay.total_bytes, "host") as host, b.stream() as s, b.fence() as f:
            b.copy_blocks(s, lay, pool, [1], host, [0], "d2h", f)
            f.wait()
            assert (host.torch(lay, torch.float16)[0] == 2.0).all()
        del t
