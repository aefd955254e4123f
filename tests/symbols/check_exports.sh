#!/usr/bin/env bash
# Checks that a shared library exports exactly the functions its public
# headers declare.
#   check_exports.sh CC HEADER_DIR LIBRARY [INCLUDE_DIR...]
# HEADER_DIR is a folder of public headers (include/kvbm), included as
# "<folder>/<header>.h" from its parent; INCLUDE_DIRs are searched too. The declared set comes from the
# compiler itself: gcc's -aux-info lists every function declared in the
# translation unit with the file it comes from, so no header parsing of ours
# can miss a declaration; `static inline` definitions are compiled into the
# caller and are left out. The exported set is the library's dynamic symbol
# table (nm -D --defined-only). Any difference fails, in both directions:
# declared but not exported (KVBM_API forgotten), exported but not declared
# (an internal function marked KVBM_API, or a source built without hidden
# visibility). Exit 77 (skipped) with a compiler other than gcc.
set -euo pipefail
cc=$1
headers=$(realpath "$2")
library=$3
shift 3
includes=()
for dir in "$@"; do includes+=("-I$dir"); done
if ! "$cc" --version 2>/dev/null | grep -q "Free Software Foundation"; then
  echo "check_exports: skipped, $cc is not gcc (the declared set needs -aux-info)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
folder=$(basename "$headers")
for header in "$headers"/*.h; do
  echo "#include \"$folder/$(basename "$header")\""
done >"$tmp/all.c"
if ! "$cc" -std=c11 -I"$(dirname "$headers")" "${includes[@]}" -fsyntax-only -aux-info "$tmp/aux" \
  "$tmp/all.c"; then
  echo "check_exports: the headers of $folder/ do not compile"
  exit 2
fi
# /* /abs/include/kvbm/hash.h:29:NC */ extern uint64_t kvbm_hash_block (const uint32_t *, ...);
grep -F "/* $headers/" "$tmp/aux" | sed -E 's|^/\* [^*]*\*/ ||' | grep -v '^static ' |
  grep -oP '^extern [^(]*?\K[A-Za-z_][A-Za-z0-9_]*(?= \()' | sort -u >"$tmp/declared"
nm -D --defined-only "$library" | awk '{print $NF}' | sed 's/@.*//' |
  grep -vxE '_init|_fini' | sort -u >"$tmp/exported"
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ] || [ -n "$extra" ]; then
  if [ -n "$missing" ]; then
    echo "check_exports: declared in $folder/ but not exported by $(basename "$library") (KVBM_API missing?):"
    sed 's/^/  /' <<<"$missing"
  fi
  if [ -n "$extra" ]; then
    echo "check_exports: exported by $(basename "$library") but not declared in $folder/ (internal function with KVBM_API, or built without hidden visibility?):"
    sed 's/^/  /' <<<"$extra"
  fi
  exit 1
fi
echo "check_exports: $(wc -l <"$tmp/declared") functions declared in $folder/, the same $(wc -l <"$tmp/exported") exported by $(basename "$library")"
