"""The KV event publisher from Python (include/kvbm/events.h): a router-style
subscriber (Debian's python3-zmq and python3-msgpack) receives what a
manager and a tiered cache send through a Publisher made here, in vLLM's
layout: three frames (topic, 8-byte big-endian sequence number, msgpack
[ts, events, rank?]); replay answers a late subscriber; announce rebuilds
the state; clear sends AllBlocksCleared. Endpoints are ipc:// sockets in
the test's temporary folder, or TCP ports the system picks, so parallel
runs never collide.
"""
import gc
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import kvbm
from kvbm import publisher as publisher_module
from kvbm._cffi import ffi

from conftest import SOURCE_DIR, small_layout

zmq = pytest.importorskip("zmq", reason="python3-zmq is needed for the subscriber")
msgpack = pytest.importorskip("msgpack", reason="python3-msgpack is needed for the subscriber")
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests"))
import kv_events  # noqa: E402 (the strict subscriber of tests/events_wire.py)

TOPIC = "kv@py-test@model"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.term()


@pytest.fixture
def endpoints(tmp_path):
    """(PUB endpoint, replay endpoint): ipc sockets of this test alone."""
    return "ipc://%s/pub" % tmp_path, "ipc://%s/replay" % tmp_path


def subscriber(ctx, pub, **kw):
    return kv_events.Subscriber(ctx, pub.endpoint, pub.replay_endpoint, topic=pub.topic.encode(),
                                rank=pub.data_parallel_rank, **kw)


def settle(pub, sub):
    """Flush the publisher and let the subscriber take every batch sent so
    far, live or (for what it joined too late to see) by replay."""
    pub.flush()
    target = pub.metrics()["next_seq"]
    # Flushed means handed to the socket: wait for the batches to arrive,
    # until half a second passes without one (what a late joiner never gets live
    # is then asked for by replay).
    quiet_since = time.monotonic()
    while sub.next_seq < target and time.monotonic() - quiet_since < 0.5:
        seen = sub.next_seq
        sub.drain(20)
        if sub.next_seq != seen:
            quiet_since = time.monotonic()
    sub.catch_up(target)


def held(sub, medium):
    return sub.state.tiers[medium]


# ------------------------------------------------------------------ layout


def _probe(tmp_path, body):
    cc = os.environ.get("KVBM_CC") or "cc"
    src = tmp_path / "probe.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <string.h>\n#include <kvbm/kvbm.h>\n"
                   "int main(void) {\n%s\n    return 0;\n}\n" % body)
    exe = tmp_path / "probe"
    res = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(SOURCE_DIR, "include"), str(src),
                          "-o", str(exe)], capture_output=True, text=True)
    if res.returncode and "not found" in res.stderr:
        pytest.skip("no C compiler to build the probe")
    assert res.returncode == 0, res.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")


def test_record_dtype_is_the_c_struct_field_by_field(tmp_path):
    dt = kvbm.EVENT_RECORD_DTYPE
    ctypes = dict(ffi.typeof("kvbm_event_record_t").fields)
    lines = ['    printf("%zu\\n", sizeof(kvbm_event_record_t));']
    for name in dt.names:
        f = "((kvbm_event_record_t *)0)->%s" % name
        signed = "0" if ctypes[name].type.kind == "pointer" else "(int)((__typeof__(%s))-1 < 0)" % f
        lines.append('    printf("%%zu %%zu %%d\\n", offsetof(kvbm_event_record_t, %s), sizeof(%s), %s);'
                     % (name, f, signed))
    out = _probe(tmp_path, "\n".join(lines))
    assert int(out[0]) == dt.itemsize == ffi.sizeof("kvbm_event_record_t")
    for i, name in enumerate(dt.names):
        offset, size, signed = map(int, out[1 + i].split())
        ftype, foffset = dt.fields[name]
        assert (foffset, ftype.itemsize) == (offset, size), name
        if ftype.kind in "iu":  # pointers are unsigned integers here; C's pointers compare as unsigned
            assert (ftype.kind == "i") == bool(signed), name
    assert set(dt.names) == {n for n, _ in ffi.typeof("kvbm_event_record_t").fields}


