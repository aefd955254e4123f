#!/usr/bin/env python3
"""Writes a seeded Mooncake-format trace (JSON Lines, prefix-chained hash_ids)
for the replay benchmarks: multi-turn conversations on shared system prompts,
with a working set far larger than the G1 the benchmark replays it through.

    bench/gen_trace.py [--requests N] [--seed S] OUT.jsonl

Each request is one turn of a conversation: its system prompt's blocks, the
conversation's history so far, and the new input blocks (which join the
history, with the turn's output, for the next turn). Conversations are
picked with a Zipf-like skew among the live ones, new ones start all the
time and old ones end, so blocks are reused at every distance. Equal ids
mean equal prefixes, as in Mooncake traces. The same seed gives the same
bytes. Prints the request, block and distinct-id counts on stderr.
"""
import argparse
import json
import random
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("out")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    next_id = [0]

    def fresh(n):
        ids = list(range(next_id[0], next_id[0] + n))
        next_id[0] += n
        return ids

    prompts = [fresh(rng.randint(2, 24)) for _ in range(64)]
    live = []  # conversations: [prompt blocks + history blocks]
    blocks = 0
    with open(args.out, "w") as out:
        for r in range(args.requests):
            if not live or rng.random() < 0.25:
                prompt = prompts[min(int(rng.paretovariate(1.2)) - 1, len(prompts) - 1)]
                live.append(list(prompt))
            if len(live) > 20000:
                live.pop(rng.randrange(len(live) // 2))  # an old conversation ends
            # Recent conversations are the likeliest to continue.
            pick = len(live) - 1 - min(int(rng.expovariate(1 / 1500.0)), len(live) - 1)
            history = live[pick]
            turn = fresh(rng.randint(1, 12))
            hash_ids = history + turn
            if len(hash_ids) > 400:  # a conversation past its context starts over
                live.pop(pick)
                hash_ids = hash_ids[:400]
            else:
                history.extend(turn + fresh(rng.randint(0, 4)))
            blocks += len(hash_ids)
            out.write(json.dumps({"timestamp": r * 10, "input_length": 512 * len(hash_ids),
                                  "output_length": 256, "hash_ids": hash_ids}) + "\n")
    print(f"gen_trace: {args.requests} requests, {blocks} blocks, {next_id[0]} distinct ids",
          file=sys.stderr)


if __name__ == "__main__":
    main()
