"""Time-of-day anomaly scores: causal, equal to a plain loop, and events a person can read."""

import statistics

import numpy as np
import pytest

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


def test_equals_a_plain_loop():
    t, x = fleet(days=6, nodes=2)
    got = score_cube(x, t, METRICS, STEP, days=3, min_days=2).score
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            for j, m in enumerate(METRICS):
                prev = [x[i, k - 24 * d, j] for d in (1, 2, 3) if k - 24 * d >= 0]
                prev = [v for v in prev if not np.isnan(v)]
                if len(prev) < 2 or np.isnan(x[i, k, j]):
                    assert np.isnan(got[i, k, j])
                    continue
                base = statistics.median(prev)
                scale = max(1.4826 * statistics.median([abs(v - base) for v in prev]), SCALE_FLOOR[m])
                z = abs(x[i, k, j] - base) / scale
                assert got[i, k, j] == pytest.approx(z / (z + Z_HALF), abs=1e-12)


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
