#!/usr/bin/env python3
"""The Python binding's cost per block on a batch call, beside the C call.

One operation is what an engine does per request step: match a run of n
registered hashes (acquiring their blocks) and release the ids it got, on a
manager of 4096 inactive blocks. The C side is bench/binding_baseline.c
(built as bench_binding_c, calling libkvbm.so as the binding does); the
Python side makes the same calls through kvbm.Manager, twice: with
preallocated output arrays (``out=``, the engine's fast path) and with the
default fresh arrays. C and Python alternate, which goes first swapping each
round; the table gives the range over the rounds of each round's best of
three timed runs, and the ratio Python / C of each round. Prints numbers,
never passes or fails.

    PYTHONPATH=build/python python3 bench/bench_binding.py [--c-bench build/bench_binding_c] [--rounds 5]
"""
import argparse
import itertools
import os
import subprocess
import time

import numpy as np

import kvbm

BLOCKS = 4096
SIZES = (1, 16, 256)
REPS = 3


def calls_for(n, scale):
    return max(200, int(scale * 200_000 / n ** 0.75))


def filled_manager():
    m = kvbm.Manager(BLOCKS)
    hashes = np.arange(1, BLOCKS + 1, dtype=np.uint64)
    m.release(m.register(m.allocate(BLOCKS), hashes))
    return m, hashes


def python_ns_per_block(m, hashes, n, calls, preallocated):
    runs = [hashes[i * n:(i + 1) * n] for i in range(BLOCKS // n)]
    out = np.empty(n, np.uint32) if preallocated else None
    match, release = m.match, m.release
    best = None
    for _ in range(REPS):
        seq = list(itertools.islice(itertools.cycle(runs), calls))
        t0 = time.perf_counter_ns()
        for h in seq:
            release(match(h, out=out))
        per_block = (time.perf_counter_ns() - t0) / (calls * n)
        best = per_block if best is None else min(best, per_block)
    assert m.counts()["inactive"] == BLOCKS  # every match was released
    return best


def c_ns_per_block(binary, n, calls):
    out = subprocess.run([binary, str(n), str(calls), str(REPS)], check=True, capture_output=True, text=True)
    got_n, ns = out.stdout.split()
    assert int(got_n) == n
    return float(ns)


def span(values, fmt="%.0f"):
    lo, hi = min(values), max(values)
    return (fmt % lo) if fmt % lo == fmt % hi else (fmt + "-" + fmt) % (lo, hi)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--c-bench", default=os.path.join(here, "..", "build", "bench_binding_c"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the number of calls")
    args = p.parse_args()
    m, hashes = filled_manager()
    results = {n: {"c": [], "out": [], "fresh": []} for n in SIZES}
    for r in range(args.rounds):
        for n in SIZES:
            calls = calls_for(n, args.scale)
            steps = [("c", lambda: c_ns_per_block(args.c_bench, n, calls)),
                     ("out", lambda: python_ns_per_block(m, hashes, n, calls, True)),
                     ("fresh", lambda: python_ns_per_block(m, hashes, n, calls, False))]
            for name, run in steps if r % 2 == 0 else steps[::-1]:
                results[n][name].append(run())
    m.close()
    print("kvbm %s, match + release of n registered blocks, ns per block; %d rounds, best of %d runs each"
          % (kvbm.__version__, args.rounds, REPS))
    print()
    print("| blocks per call | C | Python, out= | ratio | Python, fresh arrays | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in SIZES:
        c, out, fresh = (results[n][k] for k in ("c", "out", "fresh"))
        print("| %d | %s | %s | %s | %s | %s |" % (
            n, span(c), span(out), span([o / x for o, x in zip(out, c)], "%.2f"),
            span(fresh), span([f / x for f, x in zip(fresh, c)], "%.2f")))


if __name__ == "__main__":
    main()
