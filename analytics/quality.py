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
    NOISE     reversals between large sample-to-sample changes crowding a short window
    DRIFT     a day-long offset from the median of the same site's nodes (values
              flagged SPIKE, FLAT or NOISE left out)
    HUMID_PM  a particulate reading taken above 80 % relative humidity, when
              low-cost optical sensors read high (DOMAIN.md §1.4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter1d

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
    flags = np.zeros(x.shape, dtype=np.uint16)
    # blocks of whole sites (a node's flags depend on it and its site only), small enough to stay
    # in the processor's cache
    sites = np.asarray(site_of) if site_of is not None else np.arange(x.shape[0]) // BLOCK
    _, first, group = np.unique(sites, return_index=True, return_inverse=True)
    block = []
    for g in np.argsort(first):
        block.extend(np.flatnonzero(group == g))
        if len(block) >= BLOCK or g == np.argsort(first)[-1]:
            idx = np.array(block)
            flags[idx] = _check_block(x[idx], metrics, None if site_of is None else sites[idx], lim)
            block = []
    return flags


BLOCK = 32  # nodes


def _check_block(x, metrics, site_of, lim):
    """Flags for x (nodes, time, metrics), worked out with time along the contiguous axis."""
    x = np.ascontiguousarray(x.transpose(0, 2, 1))  # (nodes, metrics, time)
    n_t = x.shape[-1]
    flags = np.zeros(x.shape, dtype=np.uint16)

    def mark(bit, where):
        np.bitwise_or(flags, np.uint16(bit), out=flags, where=where)

    def per_metric(table):
        return _per_metric(metrics, table)[:, None]

    present = ~np.isnan(x)
    low = np.array([METRICS[m].low for m in metrics])[:, None]
    high = np.array([METRICS[m].high for m in metrics])[:, None]
    with np.errstate(invalid="ignore"):
        out_of_range = (x < low) | (x > high)
    mark(RANGE, out_of_range)

    # spikes and steps, on values inside the physical range
    ok = np.where(out_of_range, np.nan, x)
    step = per_metric(lim.step)
    d_prev = np.full(x.shape, np.nan)
    np.subtract(ok[..., 1:], ok[..., :-1], out=d_prev[..., 1:])
    d_next = np.full(x.shape, np.nan)
    np.negative(d_prev[..., 1:], out=d_next[..., :-1])
    with np.errstate(invalid="ignore"):
        big_prev = np.abs(d_prev) > step
        big_next = np.abs(d_next) > step
        spike = big_prev & big_next & ((d_prev > 0) == (d_next > 0))
    mark(SPIKE, spike)
    after_spike = np.zeros_like(spike)
    after_spike[..., 1:] = spike[..., :-1]
    mark(STEP, big_prev & ~spike & ~after_spike)

    # flat lines: runs of identical values at least flat_n long
    same = np.zeros(x.shape, dtype=bool)
    np.equal(ok[..., 1:], ok[..., :-1], out=same[..., 1:])
    exempt = np.array([m in lim.flat_exempt for m in metrics])[:, None]
    mark(FLAT, _in_long_run(same, lim.flat_n) & present & ~exempt)

    # dropouts, for metrics the node reports at all: missing while the node reported something
    # else at this time, or while this metric came before and after
    ever = present.any(axis=-1, keepdims=True)
    reported = present.any(axis=1, keepdims=True)
    first = np.argmax(present, axis=-1)[..., None]
    last = n_t - 1 - np.argmax(present[..., ::-1], axis=-1)[..., None]
    t = np.arange(n_t)
    mark(GAP, ~present & ever & (reported | ((t > first) & (t < last))))

    # noise bursts: reversals (a local peak or dip between two large sample-to-sample changes of
    # opposite sign) crowding a centred window. One spike is one reversal, a step or a ramp none;
    # a loose wire makes many. Particulates are judged on log(1 + x): their scatter grows with
    # the concentration (DOMAIN.md §1.4), so a haze episode is not noise.
    w = lim.noise_window
    if n_t > w:
        pm = [j for j, m in enumerate(metrics) if m in PM_METRICS]
        y = ok
        if pm:
            y = ok.copy()
            with np.errstate(invalid="ignore"):
                y[:, pm] = np.log1p(np.maximum(ok[:, pm], 0.0))
        d = np.full(x.shape, np.nan)
        np.subtract(y[..., 1:], y[..., :-1], out=d[..., 1:])
        size = np.abs(d)
        thin = size[..., ::max(1, w // 2)]
        typical = nanmedian(np.where(thin > 0, thin, np.nan), axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            big = size > lim.noise_factor * typical
        reversal = np.zeros(x.shape, dtype=bool)  # at t: d[t] and d[t + 1] big and of opposite sign
        reversal[..., :-1] = big[..., :-1] & big[..., 1:] & ((d[..., :-1] > 0) != (d[..., 1:] > 0))
        noisy = _centred_count(reversal, w) >= max(2, w // 3)
        mark(NOISE, noisy & present & ~exempt)

    # drift against the same site's other nodes
    if site_of is not None:
        drift = per_metric(lim.drift)
        sites = np.asarray(site_of)
        for site in np.unique(sites):
            idx = np.flatnonzero(sites == site)
            if len(idx) < 3:
                continue
            # values already explained by another check do not count towards an offset
            block = np.where(flags[idx] & (SPIKE | FLAT | NOISE), np.float32(np.nan), ok[idx].astype(np.float32))
            off = block - nanmedian(block, axis=0)
            with np.errstate(invalid="ignore"):
                drifting = np.abs(_centred_mean(off, lim.drift_window)) > drift
            sub = flags[idx]
            np.bitwise_or(sub, np.uint16(DRIFT), out=sub, where=drifting & present[idx])
            flags[idx] = sub

    # particulates in humid air
    if "air_rh_pct" in metrics:
        with np.errstate(invalid="ignore"):
            humid = x[:, list(metrics).index("air_rh_pct")] > lim.humid_rh
        for j, m in enumerate(metrics):
            if m in PM_METRICS:
                np.bitwise_or(flags[:, j], np.uint16(HUMID_PM), out=flags[:, j], where=humid & present[:, j])
    return flags.transpose(0, 2, 1)


def _in_long_run(same, n: int):
    """Whether each t lies in a run of at least n identical values (along the last axis).

    same[..., t] says value t equals value t - 1. The n values from s on are identical when
    same[s + 1 .. s + n - 1] are all true (a window sum of n - 1); t lies in such a run when one
    starts at any s in t - n + 1 .. t (a second window sum). Integer running sums, exact.
    """
    k = n - 1
    length = same.shape[-1]
    if k <= 0:
        return np.ones(same.shape, dtype=bool)
    if length < n:
        return np.zeros(same.shape, dtype=bool)
    c = np.zeros(same.shape[:-1] + (length + 1,), dtype=np.int32)
    np.cumsum(same, axis=-1, out=c[..., 1:])
    starts = np.zeros(same.shape[:-1] + (length + 1,), dtype=np.int32)  # running count of run starts
    # a run of n starts at s = 0 .. length - n when c[s + n] - c[s + 1] == k
    np.cumsum((c[..., n:] - c[..., 1:length - k + 1]) == k, axis=-1, out=starts[..., 1:length - k + 1])
    starts[..., length - k + 1:] = starts[..., length - k:length - k + 1]
    # starts s in max(t - k, 0) .. t, as a difference of the running count
    inside = starts[..., 1:].copy()
    inside[..., k:] -= starts[..., :length - k]
    return inside > 0


def _centred_sum(a, w):
    """Sum over a centred window of w samples, t - w // 2 .. t - w // 2 + w - 1, clipped at the ends.

    From running sums c (a leading 0): c[min(t - h + w, n)] - c[max(t - h, 0)], h = w // 2. A window
    of zeros sums to exactly zero (a running-sum filter would leave rounding dust there).
    """
    n = a.shape[-1]
    h = w // 2
    c = np.zeros(a.shape[:-1] + (n + 1,))
    np.cumsum(a, axis=-1, out=c[..., 1:])
    out = np.empty(a.shape)
    first, last = min(h, n), max(h, n + h - w + 1)  # t in [first, last) needs no clipping
    if last > first:
        np.subtract(c[..., first - h + w:last - h + w], c[..., first - h:last - h], out=out[..., first:last])
    ends = np.array([*range(first), *range(max(first, last), n)], dtype=int)
    if len(ends):
        out[..., ends] = c[..., np.minimum(ends - h + w, n)] - c[..., np.maximum(ends - h, 0)]
    return out


def _centred_count(valid, w):
    """How many of the centred window's samples are valid (SciPy's one-pass filter, rounded)."""
    return np.rint(uniform_filter1d(valid.astype(np.float32), w, axis=-1, mode="constant") * np.float32(w))


def _centred_mean(a, w):
    valid = ~np.isnan(a)
    # single precision: the mean is compared with a limit, never with zero
    s = uniform_filter1d(np.where(valid, a, np.float32(0.0)), w, axis=-1, mode="constant") * np.float32(w)
    cnt = _centred_count(valid, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt >= w // 2, s / cnt, np.nan)
