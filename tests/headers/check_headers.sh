#!/usr/bin/env bash
# Every public header compiles on its own, as C11 and as C++17, with
# -Wall -Wextra -Wpedantic -Werror (what an engine's build may use), and in
# C++ every config struct's initializer macro and init function compile
# without a warning.
#   check_headers.sh CC CXX INCLUDE_DIR
# Exit 77 (skipped) when there is no C++ compiler.
set -euo pipefail
cc=$1
cxx=$2
include=$(realpath "$3")
if [ -z "$cxx" ] || ! command -v "$cxx" >/dev/null; then
  echo "check_headers: skipped, no C++ compiler"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-Wall -Wextra -Wpedantic -Werror -I"$include" -fsyntax-only)
failed=0
for header in "$include"/kvbm/*.h; do
  name=kvbm/$(basename "$header")
  printf '#include "%s"\ntypedef int header_check_nonempty;\n' "$name" >"$tmp/one.c"
  cp "$tmp/one.c" "$tmp/one.cpp"
  "$cc" -std=c11 "${flags[@]}" "$tmp/one.c" || { echo "check_headers: $name alone fails as C11"; failed=1; }
  "$cxx" -std=c++17 "${flags[@]}" "$tmp/one.cpp" || { echo "check_headers: $name alone fails as C++17"; failed=1; }
done
# Every config struct: its macro and its init function, from C++.
{
  for header in "$include"/kvbm/*.h; do echo "#include \"kvbm/$(basename "$header")\""; done
  echo 'int main() {'
  n=0
  for macro in $(grep -ho '^#define KVBM_[A-Z0-9_]*_CONFIG_INIT\b' "$include"/kvbm/*.h | awk '{print $2}' | sort -u); do
    name=$(sed -E 's/^KVBM_(.*)_CONFIG_INIT$/\1/' <<<"$macro" | tr 'A-Z' 'a-z')
    echo "  kvbm_${name}_config_t m$n = $macro;"
    echo "  kvbm_${name}_config_t f$n;"
    echo "  kvbm_${name}_config_init(&f$n);"
    echo "  if (m$n.struct_size != f$n.struct_size || m$n.version != f$n.version) return 1;"
    n=$((n + 1))
  done
  echo '  return 0;'
  echo '}'
} >"$tmp/configs.cpp"
"$cxx" -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$include" -o "$tmp/configs" "$tmp/configs.cpp" ||
  { echo "check_headers: the config initializers fail as C++17"; failed=1; }
if [ "$failed" -eq 0 ]; then
  "$tmp/configs" || { echo "check_headers: a C++ initializer macro and its init function disagree"; failed=1; }
fi
[ "$failed" -eq 0 ] || exit 1
echo "check_headers: $(ls "$include"/kvbm/*.h | wc -l) headers alone as C11 and C++17, $(grep -c 'config_init(&' "$tmp/configs.cpp") config initializers from C++: no warning"
