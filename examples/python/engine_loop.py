#!/usr/bin/env python3
"""A miniature inference engine whose KV pool is a torch tensor that kvbm manages.

The engine owns its KV memory, one tensor shaped (blocks, layers, K/V,
tokens, head dim) as engines allocate it; kvbm's tiered cache binds G1 to
that tensor (no copy), adds a pinned host tier G2, and decides which block
holds which prefix. Each step admits a few requests, many sharing a system
prompt or continuing an earlier conversation, and for each one:

1. hashes its tokens into block hashes (kvbm.hash_tokens),
2. acquires its blocks: G1 hits, G2 hits onboarded into G1, fresh blocks
   for the rest (kvbm.Cache.acquire); blocks evicted from G1 are offloaded
   to G2 on the way,
3. waits for the copies (the ready fence, then Cache.check),
4. checks that every reused block, onboarded ones included, holds exactly
   the bytes computed for its hash,
5. "computes" the missing blocks: writes into the tensor a pattern that
   depends only on the block's sequence hash, as a real engine's KV
   depends only on the prefix,
6. registers them and releases the request (tail first).

It prints per step the hits, onboards and offloads, and exits 1 if any
block's bytes were wrong or nothing was ever onboarded (then it showed
nothing). CPU backend without a GPU or with a CPU-only torch (Debian's);
with both (backend "auto") the tensor is on the GPU and the engine's torch
stream is given to kvbm, which orders its copies with it.

    PYTHONPATH=build/python python3 examples/python/engine_loop.py --steps 40
"""
import argparse
import sys

import numpy as np
import torch

import kvbm

