"""`python -m bench.detection`: how often the analytics cries wolf, and how well it finds real faults.

In process, without the stack: the simulator's readings (`Simulation.arrays`, the very values it
would send) go through the analytics' own steps (`analytics.quality.check`,
`analytics.anomaly.score_cube`, `analytics.anomaly.events`), as `rimba analyze` runs them.

1. **Clean data**: a fleet of `--nodes` nodes (sites of four forest or river nodes and an air node,
   like the sample fleet) for `--days` days with the simulator's rain and no fault at all. Reported:
   anomaly events per node per 30 days, and `step`/`spike` flags (all of them are false; those
   within an hour of rain at the site's gauges are counted apart, and so are those within an hour of rain
   at the site as the simulator made it, gauge or not), and the flags of each check. The same again
   with every node alone at its site (`lone_fleet`): no neighbour to tell weather from the sensor; and in
   sites of three (`three_fleet`), as they are and with one node of each silent for two days (`SILENT`).
2. **Faults** (`rimba.dev.simulate.realistic_faults`): per kind, recall (share of injected faults with an
   event or flag on that node and metric during the fault) and precision (share of events and flags
   that fall on a fault), on seeds never used to choose a constant (`HELD_OUT_SEEDS`). A dying fan's
   fault is its PM sensor's: an alarm on any of its channels counts (`channels`).
3. `--tune-fan`: the FAN check's constants (`analytics.quality.Limits`) by leave-one-seed-out
   cross-validation on `TUNING_SEEDS` (`tune_fan`).
4. `--tune-spike`: SPIKE against the site's limit for each metric it judges (`Limits.site_spike_of`, in
   SCALE_FLOORs) the same way
   (`tune_spike`): the smaller of recall and precision of all the alarms of the spike runs, the clean runs'
   alarms counting against precision.

The ground truth is the injected fault, whatever it did to the recorded value: a humidity spike on a
reading of 98 %RH that the sensor's 100 % crop leaves 1 %RH off the truth (within the SHT4x's +-1.8 %RH
typical accuracy) is still a fault to find, and counts as missed.

Writes bench/results/detection.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from analytics import anomaly, quality
from analytics.analyze import ANOMALY_METRICS
from rimba import wib
from rimba.fleet import parse_fleet
from rimba.metrics import METRICS
from rimba.dev.simulate import FAULT_TARGETS, PM_CHANNELS, Simulation, realistic_faults

ROOT = Path(__file__).resolve().parent.parent
START = 1764262800  # 2025-11-28 00:00 WIB: November, in the rainy season
STEP = 600
TUNING_SEEDS = (1, 2, 3)  # the seeds constants may be chosen on
HELD_OUT_SEEDS = (101, 102, 103, 104, 105)  # the seeds the figures come from
DEMO_NOWS = tuple(1764928800 + k * 86400 for k in range(5))  # the demo as if started on five days, 17:00 WIB


def city_fleet(nodes: int):
    """Sites of five nodes: four forest (or river, every other site) and one air node."""
    data = {"sites": {}, "nodes": {}}
    for k in range(-(-nodes // 5)):
        site = f"s{k:02d}"
        data["sites"][site] = {"name": site, "lat": -0.03, "lon": 109.34}
        main = "river" if k % 2 else "forest"
        for n in range(5):
            if len(data["nodes"]) == nodes:
                break
            data["nodes"][f"{site}-{n}"] = {"site": site, "profile": "air" if n == 4 else main, "cadence_s": 600}
    return parse_fleet(data)


def lone_fleet(nodes: int):
    """Sites of one node each (forest, river and air in turn): no neighbour to call a move weather."""
    data = {"sites": {}, "nodes": {}}
    for k in range(nodes):
        site = f"l{k:02d}"
        data["sites"][site] = {"name": site, "lat": -0.03, "lon": 109.34}
        data["nodes"][f"{site}-0"] = {"site": site, "profile": ("forest", "river", "air")[k % 3], "cadence_s": 600}
    return parse_fleet(data)


def three_fleet(nodes: int):
    """Sites of three nodes, like the sample fleet's riverside: two forest (or river, every other site) and one air;
    as many whole sites as `nodes` holds."""
    data = {"sites": {}, "nodes": {}}
    for k in range(nodes // 3):
        site = f"t{k:02d}"
        data["sites"][site] = {"name": site, "lat": -0.03, "lon": 109.34}
        for n in range(3):
            data["nodes"][f"{site}-{n}"] = {"site": site, "cadence_s": 600,
                                            "profile": "air" if n == 2 else ("river" if k % 2 else "forest")}
    return parse_fleet(data)


SILENT = (2 * 86400, 4 * 86400)  # in the sites of three, each site's first node silent from day 2 to day 4


def silence(sites, times, values, start: int, end: int) -> None:
    """Each site's first node (its first row; rows of a site together, as `Simulation.arrays` gives them) without a
    value from start to end (in place)."""
    first = [i for i, s in enumerate(sites) if i == 0 or sites[i - 1] != s]
    values[np.ix_(first, np.flatnonzero((times >= start) & (times < end)))] = np.nan


def analyse(ids, sites, times, values, limits=None):
    """The analytics' steps on a simulated cube: (qc flags, anomaly events)."""
    metrics = tuple(METRICS)
    flags = quality.check(values, metrics, sites, limits)
    cols = [metrics.index(m) for m in ANOMALY_METRICS]
    x = np.where(flags[:, :, cols] & quality.RANGE, np.nan, values[:, :, cols])
    rain = values[:, :, metrics.index("rain_mm")]
    scores = anomaly.score_cube(x, times, ANOMALY_METRICS, STEP, sites, rain)
    return flags, anomaly.events(scores, x, times, ids, ANOMALY_METRICS)


