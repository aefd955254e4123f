#!/usr/bin/env bash
# A kvbm built with CUDA and NCCL starts and works where CUDA is not
# installed: kvbm-replay and the disaggregation example run in a mount
# namespace in which /usr/local (so /usr/local/cuda*, the runtime, NCCL and
# the toolkit) is an empty tmpfs, and there is no driver (none on the CI
# machine; the check says so when one is found). The replay must give the
# contract's numbers on the CPU fallback with every byte verified, --backend
# cuda must fail with a clear message, and the binaries must not name the
# CUDA runtime, driver, NCCL or libnuma as needed libraries.
#   check_runs_without_cuda.sh BUILD_DIR SOURCE_DIR
# Exit 77 (skipped) when a mount namespace cannot be made here.
set -euo pipefail
build=$1
src=$2
replay=$build/tools/replay/kvbm-replay
example=$build/example_disagg_prefill_decode
trace=$src/data/mooncake/synthetic_trace.jsonl

fail() { echo "FAIL: $*" >&2; exit 1; }

# The programs, and libkvbm.so where they link it (the tools do when the
# shared library is built): none may need CUDA, and one of them must hold the
# CUDA backend.
files=("$replay" "$example")
for bin in "$replay" "$example"; do
  if readelf -d "$bin" | grep -q 'NEEDED.*libkvbm\.so'; then
    files+=("$build/libkvbm.so")
  fi
done
for bin in "${files[@]}"; do
  needed=$(readelf -d "$bin" | awk '/NEEDED/ {print $5}')
  forbidden='cudart|libcuda|nccl|numa|stdc\+\+'
  # Sanitizer runtimes bring the C++ runtime along: only the others count there.
  if grep -qE 'libasan|libtsan' <<<"$needed"; then
    forbidden='cudart|libcuda|nccl|numa'
  fi
  if grep -E "$forbidden" <<<"$needed"; then
    fail "$bin links a library it must load at run time or not need at all"
  fi
done
for bin in "$replay" "$example"; do
  lib=$bin
  if readelf -d "$bin" | grep -q 'NEEDED.*libkvbm\.so'; then
    lib=$build/libkvbm.so
  fi
  grep -q 'kvbm__backend_cuda_ops' <(nm "$lib") || fail "$bin was not built with the CUDA backend"
done
echo "ok: no CUDA, driver, NCCL, libnuma or C++ runtime among the needed libraries"

if ! unshare -m --propagation private true 2>/dev/null; then
  echo "SKIP: cannot create a mount namespace here (needs root or user namespaces)"
  exit 77
fi
if grep -q 'libcuda\.so\.1' <(ldconfig -p); then
  echo "note: a CUDA driver (libcuda.so.1) is installed here; only the toolkit is hidden"
fi

hidden() { unshare -m --propagation private sh -c 'mount -t tmpfs none /usr/local && exec "$@"' sh "$@"; }

hidden sh -c 'test ! -e /usr/local/cuda && test ! -e /usr/local/cuda-13.0' ||
  fail "/usr/local/cuda is still visible in the namespace"

out=$(hidden "$replay" --g1-blocks 5859 --g2-blocks 23436 --block-kib 1 --json --no-progress "$trace" 2>/dev/null) ||
  fail "kvbm-replay failed without CUDA installed"
for field in '"backend": "cpu"' '"g1_hits": 37703' '"g2_hits": 36089' '"offloads": 47205' \
             '"g1_evictions": 78315' '"g2_evictions": 23769' '"wrong_blocks": 0' '"failed_copies": 0'; do
  grep -qF "$field" <<<"$out" || fail "replay output lacks $field: $out"
done
echo "ok: kvbm-replay without CUDA: contract numbers on the CPU fallback, every byte verified"

if err=$(hidden "$replay" --g1-blocks 100 --g2-blocks 100 --backend cuda --limit 10 "$trace" 2>&1); then
  fail "kvbm-replay --backend cuda succeeded without CUDA"
fi
grep -qi 'no usable accelerator device' <<<"$err" || fail "unclear --backend cuda error: $err"
echo "ok: --backend cuda without CUDA fails with: $(echo "$err" | tail -1)"

loader=$build/tests/cuda/nccl_loader
if [ -x "$loader" ]; then
  seen=$("$loader")
  if grep -q 'libnccl\.so\.2' <(ldconfig -p); then
    grep -q '^nccl loaded 2' <<<"$seen" || fail "NCCL installed here but not loaded: $seen"
  fi
  seen_hidden=$(hidden "$loader")
  [ "$seen_hidden" = "nccl absent" ] || fail "NCCL loader without NCCL said: $seen_hidden"
  echo "ok: NCCL is loaded at run time ($seen here, '$seen_hidden' without /usr/local)"
fi

hidden "$example" >/dev/null 2>&1 || fail "example_disagg_prefill_decode failed without CUDA and NCCL"
echo "ok: example_disagg_prefill_decode without CUDA and NCCL (socket transport)"
