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
case "${KVBM_SANITIZE:-}" in
  thread)
    echo "python tests: skipped in the TSan build (TSan cannot be loaded into python3); they run in the normal and ASan builds"
    exit 77 ;;
  address)
    runtime=$("${KVBM_CC:-cc}" -print-file-name=libasan.so)
    export LD_PRELOAD=$runtime
    export ASAN_OPTIONS=detect_leaks=0:strict_string_checks=1 ;;
esac
if [ "$1" = --example ]; then
  shift
  exec "$python" "$@"
fi
exec "$python" -m pytest -q -rs -p no:cacheprovider "$@"
