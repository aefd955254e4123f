"""Layouts (include/kvbm/layout.h): where each block's KV data lives in a pool."""
import numpy as np

from . import _core
from ._cffi import constants, ffi
from ._core import as_count, fail, lib, refuse
from ._structs import layout_config

KINDS = {
    "fully_contiguous": constants.KVBM_LAYOUT_FULLY_CONTIGUOUS,
    "layer_separate": constants.KVBM_LAYOUT_LAYER_SEPARATE,
}
_KIND_NAMES = {v: k for k, v in KINDS.items()}
#: Geometry fields a layout config takes, in the C struct's order.
FIELDS = ("kind", "num_blocks", "num_layers", "outer_dim", "tokens_per_block", "inner_dim",
          "elem_size", "alignment", "outer_contiguous")


def fill_layout_config(c, call, num_blocks, num_layers, tokens_per_block, inner_dim, outer_dim,
                       elem_size, kind, alignment, outer_contiguous):
    """Write the geometry into a kvbm_layout_config_t (defaults already set)."""
    u32 = _core.UINT32_MAX
    c.kind = _core.choice(kind, KINDS, call, "kind")
    c.num_blocks = as_count(num_blocks, call, "num_blocks", u32)
    c.num_layers = as_count(num_layers, call, "num_layers", u32)
    c.outer_dim = as_count(outer_dim, call, "outer_dim", u32)
    c.tokens_per_block = as_count(tokens_per_block, call, "tokens_per_block", u32)
    c.inner_dim = as_count(inner_dim, call, "inner_dim", u32)
    c.elem_size = as_count(elem_size, call, "elem_size", u32)
    c.alignment = as_count(alignment, call, "alignment")
    c.outer_contiguous = _core.as_flag(outer_contiguous, call, "outer_contiguous")


def config_dict(c):
    d = {f: getattr(c, f) for f in FIELDS}
    d["kind"] = _KIND_NAMES.get(d["kind"], d["kind"])
    d["outer_contiguous"] = bool(d["outer_contiguous"])
    return d


class Layout(_core.Handle):
    """An immutable block geometry and arrangement (kvbm_layout_t).

    ``kind``: "fully_contiguous" (one slab per block) or "layer_separate"
    (one region per layer; with ``outer_contiguous`` False one per (layer,
    outer) plane).
    """

    def __init__(self, num_blocks, num_layers, tokens_per_block, inner_dim, *, outer_dim=2,
                 elem_size=2, kind="fully_contiguous", alignment=256, outer_contiguous=True):
        call = "kvbm_layout_create"
        c = layout_config()
        fill_layout_config(c, call, num_blocks, num_layers, tokens_per_block, inner_dim, outer_dim,
                           elem_size, kind, alignment, outer_contiguous)
        out = ffi.new("kvbm_layout_t **")
        st = lib.kvbm_layout_create(c, out)
        if st:
            fail(st, call)
        self._adopt(out[0], lib.kvbm_layout_destroy)

    @classmethod
    def _borrow(cls, ptr, owner):
        """A layout kvbm owns (a cache's), valid while ``owner`` is open."""
        self = cls.__new__(cls)
        self._adopt(ptr, None, (owner,))
        self._owner = owner
        return self

    def _p(self):
        p = self._ptr
        owner = getattr(self, "_owner", None)
        if p is None or (owner is not None and owner._ptr is None):
            raise self._closed_error()
        return p

    @property
    def config(self):
        """The validated geometry as a dict (FIELDS)."""
        return config_dict(lib.kvbm_layout_config(self._p()))

    @property
    def total_bytes(self):
        return lib.kvbm_layout_total_bytes(self._p())

    @property
    def chunk_bytes(self):
        return lib.kvbm_layout_chunk_bytes(self._p())

    @property
    def block_bytes(self):
        return lib.kvbm_layout_block_bytes(self._p())

    @property
    def regions_per_block(self):
        return lib.kvbm_layout_regions_per_block(self._p())

    def offset(self, block, layer=0, outer=0):
        """Offset of the chunk (block, layer, outer) from the pool base."""
        call = "kvbm_layout_offset"
        u32 = _core.UINT32_MAX
        out = ffi.new("size_t *")
        st = lib.kvbm_layout_offset(self._p(), as_count(block, call, "block", u32),
                                    as_count(layer, call, "layer", u32), as_count(outer, call, "outer", u32), out)
        if st:
            fail(st, call)
        return out[0]

    def address(self, base, block, layer=0, outer=0):
        """Address (int) of the chunk (block, layer, outer) in a pool at ``base``."""
        call = "kvbm_layout_address"
        u32 = _core.UINT32_MAX
        out = ffi.new("void **")
        st = lib.kvbm_layout_address(self._p(), ffi.cast("void *", as_count(base, call, "base")),
                                     as_count(block, call, "block", u32), as_count(layer, call, "layer", u32),
                                     as_count(outer, call, "outer", u32), out)
        if st:
            fail(st, call)
        return int(ffi.cast("uintptr_t", out[0]))

    def block_regions(self, block):
        """The contiguous (offset, bytes) regions of a block, as an (n, 2)
        uint64 array in increasing offset."""
        call = "kvbm_layout_block_regions"
        p = self._p()
        cap = lib.kvbm_layout_regions_per_block(p)
        regions = np.empty((cap, 2), np.uint64)
        n = ffi.new("size_t *")
        st = lib.kvbm_layout_block_regions(p, as_count(block, call, "block", _core.UINT32_MAX),
                                           ffi.from_buffer("kvbm_region_t[]", regions), cap, n)
        if st:
            fail(st, call)
        return regions[: n[0]]

    def compatible(self, other):
        """Whether blocks copy chunk for chunk between the two layouts."""
        if not isinstance(other, Layout):
            refuse("kvbm_layout_compatible", "other must be a Layout, not %s" % type(other).__name__)
        st = lib.kvbm_layout_compatible(self._p(), other._p())
        if st == constants.KVBM_ERR_INCOMPATIBLE:
            return False
        if st:
            fail(st, "kvbm_layout_compatible")
        return True
