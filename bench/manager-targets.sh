#!/usr/bin/env bash
# The manager's numbers of issue 17, side by side with an older build
# (main, say) when one is given: bench_manager at 10^6 blocks (both builds,
# alternating, ROUNDS runs each; per row the range of cycle, per_call and
# match_hit over the runs), then for BUILD alone the metadata bytes per block
# at 10^7 blocks (lru and lineage), the creation of a 10^8-block manager, and
# the tiered cache's bookkeeping per moved block (bench_cache at 256, 16 and
# 1 blocks per call, alternating with the older build too).
#   bench/manager-targets.sh BUILD [ROUNDS] [OLDER_BUILD]
# An older build's bench_manager may predate --blocks (it then ignores it and
# runs every size): only the 10^6 rows are kept. It measures and never
# passes or fails.
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-3}
older=${3:-}
[ -n "$older" ] && older=$(cd "$older" && pwd)
programs=("$build")
[ -n "$older" ] && programs+=("$older")

# The 10^6 rows of one bench_manager run: "batch cycle per_call match_hit".
manager_rows() {
  "$1/bench_manager" --blocks 1000000 | awk '$1 == 1000000 { print $2, $6, $7, $8 }'
}

declare -A rows
for _ in $(seq "$rounds"); do
  for p in "${programs[@]}"; do
    while read -r batch cycle per_call match; do
      rows[$p,$batch]="${rows[$p,$batch]:-} $cycle/$per_call/$match"
    done < <(manager_rows "$p")
  done
done
echo "== bench_manager, 10^6 blocks, LRU, $rounds runs each, alternating: range over runs (ns per block) =="
for p in "${programs[@]}"; do
  echo "  $p"
  for batch in 1 16 256; do
    tr ' ' '\n' <<<"${rows[$p,$batch]}" | sed '/^$/d' | awk -F/ -v b="$batch" '
      NR == 1 { c1 = c2 = $1; p1 = p2 = $2; m1 = m2 = $3 }
      { if ($1 < c1) c1 = $1; if ($1 > c2) c2 = $1; if ($2 < p1) p1 = $2; if ($2 > p2) p2 = $2;
        if ($3 < m1) m1 = $3; if ($3 > m2) m2 = $3 }
      END { printf "    batch %3d  cycle %6.1f-%-6.1f per_call %6.1f-%-6.1f match_hit %5.1f-%-5.1f\n",
                   b, c1, c2, p1, p2, m1, m2 }'
  done
done

echo "== metadata and creation ($build) =="
"$build/bench_manager" --metadata 10000000 --policy lru
"$build/bench_manager" --metadata 10000000 --policy lineage
"$build/bench_manager" --create 100000000 --policy lru

echo "== tiered cache bookkeeping per moved block, $rounds runs each, alternating (ns) =="
for batch in 256 16 1; do
  for p in "${programs[@]}"; do
    line=""
    for _ in $(seq "$rounds"); do
      line="$line $("$p/bench_cache" --batch "$batch" |
        sed -n 's/.*per offloaded block: \(-\{0,1\}[0-9]*\) ns; per onboarded block: \(-\{0,1\}[0-9]*\) ns.*/\1\/\2/p')"
    done
    echo "  batch $batch  offload/onboard:$line  ($p)"
  done
done
