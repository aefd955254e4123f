#!/usr/bin/env bash
# The main job: builds kvbm and replays the bundled Mooncake trace.
#   scripts/replay.sh               the summary: every policy and the belady
#                                   bound at 1000, 5859, 10000 and 30000 G1
#                                   blocks (CSV and PNG in out/), then the
#                                   contract's G1+G2 run through the tiered
#                                   cache with real copies on the CPU fallback
#                                   (or CUDA where a GPU is present), and the
#                                   contract's G1+G2+G3 run with a disk tier
#                                   in out/ (kept: run it twice to see it warm)
#   scripts/replay.sh ARGS...       kvbm-replay ARGS... (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."
# Only kvbm-replay and the library it needs; progress on stderr.
bash scripts/build.sh --target kvbm-replay --progress build
replay=build/tools/replay/kvbm-replay
trace=data/mooncake/synthetic_trace.jsonl
if [ $# -gt 0 ]; then
  exec "$replay" "$@"
fi
mkdir -p out
echo "== hit rate by policy and G1 capacity (shared Mooncake trace, $trace) =="
"$replay" --sweep 1000,5859,10000,30000 --csv out/replay-sweep.csv --plot out/replay-sweep.png "$trace"
echo
echo "== G1 5859 + G2 23436 blocks, LRU, through the tiered cache with real copies (self-check row 4) =="
"$replay" --g1-blocks 5859 --g2-blocks 23436 --policy lru --json "$trace"
echo
echo "== G1 5859 + G2 11718 + G3 23436 blocks, LRU, with the disk tier in out/ (G3 self-check row 2) =="
"$replay" --g1-blocks 5859 --g2-blocks 11718 --g3-blocks 23436 --g3-dir out --policy lru --json "$trace"