def clean(nodes: int, days: float, seed: int, fleet_of=city_fleet, silent: tuple | None = None,
          lead_days: float = 0.0) -> dict:
    """Clean data of a fleet (`fleet_of`); `silent` (from, to), seconds after the start: each site's first node
    sends nothing then (its neighbours are two, too few for a reference). With `lead_days`, the detector runs
    through that many days before the start (as a service carries it from its cold start), and only what falls
    after the start is counted: the rate of a detector whose seasonal views have their record (at 10-minute steps
    the product's day view judges from 4.7 days on and its week view from 28.7, `detector.view_starts`), where a
    window of `days` alone has the day view for its last days only and no week view."""
    fleet = fleet_of(nodes)
    sim = Simulation(fleet, seed=seed)
    c0 = time.process_time()
    ids, sites, times, values = sim.arrays(START - int(lead_days * 86400), START + int(days * 86400), STEP)
    if silent is not None:
        silence(sites, times, values, START + silent[0], START + silent[1])
    sim_s = time.process_time() - c0
    c0 = time.process_time()
    flags, events = analyse(ids, sites, times, values)
    analytics_s = time.process_time() - c0
    counted = times >= START
    times, values, flags = times[counted], values[:, counted], flags[:, counted]
    events = [e for e in events if e.start >= START]
    metrics = tuple(METRICS)
    rain = values[:, :, metrics.index("rain_mm")]
    wet = anomaly.rain_recent(rain, sites, STEP, 3600)
    # an hour either side: rain at the site in the hour before or after the flag
    wet = wet | np.roll(anomaly.rain_recent(rain[:, ::-1], sites, STEP, 3600)[:, ::-1], 0, axis=1)
    sky = rain_in_the_sky(sim, ids, times, 3600)
    jumps = (flags & (quality.STEP | quality.SPIKE)) > 0
    by_check = {name: int(((flags & bit) > 0).sum()) for bit, name in quality.FLAG_NAMES.items()}
    by_kind: dict = {}
    for e in events:
        by_kind[e.metric] = by_kind.get(e.metric, 0) + 1
    return {"fleet": fleet_of.__name__, "nodes": len(ids), "days": days, "seed": seed, "silent": silent,
            "lead_days": lead_days,
            "events": len(events),
            "events_per_node_per_30_days": len(events) / len(ids) / days * 30,
            "events_by_metric": by_kind,
            "flags_by_check": by_check, "step_spike_flags": int(jumps.sum()), "step_spike_flags_near_rain": int((jumps & wet[:, :, None]).sum()),
            "step_spike_flags_near_sky_rain": int((jumps & sky[:, :, None]).sum()),
            "rain_steps": int((np.nan_to_num(rain) > 0).sum()),
            "humid_pm_flags": int(((flags & quality.HUMID_PM) > 0).sum()),
            "pm_values": int((~np.isnan(values[:, :, [metrics.index(m) for m in quality.PM_METRICS]])).sum()),
            "cpu_s": {"simulate": sim_s, "analytics": analytics_s}}


