#!/usr/bin/env bash
# The one command that checks kvbm on a GPU machine (H100/H200), meant to
# finish in under 8 minutes on one H200:
#
#   scripts/gpu-check.sh OUT_DIR [--build-dir DIR]
#
#  1. builds with CUDA and NCCL (Release, -Werror) into build-gpu (or uses
#     --build-dir, e.g. a build carried from another machine);
#  2. runs the whole test suite: the backend groups on the real GPU, the
#     stand-in groups, the examples (on the GPU through AUTO), NCCL transfers
#     with as many GPUs as exist;
#  3. replays the bundled trace through the tiered cache on CUDA
#     (kvbm-replay --backend cuda) and checks the contract's numbers and every
#     served byte;
#  4. bench_copy: every copy method, 1000 blocks of 4, 16, 32, 64 KiB and
#     2 MiB, both directions, against one large pinned copy in the same run,
#     every destination compared with its source;
#  5. bench_pinned_alloc: 8 GiB, cudaHostAlloc and chunked registration;
#  6. the kernel object's architectures (cuobjdump, else check_fatbin.py);
#
# and writes OUT_DIR/report.md and OUT_DIR/report.json (with the raw logs
# beside them). Exits non-zero on any failure or wrong byte; prints what it
# skipped and why. Needs no network (it never installs anything).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ $# -lt 1 ]; then
  echo "usage: scripts/gpu-check.sh OUT_DIR [--build-dir DIR]" >&2
  exit 2
fi
out=$1
shift
build=$root/build-gpu
prebuilt=0
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$(cd "$2" && pwd); prebuilt=1; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
budget_s=${KVBM_GPU_CHECK_BUDGET_S:-450} # leaves margin under 8 minutes
start=$(date +%s)
jobs=$(nproc)

steps_json=()   # one JSON object per step
steps_md=()     # one table row per step
skipped=()      # "what: why"
failures=0

json_escape() { sed -e ':a;N;$!ba' -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/ /g' -e 's/\n/\\n/g' <<<"$1"; }
elapsed() { echo $(( $(date +%s) - start )); }

# record NAME STATUS(pass|fail|skip) SECONDS DETAIL
record() {
  local name=$1 status=$2 secs=$3 detail=$4
  steps_json+=("{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $secs, \"detail\": \"$(json_escape "$detail")\"}")
  steps_md+=("| $name | $status | $secs | ${detail//$'\n'/; } |")
  case $status in
    fail) failures=$((failures + 1)); echo "gpu-check: FAIL $name: $detail" ;;
    skip) skipped+=("$name: $detail"); echo "gpu-check: skip $name: $detail" ;;
    *) echo "gpu-check: ok   $name ($secs s)" ;;
  esac
}

# run NAME LIMIT_S LOG COMMAND...: runs within the remaining budget.
run_step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$(( budget_s - $(elapsed) ))
  if [ "$left" -le 10 ]; then
    record "$name" skip 0 "time budget of ${budget_s}s used up"
    return 99
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  step_secs=$(( $(date +%s) - t0 ))
  [ $rc -eq 124 ] && echo "(timed out after ${limit}s)" >>"$log"
  return $rc
}

# ------------------------------------------------------------- the machine
gpu_info="unknown"
gpu_count=0
if command -v nvidia-smi >/dev/null; then
  gpu_info=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
  gpu_count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
echo "gpu-check: $gpu_count GPU(s): $gpu_info; CPUs: $jobs; out: $out"
if [ "$gpu_count" -eq 0 ]; then
  echo "gpu-check: no GPU visible (nvidia-smi); the CUDA steps will fail or skip" >&2
fi

# ------------------------------------------------------------------ build
if [ $prebuilt -eq 0 ]; then
  if run_step build 300 "$out/build.log" bash -c "
      cmake -S '$root' -B '$build' -DCMAKE_BUILD_TYPE=Release -DKVBM_WERROR=ON -DKVBM_WITH_CUDA=ON &&
      cmake --build '$build' -j $jobs"; then
    record build pass "$step_secs" "$(grep -m1 'kvbm: CUDA backend' "$out/build.log")"
  else
    record build fail "$step_secs" "see build.log: $(grep -m3 -E 'error|Error' "$out/build.log" | tr '\n' ' ')"
  fi
else
  record build skip 0 "prebuilt build used: $build"
fi
if [ ! -x "$build/tools/replay/kvbm-replay" ]; then
  echo "gpu-check: no build to check; see $out/build.log" >&2
fi

# ------------------------------------------------------------------ tests
if run_step tests 240 "$out/ctest.log" ctest --test-dir "$build" -j "$jobs" -V; then
  summary=$(grep -E 'tests passed' "$out/ctest.log")
  record tests pass "$step_secs" "$summary"
