#!/usr/bin/env bash
# Runs the libFuzzer harnesses (tests/fuzz): the API fuzzer (manager and
# tiered-cache calls checked against a model after every call) and the trace
# reader fuzzer, each for SECONDS, in a clang build of their own (build-fuzz,
# the library compiled with the fuzzer's coverage, ASan and UBSan). The
# corpora grow in build-fuzz/corpus/ and are kept between runs. A failure
# leaves its input as build-fuzz/crash-* and exits non-zero.
#   scripts/fuzz.sh [SECONDS_API] [SECONDS_TRACE]     (default 600 and 120)
# CI runs `scripts/fuzz.sh 45 15`.
set -euo pipefail
cd "$(dirname "$0")/.."
api_seconds=${1:-600}
trace_seconds=${2:-120}
bash scripts/setup-deps.sh fuzz
build_dir=build-fuzz
cmake -S . -B "$build_dir" -DCMAKE_C_COMPILER=clang -DKVBM_BUILD_FUZZ=ON -DKVBM_WITH_CUDA=OFF \
  -DKVBM_BUILD_TESTS=OFF -DKVBM_BUILD_BENCH=OFF -DKVBM_WERROR=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target fuzz_api fuzz_trace >/dev/null
mkdir -p "$build_dir/corpus/api" "$build_dir/corpus/trace"
cd "$build_dir"
run() { # name seconds corpus [libFuzzer options]
  local log="fuzz_$1.log" name=$1 seconds=$2 corpus=$3
  shift 3
  if ! "./fuzz_$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
      -print_final_stats=1 "$@" "$corpus" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: fuzz_$name failed; the input is in $build_dir/$(ls -t crash-* leak-* timeout-* oom-* 2>/dev/null | head -1)" >&2
    return 1
  fi
  echo "fuzz_$name: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') inputs in $seconds s," \
    "corpus $(ls "$corpus" | wc -l) inputs, no failure"
}
run api "$api_seconds" corpus/api
run trace "$trace_seconds" corpus/trace -dict=../tests/fuzz/trace.dict
