"""Fault injection: a week of realistic Pontianak series from the simulator (diurnal cycle, convective rain,
a haze episode, tides) for two sites, with spikes, stuck values, drift, dropouts, noise bursts and
out-of-range values injected at seeded random places. Each quality check must find its faults (recall) and
flag little else (precision): at least 0.9 for spikes, stuck values, out-of-range values and dropouts, and
0.75 for drift and noise bursts, which take a window of values to see."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from analytics import quality
from rimba.climate import Haze
from rimba.fleet import parse_fleet
from rimba.simulate import Fault, Simulation

START = 1764262800  # 2025-11-28 00:00 WIB
DAYS = 7
STEP = 600
METRICS = ("air_temp_c", "air_rh_pct", "soil_temp_c", "pm25_ugm3", "water_level_cm", "water_temp_c")
FLAG = {"spike": quality.SPIKE, "stuck": quality.FLAT, "out-of-range": quality.RANGE, "dropout": quality.GAP,
        "drift": quality.DRIFT, "noise": quality.NOISE}
FLOOR = {"spike": 0.9, "stuck": 0.9, "out-of-range": 0.9, "dropout": 0.9, "drift": 0.75, "noise": 0.75}
# sizes a real fault of each kind has, per metric (stuck: the value it sticks at)
SIZE = {"spike": {"air_temp_c": 9.0, "air_rh_pct": -35.0, "soil_temp_c": 6.0, "pm25_ugm3": 400.0,
                  "water_level_cm": 120.0, "water_temp_c": 5.0},
        "stuck": {"air_temp_c": 25.3, "air_rh_pct": 99.9, "soil_temp_c": 26.1, "pm25_ugm3": 0.0,
                  "water_level_cm": 88.0, "water_temp_c": 29.0},
        "drift": {"air_temp_c": 3.0, "air_rh_pct": 15.0, "soil_temp_c": 3.0, "pm25_ugm3": 30.0,
                  "water_level_cm": 40.0, "water_temp_c": 2.0},
        "noise": {"air_temp_c": 3.0, "air_rh_pct": 12.0, "soil_temp_c": 3.0, "pm25_ugm3": 60.0,
                  "water_level_cm": 60.0, "water_temp_c": 3.0},
        "out-of-range": dict.fromkeys(METRICS, 50.0), "dropout": dict.fromkeys(METRICS, 0.0)}
HOURS = {"spike": (0.16, 0.16), "stuck": (3, 8), "out-of-range": (0.17, 2), "dropout": (1, 6), "drift": (48, 72),
         "noise": (1, 3)}


def fleet():
    text = ['[sites.smp29]\nname = "SMP 29"\nlat = -0.03\nlon = 109.34\n',
            '[sites.bansir-laut]\nname = "Bansir Laut"\nlat = -0.04\nlon = 109.35\n']
    for site, profile, n in (("smp29", "forest", 6), ("smp29", "air", 4), ("bansir-laut", "river", 6)):
        for i in range(n):
            text.append(f'[nodes.{site}-{profile}-{i}]\nsite = "{site}"\nprofile = "{profile}"\ncadence_s = {STEP}\n')
    import tomllib
    return parse_fleet(tomllib.loads("\n".join(text)))


def inject(f, seed):
    """Faults at random, non-overlapping places: (Fault, kind) for each node's metrics."""
    rng = random.Random(seed)
    sim = Simulation(f, seed=seed)
    faults = []
    for node_id, sn in sorted(sim.nodes.items()):
        for metric in (m for m in METRICS if m in sn.metrics):
            busy = []
            for kind in ("drift", *(k for k in FLAG if k != "drift")):
                if kind == "drift" and node_id not in ("smp29-forest-0", "smp29-forest-3", "bansir-laut-river-1"):
                    continue  # drift is judged against the site's other nodes: a few drift, most do not
                for _ in range(1 if kind in ("drift", "stuck") else 2):
                    lo, hi = HOURS[kind]
                    hours = rng.uniform(lo, hi)
                    for _try in range(50):
                        start = START + 86400 + rng.randrange(0, (DAYS - 1) * 86400 - int(hours * 3600) - 3600, STEP)
                        start += _offset(sim, node_id)
                        end = start + int(hours * 3600)
                        if all(end + 3 * 3600 <= b0 or start >= b1 + 3 * 3600 for b0, b1 in busy):
                            busy.append((start, end))
                            size = SIZE[kind][metric]
                            faults.append(Fault(node_id, metric, kind, start, end, size))
                            break
    return faults


def _offset(sim, node_id):
    from rimba.simulate import _offset as off

    return off(node_id, sim.nodes[node_id].node.cadence_s)


def cube_of(sim, f):
    nodes = sorted(sim.nodes)
    x = np.full((len(nodes), DAYS * 86400 // STEP, len(METRICS)), np.nan)
    for _t, topic, payload in sim.history(START, START + DAYS * 86400):
        body = json.loads(payload)
        if "r" not in body:
            continue
        i = nodes.index(body["node"])
        for r in body["r"]:
            k = (r["t"] - START) // STEP
            for j, m in enumerate(METRICS):
                if m in r:
                    x[i, k, j] = r[m]
    return nodes, [f.nodes[n].site + f.nodes[n].profile for n in nodes], x


@pytest.fixture(scope="module")
def injected():
    f = fleet()
    faults = inject(f, seed=29)
    sim = Simulation(f, seed=29, faults=faults, haze=Haze(START + 3 * 86400, 2.5, 280.0))
    nodes, groups, x = cube_of(sim, f)
    flags = quality.check(x, METRICS, groups)
    return nodes, x, flags, faults, sim.truth


def masks(nodes, shape, faults, truth):
    """Per kind, the values that fault changed; a drift counts once its offset passes the check's limit."""
    out = {k: np.zeros(shape, dtype=bool) for k in FLAG}
    by_key = {(f.node, f.metric, f.kind): f for f in faults}
    limits = quality.Limits().drift
    for node, metric, kind, t in truth:
        if kind == "drift":
            f = by_key[(node, metric, kind)]
            if abs(f.size) * (t - f.start) / 86400 <= limits[metric]:
                continue
        out[kind][nodes.index(node), (t - START) // STEP, METRICS.index(metric)] = True
    return out


@pytest.mark.parametrize("kind", list(FLAG))
def test_each_fault_kind_is_found_and_little_else_is_flagged(injected, kind):
    """Recall: the share of this kind's faulty values the check flags. Precision: of the values it flags
    that are clean or of this kind, the share of this kind (a value that is bad for another reason is
    no false alarm: a humidity sensor drifting up saturates at 100 % and is then stuck as well)."""
    nodes, x, flags, faults, truth = injected
    truth_of = masks(nodes, x.shape, faults, truth)
    mine = truth_of[kind]
    other = np.logical_or.reduce([m for k, m in truth_of.items() if k != kind]) & ~mine
    assert mine.sum() > 50, "the injection made too few faulty values to judge"
    flagged = (flags & FLAG[kind]) != 0
    recall = (flagged & mine).sum() / mine.sum()
    precision = (flagged & mine).sum() / max((flagged & ~other).sum(), 1)
    print(f"{kind}: recall {recall:.3f}, precision {precision:.3f} over {mine.sum()} faulty values")
    assert recall >= FLOOR[kind], f"{kind}: recall {recall:.3f}"
    assert precision >= FLOOR[kind], f"{kind}: precision {precision:.3f}"
