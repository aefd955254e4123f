#!/usr/bin/env bash
# The binding installed three ways, each importing and using the library
# without the build tree:
#   1. cmake --install: the package in the prefix's site folder finds the
#      prefix's libkvbm through _build_info.py;
#   2. pip install --prefix (offline, no build isolation) into a prefix that
#      holds only the library (cmake --install --component runtime): the
#      package finds it through the prefix it sits in;
#   3. pip install --target elsewhere (--no-deps: a target folder does not
#      see the installed cffi and numpy): found through $KVBM_LIBRARY; a wrong
#      $KVBM_LIBRARY is an ImportError naming it.
#   install_test.sh PYTHON BUILD_DIR PYTHON_SOURCE_DIR
set -euo pipefail
python=$1
build=$2
source=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset PYTHONPATH KVBM_LIBRARY
source "$(dirname "$0")/sanitizer_env.sh"
cd "$tmp"

# Imports kvbm with PYTHONPATH=$1, checks that the package came from there
# and the library from a path starting with $2, and moves blocks.
use() {
  PYTHONPATH=$1 LD_PRELOAD=$kvbm_preload "$python" - "$1" "$2" <<'PY'
import sys
import kvbm
assert kvbm.__file__.startswith(sys.argv[1] + "/"), (kvbm.__file__, sys.argv[1])
assert kvbm.LIBRARY_PATH.startswith(sys.argv[2]), (kvbm.LIBRARY_PATH, sys.argv[2])
with kvbm.Manager(4) as m:
    ids = m.allocate(2)
    h = kvbm.hash_tokens(list(range(32)), 16)
    m.release(m.register(ids, h))
    assert list(m.match(h)) == list(ids), (m.match(h), ids)
print("install_test: kvbm", kvbm.__version__, "from", kvbm.__file__, "with", kvbm.LIBRARY_PATH)
PY
}

echo "== 1. cmake --install"
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
info=$(find "$tmp/prefix" -name _build_info.py -path '*/kvbm/*')
[ -n "$info" ] || { echo "install_test: cmake --install put no kvbm package in the prefix" >&2; exit 1; }
use "$(dirname "$(dirname "$info")")" "$tmp/prefix/"

echo "== 2. pip install --prefix, beside the library"
cmake --install "$build" --prefix "$tmp/libonly" --component runtime >/dev/null
cp -r "$source" "$tmp/src"  # pip builds in place; keep the source tree clean
"$python" -m pip install --quiet --no-build-isolation --no-index --no-warn-script-location \
  --prefix "$tmp/libonly" "$tmp/src" 2>&1 | grep -v "Running pip as the 'root' user" || true
site=$(dirname "$(find "$tmp/libonly" -name __init__.py -path '*/kvbm/*')")
use "$(dirname "$site")" "$tmp/libonly/"

echo "== 3. pip install --target, library through KVBM_LIBRARY"
"$python" -m pip install --quiet --no-build-isolation --no-index --no-deps --target "$tmp/target" "$tmp/src" 2>&1 \
  | grep -v "Running pip as the 'root' user" || true
lib=$(find "$tmp/libonly" -name 'libkvbm.so.[0-9]' | head -n 1)
KVBM_LIBRARY=$lib use "$tmp/target" "$lib"
KVBM_LIBRARY=$(dirname "$lib") use "$tmp/target" "$lib"
if out=$(KVBM_LIBRARY=$tmp/nowhere/libkvbm.so.0 PYTHONPATH=$tmp/target LD_PRELOAD=$kvbm_preload "$python" -c "import kvbm" 2>&1); then
  echo "install_test: a wrong KVBM_LIBRARY imported" >&2
  exit 1
fi
echo "$out" | grep -q 'KVBM_LIBRARY' || { echo "install_test: the error does not name KVBM_LIBRARY: $out" >&2; exit 1; }
echo "install_test: all three installs import and work"
