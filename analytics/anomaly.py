"""Anomalies per node and metric, over the whole fleet at once: `analytics.detector` with the fleet's context.

Each node's metric is one series of the detector (`analytics.detector.score_rows`, the code NAB
scores), and the fleet gives it what NAB's single series has not:

- **neighbours**: where a site has two other nodes or more with the metric, the series scored is
  the node's value minus the median of theirs. Weather moves the whole site and cancels; a node
  that moves alone (a sensor fault, a node 5 °C off its neighbours) stands out.
- **rain**: where any gauge of the site had rain in the last `RAIN_EXPLAINS_S` (for soil moisture
  `SOIL_WET_S`), the moves rain makes (`RAIN_SIGN`) are explained: humidity rising to saturation,
  cooling and soil wetting are the weather, not news, and so is the return afterwards; a lone node
  warming under rain is not (against neighbours, a shower reaches nodes a sample apart, so both ways while it
  rains and `RAIN_EDGE_S` after; not in the hours after for what the air carries, whose neighbours dry as the
  node does, but for the soil, which drains and cools at each node's pace).
- **particulates**: scored as log(1 + x) (their scatter grows with the concentration; a dying fan
  is a factor), against the site's other PM sensors or, with too few, the city's (`REGIONAL`).
- **units**: a scale floor per metric (`SCALE_FLOOR`, about a sensor's resolution and noise), so a
  very regular series does not make every wobble an anomaly, and a record floor of
  `PRODUCT_Z_FLOOR` such scales.
- **tides**: water level without neighbours is scored as its residual from the expected tide:
  the mean and the four main constituents (K1, O1, M2, S2; Pugh, D. T. (1987), *Tides, Surges and
  Mean Sea-Level*, Wiley, table 4.2) fitted by least squares to up to `TIDE_DAYS` previous days.
  Pontianak's real tide has more constituents than these four, and the Kapuas adds its discharge;
  what the fit leaves out is part of the residual's scale.

Everything uses earlier values only (the rain context one step ahead, `RAIN_AHEAD`), so appending data
never changes a past score (with rain: one step back). Runs of
scores at or above `EVENT_THRESHOLD` become events with a sentence a person understands, such as
"5.1 °C above this node's usual against the other nodes of its site, at 14:00 WIB".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import maximum_filter1d

from analytics import detector
from analytics.quality import LOG_FLOOR, RAIN_RETURNS, RAIN_SIGN, SCALE_FLOOR, comparable
from analytics.robust import nanmedian
from rimba import wib
from rimba.metrics import METRICS

TIDAL = ("water_level_cm",)
TIDE_HOURS = (23.934, 25.819, 12.421, 12.0)  # K1, O1, M2, S2 (Pugh 1987, table 4.2)
TIDE_DAYS = 15  # K1 and O1 separate after about 14 days
TIDE_REFIT_S = 3 * 3600
TIDE_MIN_DAYS = 2  # a day alone cannot tell the diurnal from the semidiurnal tide well enough
RAIN_EXPLAINS_S = 3 * 3600  # rain explains the moves of the metrics it moves for this long after
# against neighbours, rain explains moves either way only while it rains and this long after: a shower's end
# reaches nodes a sample or two apart (set from that, not tuned); in the hours after, the neighbours dry as
# the node does, so a node that moved alone under the shower (a fault) is news once the shower is over
RAIN_EDGE_S = 1800
SOIL_WET_S = 2 * 86400  # and soil moisture's for this long (it drains over days)
# particulates are scored as log(1 + x): their scatter grows with the concentration, and what a dying fan
# does is a factor; a site with too few PM sensors of its own is compared with the city's (haze and the
# background are regional)
RELATIVE = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3")
REGIONAL = RELATIVE
# Nodes sample at different moments of a step, and a gauge counts a shower only at its next reading: a node
# can feel the rain a step before its site's gauge reports it. The rain context looks that one step
# ahead, so with rain the newest step's score is provisional until the next step is in.
RAIN_AHEAD = 1
MIN_SITE_NODES = 3  # nodes of a site with the metric (the node itself included) for their median to be the reference
PRODUCT_Z_FLOOR = 4.0  # the record floor, in SCALE_FLOOR units: below it, nothing is news
# The product's series differ from NAB's in two ways its constants follow: they have units (the record floor
# above), and gross faults (a floating log, a stuck day) that a median of two earlier days would follow half
# way, so the day view waits for three. And no range check (`detector.novel_values`): a node's value beyond
# all it read so far is, in an eight-day window, a hazy day or a warm one more often than a fault (with it, the
# clean simulated fleet of bench.detection gave 18 anomaly events instead of 2).
PRODUCT = replace(detector.PARAMS, z_floor=PRODUCT_Z_FLOOR, min_lags=3, novel_tol=None)
EVENT_THRESHOLD = 0.54  # the NAB threshold of the detector's constants (bench.nab_cv, median of the folds)
CRITICAL = 0.75
GAUSS_ABS = 1.2533  # sigma / E|residual| for Gaussian noise


@dataclass
class Scores:
    score: np.ndarray  # (nodes, time, metrics) in [0, 1], NaN where no value
    baseline: np.ndarray  # what the value was expected to be: the node's recent level, or its neighbours' plus
    #                       its usual difference from them
    kind: np.ndarray  # (nodes, time, metrics) int8: index in KINDS
    referenced: np.ndarray  # (nodes, metrics) bool: scored against its neighbours
    z: np.ndarray  # (nodes, time, metrics): the largest view's surprise, in scales (an event lasts while it is high)

    def kind_name(self, i: int, t: int, j: int) -> str:
        return KINDS[int(self.kind[i, t, j])]


KINDS = detector.VIEW_NAMES


def site_reference(x: np.ndarray, sites, usable=None) -> np.ndarray:
    """For each node (axis 0) of x (nodes, time), the median of its site's nodes, itself included; NaN where
    fewer than MIN_SITE_NODES have a value. With three or more, one faulty node cannot move the median far
    from the healthy ones, and the faulty one's difference from it is its fault. `usable` (bool, like x):
    the values the median may take (`quality.comparable`); the others are still compared with it."""
    sites = np.asarray(sites)
    out = np.full(x.shape, np.nan)
    if usable is not None:
        x = np.where(usable, x, np.nan)
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        if len(idx) < MIN_SITE_NODES:
            continue
        enough = (~np.isnan(x[idx])).sum(axis=0) >= MIN_SITE_NODES
        out[idx] = np.where(enough, nanmedian(x[idx], axis=0), np.nan)
    return out


def rain_recent(rain: np.ndarray, sites, step_s: int, hold_s: int, ahead: int = 0) -> np.ndarray:
    """Per node (nodes, time): whether any gauge of its site had rain in the last hold_s (this step included),
    or in the next `ahead` steps."""
    sites = np.asarray(sites)
    out = np.zeros(rain.shape, dtype=bool)
    w = max(1, hold_s // step_s + 1)
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        with np.errstate(invalid="ignore"):
            wet = (np.nan_to_num(rain[idx], nan=0.0) > 0).any(axis=0).astype(np.uint8)
        held = maximum_filter1d(wet, w, mode="constant", cval=0, origin=(w - 1) // 2)  # the last w steps
        for k in range(1, ahead + 1):
            held[:-k] |= wet[k:]
        out[idx] = held.astype(bool)
    return out


def score_cube(values, times, metrics, step_s: int, sites=None, rain=None, params=PRODUCT) -> Scores:
    """Score a cube (nodes, time, metrics) on a regular grid.

    Parameters
    ----------
    values : ndarray (nodes, time, metrics)
    times : ndarray (time,)
        UNIX seconds; the grid is regular.
    metrics : sequence of str
        Names from the measurement table.
    step_s : int
        Grid step, seconds.
    sites : sequence of str, optional
        The site of each node (neighbours are the other nodes of a site).
    rain : ndarray (nodes, time), optional
        Each node's rain gauge, mm per step (NaN without a gauge).
    params : detector.Params
    """
    x = np.asarray(values, dtype=float)
    n_nodes, n_t, n_m = x.shape
    times = np.asarray(times)
    score = np.empty(x.shape)
    baseline = np.empty(x.shape)
    kind = np.zeros(x.shape, dtype=np.int8)
    z = np.empty(x.shape)
    referenced = np.zeros((n_nodes, n_m), dtype=bool)
    wet = rain_context(rain, sites, step_s)
    res = None  # the detector's arrays, reused from one metric to the next
    for j, m in enumerate(metrics):  # one detector call per metric: its nodes' series, in place (no copy)
        col = x[:, :, j]
        has = ~np.isnan(col).all(axis=1)
        for out in (score, baseline, z):
            out[~has, :, j] = np.nan
        if not has.any():
            continue
        xr, ref, why, referenced[:, j] = detector_inputs(col, times, m, step_s, sites, wet, has)
        res = detector.score_rows(times, xr, params, floor=scale_floor(m), explained=why, reference=ref,
                                  step_s=step_s, out=res)
        at = (slice(None) if has.all() else has, slice(None), j)
        score[at], baseline[at], kind[at], z[at] = detector_outputs(m, xr, ref, res)
    return Scores(score, baseline, kind, referenced, z)


def scale_floor(metric: str) -> float:
    return LOG_FLOOR if metric in RELATIVE else SCALE_FLOOR.get(metric, 0.0)


def rain_context(rain, sites, step_s: int, ahead: int = RAIN_AHEAD):
    """(wet, soil_wet) per node and step, each 1 while it rains at the site, 2 in the hours after, 0 else;
    None without rain or sites."""
    if rain is None or sites is None:
        return None
    raining = rain_recent(rain, sites, step_s, 0, ahead)
    # while it rains, rain explains the moves it makes; in the hours after, the return as well (either way);
    # 3 marks the shower's end (RAIN_EDGE_S), the only part of the hours after that explains a move against
    # neighbours
    after = rain_recent(rain, sites, step_s, RAIN_EXPLAINS_S, ahead)
    wet = np.where(raining, 1, np.where(rain_recent(rain, sites, step_s, RAIN_EDGE_S, ahead), 3, np.where(after, 2, 0)))
    soil_wet = np.where(raining, 1, np.where(rain_recent(rain, sites, step_s, SOIL_WET_S, ahead), 2, 0))
    return wet, soil_wet


def detector_inputs(col, times, m: str, step_s: int, sites, wet, has, tide_from: int = 0, offset: int = 0):
    """What the detector scores for metric m: (series, reference, explained, referenced) for the rows `has`
    of col (nodes, time); reference and explained None where they do not apply. `tide_from`: the first
    column whose expected tide is needed (the fits before it are skipped); `offset`: col's first column in
    the whole series (the tide is refitted at multiples of TIDE_REFIT_S from its start)."""
    n_nodes = col.shape[0]
    if m in RELATIVE:
        col = np.log1p(np.maximum(col, 0.0))
    ref = site_reference(col, sites, comparable(m, col)) if sites is not None else None
    if m in REGIONAL and sites is not None:
        alone = np.isnan(ref).all(axis=1)
        ref[alone] = site_reference(col, ["city"] * n_nodes)[alone]
    if m in TIDAL:
        tide, _ = tidal_usual(col, times, step_s, SCALE_FLOOR.get(m, 0.0), tide_from, offset)
        alone = np.ones((n_nodes, 1), dtype=bool) if ref is None else np.isnan(ref).all(axis=1, keepdims=True)
        ref = np.where(alone, tide, np.nan if ref is None else ref)
    neighbours = np.zeros(n_nodes, dtype=bool) if ref is None else ~np.isnan(ref).all(axis=1)
    if ref is not None:
        ref = np.where(neighbours[:, None], ref, 0.0)[has]  # no neighbours (and no tide) at any time: the value itself
    referenced = has & neighbours & (m not in TIDAL)
    why = None
    if m in RAIN_SIGN and wet is not None:
        why = (wet[1] if m == "soil_vwc_pct" else wet[0])[has]
        # against neighbours, the onset and the end of a shower reach nodes a sample apart, either way; the hours
        # after explain nothing there for what the air carries (RAIN_RETURNS: the neighbours' air dries as the
        # node's does), but the soil drains and cools at each node's own pace
        against = (neighbours[has] & (m not in TIDAL))[:, None]
        after = np.where(against & (m in RAIN_RETURNS), 0, 2)  # the hours after
        raining = np.where(against, 2, RAIN_SIGN[m])
        why = np.select([why == 1, why == 2, why == 3], [raining, after, 2], 0).astype(np.int8)
    return (col if has.all() else col[has]), ref, why, referenced


def detector_outputs(m: str, xr, ref, res):
    """(score, baseline, kind, z) of the detector's result for metric m, in the metric's units."""
    # no value, or no neighbours (or tide fit) to compare it with: no score
    missing = np.isnan(xr) if ref is None else np.isnan(xr - ref)
    expected = res.baseline if ref is None else ref + res.baseline
    return (np.where(missing, np.nan, res.score), np.expm1(expected) if m in RELATIVE else expected, res.kind,
            np.where(missing, np.nan, res.surprise))  # an incident goes on through a shower


def tidal_usual(x, times, step_s: int, floor: float, from_col: int = 0, offset: int = 0):
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
    first = max(every, from_col + offset)  # stretches are counted from the series' start (offset: x's first column)
    for lo_abs in range(first - first % every, n_t + offset, every):
        lo_pred = lo_abs - offset
        if lo_pred < 0 or lo_pred + every <= from_col:
            continue
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


def events(scores: Scores, values, times, nodes, metrics, threshold: float = EVENT_THRESHOLD,
           critical: float = CRITICAL, lasting: float = PRODUCT_Z_FLOOR) -> list:
    """Incidents per node and metric, as events.

    An event starts where the score reaches `threshold` (the detector's news) and lasts while the
    value stays at least `lasting` scales off what the views expected (the incident itself), so an
    offset that goes on is one event that goes on; steps without a score (no value, or the neighbours
    not in yet) do not end it: an event still open at the end of the window runs to its end."""
    x = np.asarray(values, dtype=float)
    hot = np.nan_to_num(scores.score, nan=0.0) >= threshold
    # off: still off, or not seen either way (no value, or the neighbours not in yet for the newest steps)
    off = np.isnan(scores.z) | (np.nan_to_num(scores.z, nan=0.0) >= lasting)
    out = []
    step = int(times[1] - times[0]) if len(times) > 1 else 0
    for i, j in zip(*np.nonzero(hot.any(axis=1)), strict=True):
        run = hot[i, :, j].copy()
        for t in range(1, len(run)):  # carry each run on while the value stays off
            run[t] |= run[t - 1] and off[i, t, j]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], run.astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if b < len(run):  # an event that ended: at the last value seen off, not after the gap before it
                seen = np.flatnonzero(~np.isnan(scores.z[i, a:b, j]))
                b = a + int(seen[-1]) + 1 if len(seen) else a + 1
            k = a + int(np.nanargmax(scores.score[i, a:b, j]))
            peak = float(scores.score[i, k, j])
            kind = scores.kind_name(i, k, j)
            diff = float(x[i, k, j] - scores.baseline[i, k, j])
            out.append(Event(nodes[i], metrics[j], kind, int(times[a]), int(times[b - 1]) + step, peak,
                             float(x[i, k, j]), "critical" if peak >= critical else "warning",
                             _sentence(metrics[j], diff, int(times[k]), bool(scores.referenced[i, j]))))
    return out


def _sentence(metric: str, diff: float, at: int, referenced: bool) -> str:
    unit = METRICS[metric].unit
    side = "above" if diff > 0 else "below"
    if referenced:
        return f"{abs(diff):.1f} {unit} {side} this node's usual against the other nodes of its site, at {wib.clock(at)}"
    usual = "the expected tide" if metric in TIDAL else "this node's usual"
    return f"{abs(diff):.1f} {unit} {side} {usual} at {wib.clock(at)}"