else
  record tests fail "$step_secs" "$(grep -E 'tests passed|^\s+[0-9]+ - ' "$out/ctest.log" | tr '\n' ' ')"
fi
# The CUDA group of test_backend on its own (a skip on a GPU machine is a
# failure: the device was there and kvbm did not use it).
if [ -x "$build/test_backend" ]; then
  "$build/test_backend" cuda >"$out/test_backend_cuda.log" 2>&1
  case $? in
    0) record backend_cuda_group pass 0 "$(grep -c '^\[       OK \]' "$out/test_backend_cuda.log") tests OK in the cuda group" ;;
    77) record backend_cuda_group fail 0 "test_backend cuda skipped: no usable CUDA backend on a GPU machine" ;;
    *) record backend_cuda_group fail 0 "test_backend cuda failed: see test_backend_cuda.log" ;;
  esac
fi
if [ -f "$out/ctest.log" ]; then
  while IFS= read -r line; do
    skipped+=("tests: $line")
  done < <(grep -hoE '(skipped: .*|SKIP: .*|\[  SKIP    \] .*|Test +#[0-9]+: [a-z_]+ .*\*\*\*Skipped)' \
             "$out/ctest.log" | sed 's/  */ /g' | sort | uniq -c | sed 's/^ *//')
fi

# ----------------------------------------------------------------- replay
replay_json="null"
if run_step replay_cuda 120 "$out/replay.log" bash "$root/tests/cuda/check_replay.sh" \
    "$build/tools/replay/kvbm-replay" "$root/data/mooncake/synthetic_trace.jsonl" cuda; then
  replay_json=$(grep -m1 '^{' "$out/replay.log")
  record replay_cuda pass "$step_secs" "contract numbers and 73792 verified blocks, 0 wrong"
else
  record replay_cuda fail "$step_secs" "$(grep -m2 -E 'FAIL|kvbm' "$out/replay.log" | tr '\n' ' ')"
fi

# ------------------------------------------------------------- bench_copy
if run_step bench_copy 150 "$out/bench_copy.jsonl" "$build/bench_copy" --backend cuda --blocks 1000 \
    --regions-kib 4,16,32,64,2048 --json; then
  record bench_copy pass "$step_secs" "$(grep -c '"verified": true' "$out/bench_copy.jsonl") runs, bytes verified"
else
  record bench_copy fail "$step_secs" "wrong bytes or error: $(grep -v '^{' "$out/bench_copy.jsonl" | head -3 | tr '\n' ' ')"
fi

# ----------------------------------------------------- bench_pinned_alloc
if run_step bench_pinned_alloc 150 "$out/bench_pinned.jsonl" "$build/bench_pinned_alloc" --gib 8 \
    --chunks-mib 256,1024,4096,0 --reps 2 --json; then
  if grep -q '"skipped"' "$out/bench_pinned.jsonl"; then
    record bench_pinned_alloc fail "$step_secs" "no CUDA device: $(cat "$out/bench_pinned.jsonl")"
  else
    record bench_pinned_alloc pass "$step_secs" "$(grep -c '"status": "KVBM_OK"' "$out/bench_pinned.jsonl") allocations of 8 GiB"
  fi
else
  record bench_pinned_alloc fail "$step_secs" "an allocation failed: $(grep -v 'KVBM_OK' "$out/bench_pinned.jsonl" | head -2 | tr '\n' ' ')"
fi

# ------------------------------------------------------- kernel object
kobj=$(find "$build/cuda" -name 'copy_kernel.cu.o' | head -1)
if [ -z "$kobj" ]; then
  record kernel_arch fail 0 "copy_kernel.cu.o not found in $build"
elif command -v cuobjdump >/dev/null || [ -x /usr/local/cuda/bin/cuobjdump ]; then
  cuobj=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
  "$cuobj" --list-elf --list-ptx "$kobj" >"$out/kernel_arch.log" 2>&1
  if grep -q 'sm_90' "$out/kernel_arch.log" && grep -qi 'ptx.*sm_90\|compute_90' "$out/kernel_arch.log"; then
    record kernel_arch pass 0 "cuobjdump: $(tr '\n' ' ' <"$out/kernel_arch.log")"
  else
    record kernel_arch fail 0 "cuobjdump lists no sm_90 SASS or PTX: $(tr '\n' ' ' <"$out/kernel_arch.log")"
  fi
elif [ -x /usr/bin/python3 ]; then
  if /usr/bin/python3 "$root/tests/cuda/check_fatbin.py" --require-sass 90 --require-ptx 90 "$kobj" >"$out/kernel_arch.log" 2>&1; then
    record kernel_arch pass 0 "$(tail -1 "$out/kernel_arch.log") (check_fatbin.py; no cuobjdump here)"
  else
    record kernel_arch fail 0 "$(tr '\n' ' ' <"$out/kernel_arch.log")"
  fi
