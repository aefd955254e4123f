#!/usr/bin/env bash
# Builds kvbm and runs the whole test suite (the README's test command).
#   scripts/test.sh                 normal build, all tests
#   scripts/test.sh address         ASan+UBSan build, all tests
#   scripts/test.sh thread          TSan build, all tests
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=${1:-}
if [ -z "$sanitize" ]; then
  build_dir=build
  bash scripts/build.sh "$build_dir"
else
  # Sanitizer builds are Debug builds, so internal asserts run too. They keep
  # CUDA when nvcc is there: no GPU is needed, the CUDA backend's host code
  # runs under the sanitizer on the CUDA runtime stand-in (tests/cuda), and
  # elsewhere AUTO finds no driver and uses the CPU backend.
  build_dir=build-$sanitize
  bash scripts/build.sh "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DKVBM_SANITIZE="$sanitize" -DKVBM_BUILD_BENCH=OFF
fi
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp
export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1
cd "$build_dir"
ctest --output-on-failure -j 2
