"""Gives pyproject.toml the version: kvbm's, from kvbm/_cdefs.h (the copy of
include/kvbm/version.h that the binding checks against the library)."""
import os
import re

from setuptools import setup

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kvbm", "_cdefs.h")) as f:
    parts = dict(re.findall(r"#define KVBM_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)", f.read()))
setup(version="%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"]))
