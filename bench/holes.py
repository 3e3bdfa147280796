"""The ingest's cost per message as one node's seqs fragment: `python -m bench.holes`.

A hostile node sends batches of odd seqs only, leaving a hole after every reading, until it has
tried to open 10, 1,000 or 30,000 holes (the contract stops it at 1,000: `too-fragmented`). Then,
in the real SQLite store (fsync'd commits), we time one commit of a message from that node and one
of a well-behaved node: the median of 200 each. Writes bench/results/holes.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ingest.service import transact
from ingest.store import Store
from rimba.fleet import parse_fleet

RESULTS = Path(__file__).resolve().parent / "results"
T0 = 1_780_000_000
FLEET = parse_fleet({"sites": {"smp29": {"name": "SMP 29", "lat": -0.03, "lon": 109.34}},
                     "nodes": {n: {"site": "smp29", "profile": "forest", "cadence_s": 600}
                               for n in ("hostile-01", "good-01")}})


def up(node: str, seqs, epoch: int = 1) -> tuple:
    body = {"v": 1, "node": node, "epoch": epoch, "now": T0 + 10**6, "tq": "ntp",
            "r": [{"seq": s, "t": T0 + s, "air_temp_c": 27.5} for s in seqs]}
    return f"rimba/v1/smp29/{node}/up", json.dumps(body, separators=(",", ":")).encode()


def timed(store, topic, payload, received) -> float:
    start = time.perf_counter()
    transact(store, FLEET, [(topic, payload, received, 0, 1, False)], "bench", clock=lambda: received)
    return time.perf_counter() - start


def measure(holes: int, tmp: Path, samples: int = 200) -> dict:
    store = Store(tmp / f"holes-{holes}.sqlite3")
    received = float(T0 + 10**6)
    odd = list(range(1, 2 * holes + 1, 2))
    for i in range(0, len(odd), 200):  # 200 odd seqs a batch: up to 200 new holes each
        topic, payload = up("hostile-01", odd[i:i + 200])
        transact(store, FLEET, [(topic, payload, received, 0, 1, False)], "bench", clock=lambda: received)
    em = store._load_epoch("hostile-01", 1)
    top = 2 * holes + 1
    own, other = [], []
    for k in range(samples):
        own.append(timed(store, *up("hostile-01", [top + 2 * k + 1]), received))
        other.append(timed(store, *up("good-01", [k + 1]), received))
    store.close()
    return {"holes_tried": holes, "holes_open": em.done.holes(), "runs": len(em.done),
            "own_ms": 1000 * statistics.median(own), "other_ms": 1000 * statistics.median(other)}


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rimba-holes-") as tmp:
        for holes in (10, 1_000, 30_000):
            r = measure(holes, Path(tmp))
            rows.append(r)
            print(f"{r['holes_tried']:>6,} holes tried, {r['holes_open']:,} open: a commit of the node's own message "
                  f"{r['own_ms']:.2f} ms, of another node's {r['other_ms']:.2f} ms (medians of 200)", flush=True)
    base = rows[0]
    for r in rows:
        r["own_ratio"] = r["own_ms"] / base["own_ms"]
        r["other_ratio"] = r["other_ms"] / base["other_ms"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "holes.json").write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows},
                                                   indent=1, sort_keys=True) + "\n")
    print("ratios to 10 holes: " + ", ".join(f"{r['holes_tried']:,}: own {r['own_ratio']:.2f}x, "
                                             f"other {r['other_ratio']:.2f}x" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
