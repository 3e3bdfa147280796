"""Anomalies against each node's usual, over the whole fleet at once.

The score of a value combines three causal views of its residual from the
node's usual, each as an "equivalent z" (how many robust standard deviations a
single value would need to be as surprising), combined by their maximum and
mapped into [0, 1] by z / (z + Z_HALF):

- **level**: the value against the node's usual for this time of day. The usual
  and its scale are robust exponential smoothing per time-of-day slot, updated
  once a day with the day's value clipped at K scales (the robust Holt-Winters
  idea of Gelper, Fried and Croux, *J. Forecasting* 29, 2010), so a spike or a
  stuck day barely moves it; it exists once a slot has `min_days` values. For
  water level the usual is the tide instead: mean, K1, O1, M2 and S2 fitted by
  least squares to up to `TIDE_DAYS` previous days and predicted three hours
  ahead (Pontianak's tides are mixed, mainly diurnal; DOMAIN.md §4).
- **sustained**: the mean residual over the last hour (a second time scale), so
  a moderate offset that lasts is caught.
- **shift**: a two-sided CUSUM of the clipped residual (Page 1954) over the
  last six hours, a change point detector for level shifts and drifts.

Everything uses earlier values only, so appending data never changes a past
score. Runs of high scores become events with a sentence a person
understands, such as "2.3 °C above this node's usual for 14:00 WIB".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from rimba.metrics import METRICS

WIB_S = 7 * 3600
# smallest scale per metric, so that a very regular series does not make every wobble an anomaly
SCALE_FLOOR = {"air_temp_c": 0.3, "air_rh_pct": 2.0, "air_pressure_hpa": 0.5, "soil_temp_c": 0.2,
               "soil_vwc_pct": 1.0, "pm1_ugm3": 3.0, "pm25_ugm3": 4.0, "pm10_ugm3": 6.0, "co2_ppm": 20.0,
               "light_lux": 2000.0, "rain_mm": 1.0, "water_level_cm": 5.0, "water_temp_c": 0.2, "batt_v": 0.05,
               "rssi_dbm": 4.0}
TIDAL = ("water_level_cm",)
TIDE_HOURS = (23.934, 25.819, 12.421, 12.0)  # K1, O1, M2, S2
TIDE_DAYS = 15  # K1 and O1 separate after about 14 days
TIDE_REFIT_S = 3 * 3600
TIDE_MIN_DAYS = 2  # a day alone cannot tell the diurnal from the semidiurnal tide well enough
Z_HALF = 6.0  # the equivalent z that scores 0.5
SLOT_S = 600  # the usual is kept per ten minutes of the day (finer grids share their slot's)
ALPHA = 0.25  # daily smoothing of the usual
BETA = 0.2  # daily smoothing of its scale
K = 3.0  # residuals are clipped at K scales before they update anything
GAUSS_ABS = 1.2533  # sigma / E|residual| for Gaussian noise
SUSTAIN_S = 3600  # the window of the sustained view (longer shifts are the CUSUM's)
CUSUM_SLACK = 1.0  # in scales: shifts below about twice this are left to the other views
CUSUM_CLIP = 4.0
CUSUM_PER_Z = 2.0  # CUSUM units per equivalent z
CUSUM_WINDOW_S = 6 * 3600  # the longest run the CUSUM sums over
KINDS = ("level", "sustained", "shift")


@dataclass
class Scores:
    score: np.ndarray  # (nodes, time, metrics) in [0, 1], NaN where no value or no usual yet
    baseline: np.ndarray  # the usual value for that node, metric and time
    z: np.ndarray  # signed residual in scales
    views: tuple  # the equivalent z of each view, in the order of KINDS

    def kind(self, i: int, t: int, j: int) -> str:
        """Which view gave the score of node i, step t, metric j."""
        return KINDS[int(np.nanargmax([v[i, t, j] for v in self.views]))]


def score_cube(values, times, metrics, step_s: int, min_days: int = 3) -> Scores:
    """Score a cube (nodes, time, metrics) whose grid starts at a WIB midnight.

    Parameters
    ----------
    values : ndarray (nodes, time, metrics)
    times : ndarray (time,)
        UNIX seconds; the first is a local (WIB) midnight and the grid is regular.
    metrics : sequence of str
        Names from the measurement table.
    step_s : int
        Grid step, seconds; 86400 must be a multiple of it.
    min_days : int
        How many days of values a time-of-day slot needs before it has a usual.
    """
    if (int(times[0]) + WIB_S) % 86400:
        raise ValueError("the grid must start at a WIB midnight")
    x = np.asarray(values)
    n_nodes, n_t, n_m = x.shape
    times = np.asarray(times)
    # one row per node and metric, time along the contiguous axis; in blocks of nodes small
    # enough to stay in the processor's cache
    rows = np.empty((4, n_nodes, n_m, n_t), dtype=np.float32)  # usual, z, sustained, shift
    score = np.empty((n_nodes, n_m, n_t), dtype=np.float32)
    tides = {j: tidal_usual(np.asarray(x[:, :, j], dtype=np.float32), times, step_s, SCALE_FLOOR.get(m, 0.0))
             for j, m in enumerate(metrics) if m in TIDAL}  # fitted for all nodes at once
    for lo in range(0, n_nodes, BLOCK):
        block = np.ascontiguousarray(x[lo:lo + BLOCK].transpose(0, 2, 1), dtype=np.float32)
        tide = {j: (b[lo:lo + BLOCK], s[lo:lo + BLOCK]) for j, (b, s) in tides.items()}
        _score_rows(block, step_s, metrics, min_days, tide, rows[:, lo:lo + BLOCK], score[lo:lo + BLOCK])
    t = (0, 2, 1)
    base, u, sustained, shift = (r.transpose(t) for r in rows)
    return Scores(score.transpose(t), base, u, (np.abs(u), sustained, shift))


BLOCK = 32  # nodes per block


def _score_rows(x, step_s, metrics, min_days, tides, out, score):
    """Scores of x (nodes, metrics, time) into score; usual, z, sustained and shift views into out.

    tides maps a metric's column to its tidal usual and scale, which replace the time of day's.
    """
    base, u, sustained, shift = out
    floor = np.array([SCALE_FLOOR.get(m, 0.0) for m in metrics], dtype=np.float32)[None, :, None]
    slots = 86400 // step_s
    per_slot = max(1, SLOT_S // step_s)
    seasonal, scale = seasonal_usual(x, slots, floor, min_days, per_slot if slots % per_slot == 0 else 1)
    base[...] = seasonal
    for j, (tide, tide_scale) in tides.items():
        base[:, j], scale[:, j] = tide, tide_scale
    with np.errstate(invalid="ignore"):
        np.divide(x - base, scale, out=u)
    zc = np.clip(u, -CUSUM_CLIP, CUSUM_CLIP)
    w = max(3, SUSTAIN_S // step_s) | 1  # odd
    np.multiply(np.abs(trailing_mean(zc, w, (w + 1) // 2)), np.float32(w ** 0.25), out=sustained)
    np.divide(cusum(zc, CUSUM_SLACK, max(2, CUSUM_WINDOW_S // step_s)), np.float32(CUSUM_PER_Z), out=shift)
    z = np.fmax(np.fmax(np.abs(u), sustained), shift)
    with np.errstate(invalid="ignore"):
        score[...] = np.where(np.isnan(u), np.float32(np.nan), z / (z + np.float32(Z_HALF)))


def seasonal_usual(x, slots: int, floor, min_days: int, per_slot: int = 1):
    """The usual value and its scale for x (nodes, metrics, time), from earlier days only.

    Returns two arrays shaped like x. The day is cut into slots of `per_slot` grid steps. Per slot,
    day by day, with r the residual of the slot's mean from the usual and a the mean absolute
    residual of its values, the n-th day moves the usual by max(ALPHA, 1 / n) * r and the scale by
    max(BETA, 1 / (n - 1)) towards GAUSS_ABS * a: running means at first, exponential smoothing
    later. Once the slot has `min_days` days the usual is used, and residuals are clipped at K
    scales first. The scale used is the larger of the slot's own, half the mean over all slots of
    that node and metric (a day-shaped pattern of quiet slots is not trusted alone) and the
    metric's floor.
    """
    n_nodes, n_m, n_t = x.shape
    n_days = -(-n_t // slots)
    n_slots = slots // per_slot
    padded = np.full((n_nodes, n_m, n_days * slots), np.nan, dtype=np.float32)
    padded[:, :, :n_t] = x
    by_day = padded.reshape(n_nodes, n_m, n_days, n_slots, per_slot)
    base = np.full((n_nodes, n_m, n_days, n_slots), np.nan, dtype=np.float32)
    scale = np.full_like(base, np.nan)
    b = np.zeros((n_nodes, n_m, n_slots), dtype=np.float32)
    s = np.zeros_like(b)
    n = np.zeros(b.shape, dtype=np.int16)
    fl = np.asarray(floor, dtype=np.float32)
    inf = np.float32(np.inf)
    zero = np.float32(0.0)
    for d in range(n_days):
        ready = n >= min_days
        used = np.maximum(np.maximum(s, 0.5 * s.mean(axis=-1, keepdims=True)), fl)
        base[:, :, d] = np.where(ready, b, np.nan)
        scale[:, :, d] = np.where(ready, used, np.nan)
        bound = np.where(ready, K * used, inf)[..., None]
        resid = np.clip(by_day[:, :, d] - b[..., None], -bound, bound)  # (nodes, metrics, slots, per_slot)
        if per_slot == 1:
            rc, a = resid[..., 0], np.abs(resid[..., 0])
            have = ~np.isnan(rc)
        else:
            valid = ~np.isnan(resid)
            count = valid.sum(axis=-1)
            have = count > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                rc = np.where(valid, resid, zero).sum(axis=-1) / count
                a = np.where(valid, np.abs(resid), zero).sum(axis=-1) / count
        gain_b = np.maximum(np.float32(ALPHA), 1.0 / (n + 1), dtype=np.float32)
        gain_s = np.where(n > 0, np.maximum(np.float32(BETA), 1.0 / np.maximum(n, 1), dtype=np.float32), 0)
        s += np.where(have, gain_s * (GAUSS_ABS * a - s), zero)
        b += np.where(have, gain_b * rc, zero)
        n += have
    shape = (n_nodes, n_m, n_days * slots)
    if per_slot > 1:
        base, scale = np.repeat(base, per_slot, axis=-1), np.repeat(scale, per_slot, axis=-1)
    return base.reshape(shape)[:, :, :n_t], scale.reshape(shape)[:, :, :n_t]


def tidal_usual(x, times, step_s: int, floor: float):
    """The expected tide per node (nodes, time), from the values before each stretch.

    Every TIDE_REFIT_S the mean and the constituents of TIDE_HOURS (cosine and sine each) are
    fitted by least squares to up to TIDE_DAYS previous days at half-hour resolution (a small ridge
    keeps pairs the window cannot yet separate, K1 and O1, from blowing up) and predicted over the
    next stretch; the scale is GAUSS_ABS times the fit's mean absolute residual, floored. A node
    needs TIDE_MIN_DAYS of values in the window for a fit.
    """
    n_nodes, n_t = x.shape
    hours = (times - times[0]) / 3600.0
    cols = [np.ones_like(hours)]
    for period in TIDE_HOURS:
        cols += [np.cos(2 * np.pi * hours / period), np.sin(2 * np.pi * hours / period)]
    design = np.stack(cols, axis=1)  # (time, p)
    ridge = 1e-4 * np.eye(design.shape[1])
    ridge[0, 0] = 0.0
    base = np.full((n_nodes, n_t), np.nan, dtype=np.float32)
    scale = np.full_like(base, np.nan)
    thin = max(1, 1800 // step_s)
    every = max(1, TIDE_REFIT_S // step_s)
    window = TIDE_DAYS * 86400 // step_s
    for lo_pred in range(every, n_t, every):
        lo, hi = max(0, lo_pred - window), lo_pred
        a = design[lo:hi][::-1][::thin]  # thinned back from the newest value
        y = x[:, lo:hi][:, ::-1][:, ::thin].astype(float)
        w = (~np.isnan(y)).astype(float)
        enough = w.sum(axis=1) * thin * step_s >= TIDE_MIN_DAYS * 86400
        if not enough.any():
            continue
        y, w = np.nan_to_num(y[enough]), w[enough]  # nodes with too little water-level data are left out
        p = a.shape[1]
        outer = (a[:, :, None] * a[:, None, :]).reshape(len(a), p * p)  # one GEMM for all nodes' Gram
        gram = (w @ outer).reshape(-1, p, p) + ridge * max(1.0, w.sum(axis=1).max())
        coef = np.linalg.solve(gram, ((w * y) @ a)[..., None])[..., 0]
        mae = (np.abs(y - coef @ a.T) * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1)
        span = slice(lo_pred, min(n_t, lo_pred + every))
        base[enough, span] = coef @ design[span].T
        scale[enough, span] = np.maximum(GAUSS_ABS * mae, floor)[:, None]
    return base, scale


def trailing_mean(a, w: int, min_count: int):
    """NaN-aware mean of a[..., t-w+1 .. t] along the last axis; NaN with fewer than min_count values.

    `w` must be odd (SciPy's running filters reach back at most half a window past centre, which
    for an odd window is exactly a trailing one).
    """
    valid = ~np.isnan(a)
    sums = uniform_filter1d(np.where(valid, a, np.float32(0.0)), w, axis=-1, mode="constant", origin=w // 2)
    counts = np.rint(uniform_filter1d(valid.astype(np.float32), w, axis=-1, mode="constant", origin=w // 2) * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts >= min_count, sums * np.float32(w) / counts, np.float32(np.nan))


def cusum_span(window: int) -> int:
    """The longest run the windowed CUSUM sums: `window`, or one more to make the filter length odd."""
    return window if window % 2 == 0 else window + 1


def cusum(u, slack: float, window: int):
    """Two-sided CUSUM over the last `window` steps, along the last axis: max(S+, S-).

    S+ at t is the largest sum of (u - slack) over a run of at most `cusum_span(window)` steps ending at t
    (zero if none is positive); S- the same for (-u - slack); NaN adds nothing. Without the window
    this is Page's CUSUM, which after a long shift would stay high for as long again; with it, a
    shift that ended `window` steps ago leaves no trace. With C the running sum, S+ is C_t minus the
    smallest C over the window: a running minimum filter.
    """
    k = cusum_span(window) + 1  # the filter covers C over the span and the step before it
    out = None
    for sign in (1.0, -1.0):
        y = np.where(np.isnan(u), np.float32(0.0), np.float32(sign) * u - np.float32(slack))
        c = np.zeros(u.shape[:-1] + (u.shape[-1] + 1,), dtype=np.float32)
        np.cumsum(y, axis=-1, out=c[..., 1:])
        low = minimum_filter1d(c, k, axis=-1, mode="nearest", origin=k // 2)  # min of c[t - k + 1 .. t]
        s = (c - low)[..., 1:]
        out = s if out is None else np.maximum(out, s)
    return out


@dataclass
class Event:
    node: str
    metric: str
    kind: str
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
            kind = scores.kind(i, k, j)
            out.append(Event(nodes[i], metrics[j], kind, int(times[a]), int(times[b - 1]) + step, peak,
                             float(x[i, k, j]), "critical" if peak >= critical else "warning",
                             _sentence(kind, metrics[j], float(x[i, k, j] - scores.baseline[i, k, j]),
                                       int(times[k]), int(times[a]))))
    return out


def _clock(t: int) -> str:
    m = ((t + WIB_S) % 86400) // 60
    return f"{m // 60:02d}:{m % 60:02d} WIB"


def _sentence(kind: str, metric: str, diff: float, at: int, start: int) -> str:
    unit = METRICS[metric].unit
    usual = "the expected tide" if metric in TIDAL else "this node's usual"
    side = "above" if diff > 0 else "below"
    if kind == "level":
        return f"{abs(diff):.1f} {unit} {side} {usual} for {_clock(at)}"
    if kind == "sustained":
        return f"{abs(diff):.1f} {unit} {side} {usual} at {_clock(at)}, and off it since {_clock(start)}"
    return f"shifted {side} {usual} since {_clock(start)}: {abs(diff):.1f} {unit} at {_clock(at)}"
