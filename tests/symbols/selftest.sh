#!/usr/bin/env bash
# Shows check_exports.sh failing for the two mistakes it exists to catch,
# on a small library built here with the flags libkvbm uses, and passing
# once they are fixed.
#   selftest.sh CC KVBM_INCLUDE_DIR
set -euo pipefail
cc=$1
kvbm_include=$(realpath "$2")
check=$(dirname "$0")/check_exports.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/include/fx"

# $1: "broken" or "fixed"
build() {
  local forgotten_api="" internal_api="KVBM_API"
  if [ "$1" = fixed ]; then forgotten_api="KVBM_API"; internal_api=""; fi
  cat >"$tmp/include/fx/fx.h" <<H
#include "kvbm/export.h"
KVBM_API int fx_exported(void);
$forgotten_api int fx_forgotten(void);
static inline int fx_inline(void) { return 3; }
H
  cat >"$tmp/fx.c" <<C
#include "fx/fx.h"
int fx_exported(void) { return 1; }
int fx_forgotten(void) { return 2; }
$internal_api int fx__internal(void);
$internal_api int fx__internal(void) { return 4; }
int fx__hidden(void);
int fx__hidden(void) { return 5; }
C
  "$cc" -shared -fPIC -fvisibility=hidden -I"$tmp/include" -I"$kvbm_include" "$tmp/fx.c" -o "$tmp/libfx.so"
}

build broken
set +e
bash "$check" "$cc" "$tmp/include/fx" "$tmp/libfx.so" "$kvbm_include" >"$tmp/out" 2>&1
rc=$?
set -e
cat "$tmp/out"
[ "$rc" -eq 77 ] && exit 77
fail() { echo "selftest: $*"; exit 1; }
[ "$rc" -eq 1 ] || fail "the check passed a library with a forgotten KVBM_API and an exported internal function (rc $rc)"
grep -qx "  fx_forgotten" "$tmp/out" || fail "the public function without KVBM_API was not reported"
grep -qx "  fx__internal" "$tmp/out" || fail "the exported internal function was not reported"
! grep -Eq "fx_exported|fx_inline|fx__hidden" "$tmp/out" || fail "a correct function was reported"

build fixed
bash "$check" "$cc" "$tmp/include/fx" "$tmp/libfx.so" "$kvbm_include" || fail "the check refused the fixed library"
echo "selftest: both mistakes caught, the fixed library passes"