def rain_in_the_sky(sim, ids, times, within_s: int) -> np.ndarray:
    """(nodes, time) bool: rain fell at the node's site within `within_s` of each step, as the simulator's weather
    made it (`Climate.rain_between`), whether or not the site has a gauge to report it."""
    out = np.zeros((len(ids), len(times)), dtype=bool)
    by_climate: dict = {}
    for i, node in enumerate(ids):
        climate = sim.nodes[node].climate
        if id(climate) not in by_climate:
            by_climate[id(climate)] = np.array([climate.rain_between(t - within_s, t + within_s) > 0
                                                for t in np.asarray(times, dtype=float)])
        out[i] = by_climate[id(climate)]
    return out


ALARM_CHECKS = (quality.RANGE | quality.SPIKE | quality.STEP | quality.FLAT | quality.NOISE | quality.DRIFT
                | quality.FAN)
AFTER_S = 3600  # an alarm up to an hour after a fault ends is still the fault's (the return to normal)


def alarms(ids, times, flags, events) -> list:
    """(node, metric, start, end) of every run of qc flags (ALARM_CHECKS) and every anomaly event."""
    metrics = tuple(METRICS)
    out = []
    hot = (flags & ALARM_CHECKS) > 0
    for i, j in zip(*np.nonzero(hot.any(axis=1)), strict=True):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], hot[i, :, j].astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            out.append((ids[i], metrics[j], int(times[a]), int(times[b - 1]) + STEP))
    out += [(e.node, e.metric, e.start, e.end) for e in events]
    return out


def channels(fault) -> tuple:
    """The metrics a fault changes: a dying fan sinks all of its PM sensor's channels (`PM_CHANNELS`)."""
    return PM_CHANNELS if fault.kind == "dead-fan" and fault.metric in PM_CHANNELS else (fault.metric,)


def faults_run(kind: str, nodes: int, days: float, seed: int, count: int) -> dict:
    sim = Simulation(city_fleet(nodes), seed=seed)
    injected = realistic_faults(sim, kind, START, START + days * 86400, count, seed)
    sim = Simulation(city_fleet(nodes), seed=seed, faults=injected)
    ids, sites, times, values = sim.arrays(START, START + int(days * 86400), STEP)
    flags, events = analyse(ids, sites, times, values)
    return {"kind": kind, "seed": seed, **score(injected, alarms(ids, times, flags, events))}