def test_publisher_defaults_and_constants_are_the_headers(tmp_path):
    c = publisher_module.publisher_config()
    body = """
    kvbm_publisher_config_t c = KVBM_PUBLISHER_CONFIG_INIT;
    printf("%d %s\\n", KVBM_PUBLISHER_NO_RANK, KVBM_PUBLISHER_DEFAULT_ENDPOINT);
    printf("%s\\n", c.endpoint);
    c.endpoint = NULL;
    for (size_t i = 0; i < sizeof(c); i++) printf("%02x", ((unsigned char *)&c)[i]);
    printf("\\n");
    """
    out = _probe(tmp_path, body)
    no_rank, default_endpoint = out[0].split()
    assert int(no_rank) == publisher_module.NO_RANK
    assert default_endpoint == out[1] == publisher_module.DEFAULT_ENDPOINT
    # Every field but the endpoint pointer (NULL on both sides), padding included.
    assert out[2] == bytes(ffi.buffer(c)).hex()


# ------------------------------------------------------------------ the wire


def test_three_frames_big_endian_seq_and_msgpack_batch_with_rank(ctx, endpoints):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC, data_parallel_rank=3) as pub:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(pub.endpoint)
        # PUB drops what it sends before the subscription arrives: publish
        # probes until one comes through, then the batch under test.
        deadline = time.monotonic() + 20
        while not sub.poll(20):
            assert time.monotonic() < deadline, "the subscriber never received a probe"
            pub.publish(kvbm.EventRecord("removed", [1], "CPU"))
        while sub.poll(200):
            sub.recv_multipart()
        probes = pub.metrics()["next_seq"]
        pub.publish([kvbm.EventRecord("stored", [7, 300], "GPU", parent=5, block_size=2, tokens=[1, 2, 3, 70000],
                                      lora_id=-4, lora_name="adapter"),
                     kvbm.EventRecord("removed", [2**64 - 1], "DISK"), kvbm.EventRecord("cleared")])
        assert sub.poll(10000)
        frames = sub.recv_multipart()
        sub.close(linger=0)
    assert len(frames) == 3
    topic, seq, payload = frames
    assert topic == TOPIC.encode()
    assert len(seq) == 8 and int.from_bytes(seq, "big") == probes
    batch = msgpack.unpackb(payload, raw=False)
    assert len(batch) == 3 and isinstance(batch[0], float) and batch[2] == 3
    assert abs(batch[0] - time.time()) < 60
    assert batch[1] == [["BlockStored", [7, 300], 5, [1, 2, 3, 70000], 2, -4, "GPU", "adapter"],
                        ["BlockRemoved", [2**64 - 1], "DISK"], ["AllBlocksCleared"]]
    kv_events.decode_payload(payload, rank=3)  # canonical msgpack, vLLM's field forms


def test_a_managers_events_reach_a_subscriber(ctx, endpoints):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC) as pub:
        sub = subscriber(ctx, pub)
        try:
            with kvbm.Manager(4, publisher=pub, medium="CPU") as m:
                ids = m.register(m.allocate(4), [11, 12, 13, 14], parent=10)
                m.release(ids[::-1])
                m.allocate(2)  # evicts two
                settle(pub, sub)
                assert held(sub, "CPU") == set(m.registered_hashes().tolist())
                assert len(held(sub, "CPU")) == 2 and not held(sub, "GPU")
                assert sub.seqs == list(range(pub.metrics()["next_seq"])) and not sub.unrecoverable
            m = pub.metrics()
            assert m["batches_published"] == 2 and m["events_published"] == 2 and m["batches_dropped"] == 0
        finally:
            sub.close()


def test_a_caches_tiers_reach_a_subscriber_one_batch_per_call(ctx, endpoints, sync_backend):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC) as pub:
        sub = subscriber(ctx, pub)
        try:
            with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, publisher=pub) as cache:
                for base in (100, 200, 300):  # each request evicts the last: offloads to G2
                    hashes = [base + i for i in range(4)]
                    ids, _ = cache.acquire(hashes)
                    cache.release(cache.register(ids, hashes)[::-1])
                cache.sync()
                settle(pub, sub)
                assert held(sub, "GPU") == set(cache.tier("g1").registered_hashes().tolist())
                assert held(sub, "CPU") == set(cache.tier("g2").registered_hashes().tolist())
                assert len(held(sub, "CPU")) == 8 and len(held(sub, "GPU")) == 4
                assert not sub.unrecoverable
        finally:
            sub.close()


