"""`python -m bench.analytics_scale`: the incremental analytics against a real InfluxDB, at fleet sizes.

For each size: a private `influxd` (the stack's, on a free port) gets 8 days of readings of N simulated
nodes (sites of four forest nodes and an air node, 10-minute sampling; written as the ingest writes
them, straight to InfluxDB, to keep the run short: line protocol made and gzipped by worker processes,
sent by as many threads), then the analytics in `--partitions` K processes of their own (`--worker`,
`analyze_partition` k/K each, driven over a pipe), each command sent to all of them at once, so they
run concurrently as K services would:

- the cold start: one `Incremental.run` that reads the window and the fire codes' 30 days, builds the
  state and saves it whole, wall and CPU seconds;
- the steady state at a 60-second cadence with live traffic (then one more run that also makes the hourly
  audit of the window, reported apart): each node sends its last hour of readings
  once an hour at its own minute (as the firmware does), so each simulated minute N/60 nodes send; the
  minute's batches are written, then a run. The clock is simulated (runs follow one another without
  waiting the minute), so freshness is the cadence plus the run's wall time (the slowest partition's):
  a batch written just after a run waits up to 60 s for the next one, whose points are written when it
  ends. Reported per run: analytics CPU (process time, summed over the partitions), InfluxDB CPU (utime +
  stime of influxd from /proc/<pid>/stat, during the run), points written, readings that arrived.

Then a snapshot (what `analyze_snapshot_s` saves: what changed since the cold start's, the steady runs'
minutes): what it wrote, its CPU and wall time, the state's size on disk; a restart (saved, loaded, the
flags and indices recomputed) and one run after it; each partition's peak RSS; the share of a core
with the snapshot and the audit amortized (the snapshot's cost per minute of changes, the mean run); and a
rebuild (the state deleted, as a state of other constants would be, and a cold start again: over a database
that now holds the analytics' own points, which it reads to withdraw what it does not find).

Medians over `--runs` runs, one benchmark run; results in bench/results/analytics_scale.json (a size
run again replaces its entry).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import http.client
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

from analytics import incremental
from rimba import settings as settings_mod
from rimba.fleet import load_fleet
from rimba.adapters.influx import Influx
from rimba.dev.stack import Stack, free_port

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
    in bodies of about `batch` readings (as many steps of the whole fleet as fit, or a slice of one step's),
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


def _sending(nodes: list, phase: dict, now: int, hourly_only: bool = False) -> list:
    """The nodes whose send minute fell in the minute before `now`."""
    return [nd for nd in nodes if now - 60 <= (now // 3600 * 3600 + phase[nd[0]]) < now
            or (not hourly_only and now - 60 <= (now // 3600 * 3600 - 3600 + phase[nd[0]]) < now)]


class Worker:
    """One partition's analytics in a process of its own (`--worker`): its CPU, memory and snapshot are its own.
    Commands on stdin, one JSON answer a line on stdout."""

    def __init__(self, args: list):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.analytics_scale", "--worker", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def send(self, *cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a partition's process ended ({self.proc.wait()})")
        return json.loads(line)


def all_of_quit(workers: list) -> None:
    for w in workers:
        w.send("quit")
        w.proc.wait(timeout=600)


def all_of(workers: list, *cmd) -> list:
    """The command to every partition at once (they run concurrently); their answers."""
    for w in workers:
        w.send(*cmd)
    return [w.answer() for w in workers]


def worker(url: str, state: str, fleet_path: str, partition: str) -> int:
    """The partition's side of `Worker`."""
    s = settings_mod.build(overrides={"influx_url": url, "influx_db": "bench", "state_dir": state, "fleet": fleet_path,
                                      "analyze_partition": partition, "analyze_snapshot_s": 0}, env={})
    fleet = load_fleet(s.fleet)
    influx = Influx(url, "bench", timeout=120)
    eng = incremental.Incremental(s, fleet, influx, progress=False)
    for line in sys.stdin:
        cmd, *rest = json.loads(line)
        c0, w0 = time.process_time(), time.perf_counter()
        out: dict = {}
        if cmd == "run":
            now, audit = rest
            if audit:
                eng.st.audited = 0
            got = eng.run(now)
            out = {"points": got["lines"], "cold": got["cold"], "snapshot": dict(eng.store.last) if got["cold"] else None}
        elif cmd == "save":
            eng.store.save(eng.st)
            out = {"snapshot": dict(eng.store.last),
                   "bytes": sum(f.stat().st_size for f in Path(state).glob("analytics*"))}
        elif cmd == "restart":
            eng.close()
            eng = incremental.Incremental(s, fleet, influx, progress=False)
            out = {"loaded": eng.st is not None}
        elif cmd == "rebuild":  # the state built again from history (as after new constants), at `now`
            eng.close()
            for f in Path(state).glob("analytics*"):
                f.unlink()
            eng = incremental.Incremental(s, fleet, influx, progress=False)
            got = eng.run(rest[0])
            out = {"points": got["lines"], "cold": got["cold"], "swept": got["swept"]}
        elif cmd == "quit":
            eng.store.close()
            return 0
        elif cmd != "stat":
            raise ValueError(f"unknown command {cmd!r}")
        out.update(cpu_s=time.process_time() - c0, wall_s=time.perf_counter() - w0, nodes=eng.st.n_own,
                   held=len(eng.st.nodes), rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(out), flush=True)
    return 0


