#!/usr/bin/env bash
# kvbm-tracegen's command line as a user meets it: --version, and usage
# errors in one line that point at --help, with exit status 2.
#   tracegen_cli.sh KVBM_TRACEGEN VERSION
set -euo pipefail
tracegen=$1
version=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "tracegen_cli: $*"; exit 1; }

out=$("$tracegen" --version)
[ "$out" = "kvbm-tracegen $version" ] || fail "--version printed '$out', expected 'kvbm-tracegen $version'"
for args in "--bogus" "-x" "--requests" "--requests 0" "--seed -1" "--block-tokens x" \
  "--workload nope" "extra"; do
  set +e
  # shellcheck disable=SC2086
  "$tracegen" $args >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "'$args': exit $rc, expected 2"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "'$args': $(wc -l <"$tmp/err") lines on stderr: $(cat "$tmp/err")"
  grep -q "^kvbm-tracegen: .*(try 'kvbm-tracegen --help')$" "$tmp/err" || fail "'$args': '$(cat "$tmp/err")'"
  [ ! -s "$tmp/out" ] || fail "'$args' printed on stdout"
done
"$tracegen" --requests 3 --seed 7 >"$tmp/trace.jsonl"
[ "$(wc -l <"$tmp/trace.jsonl")" -eq 3 ] || fail "--requests 3 wrote $(wc -l <"$tmp/trace.jsonl") lines"
echo "tracegen_cli: --version and usage errors as expected"
