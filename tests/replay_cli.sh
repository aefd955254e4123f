#!/usr/bin/env bash
# kvbm-replay's command line as a user meets it.
#   replay_cli.sh KVBM_REPLAY VERSION MAN_PAGE
set -euo pipefail
replay=$1
version=$2
man_page=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "replay_cli: $*"; exit 1; }

# --version reads the one version (include/kvbm/version.h, via the library).
out=$("$replay" --version)
[ "$out" = "kvbm-replay $version" ] || fail "--version printed '$out', expected 'kvbm-replay $version'"

# A usage error is one line that says what is wrong and where help is, exit 2.
for args in "--bogus x.jsonl" "-x x.jsonl" "--g1-blocks" "--policy nope x.jsonl" "" "a.jsonl b.jsonl" \
  "--sweep 10,zero x.jsonl" "--admission-keep-ratio nope x.jsonl"; do
  set +e
  # shellcheck disable=SC2086
  "$replay" $args >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "'$args': exit $rc, expected 2"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "'$args': $(wc -l <"$tmp/err") lines on stderr, expected 1: $(cat "$tmp/err")"
  grep -q "^kvbm-replay: .*--help" "$tmp/err" || grep -q "^kvbm-replay: " "$tmp/err" ||
    fail "'$args': '$(cat "$tmp/err")'"
  [ ! -s "$tmp/out" ] || fail "'$args' printed on stdout"
done
grep -q "try 'kvbm-replay --help'" <("$replay" --bogus x 2>&1) || fail "an unknown option does not point at --help"

# A malformed trace: the first line on stderr is the error (no blank line
# before it), in plain words with the line and column, exit 1.
printf '{"hash_ids": [1, 2]}\n{"timestamp": 1 "hash_ids": [3]}\n' >"$tmp/bad.jsonl"
for progress in "" "--no-progress"; do
  set +e
  # shellcheck disable=SC2086
  "$replay" $progress "$tmp/bad.jsonl" >/dev/null 2>"$tmp/err"
  rc=$?
  set -e
  [ "$rc" -eq 1 ] || fail "malformed trace: exit $rc, expected 1"
  err=$(grep -v '^kvbm-replay: *[0-9]*% ' "$tmp/err")
  first=$(head -n 1 <<<"$err")
  [[ "$first" == "kvbm-replay: $tmp/bad.jsonl: line 2: not valid JSON: "*"(column 17"* ]] ||
    fail "malformed trace: first error line is '$first'"
  ! grep -q "separator\|expected$" "$tmp/err" || fail "json-c's own wording leaked: $(cat "$tmp/err")"
done

# The man page documents every option --help lists, and the version.
for option in $("$replay" --help | grep -oE -- '--[a-z0-9-]+' | sort -u); do
  grep -qF -- "${option//-/\\-}" "$man_page" || fail "the man page does not document $option"
done
grep -q "\"kvbm $version\"" "$man_page" || fail "the man page does not name version $version"
echo "replay_cli: --version, usage errors, parse errors and the man page as expected"