def score(injected: list, found: list) -> dict:
    """Faults found (an alarm on the fault's node and channels during it, or up to AFTER_S after) and alarms
    true (on a fault so), of `injected` faults and `found` alarms."""
    by_key: dict = {}
    for f in injected:
        for m in channels(f):
            by_key.setdefault((f.node, m), []).append(f)

    def hits(a, f):
        return a[0] == f.node and a[1] in channels(f) and a[2] < f.end + AFTER_S and f.start < a[3]

    detected = [f for f in injected if any(hits(a, f) for a in found)]
    true = [a for a in found if any(hits(a, f) for f in by_key.get((a[0], a[1]), ()))]
    false = [a for a in found if a not in true]
    # false alarms after a fault on their node and channel had ended (and AFTER_S with it): the return to normal
    late = [a for a in false if any(f.end <= a[2] for f in by_key.get((a[0], a[1]), ()))]
    return {"faults": len(injected), "detected": len(detected), "alarms": len(found), "true_alarms": len(true),
            "false_after_a_fault": len(late),
            "missed": [(f.node, f.metric, int(f.start), int(f.end), round(f.size, 3)) for f in injected
                       if f not in detected],
            "false": false[:20]}


def summarise(runs: list) -> dict:
    out = {}
    for kind in FAULT_TARGETS:
        rs = [r for r in runs if r["kind"] == kind]
        if not rs:
            continue
        faults, det = sum(r["faults"] for r in rs), sum(r["detected"] for r in rs)
        al, tr = sum(r["alarms"] for r in rs), sum(r["true_alarms"] for r in rs)
        out[kind] = {"faults": faults, "recall": det / faults if faults else None,
                     "alarms": al, "precision": tr / al if al else None,
                     "false_after_a_fault": sum(r["false_after_a_fault"] for r in rs)}
    return out


FAN_GRID = {"fan_block": (18, 24, 30, 36), "fan_blocks": (4, 5, 6), "fan_fall": (0.02, 0.04, 0.06, 0.08, 0.1)}


def fan_cases(nodes: int, days: float, seeds, count: int) -> list:
    """Per seed, the PM sensors' values of a clean run and of a dead-fan run, with that run's faults."""
    out = []
    cols = [tuple(METRICS).index(m) for m in quality.PM_METRICS]
    for seed in seeds:
        clean_ids, _s, times, clean_x = Simulation(city_fleet(nodes), seed=seed).arrays(
            START, START + int(days * 86400), STEP)
        injected = realistic_faults(Simulation(city_fleet(nodes), seed=seed), "dead-fan", START,
                                    START + days * 86400, count, seed)
        ids, _s, _t, x = Simulation(city_fleet(nodes), seed=seed, faults=injected).arrays(
            START, START + int(days * 86400), STEP)
        pm = [i for i in range(len(ids)) if not np.isnan(x[i, :, cols]).all()]
        out.append({"seed": seed, "times": times, "ids": [ids[i] for i in pm], "clean": clean_x[pm][:, :, cols],
                    "faulty": x[pm][:, :, cols], "faults": injected})
    return out


def fan_score(case: dict, limits) -> dict:
    """The FAN check alone on a case: faults found, and its alarms (runs of flags per node and channel) on the
    dead-fan run and on the clean run, true where they fall on a fault of that node."""
    times, ids = case["times"], case["ids"]
    out = {"faults": len(case["faults"]), "detected": 0, "alarms": 0, "true_alarms": 0}
    for name in ("faulty", "clean"):
        hot = quality.fan_sinking(case[name], limits)
        spans = []
        for i, k in zip(*np.nonzero(hot.any(axis=1)), strict=True):
            edges = np.flatnonzero(np.diff(np.concatenate([[0], hot[i, :, k].astype(int), [0]])))
            spans += [(ids[i], int(times[a]), int(times[b - 1]) + STEP) for a, b in zip(edges[::2], edges[1::2],
                                                                                          strict=True)]
        faults = case["faults"] if name == "faulty" else []

        def hit(a, f):
            return a[0] == f.node and a[1] < f.end + AFTER_S and f.start < a[2]

        out["alarms"] += len(spans)
        out["true_alarms"] += sum(any(hit(a, f) for f in faults) for a in spans)
        out["detected"] += sum(any(hit(a, f) for a in spans) for f in faults)
    return out


