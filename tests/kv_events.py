"""A KV event subscriber in the style of a router's, using only Debian's
python3-zmq and python3-msgpack.

It decodes vLLM's wire layout strictly (docs/EVENTS.md), rebuilds the set
of block hashes each tier holds, and recovers lost batches through the
replay socket. Any deviation from the layout raises WireError, so the
tests that use it check the wire byte for byte and field by field.
"""

import time

import msgpack
import zmq

END_SEQ = (-1).to_bytes(8, "big", signed=True)
MEDIA = ("GPU", "CPU", "DISK")
STORED_FIELDS = 8  # tag, block_hashes, parent, token_ids, block_size, lora_id, medium, lora_name
REMOVED_FIELDS = 3  # tag, block_hashes, medium


class WireError(Exception):
    """The bytes on the wire are not vLLM's KV event layout."""


def _require(condition, what):
    if not condition:
        raise WireError(what)


def _is_u64(value):
    return type(value) is int and 0 <= value < 2**64


def decode_payload(payload, rank=None):
    """Decodes one batch payload and checks its layout; returns (ts, events).

    The payload must be exactly what msgspec writes for vLLM's array-like
    structs: re-encoding the decoded value (msgpack's canonical forms:
    smallest integers, float64, str8+) must give the same bytes back.
    """
    batch = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    _require(msgpack.packb(batch, use_bin_type=True) == payload,
             "payload is not in canonical msgpack form")
    _require(type(batch) is list and len(batch) in (2, 3), "batch is not [ts, events, rank?]")
    if rank is None:
        _require(len(batch) == 2, "rank present though none was configured")
    else:
        _require(len(batch) == 3 and batch[2] == rank, "rank missing or wrong: %r" % (batch,))
    ts, events = batch[0], batch[1]
    _require(type(ts) is float, "ts is not a float")
    _require(type(events) is list, "events is not an array")
    for event in events:
        check_event(event)
    return ts, events


def check_event(event):
    """Checks one event's tag and fields, in vLLM's order."""
    _require(type(event) is list and event and type(event[0]) is str, "event is not tagged")
    tag = event[0]
    if tag == "BlockStored":
        _require(len(event) == STORED_FIELDS, "BlockStored has %d fields" % len(event))
        _, hashes, parent, tokens, block_size, lora_id, medium, lora_name = event
        _require(type(hashes) is list and hashes and all(map(_is_u64, hashes)),
                 "block_hashes are not unsigned 64-bit integers")
        _require(parent is None or _is_u64(parent), "parent_block_hash")
        _require(type(tokens) is list and all(type(t) is int and t >= 0 for t in tokens),
                 "token_ids")
        _require(type(block_size) is int and block_size >= 0, "block_size")
        _require(not tokens or len(tokens) == block_size * len(hashes),
                 "token_ids do not cover the blocks")
        _require(lora_id is None or type(lora_id) is int, "lora_id")
        _require(medium in MEDIA, "medium %r" % (medium,))
        _require(lora_name is None or type(lora_name) is str, "lora_name")
    elif tag == "BlockRemoved":
        _require(len(event) == REMOVED_FIELDS, "BlockRemoved has %d fields" % len(event))
        _require(type(event[1]) is list and event[1] and all(map(_is_u64, event[1])),
                 "block_hashes are not unsigned 64-bit integers")
        _require(event[2] in MEDIA, "medium %r" % (event[2],))
    elif tag == "AllBlocksCleared":
        _require(len(event) == 1, "AllBlocksCleared has fields")
    else:
        raise WireError("unknown tag %r" % tag)


class TierState:
    """The hashes each tier of one engine holds, as a router rebuilds them."""

    def __init__(self):
        self.tiers = {medium: set() for medium in MEDIA}

    def apply(self, events):
        for event in events:
            if event[0] == "BlockStored":
                self.tiers[event[6]].update(event[1])
            elif event[0] == "BlockRemoved":
                self.tiers[event[2]].difference_update(event[1])
            else:
                for held in self.tiers.values():
                    held.clear()


