#!/usr/bin/env bash
# Checks formatting against .clang-format (every tracked C, header and CUDA
# file), that no library source reaches around the module boundaries with a
# relative include, then runs clang-tidy (the checks in .clang-tidy, warnings
# fatal) over the library (host/, and cuda/ when built) and the tools, using
# the compile commands of the build.
#   scripts/lint.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
if ! command -v clang-tidy >/dev/null || ! command -v clang-format >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-tidy clang-format >/dev/null
fi
git ls-files '*.c' '*.h' '*.cu' | xargs clang-format --dry-run -Werror
echo "lint: clang-format clean"
# Module boundaries are enforced by include paths (cmake/KvbmModule.cmake); a
# relative include ("../cache/internal.h") would walk around them.
if git grep -n '#include "\.\.' -- host cuda; then
  echo "lint: relative include in the library (include another module's header as \"<module>/<file>.h\")" >&2
  exit 1
fi
# One way to allocate (core/alloc.h): checked sizes and fault injection reach
# every allocation only if nothing goes around it.
if git grep -nE '(^|[^_a-zA-Z0-9.>])(malloc|calloc|realloc|free|strdup|strndup|aligned_alloc|posix_memalign)\(' -- host cuda ':!host/core/alloc.c'; then
  echo "lint: allocate with kvbm__alloc/kvbm__calloc/kvbm__realloc/kvbm__free (core/alloc.h) in the library" >&2
  exit 1
fi
# A call that refuses an argument says why (kvbm_last_error): every
# KVBM_ERR_INVALID_ARG leaves through kvbm__fail or KVBM_REQUIRE_ARG
# (core/error.h). A status that is not the caller's failure (answered to a
# peer, recorded a line later) says so with a "/* reason: ... */" comment.
if git grep -nE '(return|=) *KVBM_ERR_INVALID_ARG *;' -- host cuda | grep -v '/\* reason: '; then
  echo "lint: bare KVBM_ERR_INVALID_ARG (record why: kvbm__fail or KVBM_REQUIRE_ARG, core/error.h)" >&2
  exit 1
fi
[ -f "$build_dir/compile_commands.json" ] || bash scripts/build.sh "$build_dir" >/dev/null
# cuda/ too when the build compiled it (nvcc present): its C files see the
# toolkit's headers through the compile commands.
cuda_sources=()
if grep -q '/cuda/mem/' "$build_dir/compile_commands.json"; then
  cuda_sources=(cuda/*/*.c)
fi
clang-tidy -p "$build_dir" --quiet --warnings-as-errors='*' host/*/*.c tools/*/*.c "${cuda_sources[@]}" 2>/dev/null
echo "lint: clang-tidy clean"
