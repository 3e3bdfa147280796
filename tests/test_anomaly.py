"""Time-of-day anomaly scores: causal, equal to a plain loop, and events a person can read."""

import math

import numpy as np
import pytest

from analytics import anomaly
from analytics.anomaly import SCALE_FLOOR, Z_HALF, events, score_cube

STEP = 3600
MIDNIGHT_WIB = 1764262800  # 2025-11-28 00:00 WIB
METRICS = ("air_temp_c", "pm25_ugm3")


def fleet(days=10, nodes=3, seed=2):
    rng = np.random.default_rng(seed)
    t = MIDNIGHT_WIB + np.arange(days * 24) * STEP
    hour = ((t + 7 * 3600) % 86400) / 3600
    x = np.empty((nodes, len(t), 2))
    x[:, :, 0] = 27 + 4 * np.sin(2 * np.pi * (hour - 8) / 24) + rng.normal(0, 0.3, (nodes, len(t)))
    x[:, :, 1] = 15 + rng.normal(0, 3, (nodes, len(t)))
    x[rng.random(x.shape) < 0.05] = np.nan
    return t, x


def test_causal():
    t, x = fleet()
    full = score_cube(x, t, METRICS, STEP).score
    for cut in (24 * 4, 24 * 6 + 5, 24 * 9 + 23):
        part = score_cube(x[:, :cut], t[:cut], METRICS, STEP).score
        np.testing.assert_array_equal(part, full[:, :cut])


def plain_scores(x, metrics, step, min_days=3):
    """The detector written one value at a time, from its docstring."""
    n_nodes, n_t, _ = x.shape
    slots = 86400 // step
    w = max(3, anomaly.SUSTAIN_S // step) | 1
    out = np.full(x.shape, np.nan)
    for i in range(n_nodes):
        for j, m in enumerate(metrics):
            floor = SCALE_FLOOR[m]
            usual, scale, count = [0.0] * slots, [0.0] * slots, [0] * slots
            us = []
            for k in range(n_t):
                slot = k % slots
                if k % slots == 0:  # a new day: the slots' usual is what the earlier days gave
                    day_usual = usual[:]
                    day_scale = [max(sc, 0.5 * sum(scale) / slots, floor) for sc in scale]
                    day_ready = [c >= min_days for c in count]
                    day_count = count[:]
                v = float(x[i, k, j])
                u = float("nan")
                if not math.isnan(v) and day_ready[slot]:
                    u = (v - day_usual[slot]) / day_scale[slot]
                us.append(u)
                if not math.isnan(v):  # update for the next day
                    n = day_count[slot]
                    r = v - day_usual[slot]
                    if day_ready[slot]:
                        bound = anomaly.K * day_scale[slot]
                        r = min(max(r, -bound), bound)
                    if n > 0:
                        scale[slot] += max(anomaly.BETA, 1 / n) * (anomaly.GAUSS_ABS * abs(r) - scale[slot])
                    usual[slot] += max(anomaly.ALPHA, 1 / (n + 1)) * r
                    count[slot] += 1
            span = anomaly.cusum_span(max(2, anomaly.CUSUM_WINDOW_S // step))
            clipped = [0.0 if math.isnan(u) else min(max(u, -anomaly.CUSUM_CLIP), anomaly.CUSUM_CLIP) for u in us]
            for k, u in enumerate(us):
                if math.isnan(u):
                    continue
                up = down = 0.0  # the largest sums over runs of up to `span` steps ending at k
                for length in range(1, min(span, k + 1) + 1):
                    run = clipped[k - length + 1:k + 1]
                    slack = anomaly.CUSUM_SLACK * sum(not math.isnan(v) for v in us[k - length + 1:k + 1])
                    up = max(up, sum(run) - slack)  # a missing value adds nothing, not even the slack
                    down = max(down, -sum(run) - slack)
                recent = [min(max(v, -anomaly.CUSUM_CLIP), anomaly.CUSUM_CLIP) for v in us[max(0, k - w + 1):k + 1]
                          if not math.isnan(v)]
                sustained = abs(sum(recent) / len(recent)) * w ** 0.25 if len(recent) >= (w + 1) // 2 else 0.0
                z = max(abs(u), sustained, max(up, down) / anomaly.CUSUM_PER_Z)
                out[i, k, j] = z / (z + Z_HALF)
    return out


def test_equals_a_plain_loop():
    t, x = fleet(days=6, nodes=2)
    x[0, 100:104, 0] += 6.0  # something for the sustained and shift views to see
    got = score_cube(x, t, METRICS, STEP).score
    np.testing.assert_allclose(got, plain_scores(x, METRICS, STEP), rtol=2e-5, atol=2e-6, equal_nan=True)


def test_tides_are_the_usual_for_water_level():
    """A clean mixed tide scores low everywhere; a 40 cm surge at one high water scores high."""
    step = 600
    t = MIDNIGHT_WIB + np.arange(6 * 144) * step
    h = (t - t[0]) / 3600
    level = 150 + 45 * np.cos(2 * np.pi * h / 23.934) + 35 * np.cos(2 * np.pi * h / 25.819 + 1.1) \
        + 15 * np.cos(2 * np.pi * h / 12.421 + 2.0) + np.random.default_rng(4).normal(0, 1.5, len(t))
    x = level[None, :, None].copy()
    clean = score_cube(x, t, ("water_level_cm",), step).score[0, :, 0]
    assert np.nanmax(clean[2 * 144:]) < 0.5
    k = 5 * 144 + 60
    x[0, k:k + 6, 0] += 40.0
    surge = score_cube(x, t, ("water_level_cm",), step).score[0, :, 0]
    assert np.nanmin(surge[k:k + 6]) >= 0.5
    assert np.isnan(clean[:2 * 144]).all()  # no fit before two days of data


def test_an_afternoon_heat_anomaly_becomes_one_event_with_a_sentence():
    t, x = fleet()
    k = 24 * 8 + 14  # day 9, 14:00 WIB
    x[1, k:k + 3, 0] += 5.0
    s = score_cube(x, t, METRICS, STEP)
    ev = [e for e in events(s, x, t, ["n1", "n2", "n3"], METRICS) if e.metric == "air_temp_c"]
    assert len(ev) == 1
    e = ev[0]
    assert (e.node, e.start, e.end) == ("n2", int(t[k]), int(t[k + 2]) + STEP)
    assert "above this node's usual for 1" in e.message and "°C" in e.message
    assert e.severity in ("warning", "critical")


def test_grid_must_start_at_midnight():
    t, x = fleet(days=2)
    with pytest.raises(ValueError):
        score_cube(x[:, 1:], t[1:], METRICS, STEP)
