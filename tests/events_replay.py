"""kvbm-replay --publish, followed by a router-style subscriber (Debian's
python3-zmq and python3-msgpack only).

  events_replay.py KVBM_REPLAY TRACE MODE
      MODE: data | logical | data-g3 | logical-g3 | data-dropped | logical-dropped

Replays the trace with a small G1 and G2 (blocks go round G1 -> G2 -> G1),
and in the -g3 modes a G3 below them (G2's victims go to disk and come back),
publishing the tiers' KV events. The subscriber joins while the replay runs,
decodes every batch strictly (tests/kv_events.py), fetches what it missed
through the replay socket, and rebuilds the hashes each tier holds. When the
replay is done, kvbm-replay writes what its managers hold (--dump-state);
the subscriber's tiers must equal them, with every sequence number from 0
applied in order and nothing dropped. In the -dropped modes the publisher's
queue holds 2 batches, so batches are dropped before reaching the wire (gaps
replay cannot fill); kvbm-replay then resynchronises routers (AllBlocksCleared
and every tier's hashes in one batch), and the subscriber's tiers must still
equal the cache's at the end, a resync following the last loss.

Exit status 0 on success, 1 on failure, 77 (skipped) without zmq/msgpack.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import msgpack  # noqa: F401
    import zmq
except ImportError as error:  # pragma: no cover
    print("events_replay: skipped, %s (install python3-zmq python3-msgpack)" % error)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kv_events  # noqa: E402


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def run(replay_bin, trace, mode, tmp, ctx):
    pub, rep = "ipc://%s/pub" % tmp, "ipc://%s/replay" % tmp
    state_path = os.path.join(tmp, "state.json")
    args = [replay_bin, "--g1-blocks", "300", "--g2-blocks", "900",
            "--no-progress", "--json", "--publish", pub, "--publish-replay", rep,
            "--publish-topic", "kv@replay@mooncake", "--publish-buffer", "400000",
            "--dump-state", state_path, "--publish-hold"]
    g3 = mode.endswith("-g3")
    dropping = mode.endswith("-dropped")
    if dropping:
        args += ["--publish-queue", "2"]
    if g3:
        args += ["--g3-blocks", "1500", "--g3-dir", tmp, "--g3-min-free-mib", "0"]
    if mode.startswith("logical"):
        args.append("--logical")
    else:
        args += ["--backend", "cpu", "--block-kib", "1"]
    args.append(trace)
    sub = kv_events.Subscriber(ctx, pub, rep, topic=b"kv@replay@mooncake")
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 100
        while not os.path.exists(state_path):
            check(proc.poll() is None, "kvbm-replay exited with %s" % proc.returncode)
            check(time.time() < deadline, "the replay did not finish")
            sub.drain(20)
        with open(state_path) as f:
            state = json.load(f)
        sub.catch_up(state["next_seq"])
    finally:
        out, _ = proc.communicate(timeout=60)  # closes stdin: kvbm-replay exits
    check(proc.returncode == 0, "kvbm-replay failed with status %d" % proc.returncode)
    counts = json.loads(out.strip().splitlines()[-1])

    print("state: next_seq %d, dropped %d; subscriber: %d applied, gaps %d, unrecoverable %r" % (
        state["next_seq"], state["batches_dropped"], len(sub.seqs), sub.gaps,
        sub.unrecoverable[:3]))
    if dropping:
        # Every number was either applied, in order, or dropped at the queue.
        check(state["batches_dropped"] > 0 and state["resyncs"] > 0,
              "nothing was dropped, or no resync: %r" % {k: state[k] for k in (
                  "next_seq", "batches_dropped", "resyncs")})
        check(sub.seqs == sorted(set(sub.seqs)), "sequence numbers not increasing")
        check(len(sub.seqs) + state["batches_dropped"] == state["next_seq"],
              "%d applied + %d dropped != %d numbers" % (
                  len(sub.seqs), state["batches_dropped"], state["next_seq"]))
        check(sub.unrecoverable, "drops at the queue were not seen as gaps")
        check(sub.clears and sub.clears[-1] > sub.unrecoverable[-1][0],
              "no AllBlocksCleared after the last loss (%r, clears %r)" % (
                  sub.unrecoverable[-1], sub.clears[-3:]))
    else:
        check(state["batches_dropped"] == 0, "batches were dropped at the publisher")
        check(sub.seqs == list(range(state["next_seq"])),
              "sequence numbers are not contiguous from 0")
        check(not sub.unrecoverable, "unrecoverable gaps %r" % sub.unrecoverable[:3])
    for medium in ("GPU", "CPU", "DISK"):
        held = sub.state.tiers[medium]
        expected = set(state[medium])
        check(held == expected, "%s: subscriber holds %d hashes, the cache %d (%d missing, %d extra)"
              % (medium, len(held), len(expected), len(expected - held), len(held - expected)))
    if g3:
        check(counts["g3_offloads"] > 300 and counts["g3_hits"] > 10 and len(state["DISK"]) > 0,
              "the replay did not exercise G3: %r" % counts)
    else:
        check(not state["DISK"], "DISK has hashes without a G3")
    # The run really moved blocks between the tiers, so the events said so.
    check(counts["g1_evictions"] > 1000 and counts["offloads"] > 500 and counts["g2_hits"] > 100,
          "the replay did not exercise both tiers: %r" % counts)
    check(len(state["GPU"]) > 0 and len(state["CPU"]) > 0, "a tier is empty")
    print("events_replay %s: %d batches (%d dropped at the queue, %d resyncs; %d live, "
          "%d replayed), GPU %d, CPU %d, DISK %d hashes "
          "match the cache; %d G1 evictions, %d offloads, %d G2 hits, %d G3 writes, %d G3 hits" % (
              mode, state["next_seq"], state["batches_dropped"], state["resyncs"], sub.live,
              sub.replayed, len(state["GPU"]),
              len(state["CPU"]), len(state["DISK"]), counts["g1_evictions"], counts["offloads"],
              counts["g2_hits"], counts.get("g3_offloads", 0), counts.get("g3_hits", 0)))
    sub.close()


def main():
    replay_bin, trace, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    ctx = zmq.Context()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(replay_bin, trace, mode, tmp, ctx)
    except (AssertionError, kv_events.WireError) as error:
        print("events_replay %s: FAILED: %s: %s" % (mode, type(error).__name__, error))
        return 1
    finally:
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