LAYERS, HEAD_DIM, BLOCK_TOKENS = 4, 64, 16
DTYPE = torch.float16
ELEMS_PER_BLOCK = LAYERS * 2 * BLOCK_TOKENS * HEAD_DIM


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--requests-per-step", type=int, default=3)
    p.add_argument("--g1-blocks", type=int, default=48, help="blocks in the engine's tensor (G1)")
    p.add_argument("--g2-blocks", type=int, default=192, help="pinned host tier (G2)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.steps < 1 or a.requests_per_step < 1 or a.g2_blocks < 1:
        p.error("--steps, --requests-per-step and --g2-blocks must be at least 1")
    if a.g1_blocks < 12 * a.requests_per_step:
        p.error("--g1-blocks must hold every request of a step (12 blocks each at most)")
    return a


def kv_pattern(hashes, device):
    """The KV bytes the "model" computes for blocks with these sequence hashes:
    a (len(hashes), ELEMS_PER_BLOCK) int16 tensor, a function of the hash only."""
    h = np.asarray(hashes, np.uint64)[:, None]
    pos = np.arange(ELEMS_PER_BLOCK, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        mixed = (h * np.uint64(0x9E3779B97F4A7C15)) ^ ((pos + h) * np.uint64(0xBF58476D1CE4E5B9))
    values = (mixed >> np.uint64(48)).astype(np.uint16).view(np.int16)
    return torch.from_numpy(values).to(device)


def engine_tensor(num_blocks, layout, device):
    """The engine's KV tensor, aligned as the layout asks (CUDA's allocator
    aligns to 512 bytes; the CPU one only to 64, so over-allocate there)."""
    shape = (num_blocks, LAYERS, 2, BLOCK_TOKENS, HEAD_DIM)
    if device.type == "cuda":
        return torch.zeros(shape, dtype=DTYPE, device=device)
    align = layout.config["alignment"]
    raw = torch.zeros(layout.total_bytes + align, dtype=torch.uint8)
    skip = -raw.data_ptr() % align
    return raw[skip: skip + layout.total_bytes].view(DTYPE).view(shape)


class Workload:
    """Requests as engines see them: a few long system prompts shared by many
    conversations, and conversations coming back for another turn."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.prompts = [self.tokens(4 * BLOCK_TOKENS) for _ in range(5)]
        self.conversations = []

    def tokens(self, n):
        return self.rng.integers(0, 32000, n, dtype=np.uint32)

    def next(self):
        rng = self.rng
        if self.conversations and rng.random() < 0.5:
            i = int(rng.integers(len(self.conversations)))
            turn = np.concatenate([self.conversations[i], self.tokens(int(rng.integers(1, 3)) * BLOCK_TOKENS)])
            if len(turn) > 12 * BLOCK_TOKENS:  # too long: the conversation ends, a new one starts
                turn = np.concatenate([self.prompts[int(rng.integers(len(self.prompts)))], turn[-BLOCK_TOKENS:]])
            self.conversations[i] = turn
            return turn
        prompt = self.prompts[int(rng.integers(len(self.prompts)))]
        turn = np.concatenate([prompt, self.tokens(int(rng.integers(1, 4)) * BLOCK_TOKENS)])
        self.conversations.append(turn)
        return turn


def serve_step(cache, backend, kv16, workload, n_requests, device):
    """One step; returns (blocks, G1 hits, onboarded, computed, wrong blocks)."""
    held = []  # (ids, hashes) of the step's requests, released at the end
    totals = np.zeros(5, np.int64)
    for _ in range(n_requests):
        hashes = kvbm.hash_tokens(workload.next(), BLOCK_TOKENS)
        with backend.fence() as ready:
            ids, r = cache.acquire(hashes, ready=ready)
            ready.wait()  # onboards landed, offloads of reused slabs read
        served = r.g1 + r.onboarded
        cache.check(ids[:served])  # CopyFailedError if a load failed
        index = torch.from_numpy(ids.astype(np.int64)).to(device)
        expected = kv_pattern(hashes[:served], device)
        wrong = int((kv16[index[:served]] != expected).any(dim=1).sum()) if served else 0
        # The engine's forward pass: only the blocks nobody had.
        kv16[index[served:]] = kv_pattern(hashes[served:], device)
        if device.type == "cuda":
            torch.cuda.current_stream().synchronize()
        # Another request of this step may have registered the same prefix
        # meanwhile: register returns its blocks instead (ours go back free).
        ids[served:] = cache.register(ids[served:], hashes[served:])
        held.append(ids)
        totals += (len(hashes), r.g1, r.onboarded, len(hashes) - served, wrong)
    for ids in held:
        cache.release(ids[::-1])  # tail first: the prefix stays the most recent
    return totals


def main():
    args = parse_args()
    kind = args.backend
    if not torch.cuda.is_available():
        if kind == "cuda":
            print("engine_loop: --backend cuda needs a torch built with CUDA (this one is not)", file=sys.stderr)
            return 2
        kind = "cpu"  # the engine's tensor can only be CPU memory, so G1 must be too
    with kvbm.Backend(kind) as backend:
        device = torch.device("cuda" if backend.kind == "cuda" else "cpu")
        geometry = dict(num_blocks=args.g1_blocks, num_layers=LAYERS, tokens_per_block=BLOCK_TOKENS,
                        inner_dim=HEAD_DIM, elem_size=2)
        with kvbm.Layout(**geometry) as layout:
            kv = engine_tensor(args.g1_blocks, layout, device)
        kv16 = kv.view(torch.int16).view(args.g1_blocks, ELEMS_PER_BLOCK)
        engine_stream = backend.wrap_stream(torch.cuda.current_stream()) if device.type == "cuda" else None
        with kvbm.Cache(backend, geometry, g2_blocks=args.g2_blocks, g1_memory=kv,
                        engine_stream=engine_stream) as cache:
            assert cache.pool("g1").ptr == kv.data_ptr()  # kvbm manages the engine's own tensor
            print("kvbm %s on the %s backend: G1 = the engine's %s tensor %s (%d blocks), G2 %d blocks"
                  % (kvbm.__version__, backend.name, device.type, tuple(kv.shape), args.g1_blocks, args.g2_blocks))
            workload = Workload(args.seed)
            grand = np.zeros(5, np.int64)
            before = cache.metrics()
            for step in range(args.steps):
                blocks, hits, onboarded, computed, wrong = serve_step(
                    cache, backend, kv16, workload, args.requests_per_step, device)
                cache.progress()  # offloads whose copies completed join G2
                now = cache.metrics()
                print("step %3d: %3d blocks, %3d G1 hits, %3d onboarded from G2, %3d computed, "
                      "%3d offloaded to G2, %d wrong"
                      % (step, blocks, hits, onboarded, computed, now["offloads"] - before["offloads"], wrong))
                before = now
                grand += (blocks, hits, onboarded, computed, wrong)
            cache.sync()
            m = cache.metrics()
        if engine_stream is not None:
            engine_stream.close()
    blocks, hits, onboarded, computed, wrong = (int(x) for x in grand)
    print("total: %d blocks, %d G1 hits, %d onboarded (every one checked byte for byte), %d computed; "
          "offloads %d, onboards %d, failed copies %d, wrong blocks %d"
          % (blocks, hits, onboarded, computed, m["offloads"], m["onboards"], m["failed_copies"], wrong))
    if wrong or m["failed_copies"]:
        print("engine_loop: FAILED: a reused block did not hold the bytes computed for its hash", file=sys.stderr)
        return 1
    if not onboarded:
        print("engine_loop: FAILED: nothing was onboarded from G2; the run showed nothing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
