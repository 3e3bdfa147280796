"""Messages a hostile node could send, by the million, through the ingest's pipeline and its real
SQLite store: `python -m bench.fuzz [--messages 1000000] [--seed N]`.

The suite's Hypothesis tests check the same properties on a fixed set of examples; this run
explores: random bytes, valid v1 and v2 batches and statuses with one field replaced by a random
JSON value (lone surrogates, huge integers, deep nesting, wrong types), truncated JSON, on any
of our topics. Each message is committed as the ingest commits it (`ingest.service.transact`, 500
a transaction, a fresh store every 50,000). Counted: messages, those whose handling raised
(`internal`: must be 0), and the refusal codes. Writes bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from ingest.service import transact
from ingest.store import Store
from rimba.contract import CODES
from rimba.dev.harness import VECTOR_FLEET, VECTORS, payload_of

RESULTS = Path(__file__).resolve().parent / "results"
RECEIVED = VECTORS["received"]
UP1, UP2 = "rimba/v1/smp29/smp29-03/up", "rimba/v2/smp29/smp29-03/up"
STATUS1, STATUS2 = "rimba/v1/smp29/smp29-03/status", "rimba/v2/smp29/smp29-03/status"
TOPICS = [UP1, UP2, STATUS1, STATUS2, "rimba/v1/smp29/smp29-99/up", "rimba/v1/bansir-laut/smp29-03/up",
          "rimba/v2/smp29/smp29-03/ack", "rimba/v1/smp29/UP/up", "rimba/v3/smp29/smp29-03/up", "x", ""]
V2_BODY = {"v": 2, "node": "smp29-03", "epoch": 2841937411, "boot": 17, "now": 1764301800, "tq": "ntp",
           "seq": 1041, "t": 1764300000, "dt": 600, "m": ["air_temp_c", "air_rh_pct", "soil_vwc_pct"],
           "x": [[2831, 842, 315], [2840, 839, None], [2852, 838, 316]], "lost": [[1001, 1012]]}
STRINGS = ["\ud800", "\udfff", "a\ud800b", "\x00", "\u2028", "rimba/v1/#", "NaN", "", "é" * 40, "𝔘"]


class Mutator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        v1 = [v["body"] for v in VECTORS["up_valid"] if "body" in v]
        st = [v["body"] for v in VECTORS["status_valid"]]
        self.bases = [(UP1, b) for b in v1] + [(STATUS1, b) for b in st] + [(UP2, V2_BODY)] + [
            (STATUS2, dict(b, v=2)) for b in st]
        self.raw = [payload_of(v) for v in VECTORS["invalid"]]

    def value(self, depth: int = 0):
        r = self.rng.random()
        if depth > 3 or r < 0.55:
            return self.rng.choice([None, True, False, 0, -1, 1, 2**31, 2**32, 2**53, 2**64, -(2**63), 10**300,
                                    0.5, -0.0, 1e308, 28.31, self.rng.randint(-10**6, 10**6),
                                    self.rng.choice(STRINGS), "x" * self.rng.randint(0, 50)])
        if r < 0.75:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        if r < 0.8:
            return json.loads("[" * 60 + "]" * 60)
        return {self.rng.choice(STRINGS + ["seq", "t", "v", "air_temp_c"]): self.value(depth + 1)
                for _ in range(self.rng.randint(0, 3))}

    def mutate(self, body):
        target = body
        for _ in range(self.rng.randint(0, 3)):
            if isinstance(target, dict) and target:
                nxt = target[self.rng.choice(list(target))]
            elif isinstance(target, list) and target:
                nxt = self.rng.choice(target)
            else:
                break
            if not isinstance(nxt, (dict, list)):
                break
            target = nxt
        if isinstance(target, dict):
            key = self.rng.choice(list(target)) if target and self.rng.random() < 0.8 else self.rng.choice(STRINGS)
            target[key] = self.value()
        elif isinstance(target, list) and target:
            target[self.rng.randrange(len(target))] = self.value()

    def message(self) -> tuple:
        r = self.rng.random()
        if r < 0.15:
            payload = self.rng.randbytes(self.rng.randint(0, 300))
            return self.rng.choice(TOPICS), payload
        if r < 0.25:
            base = self.rng.choice(self.raw)
            return self.rng.choice(TOPICS), base[:self.rng.randint(0, len(base))]
        topic, base = self.rng.choice(self.bases)
        body = copy.deepcopy(base)
        for _ in range(self.rng.randint(1, 2)):
            self.mutate(body)
        if self.rng.random() < 0.1:
            topic = self.rng.choice(TOPICS)
        try:
            payload = json.dumps(body, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")
        except (ValueError, RecursionError):
            payload = b"[]"
        return topic, payload


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.fuzz")
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=int(time.time()))
    args = p.parse_args(argv)
    gen = Mutator(args.seed)
    codes: collections.Counter = collections.Counter()
    internal = unknown = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rimba-fuzz-") as tmp:
        store = None
        for done in range(0, args.messages, 500):
            if done % 50_000 == 0:
                if store:
                    store.close()
                store = Store(Path(tmp) / f"fuzz-{done}.sqlite3")
            batch = []
            for i in range(min(500, args.messages - done)):
                topic, payload = gen.message()
                # a minute apart, so that the per-node budgets keep every dead letter and the store takes them all
                batch.append((topic, payload, RECEIVED + 60 * (done + i), done + i, 1, gen.rng.random() < 0.1))
            out, _tx, _kept = transact(store, VECTOR_FLEET, batch, "fuzz")
            internal += out.internal
            for d in out.dead:
                codes[d.code] += 1
                unknown += d.code not in CODES
            if (done // 500) % 200 == 0:
                rate = (done + len(batch)) / (time.perf_counter() - start)
                print(f"\r{done + len(batch):>10,} messages, {rate:,.0f}/s, internal errors {internal}", end="",
                      flush=True)
        store.close()
    seconds = time.perf_counter() - start
    print(f"\n{args.messages:,} messages in {seconds:.0f} s ({args.messages / seconds:,.0f}/s), seed {args.seed}: "
          f"internal errors {internal}, codes outside the contract {unknown}")
    print("refusal codes: " + ", ".join(f"{c} {n:,}" for c, n in codes.most_common()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(
        {"messages": args.messages, "seed": args.seed, "seconds": round(seconds, 1), "internal": internal,
         "unknown_codes": unknown, "codes": dict(codes), "when": time.strftime("%Y-%m-%d %H:%M")},
        indent=1, sort_keys=True) + "\n")
    return 1 if internal or unknown else 0


if __name__ == "__main__":
    sys.exit(main())
