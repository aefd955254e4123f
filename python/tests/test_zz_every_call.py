"""Every C function the package calls is reached by some test of this suite
(through conftest.CallRecorder). Named to run last; meaningful only when the
whole suite ran, and skipped (saying so) otherwise."""
import os
import re

import pytest

import kvbm
from conftest import RECORDER

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(os.path.abspath(kvbm.__file__))


def test_every_wrapped_c_function_was_called_by_a_test(request):
    ran = {os.path.basename(str(item.fspath)) for item in request.session.items}
    suite = {f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py")}
    if ran != suite:
        pytest.skip("only meaningful with the whole suite (ran %d of %d files)" % (len(ran), len(suite)))
    referenced = set()
    for name in os.listdir(PACKAGE):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE, name), encoding="utf-8") as f:
                referenced |= set(re.findall(r"\blib\.(kvbm_\w+)", f.read()))
    assert len(referenced) > 80
    missing = sorted(referenced - RECORDER.called)
    assert not missing, "wrapped but reached by no test: %s" % ", ".join(missing)