def one_size(n: int, runs: int, tmp: Path, partitions: int = 1) -> dict:
    stack = Stack(tmp / f"n{n}", free_port(), free_port(), database="bench")
    stack.start_influx()
    workers: list = []
    try:
        influx = Influx(stack.influx_url, "bench", timeout=120)
        fleet_path = tmp / f"fleet{n}.toml"
        nodes = fleet_file(fleet_path, n)
        phase = {node: 60 * (k * 37 % 60) for k, (node, _, _) in enumerate(nodes)}  # each node's send minute
        pid = stack.influxd.pid()
        i0, c0 = influx_cpu(pid), time.perf_counter()
        populate(stack.influx_url, "bench", nodes, END - 8 * 86400, END - 3600, seed=n)  # the last hour: in the buffers
        history = {"wall_s": time.perf_counter() - c0, "influx_cpu_s": influx_cpu(pid) - i0,
                   "readings": len(nodes) * (8 * 86400 - 3600) // STEP}
        print(f"{n} nodes: history of {history['readings']:,} readings written in {history['wall_s']:.0f} s "
              f"(InfluxDB {history['influx_cpu_s']:.0f} s CPU)", flush=True)
        last_sent = {node: END - 3600 for node, _, _ in nodes}
        workers = [Worker([stack.influx_url, str(tmp / f"state{n}-{k}"), str(fleet_path), f"{k}/{partitions}"])
                   for k in range(1, partitions + 1)]
        i0, w0 = influx_cpu(pid), time.perf_counter()
        cold = all_of(workers, "run", END, False)
        cold_fig = {"wall_s": time.perf_counter() - w0, "influx_cpu_s": influx_cpu(pid) - i0,
                    "cpu_s": sum(c["cpu_s"] for c in cold), "points": sum(c["points"] for c in cold),
                    "partitions": cold}
        print(f"{n} nodes: cold start {cold_fig['wall_s']:.1f} s wall, {cold_fig['cpu_s']:.1f} s CPU, InfluxDB "
              f"{cold_fig['influx_cpu_s']:.1f} s CPU, {cold_fig['points']:,} points", flush=True)

        def minute(now: int, audit: bool) -> dict:
            sending = _sending(nodes, phase, now, hourly_only=audit)
            live = []
            for nd in sending:  # the node's readings since its last send
                live += lines_for([nd], last_sent[nd[0]], now - 60, seed=n)
                last_sent[nd[0]] = now - 60
            write(influx, live)
            i0, w0 = influx_cpu(pid), time.perf_counter()
            got = all_of(workers, "run", now, audit)
            return {"cpu_s": sum(g["cpu_s"] for g in got), "influx_cpu_s": influx_cpu(pid) - i0,
                    "wall_s": time.perf_counter() - w0, "points": sum(g["points"] for g in got),
                    "readings": len(live), "nodes_sending": len(sending),
                    "cpu_s_partitions": [g["cpu_s"] for g in got]}

        steady = []
        for r in range(runs):
            steady.append(minute(END + 60 * (r + 1), False))
            x = steady[-1]
            print(f"  run {r + 1}: {x['cpu_s']:.2f} s CPU, InfluxDB {x['influx_cpu_s']:.2f} s, {x['wall_s']:.2f} s wall, "
                  f"{x['points']} points for {x['readings']} readings from {x['nodes_sending']} nodes", flush=True)
        # the hourly audit (`analyze_audit_s`): one more run, with the minute's traffic, that audits the window
        audit = minute(END + 60 * (runs + 1), True)
        print(f"  a run with the audit: {audit['cpu_s']:.2f} s CPU, InfluxDB {audit['influx_cpu_s']:.2f} s, "
              f"{audit['wall_s']:.2f} s wall", flush=True)
        saved = all_of(workers, "save")  # what changed since the cold start's: runs + 1 minutes of traffic
        snap = {"cpu_s": sum(x["cpu_s"] for x in saved), "wall_s": max(x["wall_s"] for x in saved),
                "written_bytes": sum(x["snapshot"]["bytes"] for x in saved),
                "parts": sum(x["snapshot"]["parts"] for x in saved), "bytes": sum(x["bytes"] for x in saved),
                "whole_bytes": sum(c["snapshot"]["bytes"] for c in cold), "minutes": runs + 1}
        print(f"  snapshot of {runs + 1} minutes of changes: {snap['written_bytes'] / 1e6:.1f} MB in {snap['parts']:,} "
              f"parts, {snap['wall_s']:.2f} s wall, {snap['cpu_s']:.2f} s CPU (the cold start's whole one "
              f"{snap['whole_bytes'] / 1e6:.0f} MB; on disk {snap['bytes'] / 1e6:.0f} MB)", flush=True)
        restart = all_of(workers, "restart")
        snap["restart_wall_s"] = max(x["wall_s"] for x in restart)
        snap["restart_cpu_s"] = sum(x["cpu_s"] for x in restart)
        assert all(x["loaded"] for x in restart)
        print(f"  a restart (save and load): {snap['restart_wall_s']:.2f} s wall", flush=True)
        after = minute(END + 60 * (runs + 2), False)  # the first run after the restart
        rss = [x["rss_mb"] for x in all_of(workers, "stat")]  # each partition's peak, cold start included
        # a rebuild: the cold start again, over a database that now holds the analytics' own points, which it
        # reads to withdraw what it does not find (the first cold start had none to read)
        i0, w0 = influx_cpu(pid), time.perf_counter()
        again = all_of(workers, "rebuild", END + 60 * (runs + 2))
        rebuild = {"wall_s": time.perf_counter() - w0, "influx_cpu_s": influx_cpu(pid) - i0,
                   "cpu_s": sum(c["cpu_s"] for c in again), "points": sum(c["points"] for c in again),
                   "swept": sum(c["swept"] for c in again)}
        assert all(c["cold"] for c in again)
        print(f"  a rebuild: {rebuild['wall_s']:.1f} s wall, {rebuild['cpu_s']:.1f} s CPU, InfluxDB "
              f"{rebuild['influx_cpu_s']:.1f} s CPU, {rebuild['points']:,} points, {rebuild['swept']:,} from its sweep",
              flush=True)
        all_of_quit(workers)
        med = {k: statistics.median(x[k] for x in steady) for k in steady[0] if k != "cpu_s_partitions"}
        mean = {k: statistics.mean(x[k] for x in steady) for k in steady[0] if k != "cpu_s_partitions"}
        per_run = mean["cpu_s"] + mean["influx_cpu_s"]
        s = settings_mod.build(env={})
        # amortized: the snapshot's cost per minute of changes it saved (one every analyze_snapshot_s saves that
        # many minutes'), an audit every analyze_audit_s
        extra = (snap["cpu_s"] / snap["minutes"]
                 + max(0.0, audit["cpu_s"] + audit["influx_cpu_s"] - per_run) * 60 / s.analyze_audit_s)
        return {"nodes": n, "partitions": partitions, "history": history, "peak_rss_mb": rss,
                "nodes_per_partition": [c["nodes"] for c in cold], "held_per_partition": [c["held"] for c in cold],
                "cold": cold_fig, "steady_runs": steady, "steady_median": med, "steady_mean": mean, "snapshot": snap,
                "audit_run": audit, "after_restart": after, "rebuild": rebuild,
                "freshness_max_s": 60 + max(x["wall_s"] for x in steady),
                "core_share_steady": (med["cpu_s"] + med["influx_cpu_s"]) / 60,
                "core_share_amortized": (per_run + extra) / 60}
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        stack.influxd.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.analytics_scale")
    p.add_argument("--nodes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--partitions", type=int, nargs="+", default=None,
                   help="partitions (processes, run concurrently) for each --nodes; default 1 each")
    p.add_argument("--runs", type=int, default=15, help="steady-state runs per size (15: a snapshot's 15 minutes)")
    p.add_argument("--worker", nargs=4, metavar=("URL", "STATE", "FLEET", "K/N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    parts = args.partitions or [1] * len(args.nodes)
    if len(parts) != len(args.nodes):
        p.error("give one --partitions for each --nodes")
    results = []
    with tempfile.TemporaryDirectory(prefix="rimba-bench-scale-") as tmp:
        for n, k in zip(args.nodes, parts, strict=True):
            results.append(one_size(n, args.runs, Path(tmp), k))
    for r in results:
        m, snap = r["steady_median"], r["snapshot"]
        print(f"{r['nodes']:>6} nodes in {r['partitions']} | cold start {r['cold']['wall_s']:.0f} s | steady per run: "
              f"analytics {m['cpu_s']:.2f} s CPU, InfluxDB {m['influx_cpu_s']:.2f} s CPU "
              f"({100 * r['core_share_steady']:.1f} % of a core at 60 s), {m['points']:.0f} points for "
              f"{m['readings']:.0f} readings | freshness <= {r['freshness_max_s']:.0f} s | with the snapshot and audit "
              f"amortized {100 * r['core_share_amortized']:.1f} % | snapshot of {snap['minutes']} minutes "
              f"{snap['written_bytes'] / 1e6:.1f} MB, {snap['wall_s']:.1f} s (whole {snap['whole_bytes'] / 1e6:.0f} MB)"
              f" | peak RSS per partition {', '.join(f'{x:.0f}' for x in r['peak_rss_mb'])} MB")
    out = ROOT / "bench" / "results" / "analytics_scale.json"
    old = json.loads(out.read_text()) if out.exists() else []
    done = {r["nodes"] for r in results}
    out.write_text(json.dumps(sorted([r for r in old if r.get("nodes") not in done] + results,
                                     key=lambda r: r["nodes"]), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
