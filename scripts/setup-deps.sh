#!/usr/bin/env bash
# Installs the Debian packages kvbm builds and tests with, only those missing.
# Runs as root without a terminal (CI) or through sudo for a user.
#   scripts/setup-deps.sh          build and test
#   scripts/setup-deps.sh fuzz     also clang and its libFuzzer runtime (scripts/fuzz.sh)
set -euo pipefail

# libzmq3-dev, libmsgpack-dev: the KV event publisher (host/events);
# python3-zmq, python3-msgpack: its Python subscriber tests.
# libnuma-dev: numa.h for the CUDA backend (libnuma itself is loaded at run
# time); binutils: readelf/nm for tests/cuda/check_runs_without_cuda.sh and
# tests/symbols; g++: the C++ consumer and the public headers' C++ check;
# liburing-dev: the disk tier's io_uring engine; libsodium-dev: the
# transfers' authentication; the other python3-*: the Python binding (python/: cffi, numpy; torch for the tensor
# views and examples/python; pytest runs its tests; pip and setuptools for
# `pip install ./python`).
packages=(cmake make gcc g++ pkg-config libcmocka-dev uthash-dev libxxhash-dev libjson-c-dev libzmq3-dev libmsgpack-dev
  gnuplot-nox libnuma-dev binutils liburing-dev libsodium-dev
  python3 python3-zmq python3-msgpack python3-cffi python3-numpy python3-torch python3-pytest python3-pip python3-setuptools)
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "kvbm: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
