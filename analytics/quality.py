"""Data-quality checks, vectorized over the whole fleet at once.

Input is a cube ``x`` of shape (nodes, time, metrics) on a regular time grid,
NaN where there is no value; metric names come from the measurement table. The
result is a cube of bit flags of the same shape; nothing is "corrected". Each
check is a few array operations over all nodes and metrics together; the tests
hold every one of them against a plain per-point loop.

Flags (combine with ``|``; stored as the `qc` measurement's `flag` field):

    RANGE     outside the metric's physical range (the measurement table)
    SPIKE     one sample far from both neighbours, in the same direction
    STEP      a jump to a new level larger than the metric's step limit
    FLAT      the same value for `flat_n` samples or more (a stuck sensor)
    GAP       no value here while the node reported at other times (a dropout)
    NOISE     the sample-to-sample scatter far above the series' usual
    DRIFT     a day-long offset from the median of the same site's other nodes
    HUMID_PM  a particulate reading taken above 80 % relative humidity, when
              low-cost optical sensors read high (DOMAIN.md §1.4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics.robust import nanmedian
from rimba.metrics import METRICS

RANGE, SPIKE, STEP, FLAT, GAP, NOISE, DRIFT, HUMID_PM = (1 << i for i in range(8))
FLAG_NAMES = {RANGE: "range", SPIKE: "spike", STEP: "step", FLAT: "flat", GAP: "gap", NOISE: "noise",
              DRIFT: "drift", HUMID_PM: "humid-pm"}
PM_METRICS = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3")

# Per-metric limits for samples a few minutes apart: largest plausible change between two samples
# (spike, step), whether a long constant run is suspicious, and the offset from neighbours that
# counts as drift. Configuration, not physics: override through `Limits`.
_STEP = {"air_temp_c": 4.0, "air_rh_pct": 20.0, "air_pressure_hpa": 3.0, "soil_temp_c": 2.0,
         "soil_vwc_pct": 10.0, "pm1_ugm3": 150.0, "pm25_ugm3": 200.0, "pm10_ugm3": 300.0, "co2_ppm": 400.0,
         "water_level_cm": 50.0, "water_temp_c": 2.0, "batt_v": 0.4, "rssi_dbm": 40.0}
_DRIFT = {"air_temp_c": 1.5, "air_rh_pct": 8.0, "air_pressure_hpa": 2.0, "soil_temp_c": 1.5, "soil_vwc_pct": 8.0,
          "pm25_ugm3": 15.0, "pm10_ugm3": 25.0, "pm1_ugm3": 10.0, "water_temp_c": 1.0, "water_level_cm": 20.0}
_NOT_FLAT = ("rain_mm", "light_lux")  # zero for hours is normal (no rain, night), and bursts too


@dataclass
class Limits:
    step: dict = field(default_factory=lambda: dict(_STEP))
    drift: dict = field(default_factory=lambda: dict(_DRIFT))
    flat_n: int = 12  # samples
    flat_exempt: tuple = _NOT_FLAT  # also exempt from NOISE: rain and light come in bursts
    noise_window: int = 6  # samples, centred
    noise_factor: float = 4.0
    drift_window: int = 144  # samples (a day at 10 minutes)
    humid_rh: float = 80.0


def _per_metric(metrics, table, default=np.nan):
    return np.array([table.get(m, default) for m in metrics], dtype=float)


def check(x, metrics, site_of=None, limits: Limits | None = None) -> np.ndarray:
    """Flag every value of ``x`` (nodes, time, metrics); return uint16 flags of the same shape.

    Parameters
    ----------
    x : ndarray, shape (nodes, time, metrics)
        Values on a regular time grid; NaN where missing.
    metrics : sequence of str
        The metric name of each column (from the measurement table).
    site_of : sequence of str, optional
        The site of each node; nodes of one site are each other's neighbours for DRIFT.
    limits : Limits, optional
    """
    lim = limits or Limits()
    x = np.asarray(x, dtype=float)
    n_nodes, n_t, n_m = x.shape
    flags = np.zeros(x.shape, dtype=np.uint16)
    present = ~np.isnan(x)

    low = np.array([METRICS[m].low for m in metrics])
    high = np.array([METRICS[m].high for m in metrics])
    with np.errstate(invalid="ignore"):
        flags[present & ((x < low) | (x > high))] |= RANGE

    # spikes and steps, on values inside the physical range
    ok = np.where(present & ~((x < low) | (x > high)), x, np.nan)
    step = _per_metric(metrics, lim.step)
    d_prev = np.full(x.shape, np.nan)
    d_prev[:, 1:] = ok[:, 1:] - ok[:, :-1]
    d_next = np.full(x.shape, np.nan)
    d_next[:, :-1] = ok[:, :-1] - ok[:, 1:]
    with np.errstate(invalid="ignore"):
        spike = (np.abs(d_prev) > step) & (np.abs(d_next) > step) & (np.sign(d_prev) == np.sign(d_next))
        jump = np.abs(d_prev) > step
    flags[spike] |= SPIKE
    after_spike = np.zeros_like(spike)
    after_spike[:, 1:] = spike[:, :-1]
    flags[jump & ~spike & ~after_spike] |= STEP

    # flat lines: runs of identical values at least flat_n long
    same = np.zeros(x.shape, dtype=bool)
    same[:, 1:] = ok[:, 1:] == ok[:, :-1]
    run_end = _run_lengths(same)  # identical neighbours before t
    run_start = _run_lengths(_shift_back(same)[:, ::-1])[:, ::-1]  # and after t
    flat = (run_end + run_start + 1 >= lim.flat_n) & present
    exempt = np.array([m in lim.flat_exempt for m in metrics])
    flags[flat & ~exempt] |= FLAT

    # dropouts, for metrics the node reports at all: missing while the node reported something
    # else at this time, or while this metric came before and after
    ever = present.any(axis=1, keepdims=True)
    reported = present.any(axis=2, keepdims=True)
    seen_before = np.maximum.accumulate(present, axis=1)
    seen_after = np.maximum.accumulate(present[:, ::-1], axis=1)[:, ::-1]
    flags[~present & ever & (reported | (seen_before & seen_after))] |= GAP

    # noise bursts: centred rolling std of first differences, against the series' own median
    w = lim.noise_window
    if n_t > w:
        diffs = np.where(np.isnan(d_prev), 0.0, d_prev)
        valid = (~np.isnan(d_prev)).astype(float)
        s1 = _centred_sum(diffs, w)
        s2 = _centred_sum(diffs * diffs, w)
        cnt = _centred_sum(valid, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(cnt >= w - 1, (s2 - s1 * s1 / cnt) / np.maximum(cnt - 1, 1), np.nan)
            sd = np.sqrt(np.maximum(var, 0.0))
            typical = nanmedian(np.where(sd > 0, sd, np.nan), axis=1, keepdims=True)
            noisy = sd > lim.noise_factor * typical
        flags[noisy & present & ~exempt] |= NOISE

    # drift against the same site's other nodes
    if site_of is not None:
        drift = _per_metric(metrics, lim.drift)
        sites = np.asarray(site_of)
        for site in np.unique(sites):
            idx = np.flatnonzero(sites == site)
            if len(idx) < 3:
                continue
            block = ok[idx]
            med = nanmedian(block, axis=0)
            off = block - med
            mean_off = _centred_mean(off, lim.drift_window)
            with np.errstate(invalid="ignore"):
                drifting = np.abs(mean_off) > drift
            sub = flags[idx]
            sub[drifting & present[idx]] |= DRIFT
            flags[idx] = sub

    # particulates in humid air
    if "air_rh_pct" in metrics:
        rh = x[:, :, list(metrics).index("air_rh_pct")]
        with np.errstate(invalid="ignore"):
            humid = rh > lim.humid_rh
        for j, m in enumerate(metrics):
            if m in PM_METRICS:
                flags[:, :, j][humid & present[:, :, j]] |= HUMID_PM
    return flags


def _shift_back(same):
    """same[t] says x[t] == x[t-1]; return b[t] = x[t] == x[t+1]."""
    out = np.zeros_like(same)
    out[:, :-1] = same[:, 1:]
    return out


def _run_lengths(b):
    """For each t, how many consecutive True end at t (along axis 1)."""
    c = np.cumsum(b, axis=1)
    reset = np.where(~b, c, 0)
    return c - np.maximum.accumulate(reset, axis=1)


def _centred_sum(a, w):
    """Sum over a centred window of w samples (clipped at the ends), along axis 1.

    With c the running sum (a leading 0), the sum for t is c[min(t - h + w, n)] - c[max(t - h, 0)],
    h = w // 2; padding c with h copies of its first value and w - h of its last turns both into
    plain slices (no fancy indexing over the whole cube).
    """
    n = a.shape[1]
    h = w // 2
    c = np.cumsum(a, axis=1)
    zero = np.zeros(a.shape[:1] + (1,) + a.shape[2:])
    last = c[:, -1:]
    pad = np.concatenate([zero] * (h + 1) + [c] + [last] * (w - h), axis=1)
    return pad[:, w:w + n] - pad[:, :n]


def _centred_mean(a, w):
    valid = ~np.isnan(a)
    s = _centred_sum(np.where(valid, a, 0.0), w)
    cnt = _centred_sum(valid.astype(float), w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt >= w // 2, s / cnt, np.nan)
