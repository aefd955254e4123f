"""The standalone G2 admission filter: a class of blocks that never comes
back is refused once it has enough samples, one that comes back is kept."""
import threading

import pytest

import kvbm


def feed(a, rounds):
    """Each round: an 8-block request whose hashes return every third round,
    then a 1-block request never seen again. The latter's decisions."""
    one_offs = []
    for i in range(rounds):
        for pos in range(8):
            a.registered(pos, 1000 + (i % 3) * 8 + pos, request_blocks=8, position=pos)
        for pos in range(8):
            a.evicted(pos, 1000 + (i % 3) * 8 + pos)
        a.registered(9, 10**9 + i, request_blocks=1, position=0)
        one_offs.append(a.evicted(9, 10**9 + i))
    return one_offs


def test_a_class_that_never_returns_is_refused_after_min_samples():
    with kvbm.Admission(16, 64, min_samples=4) as a:
        one_offs = feed(a, 200)
        assert all(one_offs[:3]) and not any(one_offs[-100:])
        assert a.refused >= 100
        a.hit(1)
        assert a.evicted(1, 1001, in_g2=True) is False  # G2 has it: recorded only


def test_keep_ratio_zero_offloads_everything():
    with kvbm.Admission(16, 64, keep_ratio=0, min_samples=4) as a:
        assert all(feed(a, 50)) and a.refused == 0


def test_arguments_are_checked_and_a_closed_filter_raises():
    with pytest.raises(kvbm.InvalidArgumentError, match="g1_blocks"):
        kvbm.Admission(-1, 4)
    with pytest.raises(kvbm.InvalidArgumentError):  # C: a capacity of 0
        kvbm.Admission(0, 4)
    with pytest.raises(kvbm.InvalidArgumentError, match="keep_ratio"):
        kvbm.Admission(4, 4, keep_ratio=float("nan"))
    a = kvbm.Admission(4, 4)
    with pytest.raises(kvbm.InvalidArgumentError, match="in_g2"):
        a.evicted(0, 1, in_g2="no")
    a.close()
    with pytest.raises(kvbm.InvalidArgumentError, match="closed"):
        a.hit(0)


def test_threads_may_share_one_filter():
    # Every False from evicted() (in_g2 never set) is one refusal: the
    # filter's own count agrees only if no call raced another.
    refusals = [0] * 4
    with kvbm.Admission(64, 256, min_samples=4) as a:
        def worker(t):
            for i in range(500):
                h = (t << 32) | (i % 40)  # thread t's hashes come back every 40 blocks
                a.registered(t, h, 4 if t % 2 else 1, i % 4)
                refusals[t] += not a.evicted(t, h)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.refused == sum(refusals)