class Subscriber:
    """SUB socket for the live stream, DEALER socket for replay requests.

    Applies batches strictly in sequence order. A batch whose number is not
    the next one (a late join, or loss under the high-water mark) triggers a
    replay request from the first missing number; replayed batches fill the
    gap. If the replay cannot (the publisher no longer keeps the batch, or
    dropped it at a full queue), the gap is recorded as unrecoverable.
    """

    def __init__(self, ctx, endpoint, replay_endpoint, topic=b"", rank=None, rcvhwm=None,
                 rcvbuf=None):
        self.topic = topic
        self.rank = rank
        self.sub = ctx.socket(zmq.SUB)
        # Retry a connection to an endpoint not bound yet every 5 ms (not 100).
        self.sub.setsockopt(zmq.RECONNECT_IVL, 5)
        if rcvhwm is not None:
            self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        if rcvbuf is not None:
            self.sub.setsockopt(zmq.RCVBUF, rcvbuf)
        self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(endpoint)
        self.replay = ctx.socket(zmq.DEALER)
        self.replay.setsockopt(zmq.RECONNECT_IVL, 5)
        self.replay.setsockopt(zmq.RCVHWM, 0)
        self.replay.connect(replay_endpoint)
        self.state = TierState()
        self.next_seq = 0  # the number of the next batch to apply
        self.seqs = []  # every number applied, in order
        self.gaps = 0
        self.replays = 0
        self.unrecoverable = []  # (first missing, first replayed) pairs
        self.last_ts = None
        self.clears = []  # numbers of the batches holding AllBlocksCleared
        self.live = 0  # batches applied from the live stream
        self.replayed = 0  # batches applied from replay answers

    def close(self):
        self.sub.close(linger=0)
        self.replay.close(linger=0)

    def _apply(self, seq, payload):
        ts, events = decode_payload(payload, self.rank)
        _require(self.last_ts is None or ts >= self.last_ts - 1.0, "ts goes back")
        _require(abs(ts - time.time()) < 3600, "ts is not seconds since the epoch")
        self.last_ts = ts
        if any(event[0] == "AllBlocksCleared" for event in events):
            self.clears.append(seq)
        self.state.apply(events)
        self.seqs.append(seq)
        self.next_seq = seq + 1

    def request_replay(self, start):
        """Asks for every kept batch from @start and applies what is new."""
        self.replays += 1
        self.replay.send_multipart([b"", start.to_bytes(8, "big")])
        first = None
        while True:
            if not self.replay.poll(30000):
                raise WireError("no answer from the replay socket")
            frames = self.replay.recv_multipart()
            _require(len(frames) == 3 and frames[0] == b"", "replay reply is not [empty, seq, payload]")
            _require(len(frames[1]) == 8, "replay seq is not 8 bytes")
            if frames[1] == END_SEQ:
                _require(frames[2] == b"", "end marker carries a payload")
                break
            seq = int.from_bytes(frames[1], "big")
            _require(seq >= start, "replay sent a batch before the start")
            if first is None:
                first = seq
            if seq < self.next_seq:
                continue  # already applied
            if seq != self.next_seq:
                self.unrecoverable.append((self.next_seq, seq))
            self._apply(seq, frames[2])
            self.replayed += 1
        return first

    def receive(self, frames):
        _require(len(frames) == 3, "a batch is not three frames")
        topic, seq_bytes, payload = frames
        _require(topic == self.topic, "topic %r" % topic)
        _require(len(seq_bytes) == 8, "seq is not 8 bytes")
        seq = int.from_bytes(seq_bytes, "big")
        if seq < self.next_seq:
            return  # replay already delivered it
        if seq > self.next_seq:
            self.gaps += 1
            self.request_replay(self.next_seq)
            if seq < self.next_seq:
                return
            if seq > self.next_seq:  # the replay could not fill the gap
                self.unrecoverable.append((self.next_seq, seq))
        self._apply(seq, payload)
        self.live += 1

    def drain(self, timeout_ms=0):
        """Receives every live batch waiting (waiting up to @timeout_ms for the first)."""
        while self.sub.poll(timeout_ms):
            self.receive(self.sub.recv_multipart())
            timeout_ms = 0

    def catch_up(self, next_seq):
        """After the publisher reports @next_seq: fetch a missing tail by replay."""
        self.drain(0)
        if self.next_seq < next_seq:
            self.gaps += 1
            self.request_replay(self.next_seq)
        if self.next_seq < next_seq:
            self.unrecoverable.append((self.next_seq, next_seq))
