#!/usr/bin/env bash
# Runs clang-tidy (the checks in .clang-tidy, warnings fatal) over the host
# library and the tools, using the compile commands of the build folder.
#   scripts/lint.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
if ! command -v clang-tidy >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-tidy >/dev/null
fi
[ -f "$build_dir/compile_commands.json" ] || bash scripts/build.sh "$build_dir" >/dev/null
clang-tidy -p "$build_dir" --quiet --warnings-as-errors='*' host/*.c tools/replay/*.c 2>/dev/null
echo "lint: clang-tidy clean"
