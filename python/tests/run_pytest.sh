#!/usr/bin/env bash
# Runs the Python binding's tests (or, with --example, one example) with the
# build tree's package (PYTHONPATH=BUILD/python, set by ctest).
#   run_pytest.sh PYTHON TESTS_DIR
#   run_pytest.sh PYTHON --example SCRIPT [ARGS...]
# Sanitizer builds: under ASan the interpreter gets the ASan runtime
# preloaded (libkvbm.so is instrumented, python3 is not; leak checking is off
# because the interpreter keeps its own allocations to exit). Under TSan the
# tests are skipped (exit 77): TSan must start with the process and would
# report the uninstrumented interpreter's own threads.
set -euo pipefail
python=$1
shift
source "$(dirname "$0")/sanitizer_env.sh"
[ -z "$kvbm_preload" ] || export LD_PRELOAD=$kvbm_preload
if [ "$1" = --example ]; then
  shift
  exec "$python" "$@"
fi
exec "$python" -m pytest -q -rs -p no:cacheprovider "$@"