def test_the_replay_socket_answers_a_late_subscriber(ctx, endpoints):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC, buffer_steps=1000) as pub, \
            kvbm.Manager(64, publisher=pub) as m:
        for i in range(50):
            m.register(m.allocate(1), [1000 + i])
        pub.flush()
        sub = subscriber(ctx, pub)  # joins after 50 batches were sent
        try:
            settle(pub, sub)
            assert sub.replayed >= 50 and sub.seqs == list(range(50)) and not sub.unrecoverable
            assert held(sub, "GPU") == set(range(1000, 1050))
            assert pub.metrics()["replay_requests"] >= 1 and pub.metrics()["replay_batches"] >= 50
        finally:
            sub.close()


def test_announce_rebuilds_a_subscriber_that_replay_cannot_help(ctx, endpoints, sync_backend):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC, buffer_steps=0) as pub, \
            kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, publisher=pub) as cache:
        for base in (10, 20, 30):
            hashes = [base + i for i in range(3)]
            ids, _ = cache.acquire(hashes)
            cache.release(cache.register(ids, hashes)[::-1])
        cache.sync()
        pub.flush()
        sub = subscriber(ctx, pub)  # too late, and nothing kept for replay
        try:
            settle(pub, sub)
            assert sub.unrecoverable and not held(sub, "GPU")
            before = {t: cache.tier(t).registered_hashes().tolist() for t in ("g1", "g2")}
            cache.announce()
            settle(pub, sub)
            assert sub.clears and sub.clears[-1] == pub.metrics()["next_seq"] - 1
            assert held(sub, "GPU") == set(before["g1"]) and held(sub, "CPU") == set(before["g2"])
            assert {t: cache.tier(t).registered_hashes().tolist() for t in ("g1", "g2")} == before
        finally:
            sub.close()


def test_a_drop_asks_for_a_resync_until_an_announce_is_queued(endpoints, sync_backend):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, queue_depth=1, max_delay_ms=1000) as pub, \
            kvbm.Cache(sync_backend, small_layout(8), publisher=pub) as cache:
        assert not pub.resync_needed
        dropped = 0
        for i in range(2000):  # one batch each; the thread naps up to a second
            try:
                pub.publish(kvbm.EventRecord("removed", [i], "GPU"))
            except kvbm.BusyError as e:
                assert e.name == "KVBM_ERR_BUSY"
                dropped += 1
            if pub.resync_needed:
                break
        assert dropped >= 1 and pub.resync_needed
        assert pub.metrics()["batches_dropped"] == dropped
        for _ in range(2000):  # the announce itself may be dropped: retried, as an engine would
            pub.flush()
            cache.announce()
            if not pub.resync_needed:
                break
        assert not pub.resync_needed and pub.metrics()["resyncs"] >= 1


def test_clear_sends_all_blocks_cleared_to_subscribers_and_callbacks(ctx, endpoints, sync_backend):
    pub_ep, replay_ep = endpoints
    seen = []
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC) as pub:
        sub = subscriber(ctx, pub)
        try:
            with kvbm.Cache(sync_backend, small_layout(4), g2_blocks=8, publisher=pub,
                            on_events=lambda tier, ev: seen.append((tier, ev.copy()))) as cache:
                ids, _ = cache.acquire([1, 2, 3])
                cache.release(cache.register(ids, [1, 2, 3]))
                settle(pub, sub)
                assert held(sub, "GPU") == {1, 2, 3}
                cache.clear()
                settle(pub, sub)
                assert sub.clears == [pub.metrics()["next_seq"] - 1]
                assert not any(sub.state.tiers.values())
                assert cache.tier("g1").registered_hashes().size == 0
        finally:
            sub.close()
    # The callback saw the same: stored in g1, then one CLEARED event.
    assert seen[0][0] == "g1" and list(seen[0][1]["seq_hash"]) == [1, 2, 3]
    tier, ev = seen[-1]
    assert tier is None and len(ev) == 1 and ev["kind"][0] == kvbm.CLEARED


def test_clear_with_a_held_block_is_busy_and_changes_nothing(sync_backend):
    with kvbm.Publisher("inproc://clear-busy") as pub, \
            kvbm.Cache(sync_backend, small_layout(4), publisher=pub) as cache:
        ids, _ = cache.acquire([1])
        cache.register(ids, [1])
        published = pub.metrics()["next_seq"]
        with pytest.raises(kvbm.BusyError):
            cache.clear()
        assert cache.tier("g1").contains(1)
        pub.flush()
        assert pub.metrics()["next_seq"] == published


