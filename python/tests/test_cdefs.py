"""The binding's C declarations (kvbm/_cdefs.h) agree with include/kvbm/.

A probe is compiled against the real headers: it redeclares every function
exactly as _cdefs.h does (a different prototype does not compile), and prints
each struct's size and its fields' offsets, sizes, kinds and signedness, each
enum constant and #define, and the bytes kvbm_<name>_config_init() writes,
which are compared with what cffi computes from _cdefs.h and with the
defaults the binding writes (kvbm/_structs.py).
"""
import os
import re
import shutil
import subprocess

import pytest

import kvbm
from kvbm import _structs
from kvbm._cffi import CDEFS_PATH, constants, ffi

from conftest import SOURCE_DIR

#: Exported functions the binding does not declare: the transfers and the
#: do-nothing ops C policy tables point at (kvbm_policy_ignore_*,
#: kvbm_policy_needs_entries: no policy is written in Python). Everything of
#: the KV events (the publisher, the batcher, announce, clear, the tiers' hash
#: lists) is declared and called.
NOT_WRAPPED = re.compile(r"^kvbm_(xfer_|policy_ignore_|policy_needs_entries$)")

# __builtin_classify_type's classes (gcc typeclass.h); C's _Bool and enums
# are integers to it, so the probe also reports signedness and _Bool-ness.
_INTEGER, _ENUM, _POINTER, _REAL, _RECORD = 1, 3, 5, 8, 12


def _statements():
    text = open(CDEFS_PATH).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    defines = re.findall(r"^#define (\w+)\s+(\d+)\s*$", text, flags=re.M)
    text = re.sub(r"^#.*$", "", text, flags=re.M)
    statements, depth, cur = [], 0, ""
    for ch in text:
        cur += ch
        depth += ch == "{"
        depth -= ch == "}"
        if ch == ";" and depth == 0:
            statements.append(" ".join(cur.split()))
            cur = ""
    return defines, statements


DEFINES, STATEMENTS = _statements()
PROTOTYPES = [s for s in STATEMENTS if not s.startswith("typedef") and "{" not in s]
FUNCTIONS = sorted(re.search(r"(\w+)\s*\(", p.replace("(*", "(")).group(1) for p in PROTOTYPES)
TYPEDEFS = sorted(re.search(r"\}\s*(\w+)\s*;$", s).group(1) for s in STATEMENTS if s.startswith("typedef") and "{" in s)


def _compiler():
    cc = os.environ.get("KVBM_CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the probe")
    return cc


def _probe_source():
    lines = [
        "#include <stddef.h>", "#include <stdio.h>", "#include <string.h>", "#include <kvbm/kvbm.h>",
        "/* The binding's prototypes: a mismatch is a conflicting declaration. */",
    ]
    lines += [p for p in PROTOTYPES]
    lines += [
        "static void dump(const char *name, const void *p, size_t n) {",
        "    printf(\"init %s \", name);",
        "    for (size_t i = 0; i < n; i++) printf(\"%02x\", ((const unsigned char *)p)[i]);",
        "    printf(\"\\n\");",
        "}",
        "int main(void) {",
    ]
    for name in TYPEDEFS:
        t = ffi.typeof(name)
        if t.kind == "struct":
            lines.append('    printf("size %s %%zu\\n", sizeof(%s));' % (name, name))
            for fname, f in t.fields:
                expr = "((%s *)0)->%s" % (name, fname)
                traits = "0"  # for integers: 1 if signed, 2 if _Bool (2 converts to 1)
                if f.type.kind in ("primitive", "enum"):
                    traits = "(((__typeof__(%s))-1 < 0) | ((__typeof__(%s))2 == 1) << 1)" % (expr, expr)
                lines.append(
                    '    printf("field %s.%s %%zu %%zu %%d %%d\\n", offsetof(%s, %s), sizeof(%s), '
                    "__builtin_classify_type(%s), (int)%s);" % (name, fname, name, fname, expr, expr, traits)
                )
        elif t.kind == "enum":
            lines.append('    printf("size %s %%zu\\n", sizeof(%s));' % (name, name))
            for value, cname in t.elements.items():
                lines.append('    printf("const %s %%lld\\n", (long long)%s);' % (cname, cname))
    for name, _ in DEFINES:
        lines.append('    printf("const %s %%lld\\n", (long long)(%s));' % (name, name))
    for short, (ctype, _) in _structs.ALL.items():
        lines.append("    { %s c; memset(&c, 0xa5, sizeof(c)); kvbm_%s_config_init(&c); dump(\"%s\", &c, sizeof(c)); }"
                     % (ctype, short, short))
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    cc = _compiler()
    d = tmp_path_factory.mktemp("probe")
    src = d / "probe.c"
    src.write_text(_probe_source())
    exe = d / "probe"
    res = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(SOURCE_DIR, "include"),
                          str(src), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, "the probe does not compile against include/kvbm:\n" + res.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    facts = {"size": {}, "field": {}, "const": {}, "init": {}}
    for line in out.splitlines():
        kind, name, *rest = line.split()
        facts[kind][name] = rest
    return facts


