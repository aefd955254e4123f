#!/usr/bin/env bash
# Side-by-side benchmark of two builds of kvbm, alternating A and B so both
# see the same machine noise: bench_manager (its cycle and per_call columns)
# and kvbm-replay's ns_per_block (LRU, G1 5859, the bundled trace).
#   scripts/bench-compare.sh A_BUILD B_BUILD [ROUNDS]
# Example (the restructure of issue 9 against the commit before it):
#   git worktree add /tmp/kvbm-base 9e5e064
#   cmake -S /tmp/kvbm-base -B /tmp/kvbm-base/build -DKVBM_WITH_CUDA=OFF && cmake --build /tmp/kvbm-base/build -j2
#   cmake -S . -B build-nocuda -DKVBM_WITH_CUDA=OFF && cmake --build build-nocuda -j2
#   scripts/bench-compare.sh /tmp/kvbm-base/build build-nocuda 5
# Prints every run; it measures and never passes or fails.
set -euo pipefail
a=$1
b=$2
rounds=${3:-5}
trace=$(cd "$(dirname "$0")/.." && pwd)/data/mooncake/synthetic_trace.jsonl
replay_ns() {
  "$1/tools/replay/kvbm-replay" --g1-blocks 5859 --policy lru --json --no-progress "$trace" 2>/dev/null |
    sed -n 's/.*"ns_per_block": \([0-9.]*\).*/\1/p'
}
echo "== kvbm-replay ns_per_block (LRU, G1 5859), $rounds x 5 runs each, alternating =="
for r in $(seq "$rounds"); do
  line_a="" line_b=""
  for i in 1 2 3 4 5; do
    line_a="$line_a $(replay_ns "$a")"
    line_b="$line_b $(replay_ns "$b")"
  done
  echo "round $r  A:$line_a"
  echo "round $r  B:$line_b"
done
echo
echo "== bench_manager, $rounds runs each, alternating (A then B) =="
for r in $(seq "$rounds"); do
  echo "-- round $r A ($a)"
  "$a/bench_manager" | sed -n '2,8p'
  echo "-- round $r B ($b)"
  "$b/bench_manager" | sed -n '2,8p'
done