def test_managers_batched_per_step_and_a_manager_announce(ctx, endpoints):
    pub_ep, replay_ep = endpoints
    with kvbm.Publisher(pub_ep, replay_endpoint=replay_ep, topic=TOPIC) as pub:
        sub = subscriber(ctx, pub)
        got = []
        try:
            with pub.batcher() as step, kvbm.Manager(8, publisher=step) as g1, \
                    kvbm.Manager(8, publisher=step, medium="CPU", on_events=got.append) as g2:
                g1.register(g1.allocate(2), [1, 2])
                g2.register(g2.allocate(1), [9])
                assert pub.metrics()["next_seq"] == 0  # gathered, not sent
                step.flush()
                settle(pub, sub)
                assert sub.seqs == [0]  # both managers' events in one batch
                assert held(sub, "GPU") == {1, 2} and held(sub, "CPU") == {9}
                assert len(got) == 1 and list(got[0]["seq_hash"]) == [9]  # the callback too
                # Resync by hand: AllBlocksCleared, then each manager's hashes, one batch.
                pub.publish(kvbm.EventRecord("cleared"))
                g1.announce()
                g2.announce()
                step.flush()
                settle(pub, sub)
                assert sub.clears == [1] and held(sub, "GPU") == {1, 2} and held(sub, "CPU") == {9}
                with pytest.raises(kvbm.BusyError):
                    step.close()  # g1 and g2 still feed it
        finally:
            sub.close()


def test_tcp_with_rank_offsets_both_ports_and_reports_them(ctx):
    with kvbm.Publisher("tcp://127.0.0.1:*", replay_endpoint="tcp://127.0.0.1:*", topic=TOPIC) as base:
        assert base.endpoint.startswith("tcp://127.0.0.1:") and base.replay_endpoint.startswith("tcp://127.0.0.1:")
        assert base.endpoint != base.replay_endpoint
    with kvbm.Publisher("inproc://ranked", replay_endpoint="inproc://ranked-replay", data_parallel_rank=2,
                        offset_ports_by_rank=True) as ranked:
        assert ranked.endpoint == "inproc://ranked_dp2" and ranked.replay_endpoint == "inproc://ranked-replay_dp2"
    with kvbm.Publisher("inproc://no-replay") as quiet:
        assert quiet.replay_endpoint is None


def test_metrics_and_prometheus_text():
    with kvbm.Publisher("inproc://metrics") as pub:
        pub.publish(kvbm.EventRecord("stored", [1, 2, 3]))
        pub.flush()
        m = pub.metrics()
        assert set(m) == set(publisher_module.METRICS_FIELDS)
        assert m["batches_published"] == 1 and m["events_published"] == 1 and m["next_seq"] == 1
        text = pub.metrics_prometheus()
        assert "kvbm_events_batches_published_total 1\n" in text and "kvbm_events_replay_requests_total 0\n" in text
        assert "kvbm_events_next_seq 1\n" in text


def test_medium_names():
    assert [kvbm.medium_name(m) for m in range(4)] == ["GPU", "CPU", "DISK", None]


# ------------------------------------------------------------------ errors


def test_bad_arguments_raise_and_create_nothing(tmp_path):
    with pytest.raises(kvbm.InvalidArgumentError) as e:
        kvbm.Publisher("bogus://nowhere")
    assert e.value.call == "kvbm_publisher_create" and "bogus://nowhere" in e.value.detail
    for kw in (dict(queue_depth=0), dict(hwm=-1), dict(linger_ms=-1), dict(data_parallel_rank=-2),
               dict(topic=5), dict(replay_endpoint=b"x"), dict(offset_ports_by_rank=True)):
        with pytest.raises(kvbm.InvalidArgumentError):
            kvbm.Publisher("inproc://bad", **kw)
    with pytest.raises(kvbm.InvalidArgumentError):
        kvbm.Publisher(None)
    with kvbm.Publisher("inproc://ok") as pub:
        for bad in (kvbm.EventRecord("moved", [1]), kvbm.EventRecord("stored", [1], medium="SSD"),
                    kvbm.EventRecord("stored", [-1]), kvbm.EventRecord("cleared", [1]),
                    kvbm.EventRecord("removed", [1], parent=3), kvbm.EventRecord("stored", [1], lora_id=2**63),
                    kvbm.EventRecord("stored", [1], lora_name=b"x"), "stored"):
            with pytest.raises(kvbm.InvalidArgumentError):
                pub.publish(bad)
        # Tokens must cover the blocks (block_size each), as at registration: nothing is queued.
        with pytest.raises(kvbm.InvalidArgumentError) as e:
            pub.publish(kvbm.EventRecord("stored", [1, 2], block_size=4, tokens=[1, 2, 3]))
        assert e.value.call == "kvbm_publisher_publish"
        pub.flush()
        assert pub.metrics()["next_seq"] == 0
        with pytest.raises(kvbm.InvalidArgumentError):
            kvbm.Manager(4, publisher=object())
        with pytest.raises(kvbm.InvalidArgumentError):
            kvbm.Manager(4, publisher=pub, medium="SSD")
        with pytest.raises(kvbm.InvalidArgumentError):
            kvbm.EventBatcher("not a publisher")
    with pytest.raises(kvbm.InvalidArgumentError, match="closed"):
        pub.metrics()


