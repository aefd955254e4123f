#!/usr/bin/env bash
# Runs kvbm-replay's data mode on the bundled trace at the contract's
# two-tier point (G1 5859, G2 23436, LRU) and checks the contract's numbers,
# the backend used, and that every served block was verified and right.
#   check_replay.sh REPLAY_BINARY TRACE BACKEND [extra kvbm-replay options]
# Prints the JSON line on success; exit 1 with the reason otherwise.
set -euo pipefail
replay=$1
trace=$2
backend=$3
shift 3
out=$("$replay" --g1-blocks 5859 --g2-blocks 23436 --backend "$backend" --json --no-progress "$@" \
      "$trace") || { echo "FAIL: kvbm-replay --backend $backend exited non-zero" >&2; exit 1; }
for field in "\"backend\": \"$backend\"" '"blocks": 121877' '"g1_hits": 37703' '"g2_hits": 36089' \
             '"offloads": 47205' '"onboards": 36089' '"g1_evictions": 78315' \
             '"g2_evictions": 23769' '"failed_copies": 0' '"verified_blocks": 73792' \
             '"wrong_blocks": 0'; do
  grep -qF "$field" <<<"$out" || { echo "FAIL: expected $field in: $out" >&2; exit 1; }
done
echo "$out"