def test_every_prototype_compiles_against_the_headers(probe):
    # The probe compiled with every prototype redeclared; check it saw them all.
    assert len(FUNCTIONS) == len(set(FUNCTIONS)) > 90


def test_struct_and_enum_sizes_match(probe):
    for name in TYPEDEFS:
        assert int(probe["size"][name][0]) == ffi.sizeof(name), name


def _expected_classes(ftype):
    if ftype.kind == "enum":
        return {_ENUM, _INTEGER}  # gcc classes C enums as integers
    if ftype.kind == "primitive":
        return {_REAL} if ftype.cname in ("float", "double") else {_INTEGER}
    if ftype.kind in ("pointer", "function"):
        return {_POINTER}
    if ftype.kind == "array":
        return {_POINTER}  # an array field decays to a pointer in the probe's expression
    if ftype.kind == "struct":
        return {_RECORD}
    raise AssertionError(ftype.kind)


def test_every_field_has_the_c_offset_size_kind_and_sign(probe):
    checked = 0
    for name in TYPEDEFS:
        t = ffi.typeof(name)
        if t.kind != "struct":
            continue
        for fname, f in t.fields:
            offset, size, cls, traits = map(int, probe["field"]["%s.%s" % (name, fname)])
            where = "%s.%s" % (name, fname)
            assert offset == f.offset, where
            assert size == ffi.sizeof(f.type), where
            assert cls in _expected_classes(f.type), (where, cls)
            if f.type.kind in ("primitive", "enum"):
                is_bool = f.type.cname == "_Bool"
                assert bool(traits & 2) == is_bool, where
                if not is_bool:
                    assert bool(traits & 1) == (int(ffi.cast(f.type, -1)) < 0), where
            checked += 1
    assert checked > 100


def test_every_enum_constant_and_define_matches(probe):
    for name in TYPEDEFS:
        t = ffi.typeof(name)
        if t.kind == "enum":
            for value, cname in t.elements.items():
                assert int(probe["const"][cname][0]) == value, cname
    for name, value in DEFINES:
        assert int(probe["const"][name][0]) == int(value) == getattr(constants, name), name


def test_config_defaults_are_the_c_init_functions_bytes(probe):
    for short, (ctype, make) in _structs.ALL.items():
        assert probe["init"][short][0] == bytes(ffi.buffer(make())).hex(), short


def test_the_binding_declares_every_exported_function_but_the_transfers():
    nm = shutil.which("nm")
    if not nm:
        pytest.skip("no nm to list the library's exports")
    path = os.path.realpath(kvbm.LIBRARY_PATH)
    out = subprocess.run([nm, "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[-1].startswith("kvbm_")}
    declared = set(FUNCTIONS)
    assert declared <= exported, declared - exported
    missing = {f for f in exported - declared if not NOT_WRAPPED.match(f)}
    assert not missing, "exported but not in python/kvbm/_cdefs.h: %s" % sorted(missing)


def test_the_binding_calls_every_function_it_declares():
    package = os.path.dirname(kvbm.__file__)
    source = "".join(open(os.path.join(package, f)).read() for f in os.listdir(package) if f.endswith(".py"))
    # The policy getters are reached through kvbm_policy_find().
    getters = {f for f in FUNCTIONS if re.match(r"kvbm_policy_\w+$", f) and f not in ("kvbm_policy_find", "kvbm_policy_names")}
    unused = [f for f in FUNCTIONS if f not in getters and "lib.%s" % f not in source]
    assert not unused, unused


def test_library_version_is_the_one_the_cdefs_copy():
    assert kvbm.WRITTEN_FOR == (constants.KVBM_VERSION_MAJOR, constants.KVBM_VERSION_MINOR,
                                constants.KVBM_VERSION_PATCH)
    assert kvbm.version_code // 10000 == kvbm.WRITTEN_FOR[0]
    assert kvbm.__version__ == "%d.%d.%d" % (kvbm.version_code // 10000, kvbm.version_code // 100 % 100,
                                             kvbm.version_code % 100)