def test_a_port_in_use_is_an_os_error_naming_it():
    with kvbm.Publisher("tcp://127.0.0.1:*") as first:
        port = first.endpoint.rsplit(":", 1)[1]
        with pytest.raises(kvbm.IOFailureError) as e:
            kvbm.Publisher("tcp://*:%s" % port)
        assert isinstance(e.value, OSError) and "in use" in e.value.detail and port in e.value.detail
        with pytest.raises(kvbm.IOFailureError):
            kvbm.Publisher("inproc://free", replay_endpoint="tcp://127.0.0.1:%s" % port)


def test_a_publisher_refuses_to_close_while_it_feeds_something(sync_backend):
    pub = kvbm.Publisher("inproc://lifetimes")
    m = kvbm.Manager(4, publisher=pub)
    cache = kvbm.Cache(sync_backend, small_layout(4), publisher=pub)
    with pytest.raises(kvbm.BusyError, match="Cache, Manager"):
        pub.close()
    m.close()
    with pytest.raises(kvbm.BusyError, match="Cache"):
        pub.close()
    ids, _ = cache.acquire([1])
    cache.register(ids, [1])  # still publishing fine
    cache.close()
    pub.close()
    pub.close()  # idempotent
    assert pub.closed
    # Left to the collector, a manager keeps its publisher alive until it goes.
    pub = kvbm.Publisher("inproc://collected")
    m = kvbm.Manager(4, publisher=pub)
    del pub
    gc.collect()
    m.register(m.allocate(1), [5])  # publishes into a publisher nobody else holds
    m._keep[0].flush()
    assert m._keep[0].metrics()["batches_published"] == 1
    del m
    gc.collect()


def test_a_cache_takes_a_publisher_not_a_shared_batcher(sync_backend):
    with kvbm.Publisher("inproc://cache-batcher") as pub, pub.batcher() as step:
        with pytest.raises(kvbm.InvalidArgumentError, match="Publisher"):
            kvbm.Cache(sync_backend, small_layout(4), publisher=step)


# ------------------------------------------------------------------ no leak


def test_many_create_publish_close_cycles_leak_nothing(tmp_path, sync_backend):
    from test_leaks import c_heap_bytes, mallinfo_sees_malloc

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def threads():
        return len(os.listdir("/proc/self/task"))

    def cycle(i):
        with kvbm.Publisher("ipc://%s/pub" % tmp_path, replay_endpoint="ipc://%s/replay" % tmp_path,
                            linger_ms=0) as pub, kvbm.Manager(8, publisher=pub) as m:
            m.register(m.allocate(2), [i, i + 1])
            pub.publish(kvbm.EventRecord("stored", [7], tokens=[1, 2], block_size=2, lora_name="x"))
            pub.metrics_prometheus()

    for i in range(10):
        cycle(i)
    gc.collect()
    heap, objects, fd, th = c_heap_bytes(), len(gc.get_objects()), fds(), threads()
    cycles = 150  # 64 KiB over 150 cycles: under 440 bytes a cycle, far less than a leaked publisher
    for i in range(cycles):
        cycle(i)
    gc.collect()
    assert fds() == fd and threads() == th
    gained = len(gc.get_objects()) - objects
    assert gained < 100, "%d Python objects more after %d cycles" % (gained, cycles)
    if not mallinfo_sees_malloc():
        pytest.skip("mallinfo2() does not see this process's malloc (a sanitizer's): C bytes not checked")
    grown = c_heap_bytes() - heap
    assert grown < 64 * 1024, "the C heap grew by %d bytes over %d cycles" % (grown, cycles)
