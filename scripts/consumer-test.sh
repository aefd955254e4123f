#!/usr/bin/env bash
# Installs a built kvbm into a temporary prefix and builds and runs the
# consumer program (tests/consumer) against it the ways its users would:
#   1. C, CMake find_package(kvbm) + kvbm::kvbm (the shared library)
#   2. C, pkg-config --cflags --libs kvbm (shared)
#   3. C, pkg-config --static --cflags --libs kvbm, from an install holding
#      only libkvbm.a (what a static-only install or -static link sees)
#   4. C++17 -Wall -Wextra -Werror, find_package(kvbm) + kvbm::kvbm
#   5. C, find_package(kvbm) + kvbm::kvbm_static (the static library's
#      dependencies found by kvbm-config.cmake)
#   6. C, add_subdirectory(<kvbm source>) + kvbm::kvbm, in a CPU-only build
# Each must build without a warning, link the library it names, and exit 0.
#   scripts/consumer-test.sh [BUILD_DIR]   (default build, built already)
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=$PWD
build_dir=$(realpath "${1:-build}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libkvbm.so.*' -o -name libkvbm.a | head -n 1)")
consumer=$source_dir/tests/consumer

step() { echo "== consumer: $*"; }
# $1: program; $2: "shared" or "static" (whether it may need libkvbm.so)
run() {
  if readelf -d "$1" | grep -q 'NEEDED.*libkvbm\.so'; then
    [ "$2" = shared ] || { echo "consumer: $1 links libkvbm.so, expected the static library" >&2; exit 1; }
  else
    [ "$2" = static ] || { echo "consumer: $1 does not link libkvbm.so" >&2; exit 1; }
  fi
  "$1"
}
cmake_consumer() { # $1: build folder; the rest: -D options
  local dir=$1
  shift
  cmake -S "$consumer" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" >/dev/null
}

step "1. C, find_package, kvbm::kvbm"
cmake_consumer "$tmp/c-cmake"
run "$tmp/c-cmake/consumer" shared

step "2. C, pkg-config (shared)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$consumer/consumer.c" -o "$tmp/c-pc-shared" \
  $(pkg-config --cflags --libs kvbm) -Wl,-rpath,"$(pkg-config --variable=libdir kvbm)"
run "$tmp/c-pc-shared" shared

step "3. C, pkg-config --static (libkvbm.a only)"
cp -a "$prefix" "$tmp/static-prefix"
rm -f "$tmp/static-prefix/${libdir#"$prefix"/}"/libkvbm.so*
export PKG_CONFIG_PATH=$tmp/static-prefix/${libdir#"$prefix"/}/pkgconfig
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$consumer/consumer.c" -o "$tmp/c-pc-static" \
  $(pkg-config --static --cflags --libs kvbm)
run "$tmp/c-pc-static" static
unset PKG_CONFIG_PATH

step "4. C++17 -Wall -Wextra -Werror, find_package, kvbm::kvbm"
cmake_consumer "$tmp/cxx-cmake" -DCONSUMER_CXX=ON
run "$tmp/cxx-cmake/consumer" shared

step "5. C, find_package, kvbm::kvbm_static"
cmake_consumer "$tmp/c-cmake-static" -DCONSUMER_TARGET=kvbm::kvbm_static
run "$tmp/c-cmake-static/consumer" static

step "6. C, add_subdirectory (CPU only)"
mkdir -p "$tmp/subdir"
cat >"$tmp/subdir/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.24)
project(kvbm_subdir_consumer LANGUAGES C)
add_subdirectory("$source_dir" kvbm)
add_executable(consumer "$consumer/consumer.c")
target_compile_options(consumer PRIVATE -Wall -Wextra -Werror)
target_link_libraries(consumer PRIVATE kvbm::kvbm)
CMAKE
cmake -S "$tmp/subdir" -B "$tmp/subdir/build" -DKVBM_WITH_CUDA=OFF >/dev/null
cmake --build "$tmp/subdir/build" -j "$(nproc)" --target consumer >/dev/null
run "$tmp/subdir/build/consumer" shared

echo "consumer: all six builds link and pass"