def fan_objective(scores: list) -> float:
    """The smaller of recall and precision over cases (the clean runs' alarms count against precision)."""
    faults, det = sum(s["faults"] for s in scores), sum(s["detected"] for s in scores)
    alarms, true = sum(s["alarms"] for s in scores), sum(s["true_alarms"] for s in scores)
    return min(det / max(faults, 1), true / max(alarms, 1))


def tune_fan(nodes: int, days: float, count: int) -> dict:
    """The FAN constants (`FAN_GRID`) by leave-one-seed-out cross-validation on TUNING_SEEDS: each fold chooses
    on the other seeds and scores the one left out; the constants are then chosen on all of them."""
    from analytics.quality import Limits

    cases = fan_cases(nodes, days, TUNING_SEEDS, count)
    grid = [dict(zip(FAN_GRID, v, strict=True)) for v in itertools.product(*FAN_GRID.values())]
    table = [[fan_score(c, Limits(**g)) for c in cases] for g in grid]
    folds = []
    for k, case in enumerate(cases):
        best = max(range(len(grid)), key=lambda g: fan_objective([s for i, s in enumerate(table[g]) if i != k]))
        folds.append({"left_out": case["seed"], "chosen": grid[best], "score": fan_objective([table[best][k]]),
                      **table[best][k]})
    best = max(range(len(grid)), key=lambda g: fan_objective(table[g]))
    return {"folds": folds, "cv_score": fan_objective([f for f in folds]), "chosen": grid[best],
            "in_sample": fan_objective(table[best])}


# the limit in SCALE_FLOORs for each metric SPIKE against the site judges (a site's sensors of one metric may
# differ more than its floor says; the forest and river nodes' air pressure is not measured)
SPIKE_GRID = {"air_temp_c": (2.0, 3.0, 4.0, 5.0, 6.0, 8.0), "air_rh_pct": (2.0, 2.5, 3.0, 4.0, 6.0)}


def spike_cases(nodes: int, days: float, seeds, count: int) -> list:
    """Per seed, a spike run and a clean run, each as (ids, sites, times, values, faults) with its anomaly
    events: the events do not depend on the SPIKE constants (only RANGE, which they leave alone, masks them)."""
    out = []
    for seed in seeds:
        injected = realistic_faults(Simulation(city_fleet(nodes), seed=seed), "spike", START, START + days * 86400,
                                    count, seed)
        for faults in (injected, []):
            ids, sites, times, values = Simulation(city_fleet(nodes), seed=seed, faults=faults).arrays(
                START, START + int(days * 86400), STEP)
            _flags, events = analyse(ids, sites, times, values)
            out.append({"seed": seed, "ids": ids, "sites": sites, "times": times, "values": values,
                        "faults": faults, "events": events})
    return out


def spike_score(case: dict, limits) -> dict:
    """All the alarms (qc flags and anomaly events) of a case with these limits, scored as `faults_run` does."""
    flags = quality.check(case["values"], tuple(METRICS), case["sites"], limits)
    found = alarms(case["ids"], case["times"], flags, case["events"])
    return score(case["faults"], found)


def tune_spike(nodes: int, days: float, count: int) -> dict:
    """Each metric's `site_spike_of` (`SPIKE_GRID`, jointly) by leave-one-seed-out cross-validation on
    TUNING_SEEDS, the objective that of the FAN (`fan_objective`: the smaller of recall and precision, the clean
    runs' alarms counting against precision); the values are then chosen on all of them."""
    from dataclasses import replace

    from analytics.quality import Limits

    cases = spike_cases(nodes, days, TUNING_SEEDS, count)
    grid = [dict(zip(SPIKE_GRID, v, strict=True)) for v in itertools.product(*SPIKE_GRID.values())]
    table = [[spike_score(c, replace(Limits(), site_spike_of=tuple(g.items()))) for c in cases] for g in grid]
    folds = []
    for seed in TUNING_SEEDS:
        inside = [k for k, c in enumerate(cases) if c["seed"] != seed]
        out = [k for k, c in enumerate(cases) if c["seed"] == seed]
        best = max(range(len(grid)), key=lambda g: fan_objective([table[g][k] for k in inside]))
        held = [table[best][k] for k in out]
        folds.append({"left_out": seed, "chosen": grid[best], "score": fan_objective(held),
                      **{key: sum(h[key] for h in held) for key in ("faults", "detected", "alarms", "true_alarms")}})
    best = max(range(len(grid)), key=lambda g: fan_objective(table[g]))
    return {"folds": folds, "cv_score": fan_objective(folds), "chosen": grid[best],
            "in_sample": fan_objective(table[best]),
            "grid": [{**g, "objective": fan_objective(table[i])} for i, g in enumerate(grid)]}


