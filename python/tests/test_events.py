"""Event callbacks: kvbm's sink only queues; the Python callable runs outside
every kvbm lock, in order, once per batch, also with several threads."""
import threading

import numpy as np

import kvbm


def test_stored_and_removed_events_reach_the_callback_after_the_call():
    got = []
    with kvbm.Manager(2, on_events=got.append) as m:
        ids = m.register(m.allocate(2), [10, 11])
        assert len(got) == 1
        ev = got[0]
        assert ev.dtype == kvbm.EVENT_DTYPE
        assert list(ev["kind"]) == [kvbm.STORED] * 2 and list(ev["seq_hash"]) == [10, 11]
        assert list(ev["block_id"]) == list(ids)
        m.release(ids)
        m.allocate(1)  # evicts one
        assert list(got[-1]["kind"]) == [kvbm.REMOVED] and got[-1]["seq_hash"][0] in (10, 11)
        assert m.pending_events == 0


def test_a_callback_may_call_back_into_the_manager():
    # In C the sink runs under the manager lock and must not re-enter; the
    # binding's callable runs after the lock is dropped, so it may.
    seen = []

    def on_events(ev):
        seen.append((len(ev), m.counts()["active"], m.contains(int(ev["seq_hash"][0]))))
        if len(seen) == 1:
            m.release(ev["block_id"])  # produces no event: blocks become inactive

    m = kvbm.Manager(4, on_events=on_events)
    try:
        m.register(m.allocate(2), [1, 2])
        assert seen == [(2, 2, True)]
        assert m.counts()["inactive"] == 2
    finally:
        m.close()


def test_an_exception_in_the_callback_is_logged_and_the_call_still_returns(caplog):
    def bad(ev):
        raise RuntimeError("boom")

    with kvbm.Manager(4, on_events=bad) as m:
        ids = m.register(m.allocate(1), [5])  # the call succeeded: its result is not lost
        assert len(ids) == 1 and m.contains(5)
        assert m._events.failed == 1
    assert any("event callback" in r.getMessage() for r in caplog.records)


def test_events_from_several_threads_are_delivered_once_and_in_order():
    threads, rounds, blocks = 4, 200, 64
    batches = []
    lock_free = []

    def on_events(ev):
        # Runs in some Python thread after its kvbm call returned: calling the
        # manager here would deadlock if kvbm's lock were held.
        lock_free.append(m.counts()["total"])
        batches.append(ev.copy())

    m = kvbm.Manager(blocks, on_events=on_events)

    def worker(t):
        for r in range(rounds):
            h = np.array([(t << 32) | (r << 8) | i for i in range(4)], np.uint64)
            ids = m.register(m.allocate(4), h)
            m.release(ids[::-1])

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert not w.is_alive(), "a worker is stuck: deadlock between a callback and kvbm"
    m.deliver_events()
    metrics = m.metrics()
    m.close()
    events = np.concatenate(batches)
    stored = events[events["kind"] == kvbm.STORED]
    removed = events[events["kind"] == kvbm.REMOVED]
    assert len(stored) == metrics["registrations"] == threads * rounds * 4
    assert len(removed) == metrics["evictions"]
    assert len(lock_free) == len(batches)
    # Order: per hash, stored comes before removed, and each at most once.
    state = {}
    for kind, h in zip(events["kind"], events["seq_hash"]):
        h = int(h)
        if kind == kvbm.STORED:
            assert h not in state
            state[h] = "stored"
        else:
            assert state.get(h) == "stored"
            state[h] = "removed"
    # Whatever is still registered is exactly what the events leave stored.
    left = {h for h, s in state.items() if s == "stored"}
    assert len(left) == metrics["inactive_blocks"]


def test_cache_events_carry_their_tier(sync_backend):
    from conftest import small_layout

    got = []
    with kvbm.Cache(sync_backend, small_layout(2), g2_blocks=4, on_events=lambda tier, ev: got.append((tier, ev))) as c:
        ids, r = c.acquire([1, 2])
        c.release(c.register(ids, [1, 2]))
        ids, r = c.acquire([3, 4])  # evicts 1, 2 from G1, offloads them to G2
        c.sync()
        tiers = [t for t, _ in got]
        assert "g1" in tiers and "g2" in tiers
        g2 = np.concatenate([ev for t, ev in got if t == "g2"])
        assert set(g2[g2["kind"] == kvbm.STORED]["seq_hash"]) == {1, 2}
        c.release(ids)
