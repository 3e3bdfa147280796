"""`python -m bench.analytics_scale`: the incremental analytics against a real InfluxDB, at fleet sizes.

For each size: a private `influxd` (the stack's, on a free port) gets 8 days of readings of N simulated
nodes (sites of four forest nodes and an air node, 10-minute sampling; written as the ingest writes
them, straight to InfluxDB, to keep the run short), then:

- the cold start: one `Incremental.run` that reads the window and the fire codes' 30 days and builds
  the state, wall and CPU seconds;
- the steady state at a 60-second cadence with live traffic (then one more run that also makes the hourly
  audit of the window, reported apart): each node sends its last hour of readings
  once an hour at its own minute (as the firmware does), so each simulated minute N/60 nodes send; the
  minute's batches are written, then a run. The clock is simulated (runs follow one another without
  waiting the minute), so freshness is the cadence plus the run's wall time: a batch written just after
  a run waits up to 60 s for the next one, whose points are written when it ends. Reported per run:
  analytics CPU (process time), InfluxDB CPU (utime + stime of influxd from /proc/<pid>/stat, during
  the run), points written, readings that arrived.

Then the state's snapshot (what `analyze_snapshot_s` saves): its size on disk and the CPU and wall time of
one save; a restart (the state loaded, then saved); the process's peak RSS; and the share of a core with
the snapshot and the audit amortized over the runs between them (the mean run, not the median). With `--profile DIR`, the steady-state runs are profiled (cProfile; its overhead inflates the
CPU figures of that run, so profile and measure in separate runs) into DIR/steady-<nodes>.prof.

Medians over `--runs` runs, one benchmark run; results in bench/results/analytics_scale.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import gzip
import http.client
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

from analytics import incremental
from rimba import settings as settings_mod
from rimba.fleet import load_fleet
from rimba.influx import Influx
from rimba.stack import Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
STEP = 600
END = 1764928800  # 2025-12-05 17:00 WIB: a fixed time
TICKS = os.sysconf("SC_CLK_TCK")


def fleet_file(path: Path, nodes: int) -> list:
    lines = []
    names = []
    for s in range((nodes + 4) // 5):
        lines.append(f'[sites.s{s:04d}]\nname = "site {s}"\nlat = -0.03\nlon = 109.34\n')
    for k in range(nodes):
        site = f"s{k // 5:04d}"
        profile = "air" if k % 5 == 4 else "forest"
        names.append((f"n{k:05d}", site, profile))
        lines.append(f'[nodes.n{k:05d}]\nsite = "{site}"\nprofile = "{profile}"\ncadence_s = 600\n')
    path.write_text("\n".join(lines))
    return names


def lines_for(nodes: list, t0: int, t1: int, seed: int) -> list:
    """Line protocol for the readings of `nodes` at the 10-minute steps in [t0, t1), seeded by time."""
    steps = np.arange(t0 - t0 % STEP, t1, STEP)
    steps = steps[steps >= t0]
    out = []
    for t in steps:
        rng = np.random.default_rng([seed, int(t)])
        hour = ((t + 7 * 3600) % 86400) / 3600
        temp = 27.0 + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.2, len(nodes))
        rh = np.clip(80 - 12 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1.5, len(nodes)), 30, 100)
        rain = np.where(rng.random(len(nodes)) < 0.02, rng.gamma(1.0, 2.0, len(nodes)), 0.0)
        other = rng.normal(0, 1, len(nodes))
        seq = int((t - END) // STEP) + 10_000
        temp, rh, rain, other = (a.tolist() for a in (temp, rh, rain, other))  # Python floats: repr is the number
        for k, (node, site, profile) in enumerate(nodes):
            f = f"air_temp_c={temp[k]!r},air_rh_pct={rh[k]!r},batt_v={4.0 + 0.01 * other[k]!r}"
            if profile == "forest":
                f += f",soil_vwc_pct={30 + 0.3 * other[k]!r},rain_mm={rain[k]!r}"
            else:
                f += f",pm25_ugm3={max(1.0, 20 + 2 * other[k])!r}"
            out.append(f"reading,node={node},site={site} {f},seq={seq}i,late=false {(int(t) + 30) * 1000}")
    return out


def write(influx: Influx, lines: list) -> None:
    for i in range(0, len(lines), 5000):
        influx.write(("\n".join(lines[i:i + 5000]) + "\n").encode())


def _body(job: tuple) -> bytes:
    """One gzipped write body: the readings of `nodes` over [t0, t1) (a worker process makes it)."""
    nodes, t0, t1, seed = job
    return gzip.compress(("\n".join(lines_for(nodes, t0, t1, seed)) + "\n").encode(), compresslevel=1)


def _post(url: str, db: str, body: bytes) -> None:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    try:
        conn.request("POST", f"/write?db={db}&precision=ms", body=body,
                     headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status not in (200, 204):
            raise RuntimeError(f"InfluxDB refused a history batch: {resp.status} {data[:200]!r}")
    finally:
        conn.close()


def populate(url: str, db: str, nodes: list, t0: int, t1: int, seed: int, batch: int = 100_000,
             workers: int = 2) -> int:
    """The history [t0, t1) of `nodes` into InfluxDB: line protocol made and gzipped by `workers` processes,
    in bodies of about `batch` readings (an hour of the whole fleet, or a day of a slice of it, as it fits),
    sent by as many threads (InfluxDB parses one body while the next is made). Returns the bodies sent."""
    per_step = len(nodes)
    steps = max(1, batch // max(1, per_step))
    width = max(1, batch // max(1, steps)) if steps == 1 else per_step
    jobs = [(nodes[k:k + width], a, min(t1, a + steps * STEP), seed)
            for a in range(t0, t1, steps * STEP) for k in range(0, len(nodes), width)]
    with multiprocessing.get_context("fork").Pool(workers) as pool, \
            concurrent.futures.ThreadPoolExecutor(workers) as senders:
        sent = [senders.submit(_post, url, db, body) for body in pool.imap(_body, jobs)]
        for f in sent:
            f.result()
    return len(jobs)


def influx_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def one_size(n: int, runs: int, tmp: Path, profile: Path | None = None) -> dict:
    stack = Stack(tmp / f"n{n}", free_port(), free_port(), database="bench")
    stack.start_influx()
    try:
        influx = Influx(stack.influx_url, "bench", timeout=60)
        nodes = fleet_file(tmp / f"fleet{n}.toml", n)
        phase = {node: 60 * (k * 37 % 60) for k, (node, _, _) in enumerate(nodes)}  # each node's send minute
        c0 = time.perf_counter()
        start = END - 8 * 86400
        for day in range(start, END, 86400):  # history up to each node's last send before END
            write(influx, lines_for(nodes, day, min(day + 86400, END - 3600), seed=n))
        last_sent = {node: END - 3600 for node, _, _ in nodes}  # the last hour is still in the nodes' buffers
        history_s = time.perf_counter() - c0
        s = settings_mod.build(overrides={"influx_url": stack.influx_url, "influx_db": "bench",
                                          "state_dir": str(tmp / f"state{n}"), "fleet": str(tmp / f"fleet{n}.toml")},
                               env={})
        fleet = load_fleet(s.fleet)
        pid = stack.influxd.pid()
        eng = incremental.Incremental(s, fleet, influx, progress=True)
        i0, c0, w0 = influx_cpu(pid), time.process_time(), time.perf_counter()
        cold = eng.run(END)
        cold_fig = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
                    "influx_cpu_s": influx_cpu(pid) - i0, "points": cold["lines"]}
        print(f"{n} nodes: cold start {cold_fig['wall_s']:.1f} s wall, {cold_fig['cpu_s']:.1f} s CPU, InfluxDB "
              f"{cold_fig['influx_cpu_s']:.1f} s CPU, {cold['lines']:,} points", flush=True)
        steady = []
        prof = cProfile.Profile() if profile else None
        for r in range(runs):
            now = END + 60 * (r + 1)
            sending = [nd for nd in nodes if now - 60 <= (now // 3600 * 3600 + phase[nd[0]]) < now
                       or now - 60 <= (now // 3600 * 3600 - 3600 + phase[nd[0]]) < now]
            live = []
            for nd in sending:  # the node's readings since its last send
                live += lines_for([nd], last_sent[nd[0]], now - 60, seed=n)
                last_sent[nd[0]] = now - 60
            write(influx, live)
            i0, c0, w0 = influx_cpu(pid), time.process_time(), time.perf_counter()
            if prof:
                prof.enable()
            out = eng.run(now)
            if prof:
                prof.disable()
            steady.append({"cpu_s": time.process_time() - c0, "influx_cpu_s": influx_cpu(pid) - i0,
                           "wall_s": time.perf_counter() - w0, "points": out["lines"], "readings": len(live),
                           "nodes_sending": len(sending)})
            print(f"  run {r + 1}: {steady[-1]['cpu_s']:.2f} s CPU, InfluxDB {steady[-1]['influx_cpu_s']:.2f} s, "
                  f"{steady[-1]['wall_s']:.2f} s wall, {out['lines']} points for {len(live)} readings "
                  f"from {len(sending)} nodes", flush=True)
        # the hourly audit (`analyze_audit_s`): one more run, with the minute's traffic, that audits the window
        now = END + 60 * (runs + 1)
        sending = [nd for nd in nodes if now - 60 <= (now // 3600 * 3600 + phase[nd[0]]) < now]
        live = []
        for nd in sending:
            live += lines_for([nd], last_sent[nd[0]], now - 60, seed=n)
            last_sent[nd[0]] = now - 60
        write(influx, live)
        eng.st.audited = 0
        i0, c0, w0 = influx_cpu(pid), time.process_time(), time.perf_counter()
        eng.run(now)
        audit = {"cpu_s": time.process_time() - c0, "influx_cpu_s": influx_cpu(pid) - i0,
                 "wall_s": time.perf_counter() - w0, "readings": len(live)}
        print(f"  a run with the audit: {audit['cpu_s']:.2f} s CPU, InfluxDB {audit['influx_cpu_s']:.2f} s, "
              f"{audit['wall_s']:.2f} s wall", flush=True)
        if prof:
            profile.mkdir(parents=True, exist_ok=True)
            prof.dump_stats(str(profile / f"steady-{n}.prof"))
        c0, w0 = time.process_time(), time.perf_counter()
        eng.store.save(eng.st)
        snap = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                "bytes": sum(f.stat().st_size for f in (tmp / f"state{n}").glob("analytics*"))}
        print(f"  snapshot: {snap['bytes'] / 1e6:.1f} MB on disk, saved in {snap['wall_s']:.2f} s wall, "
              f"{snap['cpu_s']:.2f} s CPU", flush=True)
        eng.close()
        c0, w0 = time.process_time(), time.perf_counter()
        incremental.Incremental(s, fleet, influx, progress=False).close()  # a restart: the state loaded (and saved)
        snap["restart_cpu_s"], snap["restart_wall_s"] = time.process_time() - c0, time.perf_counter() - w0
        print(f"  a restart (load and save): {snap['restart_wall_s']:.2f} s wall", flush=True)
        med = {k: statistics.median(x[k] for x in steady) for k in steady[0]}
        mean = {k: statistics.mean(x[k] for x in steady) for k in steady[0]}
        per_run = mean["cpu_s"] + mean["influx_cpu_s"]
        # amortized: a snapshot every analyze_snapshot_s, an audit every analyze_audit_s (60-second runs)
        extra = (snap["cpu_s"] * 60 / s.analyze_snapshot_s
                 + max(0.0, audit["cpu_s"] + audit["influx_cpu_s"] - per_run) * 60 / s.analyze_audit_s)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB, the process's peak so far
        return {"nodes": n, "history_write_s": history_s, "peak_rss_mb": rss, "cold": cold_fig, "steady_runs": steady,
                "steady_median": med, "steady_mean": mean, "snapshot": snap, "audit_run": audit,
                "freshness_max_s": 60 + max(x["wall_s"] for x in steady),
                "core_share_steady": (med["cpu_s"] + med["influx_cpu_s"]) / 60,
                "core_share_amortized": (per_run + extra) / 60}
    finally:
        stack.influxd.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.analytics_scale")
    p.add_argument("--nodes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--runs", type=int, default=5, help="steady-state runs per size")
    p.add_argument("--profile", type=Path, help="profile the steady-state runs into this folder (cProfile)")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="rimba-bench-scale-") as tmp:
        for n in args.nodes:
            results.append(one_size(n, args.runs, Path(tmp), args.profile))
    for r in results:
        m = r["steady_median"]
        print(f"{r['nodes']:>6} nodes | cold start {r['cold']['wall_s']:.0f} s | steady per run: analytics "
              f"{m['cpu_s']:.2f} s CPU, InfluxDB {m['influx_cpu_s']:.2f} s CPU ({100 * r['core_share_steady']:.1f} % "
              f"of a core at 60 s), {m['points']:.0f} points for {m['readings']:.0f} readings | freshness "
              f"<= {r['freshness_max_s']:.0f} s | with the snapshot and audit amortized "
              f"{100 * r['core_share_amortized']:.1f} % | snapshot {r['snapshot']['bytes'] / 1e6:.0f} MB, "
              f"{r['snapshot']['wall_s']:.1f} s | peak RSS {r['peak_rss_mb']:.0f} MB")
    if args.profile:
        return 0  # a profiled run's figures are not the benchmark's
    out = ROOT / "bench" / "results" / "analytics_scale.json"
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
