"""Anomalies against each node's usual for the time of day, over the whole fleet at once.

For every node, metric and time-of-day slot, the baseline is the median of the
same slot on the previous `days` days, and the scale their MAD (floored per
metric); the score is a robust z mapped into [0, 1]. Only earlier days are used,
so the scores are causal: appending data never changes a past score. Runs of
high scores become events with a sentence a person understands, such as
"2.3 °C above this node's usual for 14:00".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analytics.robust import nanmedian
from rimba.metrics import METRICS

WIB_S = 7 * 3600
# smallest scale per metric, so that a very regular series does not make every wobble an anomaly
SCALE_FLOOR = {"air_temp_c": 0.3, "air_rh_pct": 2.0, "air_pressure_hpa": 0.5, "soil_temp_c": 0.2,
               "soil_vwc_pct": 1.0, "pm1_ugm3": 3.0, "pm25_ugm3": 4.0, "pm10_ugm3": 6.0, "co2_ppm": 20.0,
               "light_lux": 2000.0, "rain_mm": 1.0, "water_level_cm": 5.0, "water_temp_c": 0.2, "batt_v": 0.05,
               "rssi_dbm": 4.0}
Z_HALF = 6.0  # the robust z that scores 0.5


@dataclass
class Scores:
    score: np.ndarray  # (nodes, time, metrics) in [0, 1], NaN where no value or no baseline yet
    baseline: np.ndarray  # the usual value for that node, metric and time of day
    z: np.ndarray  # signed robust z


def score_cube(values, times, metrics, step_s: int, days: int = 7, min_days: int = 3) -> Scores:
    """Score a cube (nodes, time, metrics) whose grid starts at a WIB midnight.

    Parameters
    ----------
    values : ndarray (nodes, time, metrics)
    times : ndarray (time,)
        UNIX seconds; the first is a local (WIB) midnight and the grid is regular.
    step_s : int
        Grid step, seconds; 86400 must be a multiple of it.
    days, min_days : int
        How many previous days make the baseline, and how many must have a value.
    """
    x = np.asarray(values, dtype=float)
    n_nodes, n_t, n_m = x.shape
    slots = 86400 // step_s
    if (int(times[0]) + WIB_S) % 86400:
        raise ValueError("the grid must start at a WIB midnight")
    n_days = -(-n_t // slots)
    padded = np.full((n_nodes, n_days * slots, n_m), np.nan)
    padded[:, :n_t] = x
    by_day = padded.reshape(n_nodes, n_days, slots, n_m)
    # the previous `days` days for day d: days d-days .. d-1 (NaN-padded before the start)
    front = np.full((n_nodes, days, slots, n_m), np.nan)
    hist = np.concatenate([front, by_day[:, :-1]], axis=1)  # day d sees hist[:, d : d + days]
    windows = sliding_window_view(hist, days, axis=1)  # (nodes, n_days, slots, m, days)
    count = np.sum(~np.isnan(windows), axis=-1)
    base = nanmedian(windows, axis=-1)
    mad = nanmedian(np.abs(windows - base[..., None]), axis=-1)
    floor = np.array([SCALE_FLOOR.get(m, 0.0) for m in metrics])
    scale = np.maximum(1.4826 * mad, floor)
    base = np.where(count >= min_days, base, np.nan)
    z = (by_day - base) / scale
    score = np.abs(z) / (np.abs(z) + Z_HALF)
    shape = (n_nodes, n_days * slots, n_m)
    return Scores(score.reshape(shape)[:, :n_t], base.reshape(shape)[:, :n_t], z.reshape(shape)[:, :n_t])


@dataclass
class Event:
    node: str
    metric: str
    start: int
    end: int
    peak: float
    value: float
    severity: str
    message: str


def events(scores: Scores, values, times, nodes, metrics, threshold: float = 0.5, critical: float = 0.75) -> list:
    """Runs of scores at or above `threshold` per node and metric, as events."""
    x = np.asarray(values, dtype=float)
    hot = np.nan_to_num(scores.score, nan=0.0) >= threshold
    out = []
    step = int(times[1] - times[0]) if len(times) > 1 else 0
    for i, j in zip(*np.nonzero(hot.any(axis=1)), strict=True):
        run = hot[i, :, j]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], run.astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            k = a + int(np.nanargmax(scores.score[i, a:b, j]))
            peak = float(scores.score[i, k, j])
            diff = float(x[i, k, j] - scores.baseline[i, k, j])
            unit = METRICS[metrics[j]].unit
            clock = ((int(times[k]) + WIB_S) % 86400) // 60
            message = (f"{abs(diff):.1f} {unit} {'above' if diff > 0 else 'below'} this node's usual "
                       f"for {clock // 60:02d}:{clock % 60:02d} WIB")
            out.append(Event(nodes[i], metrics[j], int(times[a]), int(times[b - 1]) + step, peak,
                             float(x[i, k, j]), "critical" if peak >= critical else "warning", message))
    return out
