"""`./dev bench`: end-to-end ingest figures on this machine, against the real stack.

    python -m bench [--readings 200000] [--runs 3] [--rss-readings 1000000] [--baseline] [--wire 1|2|both]

For each run: a fresh database, `rimba ingest` as its own process, the simulator's
traffic (batches of `--batch` readings, 10 by default, with 4 metrics) published as one burst; the clock
runs from the first publish until the last reading is queryable. With `--wire both`
(the default) each run is done twice, with the same readings as contract v1 and as v2
batches, taking turns. Reports the median and every run, the ingest's peak RSS (VmHWM),
and writes bench/results/ingest.json and a plot of stored readings over time
(bench/results/ingest.png; `ingest-batchN` for other batch sizes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest_burst import Burst, naive_baseline
from rimba.dev.stack import Stack, free_port

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("--readings", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rss-readings", type=int, default=1_000_000, help="the burst for the memory figure (0: skip)")
    p.add_argument("--baseline", action="store_true", help="also time paho + one HTTP write per message")
    p.add_argument("--outage", action="store_true", help="also: InfluxDB down during a burst, spool bounded")
    p.add_argument("--wire", choices=("1", "2", "both"), default="both", help="the contract version of the batches")
    p.add_argument("--batch", type=int, default=10, help="readings a batch (a node's hourly send is 6; after an "
                   "outage it sends full batches: v2 holds 200, v1's 16 KiB about 130 of these)")
    args = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rimba-bench-") as tmp:
        stack = Stack(tmp, free_port(), free_port())
        stack.up()
        try:
            report = run(stack, Path(tmp), args)
        finally:
            stack.down()
    name = _name(args.batch)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"\nwritten: {RESULTS / (name + '.json')}, {RESULTS / (name + '.png')}")
    return 0


def run(stack: Stack, tmp: Path, args) -> dict:
    report: dict = {"machine": _machine(), "readings": args.readings, "runs": []}
    wires = (1, 2) if args.wire == "both" else (int(args.wire),)
    report["batch"] = args.batch
    bursts = {w: Burst(stack, tmp, readings=args.readings, wire=w, batch=args.batch) for w in wires}
    for w, b in bursts.items():
        print(f"v{w}: {args.readings:,} readings in {b.messages:,} messages, {b.bytes / args.readings:.1f} bytes of "
              f"payload per reading", flush=True)
    burst = bursts[wires[0]]
    curves = []
    for i in range(args.runs):
        for w, b in bursts.items():
            r = b.run(f"r{i}v{w}")
            report["runs"].append({"wire": w, **{k: v for k, v in r.items() if k != "curve"}})
            if w == wires[0]:
                curves.append(r["curve"])
            print(f"run {i + 1}/{args.runs}, v{w}: {r['per_s']:,.0f} readings/s end to end "
                  f"({r['seconds']:.2f} s), ingest CPU {r['cpu_s']:.2f} s, peak RSS {r['rss_mb']:.0f} MB, "
                  f"stored {r['stored']:,}; published in {r['published_s']:.2f} s, broker acked at "
                  f"{r['broker_acked_s']:.2f} s; CPU beside it: " +
                  ", ".join(f"{k} {v:.2f} s" for k, v in r["cpu_others_s"].items()), flush=True)
    for w in wires:
        runs = [r for r in report["runs"] if r["wire"] == w]
        report[f"v{w}"] = {"median_per_s": statistics.median(r["per_s"] for r in runs),
                           "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
                           "median_rss_mb": statistics.median(r["rss_mb"] for r in runs),
                           "median_cpu_others_s": {k: statistics.median(r["cpu_others_s"][k] for r in runs)
                                                   for k in runs[0]["cpu_others_s"]},
                           "bytes_per_reading": bursts[w].bytes / args.readings,
                           "all_stored": all(r["stored"] == r["readings"] for r in runs)}
    first = report[f"v{wires[0]}"]
    report["median_per_s"] = first["median_per_s"]
    report["median_rss_mb"] = first["median_rss_mb"]
    report["median_cpu_s"] = first["median_cpu_s"]
    for w in wires:
        m = report[f"v{w}"]
        print(f"median v{w}: {m['median_per_s']:,.0f} readings/s; ingest CPU {m['median_cpu_s']:.2f} s "
              f"({args.readings / m['median_cpu_s']:,.0f} readings per CPU second); peak RSS {m['median_rss_mb']:.0f} MB")
    if len(wires) == 2:
        report["v2_over_v1"] = report["v2"]["median_per_s"] / report["v1"]["median_per_s"]
        report["v2_over_v1_cpu"] = report["v1"]["median_cpu_s"] / report["v2"]["median_cpu_s"]
        print(f"v2 / v1: {report['v2_over_v1']:.2f}x readings/s, {report['v2_over_v1_cpu']:.2f}x readings per CPU second")
    if args.baseline:
        base = naive_baseline(stack, tmp, burst)
        report["baseline_per_s"] = base
        report["ratio_vs_baseline"] = report["median_per_s"] / base
        print(f"baseline (paho + one HTTP write per message): {base:,.0f} readings/s; "
              f"ratio {report['ratio_vs_baseline']:.1f}x")
    if args.rss_readings:
        big = Burst(stack, tmp, readings=args.rss_readings)
        print(f"memory: a burst of {args.rss_readings:,} readings ...", flush=True)
        r = big.run("rss")
        report["rss_burst"] = {k: v for k, v in r.items() if k != "curve"}
        print(f"  {r['per_s']:,.0f} readings/s, ingest peak RSS {r['rss_mb']:.0f} MB, stored {r['stored']:,}")
    if args.outage:
        r = burst.run("outage", outage=True, spool_mb=8)
        report["outage"] = {k: v for k, v in r.items() if k != "curve"}
        print(f"outage: spool peak {r['spool_peak_mb']:.1f} MB of 8 MB allowed; stored {r['stored']:,} "
              f"of {burst.expected:,}")
    _plot(curves, report)
    return report


def _machine() -> dict:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M")}


def _name(batch: int) -> str:
    """The results' file name: bench/results/ingest for the default batches, ingest-batchN for others."""
    return "ingest" if batch == 10 else f"ingest-batch{batch}"


def _plot(curves, report) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, curve in enumerate(curves):
        ax.plot([c[0] for c in curve], [c[1] / 1000 for c in curve], label=f"run {i + 1}")
    ax.set_xlabel("seconds since the first publish")
    ax.set_ylabel("readings queryable in InfluxDB (thousands)")
    ax.set_title(f"rimba ingest, burst of {report['readings']:,} in batches of {report['batch']}: "
                 f"median {report['median_per_s']:,.0f}/s")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{_name(report['batch'])}.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
