"""Finding and loading libkvbm.so: the one place the binding touches the loader.

The library is looked for, in order (the first that loads wins):

1. ``$KVBM_LIBRARY``: the path of the library file, or of the folder that
   holds it. When set it is the only place tried, so a wrong value is an
   error rather than a silent fallback.
2. Next to the package: ``kvbm/libkvbm.so.MAJOR`` (a build tree links it
   there; a vendored copy may be placed there).
3. Where the build that made this copy of the package put it: the build
   tree's library, or for ``cmake --install`` the prefix's library folder
   (``_build_info.py``, written by CMake, holds the path relative to the
   package).
4. The install prefix the package sits in (``PREFIX/lib/python3.X/...``, or
   Debian pip's ``PREFIX/local/lib/python3.X/...``): ``PREFIX/lib/<multiarch>``,
   ``PREFIX/lib64`` and ``PREFIX/lib``, for a ``pip install --prefix`` next to
   ``cmake --install --prefix``.
5. The system's loader (``LD_LIBRARY_PATH``, ``/etc/ld.so.cache``).

Then ``kvbm_version_code()`` must have the binding's major version and be at
least the version the binding was written for.
"""
import os
import sysconfig

from ._cffi import constants, ffi

#: The kvbm version whose headers _cdefs.h copies (its KVBM_VERSION_* lines).
WRITTEN_FOR = tuple(
    getattr(constants, "KVBM_VERSION_" + part) for part in ("MAJOR", "MINOR", "PATCH")
)
_MAJOR = WRITTEN_FOR[0]
SONAME = "libkvbm.so.%d" % _MAJOR

_here = os.path.dirname(os.path.abspath(__file__))


def _build_info_dir():
    try:
        from . import _build_info  # written by CMake; absent in a source tree or a pip install
    except ImportError:
        return None
    path = _build_info.LIBRARY_DIR
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(_here, path))


def _prefix_dirs():
    """Library folders of the prefix whose lib*/python*/ holds this package
    (Debian's pip puts PREFIX/local/lib/python3.X/dist-packages under
    --prefix PREFIX, so PREFIX is tried too)."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    parts = _here.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].startswith("python") and parts[i - 1] in ("lib", "lib64"):
            prefixes = [os.sep.join(parts[: i - 1]) or os.sep]
            if os.path.basename(prefixes[0]) == "local":
                prefixes.append(os.path.dirname(prefixes[0]))
            dirs = []
            for prefix in prefixes:
                if multiarch:
                    dirs.append(os.path.join(prefix, "lib", multiarch))
                dirs += [os.path.join(prefix, "lib64"), os.path.join(prefix, "lib")]
            return dirs
    return []


def candidates():
    """(where, path-or-name) pairs in the order they are tried."""
    forced = os.environ.get("KVBM_LIBRARY")
    if forced:
        path = os.path.join(forced, SONAME) if os.path.isdir(forced) else forced
        return [("$KVBM_LIBRARY", path)]
    found = [("next to the package", os.path.join(_here, SONAME))]
    built = _build_info_dir()
    if built:
        found.append(("the build that made the package", os.path.join(built, SONAME)))
    found += [("the install prefix", os.path.join(d, SONAME)) for d in _prefix_dirs()]
    found.append(("the system loader", SONAME))
    return found


def load():
    """The loaded library (cffi lib object) and the path or name it came from."""
    tried = []
    for where, path in candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append("%s: %s (no such file)" % (where, path))
            continue
        try:
            lib = ffi.dlopen(path)
        except OSError as e:
            tried.append("%s: %s (%s)" % (where, path, e))
            continue
        _check_version(lib, path)
        return lib, path
    raise ImportError(
        "kvbm: libkvbm not found; set KVBM_LIBRARY to its path. Tried:\n  " + "\n  ".join(tried)
    )


def _check_version(lib, path):
    code = lib.kvbm_version_code()
    text = ffi.string(lib.kvbm_version()).decode()
    wanted = WRITTEN_FOR[0] * 10000 + WRITTEN_FOR[1] * 100 + WRITTEN_FOR[2]
    if code // 10000 != _MAJOR or code < wanted:
        raise ImportError(
            "kvbm: %s is version %s; this binding needs %d.x, at least %d.%d.%d"
            % (path, text, _MAJOR, *WRITTEN_FOR)
        )