def demo_week(now: int) -> dict:
    """The demo's backfill (rimba.app.demo: the sample fleet without its two firmware nodes, its three faults and
    haze, seeded by the day) analysed as `rimba analyze` does; the anomaly events of each site in the last
    seven days, as the weekly report counts them."""
    from rimba.dev.climate import Haze
    from rimba.fleet import load_fleet
    from rimba.dev.simulate import Fault

    fleet = load_fleet(ROOT / "fleet.toml")
    firmware = {n for n, node in fleet.nodes.items() if node.extra.get("demo") == "firmware"}
    nodes = sorted(fleet.nodes)
    faults = [Fault(nodes[0], "air_temp_c", "spike", now - 30 * 3600, now - 30 * 3600 + 600, 11.0),
              Fault(nodes[-1], "air_rh_pct", "stuck", now - 40 * 3600, now - 34 * 3600, 91.3),
              Fault(nodes[1], "air_temp_c", "spike", now - 3 * 3600, now + 3600, 6.0)]
    sim = Simulation(fleet, seed=now // 86400, haze=Haze(now - 1.5 * 86400, 3.0, 260), faults=faults,
                     nodes={n for n in fleet.nodes if n not in firmware})
    start = now - 8 * 86400
    start = wib.midnight_before(start)
    ids, sites, times, values = sim.arrays(start, now, STEP)
    _flags, events = analyse(ids, sites, times, values)
    site_of = dict(zip(ids, sites, strict=True))
    week = [e for e in events if e.start >= now - 7 * 86400]
    return {site: sum(site_of[e.node] == site for e in week) for site in sorted(set(sites))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.detection")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--days", type=float, default=8.0)
    p.add_argument("--lead-days", type=float, default=30.0,
                   help="the clean city and lone fleets again, the detector run through this many days first (0: not; "
                        "30: the product's week view judges from day 28.7)")
    p.add_argument("--seeds", default=",".join(map(str, HELD_OUT_SEEDS[:1])), help="clean-data seeds")
    p.add_argument("--fault-seeds", default=",".join(map(str, HELD_OUT_SEEDS)), help="seeds of the fault runs")
    p.add_argument("--faults", type=int, default=30, help="faults of each kind per seed")
    p.add_argument("--kinds", default=",".join(FAULT_TARGETS))
    p.add_argument("--skip-clean", action="store_true")
    p.add_argument("--tune-fan", action="store_true", help="choose the FAN constants by cross-validation on the "
                   "tuning seeds, and stop")
    p.add_argument("--tune-spike", action="store_true", help="choose SPIKE against the site's limit by "
                   "cross-validation on the tuning seeds, and stop")
    args = p.parse_args(argv)
    if args.tune_spike or args.tune_fan:
        t = tune_spike(args.nodes, args.days, args.faults) if args.tune_spike else tune_fan(args.nodes, args.days,
                                                                                             args.faults)
        for g in t.get("grid", ()):
            print(f"{ {k: v for k, v in g.items() if k != 'objective'} }: on all tuning seeds {g['objective']:.3f}")
        for f in t["folds"]:
            print(f"left out seed {f['left_out']}: chose {f['chosen']}; on it: {f['detected']} of {f['faults']} "
                  f"faults, {f['true_alarms']} of {f['alarms']} alarms true (min of recall and precision "
                  f"{f['score']:.3f})")
        print(f"cross-validated {t['cv_score']:.3f}; on all tuning seeds: chose {t['chosen']} "
              f"(in sample {t['in_sample']:.3f})")
        return 0
    runs = [] if args.skip_clean else [clean(args.nodes, args.days, int(s)) for s in args.seeds.split(",")]
    lone = [] if args.skip_clean else [clean(args.nodes, args.days, int(s), lone_fleet) for s in args.seeds.split(",")]
    threes = [] if args.skip_clean else [clean(args.nodes, args.days, int(s), three_fleet, silent)
                                         for s in args.seeds.split(",") for silent in (None, SILENT)]
    steady = [] if args.skip_clean or not args.lead_days else [
        clean(args.nodes, args.days, int(s), fleet, lead_days=args.lead_days)
        for s in args.seeds.split(",") for fleet in (city_fleet, lone_fleet)]
    named = {"city_fleet": "", "lone_fleet": ", each node alone at its site", "three_fleet": ", sites of three"}
    for r in runs + lone + threes + steady:
        quiet = r["silent"]
        silent = "" if quiet is None else f", one silent from day {quiet[0] // 86400} to {quiet[1] // 86400}"
        silent += f", after {r['lead_days']:g} days of lead" if r["lead_days"] else ""
        print(f"clean data{named[r['fleet']]}{silent}, seed {r['seed']}: {r['nodes']} nodes x "
              f"{r['days']:g} days: {r['events']} anomaly events "
              f"({r['events_per_node_per_30_days']:.2f} per node per 30 days; {r['events_by_metric']}), "
              f"{r['step_spike_flags']} step/spike flags ({r['step_spike_flags_near_rain']} within an hour of rain at a "
              f"gauge, {r['step_spike_flags_near_sky_rain']} of rain at the site, gauge or not; "
              f"{r['rain_steps']} rainy steps), humid-pm {r['humid_pm_flags']} of {r['pm_values']} PM values, "
              f"fan {r['flags_by_check']['fan']}, drift {r['flags_by_check']['drift']} "
              f"[CPU: simulate {r['cpu_s']['simulate']:.1f} s, analytics {r['cpu_s']['analytics']:.1f} s]")
    demo = {str(now): demo_week(now) for now in DEMO_NOWS} if not args.skip_clean else {}
    for now, per_site in demo.items():
        print(f"demo week ending {now}: unusual events per site {per_site}")
    jobs = [(k, int(s)) for k in args.kinds.split(",") if k for s in args.fault_seeds.split(",")]
    fault_runs = []
    for i, (kind, seed) in enumerate(jobs, start=1):  # about 20 s each: say how far it is
        fault_runs.append(faults_run(kind, args.nodes, args.days, seed, args.faults))
        r = fault_runs[-1]
        print(f"fault run {i} of {len(jobs)} ({kind}, seed {seed}): {r['detected']} of {r['faults']} found, "
              f"{r['true_alarms']} of {r['alarms']} alarms true", file=sys.stderr, flush=True)
    summary = summarise(fault_runs)
    for kind, r in summary.items():
        print(f"{kind:>12}: {r['faults']} faults, recall {r['recall']:.3f}; {r['alarms']} alarms, "
              f"precision {r['precision'] if r['precision'] is None else round(r['precision'], 3)}; "
              f"{r['false_after_a_fault']} false alarms after a fault of their channel ended")
    out = ROOT / "bench" / "results" / "detection.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"clean": runs, "clean_alone": lone, "clean_threes": threes, "clean_after_lead": steady,
                               "demo_weeks": demo,
                               "faults": summary, "fault_seeds": args.fault_seeds,
                               "fault_runs": fault_runs}, indent=1, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
