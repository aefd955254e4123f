#!/usr/bin/env bash
# Configures and builds kvbm into a build folder.
#   scripts/build.sh [--target TARGET] [--progress] [BUILD_DIR] [extra cmake -D options...]
# --target builds one target (and what it needs) instead of everything.
# --progress replaces the compiler lines with a progress report on stderr
# (one line kept up to date on a terminal, a line at each quarter
# otherwise); the full log goes to BUILD_DIR/build.log and its tail is shown
# if the build fails.
# The CUDA backend is built when nvcc is found; it falls back to the CPU
# backend at run time when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
target=()
progress=false
while [ $# -gt 0 ]; do
  case $1 in
    --target) target=(--target "$2"); shift 2 ;;
    --progress) progress=true; shift ;;
    *) break ;;
  esac
done
build_dir=${1:-build}
shift || true
bash scripts/setup-deps.sh
if ! $progress; then
  cmake -S . -B "$build_dir" -DKVBM_WERROR=ON "$@" >/dev/null
  cmake --build "$build_dir" -j "$(nproc)" "${target[@]}"
  exit 0
fi

# Progress: "[ 45%]" (Makefiles) or "[12/98]" (Ninja) lines become a percentage.
say() { if [ -t 2 ]; then printf '\rkvbm: %s' "$1" >&2; else printf 'kvbm: %s\n' "$1" >&2; fi; }
say "configuring $build_dir (finds CUDA and NCCL when installed)"
if [ -t 2 ]; then echo >&2; fi
mkdir -p "$build_dir"
log=$build_dir/build.log
if ! cmake -S . -B "$build_dir" -DKVBM_WERROR=ON "$@" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "kvbm: configuring failed; the whole log is $log" >&2
  exit 1
fi
# Reads the build's output; prints its progress.
report_progress() {
  local next_quarter=25 line percent
  while IFS= read -r line; do
    percent=""
    if [[ $line =~ ^\[\ *([0-9]+)%\] ]]; then
      percent=${BASH_REMATCH[1]}
    elif [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]]; then
      percent=$((100 * BASH_REMATCH[1] / BASH_REMATCH[2]))
    fi
    [ -n "$percent" ] || continue
    if [ -t 2 ]; then
      printf '\rkvbm: building %3d%%' "$percent" >&2
    else
      while [ "$percent" -ge "$next_quarter" ] && [ "$next_quarter" -le 100 ]; do
        printf 'kvbm: building %d%%\n' "$next_quarter" >&2
        next_quarter=$((next_quarter + 25))
      done
    fi
  done
  if [ -t 2 ]; then echo >&2; fi
}
set +e
cmake --build "$build_dir" -j "$(nproc)" "${target[@]}" 2>&1 | tee -a "$log" | report_progress
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  tail -n 40 "$log" >&2
  echo "kvbm: the build failed; the whole log is $log" >&2
  exit 1
fi
