"""Layouts from Python: queries agree with the arrangement's arithmetic."""
import pytest

import kvbm


def test_fully_contiguous_geometry():
    with kvbm.Layout(4, 3, 16, 64, alignment=256) as lay:
        chunk = 16 * 64 * 2
        assert lay.chunk_bytes == chunk and lay.block_bytes == 3 * 2 * chunk
        assert lay.regions_per_block == 1
        stride = -(-lay.block_bytes // 256) * 256
        assert lay.total_bytes == 4 * stride
        assert lay.offset(2, 1, 1) == 2 * stride + 3 * chunk
        assert lay.address(4096, 2, 1, 1) == 4096 + lay.offset(2, 1, 1)
        regions = lay.block_regions(3)
        assert regions.shape == (1, 2) and list(regions[0]) == [3 * stride, lay.block_bytes]
        c = lay.config
        assert c["kind"] == "fully_contiguous" and c["num_layers"] == 3 and c["outer_contiguous"] is True


def test_layer_separate_regions_and_compatibility():
    with kvbm.Layout(4, 3, 16, 64, kind="layer_separate", outer_contiguous=False) as a, \
            kvbm.Layout(8, 3, 16, 64) as b, kvbm.Layout(8, 2, 16, 64) as c:
        assert a.regions_per_block == 6
        regions = a.block_regions(1)
        assert len(regions) == 6 and all(r[1] == a.chunk_bytes for r in regions)
        assert list(regions[:, 0]) == sorted(regions[:, 0])
        assert a.compatible(b) and not a.compatible(c)
        with pytest.raises(kvbm.InvalidArgumentError):
            a.compatible("layout")


def test_out_of_range_and_bad_configs_raise():
    with kvbm.Layout(4, 3, 16, 64) as lay:
        with pytest.raises(kvbm.OutOfRangeError):
            lay.offset(4)
        with pytest.raises(kvbm.OutOfRangeError):
            lay.block_regions(9)
    with pytest.raises(kvbm.InvalidArgumentError, match="kind"):
        kvbm.Layout(4, 3, 16, 64, kind="tiled")
    with pytest.raises(kvbm.InvalidArgumentError):
        kvbm.Layout(4, 0, 16, 64)
    with pytest.raises(kvbm.SizeOverflowError):
        kvbm.Layout(2**31, 2**20, 2**16, 2**16)
