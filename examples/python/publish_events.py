"""KV events for a router from a Python engine: a tiered cache publishes what
its tiers hold through a kvbm.Publisher, in vLLM's wire format, and a
router-style subscriber (python3-zmq, python3-msgpack) in the same process
rebuilds each tier's hashes from the stream and checks them against the
cache after every step. Exits 1 if they ever differ.

    PYTHONPATH=build/python python3 examples/python/publish_events.py [--endpoint tcp://*:5557]
"""
import argparse
import shutil
import tempfile

import msgpack
import zmq

import kvbm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", help="PUB endpoint (default: an ipc socket in a temporary folder)")
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="kvbm-events-")
    endpoint = args.endpoint or "ipc://%s/pub" % folder
    media = {"GPU": set(), "CPU": set()}
    with kvbm.Publisher(endpoint, replay_endpoint="ipc://%s/replay" % folder, topic="kv@engine-0@demo") as pub, \
            kvbm.Backend("cpu", synchronous=True) as backend, \
            kvbm.Cache(backend, dict(num_blocks=16, num_layers=2, tokens_per_block=4, inner_dim=8),
                       g2_blocks=64, publisher=pub) as cache, zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.SUBSCRIBE, b"kv@")
        sub.connect(pub.endpoint)
        # A PUB socket drops what it sends before a subscription reaches it:
        # announce (AllBlocksCleared, then everything held) until one arrives.
        # A router joining a running engine asks the replay socket instead.
        for _ in range(300):
            cache.announce()
            pub.flush()
            if sub.poll(100):
                break
        else:
            print("no batch reached the subscriber in 30 s")
            return 1
        expected_seq = None
        for step in range(args.steps):
            prompt = [step % 3] * 8 + list(range(step, step + 8))  # three shared system prompts
            hashes = kvbm.hash_tokens(prompt, 4)
            ids, hit = cache.acquire(hashes)
            done = hit.g1 + hit.onboarded
            cache.check(ids[:done])
            ids[done:] = cache.register(ids[done:], hashes[done:])  # the engine computed these
            cache.release(ids[::-1])
            cache.sync()
            if pub.resync_needed:  # a batch was dropped at the publisher's queue
                cache.announce()
            pub.flush()
            events = 0
            while sub.poll(2000):
                topic, seq, payload = sub.recv_multipart()
                seq = int.from_bytes(seq, "big")
                if expected_seq is not None and seq != expected_seq:
                    print("gap before batch %d (replay would fill it)" % seq)
                expected_seq = seq + 1
                ts, batch = msgpack.unpackb(payload)[:2]
                for event in batch:
                    events += 1
                    if event[0] == "BlockStored":
                        media[event[6]].update(event[1])
                    elif event[0] == "BlockRemoved":
                        media[event[2]].difference_update(event[1])
                    else:
                        for held in media.values():
                            held.clear()
                if all(media[m] == set(cache.tier(t).registered_hashes().tolist())
                       for m, t in (("GPU", "g1"), ("CPU", "g2"))):
                    break
            print("step %2d: G1 hits %d, onboarded %d, %d events; router holds GPU %d, CPU %d"
                  % (step, hit.g1, hit.onboarded, events, len(media["GPU"]), len(media["CPU"])))
            for m, t in (("GPU", "g1"), ("CPU", "g2")):
                if media[m] != set(cache.tier(t).registered_hashes().tolist()):
                    print("the router's %s set differs from the cache's %s" % (m, t))
                    return 1
        print("published:", {k: v for k, v in pub.metrics().items() if k in ("batches_published", "events_published",
                                                                            "batches_dropped")})
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
