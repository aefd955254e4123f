#!/usr/bin/env bash
# kvbm-replay's ns_per_block (LRU, G1 only) against the replay floor
# (bench_replay_floor) in one run, alternating the programs so they share the
# machine's noise: on the bundled trace at G1 5859, and on a generated trace
# (bench/gen_trace.py, about 3.5 M block references over 510 k distinct ids)
# at G1 131072. Prints, per program and trace, the fastest run, the median
# and the fastest run's ratio to the floor's fastest. Further build folders
# (an older kvbm, say) are run in the same rotation.
#   bench/replay-vs-floor.sh BUILD [RUNS] [OTHER_BUILD ...]
# It measures and never passes or fails; the counts of every program must
# agree, or it stops.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" && pwd)
runs=${2:-11}
shift 2 || shift $#
others=("$@")
generated=$build/gen_trace.jsonl
[ -f "$generated" ] || /usr/bin/python3 "$root/bench/gen_trace.py" "$generated"

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }

# One run: prints "ns_per_block g1_hits g1_evictions dedup".
run_one() {
  local program=$1 g1=$2 trace=$3 out
  if [ "$program" = floor ]; then
    out=$("$build/bench_replay_floor" --g1-blocks "$g1" --json "$trace")
  else
    out=$("$program/tools/replay/kvbm-replay" --g1-blocks "$g1" --policy lru --json --no-progress "$trace" 2>/dev/null)
  fi
  echo "$(field ns_per_block <<<"$out") $(field g1_hits <<<"$out") $(field g1_evictions <<<"$out") $(field dedup <<<"$out")"
}

compare() {
  local label=$1 g1=$2 trace=$3
  local programs=(floor "$build" "${others[@]}")
  declare -A times counts
  for _ in $(seq "$runs"); do
    for p in "${programs[@]}"; do
      read -r ns hits evictions dedup <<<"$(run_one "$p" "$g1" "$trace")"
      times[$p]="${times[$p]:-} $ns"
      counts[$p]="$hits $evictions $dedup"
    done
  done
  echo "== $label, G1 $g1, $runs runs each, alternating (ns_per_block) =="
  local floor_min
  floor_min=$(tr ' ' '\n' <<<"${times[floor]}" | sed '/^$/d' | sort -g | head -1)
  for p in "${programs[@]}"; do
    if [ "${counts[$p]}" != "${counts[floor]}" ]; then
      echo "counts differ: $p: ${counts[$p]}, floor: ${counts[floor]} (hits evictions dedup)" >&2
      exit 1
    fi
    tr ' ' '\n' <<<"${times[$p]}" | sed '/^$/d' | sort -g |
      awk -v name="$p" -v floor="$floor_min" '{ v[NR] = $1 }
        END { printf "  %-40s fastest %7.2f  median %7.2f  fastest/floor %5.2f\n",
                     name, v[1], v[int((NR + 1) / 2)], v[1] / floor }'
  done
  echo "  counts (g1_hits g1_evictions dedup): ${counts[floor]}"
}

compare "bundled trace" 5859 "$root/data/mooncake/synthetic_trace.jsonl"
compare "generated trace" 131072 "$generated"
