#!/usr/bin/env bash
# The long soak: 16 threads on one manager (every policy) and on one tiered
# cache with copy faults (both layouts, every policy, write-back and
# write-through), each configuration for SECONDS (CI runs 0.25 s each).
# Prints operations, verified reads, injected faults, wrong bytes and lost
# blocks per configuration and in total; fails on any wrong byte or lost block.
#   scripts/soak.sh [SECONDS_PER_CONFIGURATION] [THREADS]
#   SANITIZE=thread scripts/soak.sh 5     the same under TSan (build-thread)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
threads=${2:-16}
if [ -n "${SANITIZE:-}" ]; then
  build_dir=build-$SANITIZE
  bash scripts/build.sh "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DKVBM_SANITIZE="$SANITIZE" \
    -DKVBM_WITH_CUDA=OFF -DKVBM_BUILD_BENCH=OFF >/dev/null
else
  build_dir=build
  bash scripts/build.sh "$build_dir" >/dev/null
fi
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export ASAN_OPTIONS=detect_leaks=1
start=$(date +%s)
KVBM_SOAK_SECONDS=$seconds KVBM_SOAK_THREADS=$threads "$build_dir/test_soak"
echo "soak: $(( $(date +%s) - start )) s wall, $seconds s per configuration, $threads threads ($(git rev-parse --short HEAD))"