else
  record kernel_arch skip 0 "neither cuobjdump nor /usr/bin/python3 here"
fi

# ----------------------------------------------------------------- report
total=$(elapsed)
copy_lines=$(grep '^{' "$out/bench_copy.jsonl" 2>/dev/null | paste -sd, -)
pinned_lines=$(grep '^{' "$out/bench_pinned.jsonl" 2>/dev/null | paste -sd, -)
skipped_json=""
for s in "${skipped[@]+"${skipped[@]}"}"; do
  skipped_json+="${skipped_json:+, }\"$(json_escape "$s")\""
done
{
  echo "{"
  echo "  \"commit\": \"$(git rev-parse HEAD 2>/dev/null || echo unknown)\","
  echo "  \"gpu\": \"$(json_escape "$gpu_info")\", \"gpus\": $gpu_count,"
  echo "  \"seconds\": $total, \"failures\": $failures,"
  echo "  \"steps\": [$(IFS=,; echo "${steps_json[*]}")],"
  echo "  \"skipped\": [$skipped_json],"
  echo "  \"replay\": $replay_json,"
  echo "  \"copy\": [${copy_lines}],"
  echo "  \"pinned_alloc\": [${pinned_lines}]"
  echo "}"
} >"$out/report.json"

{
  echo "# kvbm GPU check"
  echo
  echo "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)," \
       "$gpu_count GPU(s): $gpu_info, $jobs CPUs; $total s in all."
  echo "Produced by \`scripts/gpu-check.sh\`; raw logs beside this file."
  echo
  echo "| step | status | s | detail |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${steps_md[@]}"
  echo
  if [ -s "$out/bench_copy.jsonl" ]; then
    echo "## Copies: 1000 blocks, GB/s (ratio to one contiguous copy of the same bytes)"
    echo
    echo "| block | dir | contiguous | auto | batch | kernel | per-region | best |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    grep '^{' "$out/bench_copy.jsonl" | awk '
      { kib = $0; sub(/.*"block_kib": /, "", kib); sub(/,.*/, "", kib)
        dir = $0; sub(/.*"dir": "/, "", dir); sub(/".*/, "", dir)
        m = $0; sub(/.*"method": "/, "", m); sub(/".*/, "", m)
        g = $0; sub(/.*"gbps": /, "", g); sub(/,.*/, "", g)
        c = $0; sub(/.*"contig_gbps": /, "", c); sub(/,.*/, "", c)
        r = $0; sub(/.*"ratio": /, "", r); sub(/,.*/, "", r)
        k = kib " " dir; if (!(k in seen)) { seen[k] = 1; order[n++] = k }
        cell[k, m] = sprintf("%.1f (%.2f)", g, r); contig[k] = c
        if (m != "auto" && g + 0 > best_g[k] + 0) { best_g[k] = g; best[k] = m } }
      END { for (i = 0; i < n; i++) { k = order[i]; split(k, p, " ")
              printf "| %s KiB | %s | %.1f | %s | %s | %s | %s | %s |\n", p[1], p[2], contig[k],
                cell[k, "auto"], cell[k, "batch"], cell[k, "kernel"], cell[k, "per-region"], best[k] } }'
    echo
    echo "Targets: 1000 x 32 KiB at >= 90% of the contiguous copy each way (auto column);"
    echo "the best method per size sets KVBM_BACKEND_CONFIG_INIT's kernel_threshold."
    echo
  fi
  if [ -s "$out/bench_pinned.jsonl" ]; then
    echo "## Pinning 8 GiB"
    echo
    echo "| method | chunk MiB | round | alloc s | GiB/s | free s | status |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    grep '^{' "$out/bench_pinned.jsonl" | grep -v skipped | awk '
      { f["method"]; n = split($0, kv, ", \"")
        for (i = 1; i <= n; i++) { split(kv[i], p, "\": "); key = p[1]; gsub(/[{"]/, "", key)
          val = p[2]; gsub(/[}"]/, "", val); v[key] = val }
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", v["method"], v["chunk_mib"], v["round"],
          v["alloc_s"], v["alloc_gibps"], v["free_s"], v["status"] }'
    echo
    echo "Target: 8 GiB pinned in <= 1 s."
    echo
  fi
  echo "## Skipped"
  echo
  if [ ${#skipped[@]} -eq 0 ]; then echo "Nothing."; fi
  for s in "${skipped[@]+"${skipped[@]}"}"; do echo "- $s"; done
} >"$out/report.md"

echo
echo "gpu-check: $failures failure(s) in ${total}s; report: $out/report.md, $out/report.json"
if [ ${#skipped[@]} -gt 0 ]; then
  echo "gpu-check: skipped:"
  printf '  - %s\n' "${skipped[@]}"
fi
[ $failures -eq 0 ]
