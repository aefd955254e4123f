#!/usr/bin/env bash
# Instructions per block of the manager's calls (callgrind, so the load of
# the machine does not matter): allocate+register+release and
# match+release at 1, 16 and 256 blocks per call, for each BUILD given
# (each must have bench_manager_calls). Measures; never passes or fails.
#   bench/manager-calls.sh BUILD [BUILD...]
set -euo pipefail
cycled=20480
for build in "$@"; do
  for batch in 1 16 256; do
    line="  batch $batch"
    for loop in cycle_calls match_calls; do
      instructions=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=$loop \
        "$build/bench_manager_calls" --batch "$batch" --cycled "$cycled" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
      line="$line  $loop $(awk -v i="$instructions" -v n="$cycled" 'BEGIN { printf "%.1f", i / n }')"
    done
    echo "$line  ($build)"
  done
done
