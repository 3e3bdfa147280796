"""`python -m bench.analytics`: the analytics over a fleet, on one core.

1,000 nodes x 7 days of 1-minute data x 4 metrics (40 million values): quality
checks, time-of-day anomaly scores and indices, timed with process CPU time
(median of --runs). The speed-up against the plain per-point loop the tests check the quality
checks with (`bench/naive_quality.py`) is measured on one slice (--loop-nodes x 1 day) for the same
work: the loop and the vectorized quality checks, both on that slice, nothing extrapolated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from analytics import anomaly, indices, quality
from rimba import wib

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("air_temp_c", "air_rh_pct", "pm25_ugm3", "water_level_cm")
MIDNIGHT_WIB = 1764262800


def fleet(nodes: int, days: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    t = MIDNIGHT_WIB + np.arange(days * 1440) * 60
    hour = wib.hour_of_day(t)
    x = np.empty((nodes, len(t), 4))
    x[:, :, 0] = 27 + 4 * np.sin(2 * np.pi * (hour - 8) / 24) + rng.normal(0, 0.2, (nodes, len(t)))
    x[:, :, 1] = 80 - 12 * np.sin(2 * np.pi * (hour - 8) / 24) + rng.normal(0, 1, (nodes, len(t)))
    x[:, :, 2] = 18 + rng.normal(0, 2, (nodes, len(t)))
    x[:, :, 3] = 100 + 60 * np.cos(2 * np.pi * t / (23.934 * 3600)) + rng.normal(0, 2, (nodes, len(t)))
    x[rng.random(x.shape) < 0.01] = np.nan
    sites = [f"s{i // 30}" for i in range(nodes)]
    return t, x, sites


def vectorized(t, x, sites) -> dict:
    """The three parts, each timed in process CPU seconds."""
    lim = quality.Limits(flat_n=60, noise_window=30, drift_window=1440)
    parts = {}
    c0 = time.process_time()
    quality.check(x, METRICS, sites, lim)
    parts["quality"] = time.process_time() - c0
    c0 = time.process_time()
    anomaly.score_cube(x, t, METRICS, 60)
    parts["anomaly"] = time.process_time() - c0
    c0 = time.process_time()
    indices.heat_index_c(x[:, :, 0], x[:, :, 1])
    indices.dew_point_c(x[:, :, 0], x[:, :, 1])
    indices.ispu(x[:, :, 2], "pm25")
    parts["indices"] = time.process_time() - c0
    return parts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.analytics")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--loop-nodes", type=int, default=3, help="nodes x 1 day timed with the plain loop")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.naive_quality import naive_check

    t, x, sites = fleet(args.nodes, args.days)
    values = x.size
    print(f"{args.nodes} nodes x {args.days} days x 1-min x 4 metrics = {values:,} values", flush=True)
    times, parts = [], []
    for i in range(args.runs):
        parts.append(vectorized(t, x, sites))
        times.append(sum(parts[-1].values()))
        print(f"run {i + 1}/{args.runs}: {times[-1]:.2f} s CPU (" +
              ", ".join(f"{k} {v:.2f}" for k, v in parts[-1].items()) + ")", flush=True)
    fast = statistics.median(times)
    part_medians = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    ts, xs, ss = fleet(args.loop_nodes, 1, seed=2)
    lim = quality.Limits(flat_n=60, noise_window=30, drift_window=1440)
    c0 = time.process_time()
    naive_check(xs.tolist(), list(METRICS), ss, lim)
    loop_per_value = (time.process_time() - c0) / xs.size
    c0 = time.process_time()
    quality.check(xs, METRICS, ss, lim)
    vec_small = (time.process_time() - c0) / xs.size
    report = {"values": values, "cpu_s_median": fast, "runs": times, "part_medians_s": part_medians,
              "loop_s_per_million_values": loop_per_value * 1e6,
              "quality_vectorized_s_per_million_values_same_slice": vec_small * 1e6,
              "quality_speedup_vs_loop_same_slice": loop_per_value / vec_small}
    print(f"median {fast:.2f} s CPU for quality + anomaly scores + indices over {values:,} values (" +
          ", ".join(f"{k} {v:.2f}" for k, v in part_medians.items()) + ")")
    print(f"quality checks on the same slice ({xs.size:,} values): plain loop {loop_per_value * 1e6:.1f} s per "
          f"million values, vectorized {vec_small * 1e6:.3f}: {report['quality_speedup_vs_loop_same_slice']:,.0f}x")
    out = ROOT / "bench" / "results" / "analytics.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
