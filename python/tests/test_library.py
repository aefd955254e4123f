"""Loading: where the library is looked for, the version check, and kvbm's
log messages routed into Python's logging."""
import logging
import os

import pytest

import kvbm
from kvbm import _core, _library

from conftest import small_layout


def test_the_loaded_library_is_the_version_the_binding_was_written_for():
    _library._check_version(_core.lib, kvbm.LIBRARY_PATH)  # what import did
    major, minor, patch = _library.WRITTEN_FOR
    assert kvbm.version_code == _core.lib.kvbm_version_code() == major * 10000 + minor * 100 + patch
    assert kvbm.__version__ == _core.text(_core.lib.kvbm_version()) == "%d.%d.%d" % (major, minor, patch)


class FakeLibrary:
    def __init__(self, code, text):
        self.code, self.text = code, text

    def kvbm_version_code(self):
        return self.code

    def kvbm_version(self):
        return _core.ffi.new("char[]", self.text.encode())


@pytest.mark.parametrize("code,text", [(10000, "1.0.0"), (0, "0.0.0")])
def test_another_major_or_an_older_library_is_refused(code, text):
    major, minor, patch = _library.WRITTEN_FOR
    if code >= major * 10000 + minor * 100 + patch and code // 10000 == major:
        pytest.skip("the fake version is acceptable to this binding")
    with pytest.raises(ImportError, match="is version %s" % text):
        _library._check_version(FakeLibrary(code, text), "/somewhere/libkvbm.so.0")


def test_kvbm_library_overrides_every_other_place(monkeypatch, tmp_path):
    monkeypatch.setenv("KVBM_LIBRARY", str(tmp_path))
    assert _library.candidates() == [("$KVBM_LIBRARY", os.path.join(str(tmp_path), _library.SONAME))]
    with pytest.raises(ImportError, match="KVBM_LIBRARY"):
        _library.load()
    monkeypatch.delenv("KVBM_LIBRARY")
    places = [where for where, _ in _library.candidates()]
    assert places[0] == "next to the package" and places[-1] == "the system loader"


def test_kvbm_messages_go_to_python_logging(caplog, sync_backend, tmp_path):
    caplog.set_level(logging.INFO, logger="kvbm")
    kvbm.log.capture()
    try:
        disk = kvbm.DiskConfig(str(tmp_path), capacity_blocks=8, min_free_bytes=0, io="threads", direct=False)
        with pytest.raises(kvbm.KvbmError):  # a folder is not a G3 file
            kvbm.Cache(sync_backend, small_layout(4), g2_blocks=4, g3=disk)
        assert kvbm.log.flush()
    finally:
        kvbm.log.release()
    errors = [r for r in caplog.records if r.name == "kvbm" and r.levelno == logging.ERROR]
    assert any(str(tmp_path) in r.getMessage() and "directory" in r.getMessage() for r in errors), \
        [r.getMessage() for r in caplog.records]
