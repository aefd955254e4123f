"""Shared fixtures of the binding's tests (run by ctest as python_binding,
with PYTHONPATH=BUILD/python; by hand: PYTHONPATH=build/python python3 -m
pytest python/tests)."""
import os

import pytest

import kvbm

SOURCE_DIR = os.environ.get("KVBM_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture
def backend():
    """A CPU backend with worker-thread streams (closed after the test)."""
    with kvbm.Backend("cpu") as b:
        yield b


@pytest.fixture
def sync_backend():
    """A CPU backend running every copy in the calling thread."""
    with kvbm.Backend("cpu", synchronous=True) as b:
        yield b


def small_layout(num_blocks=8, **kw):
    """Geometry of a small test layout (3 layers, K/V, 4 tokens, inner 8, fp16)."""
    d = dict(num_blocks=num_blocks, num_layers=3, tokens_per_block=4, inner_dim=8)
    d.update(kw)
    return d


class CallRecorder:
    """Stands in for the loaded library in every kvbm module and records
    which kvbm_* functions the binding fetched (test_zz_every_call.py checks
    that the suite reached every one the package calls)."""

    def __init__(self, lib):
        self._lib = lib
        self.called = set()

    def __getattr__(self, name):
        self.called.add(name)
        return getattr(self._lib, name)


def _install_recorder():
    import sys

    real = kvbm._core.lib
    recorder = CallRecorder(real)
    for name, module in list(sys.modules.items()):
        if (name == "kvbm" or name.startswith("kvbm.")) and getattr(module, "lib", None) is real:
            module.lib = recorder
    return recorder


RECORDER = _install_recorder()
