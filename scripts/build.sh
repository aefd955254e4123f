#!/usr/bin/env bash
# Configures and builds kvbm into a build folder.
#   scripts/build.sh [BUILD_DIR] [extra cmake -D options...]
# The CUDA backend is built when nvcc is found; it falls back to the CPU
# backend at run time when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
bash scripts/setup-deps.sh
cmake -S . -B "$build_dir" -DKVBM_WERROR=ON "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
