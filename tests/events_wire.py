"""KV events on the wire, seen by a Python subscriber (Debian's python3-zmq
and python3-msgpack only), against tests/events_driver.

  events_wire.py DRIVER SCENARIO

Scenarios:
  layout       TCP with vLLM's endpoint convention (bind "*", port offset
               by the data-parallel rank), a topic and a rank: every batch
               decodes exactly to the layout, the numbers are contiguous,
               the rebuilt tiers equal the driver's.
  late-joiner  the subscriber connects after the first batches were sent:
               it sees the gap and recovers everything through replay.
  lossy        tiny high-water marks and a subscriber that does not read
               while thousands of batches go by: it loses most of them,
               sees the gaps, and recovers the full state through replay.
  short-replay the same loss with a replay buffer too short to fill it:
               the subscriber must notice that the state is not recoverable.

Exit status 0 on success, 1 on failure, 77 (skipped) without zmq/msgpack.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

try:
    import msgpack  # noqa: F401
    import zmq
except ImportError as error:  # pragma: no cover
    print("events_wire: skipped, %s (install python3-zmq python3-msgpack)" % error)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kv_events  # noqa: E402


class Driver:
    def __init__(self, path, *args):
        self.proc = subprocess.Popen([path, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.endpoints = self._line()

    def _line(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("events_driver exited (status %s)" % self.proc.wait())
        return json.loads(line)

    def go(self, batches):
        self.proc.stdin.write("go %d\n" % batches)
        self.proc.stdin.flush()
        return self._line()

    def close(self):
        self.proc.stdin.close()
        if self.proc.wait(timeout=60) != 0:
            raise RuntimeError("events_driver failed with status %d" % self.proc.returncode)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def check_state(sub, report):
    for medium in ("GPU", "CPU"):
        expected = set(report[medium])
        got = sub.state.tiers[medium]
        check(got == expected, "%s: %d hashes rebuilt, %d held (%d missing, %d extra)" % (
            medium, len(got), len(expected), len(expected - got), len(got - expected)))
    check(not sub.state.tiers["DISK"], "DISK has hashes")
    check(sub.seqs == list(range(report["next_seq"])),
          "sequence numbers are not contiguous from 0")
    check(not sub.unrecoverable, "unrecoverable gaps %r" % sub.unrecoverable[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_on_free_ports(driver_path, rank):
    """A driver bound to two ports found free, offset by the rank. Another
    process (tests run in parallel on a shared machine) may take a port
    between the probe and the bind: then try other ports."""
    for attempt in range(5):
        port, replay_port = free_port(), free_port()
        try:
            driver = Driver(driver_path, "--endpoint", "tcp://*:%d" % port,
                            "--replay", "tcp://*:%d" % replay_port, "--topic", "kv@engine-0",
                            "--rank", str(rank), "--offset", "--seed", "7")
            return driver, port, replay_port
        except RuntimeError:
            if attempt == 4:
                raise


def layout(driver_path, ctx):
    rank = 3
    driver, port, replay_port = start_on_free_ports(driver_path, rank)
    # The ports were offset by the rank, as vLLM does for data-parallel ranks.
    check(driver.endpoints["endpoint"].endswith(":%d" % (port + rank)),
          "endpoint %s" % driver.endpoints["endpoint"])
    check(driver.endpoints["replay"].endswith(":%d" % (replay_port + rank)),
          "replay endpoint %s" % driver.endpoints["replay"])
    sub = kv_events.Subscriber(ctx, "tcp://127.0.0.1:%d" % (port + rank),
                               "tcp://127.0.0.1:%d" % (replay_port + rank),
                               topic=b"kv@engine-0", rank=rank)
    report = None
    for _ in range(3):
        report = driver.go(300)
        sub.drain(100)
        sub.catch_up(report["next_seq"])
    check_state(sub, report)
    check(report["metrics"]["batches_published"] == 900, "published %r" % report["metrics"])
    check(report["metrics"]["batches_dropped"] == 0, "dropped")
    check(sub.live > 0, "no batch arrived live")
    print("layout: 900 batches, %d live, %d replayed; GPU %d, CPU %d hashes" % (
        sub.live, sub.replayed, len(report["GPU"]), len(report["CPU"])))
    sub.close()
    driver.close()


def late_joiner(driver_path, ctx):
    with tempfile.TemporaryDirectory() as tmp:
        driver = Driver(driver_path, "--endpoint", "ipc://%s/pub" % tmp,
                        "--replay", "ipc://%s/replay" % tmp, "--seed", "11")
        driver.go(500)  # nobody listens yet
        sub = kv_events.Subscriber(ctx, driver.endpoints["endpoint"],
                                   driver.endpoints["replay"])
        report = driver.go(500)
        sub.drain(200)
        sub.catch_up(report["next_seq"])
        check(sub.gaps >= 1 and sub.replays >= 1, "the late join went unnoticed")
        check_state(sub, report)
        print("late-joiner: %d gaps, %d replays, %d batches rebuilt" % (
            sub.gaps, sub.replays, len(sub.seqs)))
        sub.close()
        driver.close()


def lossy(driver_path, ctx, buffer_steps, expect_recovery):
    with tempfile.TemporaryDirectory() as tmp:
        driver = Driver(driver_path, "--endpoint", "ipc://%s/pub" % tmp,
                        "--replay", "ipc://%s/replay" % tmp, "--hwm", "2",
                        "--buffer-steps", str(buffer_steps), "--seed", "23")
        sub = kv_events.Subscriber(ctx, driver.endpoints["endpoint"],
                                   driver.endpoints["replay"], rcvhwm=2, rcvbuf=4096)
        # Wait until the subscription is live, then stop reading while a
        # burst goes by: the high-water marks drop most of it.
        for _ in range(100):
            driver.go(10)
            sub.drain(50)
            if sub.seqs:
                break
        check(sub.seqs, "the subscriber never received a batch")
        report = driver.go(6000)
        sub.drain(200)
        sub.catch_up(report["next_seq"])
        check(sub.gaps >= 1, "no loss happened: the test did not test anything")
        print("%s: %d batches, %d live, %d gaps, %d replays, %d replayed" % (
            "lossy" if expect_recovery else "short-replay", report["next_seq"], sub.live,
            sub.gaps, sub.replays, sub.replayed))
        if expect_recovery:
            check(sub.live < report["next_seq"] / 2, "most batches should have been lost live")
            check_state(sub, report)
        else:
            check(sub.unrecoverable, "a gap the replay buffer cannot fill went unnoticed")
        sub.close()
        driver.close()


def main():
    driver_path, scenario = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    try:
        if scenario == "layout":
            layout(driver_path, ctx)
        elif scenario == "late-joiner":
            late_joiner(driver_path, ctx)
        elif scenario == "lossy":
            lossy(driver_path, ctx, buffer_steps=20000, expect_recovery=True)
        elif scenario == "short-replay":
            lossy(driver_path, ctx, buffer_steps=100, expect_recovery=False)
        else:
            print("unknown scenario %s" % scenario)
            return 2
    except (AssertionError, kv_events.WireError) as error:
        print("events_wire %s: FAILED: %s: %s" % (scenario, type(error).__name__, error))
        return 1
    finally:
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
