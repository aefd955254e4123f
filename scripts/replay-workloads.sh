#!/usr/bin/env bash
# Every policy on every workload: the bundled Mooncake trace and the
# kvbm-tracegen shapes (docs/REPLAY_RESULTS.md, "Every policy on every
# workload"), then the G2 admission measurements.
#   scripts/replay-workloads.sh [OUT_DIR]     (default out/workloads)
# Traces: 8000 requests each, seed 1. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/workloads}
bash scripts/build.sh build >/dev/null
replay=build/tools/replay/kvbm-replay
tracegen=build/tools/tracegen/kvbm-tracegen
caps=1000,5859,10000,30000
mkdir -p "$out"
cp data/mooncake/synthetic_trace.jsonl "$out/mooncake.jsonl"
workloads="mooncake chat agent sysprompt rag scan mix"
for w in $workloads; do
  [ "$w" = mooncake ] || "$tracegen" --workload "$w" --requests 8000 --seed 1 -o "$out/$w.jsonl"
  echo "== $w =="
  "$replay" --sweep "$caps" --csv "$out/$w.csv" --plot "" "$out/$w.jsonl" 2>/dev/null
  echo
done

# Headline: per workload and capacity, LRU, adaptive, the best other online
# policy, the belady bound, and the share of the LRU-to-belady gap adaptive closes.
echo "== headline =="
printf '%-10s %6s %8s %9s %-18s %8s %7s\n' workload g1 lru adaptive "best other" belady closed
for w in $workloads; do
  awk -F, -v w="$w" 'NR > 1 { r[$1 "," $2] = $4; caps[$1] = 1; pol[$2] = 1 }
    END {
      n = split("1000,5859,10000,30000", cs, ",")
      for (i = 1; i <= n; i++) {
        c = cs[i]; best = ""; bv = -1
        for (p in pol)
          if (p != "lru" && p != "adaptive" && p != "belady" && r[c "," p] > bv) { bv = r[c "," p]; best = p }
        gap = r[c ",belady"] - r[c ",lru"]
        closed = gap > 0.005 ? sprintf("%6.1f%%", 100 * (r[c ",adaptive"] - r[c ",lru"]) / gap) : "     -"
        printf "%-10s %6s %8.4f %9.4f %-9s %8.4f %8.4f %7s\n", w, c, r[c ",lru"], r[c ",adaptive"], best, bv, r[c ",belady"], closed
      }
    }' "$out/$w.csv"
done

# adaptive with and without the registration hints (its reuse classes):
# hit rates and the share of the LRU-to-belady gap each closes.
echo
echo "== adaptive, hints =="
printf '%-10s %6s %8s %9s %9s %8s %16s %6s\n' workload g1 lru "no hints" hints belady "closed: no hints" hints
for w in $workloads; do
  "$replay" --sweep "$caps" --policies adaptive --no-hints --csv "$out/$w.no-hints.csv" --plot "" "$out/$w.jsonl" >/dev/null 2>&1
  awk -F, -v w="$w" 'FNR == 1 { file++ } FNR > 1 { if (file == 1) r[$1 "," $2] = $4; else nh[$1] = $4 }
    END {
      n = split("1000,5859,10000,30000", cs, ",")
      for (i = 1; i <= n; i++) {
        c = cs[i]; l = r[c ",lru"]; a = r[c ",adaptive"]; b = r[c ",belady"]; gap = b - l
        cn = gap > 0.005 ? sprintf("%6.1f%%", 100 * (nh[c] - l) / gap) : "     -"
        ca = gap > 0.005 ? sprintf("%6.1f%%", 100 * (a - l) / gap) : "     -"
        printf "%-10s %6s %8.4f %9.4f %9.4f %8.4f %16s %6s\n", w, c, l, nh[c], a, b, cn, ca
      }
    }' "$out/$w.csv" "$out/$w.no-hints.csv"
done

# G2 admission at the contract's sizes (and a small pair): offloads, G2 hits,
# hit rate, with and without the filter; logical mode (data mode gives the
# same counts, tests pin it).
echo
echo "== G2 admission (LRU in both tiers) =="
printf '%-10s %11s %9s %9s %8s %9s %9s %8s %8s\n' workload g1/g2 offloads g2_hits hit off_adm g2h_adm hit_adm fewer
for w in $workloads; do
  for sizes in 5859/23436 1000/4000; do
    g1=${sizes%/*}; g2=${sizes#*/}
    base=$("$replay" --g1-blocks "$g1" --g2-blocks "$g2" --logical --json "$out/$w.jsonl" 2>/dev/null)
    adm=$("$replay" --g1-blocks "$g1" --g2-blocks "$g2" --logical --g2-admission --json "$out/$w.jsonl" 2>/dev/null)
    field() { sed -e "s/.*\"$1\": \([0-9.]*\).*/\1/" <<<"$2"; }
    awk -v w="$w" -v s="$sizes" -v o="$(field offloads "$base")" -v g="$(field g2_hits "$base")" \
        -v h="$(field hit_rate "$base")" -v oa="$(field offloads "$adm")" -v ga="$(field g2_hits "$adm")" \
        -v ha="$(field hit_rate "$adm")" 'BEGIN {
          printf "%-10s %11s %9d %9d %8.4f %9d %9d %8.4f %7.1f%%\n", w, s, o, g, h, oa, ga, ha, (o > 0 ? 100 * (1 - oa / o) : 0) }'
  done
done
