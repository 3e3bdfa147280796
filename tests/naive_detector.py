"""The anomaly detector's scores computed the slow, plain way: the reference that
analytics.detector's fast path must equal (the STUMPY `naive.py` habit, as bench/naive_quality.py).

This is `analytics.detector` as it was before it was made fast (and the range check, value by value): the views over one block of
ROW_BLOCK series at a time, the seasonal median by a sort over every lag with NaN for the missing
ones, the record stepped along time for each block, trailing means by gathered cumulative sums and trailing
medians by a sort of each window.
What it shares with the fast path (the level view, trailing ranks, the carried values, the spread,
the hold) is imported, not repeated.
"""

from __future__ import annotations

import bisect

import numpy as np

from analytics.detector import (
    PARAMS,
    RECORD_BLOCKS,
    VIEW_NAMES,
    Params,
    Result,
    carry_forward,
    grid_step,
    level_view,
    previous_max,
    running_spread,
)
from analytics.robust import nanmedian

ROW_BLOCK = 256


def same_phase(times, period_s: int, count: int, tol_s: float) -> list:
    """For each column, the columns 1..count periods before it by time (None where there is none), one by one:
    of the columns within tol_s of t - j * period_s, the nearest (then the earlier time, then the first), if it
    comes before."""
    ts = np.asarray(times).tolist()
    by_time = sorted(range(len(ts)), key=lambda c: ts[c])
    keys = [ts[c] for c in by_time]
    out = []
    for c, t in enumerate(ts):
        lags = []
        for j in range(1, count + 1):
            target = t - j * period_s
            lo, hi = bisect.bisect_left(keys, target - tol_s), bisect.bisect_right(keys, target + tol_s)
            near = min(by_time[lo:hi], key=lambda k: (abs(ts[k] - target), ts[k], k), default=None)
            lags.append(near if near is not None and near < c else None)
        out.append(lags)
    return out


def trailing_nanmean(a: np.ndarray, w: int) -> np.ndarray:
    """Mean of the values that are not NaN among the last w, by gathered cumulative sums and counts (NaN where
    there are none)."""
    ok = ~np.isnan(a)
    c = np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(np.where(ok, a, 0.0), axis=-1)], axis=-1)
    k = np.concatenate([np.zeros(a.shape[:-1] + (1,), dtype=np.int64), np.cumsum(ok, axis=-1)], axis=-1)
    hi = np.arange(1, a.shape[-1] + 1)
    lo = np.maximum(hi - w, 0)
    count = k[..., hi] - k[..., lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (c[..., hi] - c[..., lo]) / count, np.nan)


def seasonal_view(x: np.ndarray, scale_floor: np.ndarray, period: int, count: int, smooth: int,
                  min_lags: int = 2, times=None, step: int = 0) -> np.ndarray:
    """Robust z of each value against the median of the same phase `period` values apart, up to `count` back
    (by time, `same_phase`, when `times` are given: a series not on a regular grid).

    The scale is 1.25 times the mean absolute seasonal residual over the previous period (at least
    `scale_floor`); the view is the median of the last `smooth` z. Zero until two earlier periods exist.
    """
    rows, n = x.shape
    out = np.zeros((rows, n))
    if times is not None:
        if period < 4:
            return out
        lags = np.full((count, rows, n), np.nan, dtype=np.float32)
        for c, cols in enumerate(same_phase(times, period * step, count, step / 2)):
            for j, k in enumerate(cols):
                if k is not None:
                    lags[j, :, c] = x[:, k]
        few = (~np.isnan(lags[:, 0, :])).sum(axis=0) < min_lags
    else:
        if period < 4 or n <= min_lags * period:
            return out
        count = min(count, (n - 1) // period)
        lags = np.full((count, rows, n), np.nan, dtype=np.float32)
        for j in range(1, count + 1):
            lags[j - 1, :, j * period:] = x[:, :n - j * period]
        few = np.arange(n) < min_lags * period
    resid = np.abs(x - nanmedian(lags, axis=0))
    resid[:, few] = 0.0
    if times is not None and not few.all():  # off the grid: none after the first value with lags (not zero)
        resid[:, few & (np.arange(n) > np.argmin(few))] = np.nan
    scale = np.concatenate([np.full((rows, 1), np.nan), trailing_nanmean(resid, period)[:, :-1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = resid / (1.25 * scale + scale_floor)
    z = np.nan_to_num(z, nan=0.0, posinf=0.0)
    z[:, few] = 0.0
    return trailing_median(z, smooth)


def trailing_median(a: np.ndarray, w: int) -> np.ndarray:
    """The median of the last w values, the value itself included (the lower middle one of an even w), value by
    value with a sort; before the w-th value the window is padded with the row's first."""
    rows, n = a.shape
    padded = np.concatenate([np.repeat(a[:, :1], w - 1, axis=1), a], axis=1)
    out = np.empty((rows, n))
    for c in range(n):
        out[:, c] = np.sort(padded[:, c:c + w], axis=1)[:, (w - 1) // 2]
    return out


def record(view: np.ndarray, p: Params) -> np.ndarray:
    """Each view value's record: the largest of about the previous `memory` values (at least z_floor), each
    entering the record at most `raise_by` times the record it met.

    Sequential by nature (what a value adds depends on the record before it), so it runs along time,
    all rows at once. The memory is RECORD_BLOCKS blocks of memory // RECORD_BLOCKS values: the record
    covers the current block and the last RECORD_BLOCKS - 1 complete ones.
    """
    rows, n = view.shape
    size = max(1, p.memory // RECORD_BLOCKS)
    ring = np.zeros((RECORD_BLOCKS - 1, rows))  # maxima of the complete blocks, oldest overwritten
    past = np.full(rows, p.z_floor)  # max(z_floor, ring.max(axis=0)), kept up to date at block ends
    current = np.zeros(rows)
    before = np.empty((rows, n))
    for t in range(n):
        bar = np.maximum(past, current)
        before[:, t] = bar
        np.maximum(current, np.minimum(view[:, t], p.raise_by * bar), out=current)
        if (t + 1) % size == 0:
            ring[(t // size) % (RECORD_BLOCKS - 1)] = current
            past = np.maximum(ring.max(axis=0), p.z_floor)
            current = np.zeros(rows)
    return before


def novel(xs: np.ndarray, floor: np.ndarray, p: Params) -> np.ndarray:
    """Values outside the range of the values before them by more than novel_tol of it (and the floor), one
    value at a time with the smallest and largest so far (Numenta's "spatial anomaly")."""
    rows, n = xs.shape
    out = np.zeros((rows, n), dtype=bool)
    if p.novel_tol is None:
        return out
    for i in range(rows):
        lo = hi = None
        for t in range(n):
            v = xs[i, t]
            if lo is not None and hi > lo:
                margin = max(p.novel_tol * (hi - lo), floor[i])
                out[i, t] = v > hi + margin or v < lo - margin
            lo = v if lo is None else min(lo, v)
            hi = v if hi is None else max(hi, v)
    return out


def naive_score_rows(times, x, params: Params = PARAMS, floor=None, explained=None, reference=None,
                     step_s: int | None = None) -> Result:
    """`analytics.detector.score_rows` (the same arguments), the slow way."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    rows, n = x.shape
    if n == 0:
        return Result(np.zeros((rows, 0)), np.zeros((len(VIEW_NAMES), rows, 0)), np.zeros((rows, 0)),
                      np.zeros((rows, 0), dtype=np.int8), np.zeros((rows, 0)))
    if reference is not None:
        x = x - np.atleast_2d(np.asarray(reference, dtype=float))  # no reference: as missing
    step = grid_step(times, params.warm_up) if step_s is None else int(step_s)
    score = np.empty((rows, n))
    views = np.zeros((len(VIEW_NAMES), rows, n))
    baseline = np.empty((rows, n))
    kind = np.zeros((rows, n), dtype=np.int8)
    surprise = np.zeros((rows, n))
    for lo in range(0, rows, ROW_BLOCK):
        sl = slice(lo, lo + ROW_BLOCK)
        xs = carry_forward(x[sl])
        fl = np.zeros(len(xs)) if floor is None else np.broadcast_to(np.asarray(floor, dtype=float), (rows,))[sl]
        scale_floor = np.maximum(params.spread_frac * running_spread(xs), fl[:, None]) + 1e-9
        v_level, baseline[sl] = level_view(xs, scale_floor, params)
        views[0, sl] = v_level
        starts = [0, None, None]  # where a seasonal view's ratio starts to count
        quiet = [None, None, None]  # off the grid: the columns where a seasonal view's ratio does not count
        if 0 < step < 86400 and 86400 % step == 0:
            day = 86400 // step
            smooth = max(2, day // params.smooth_per_day)
            ts = np.asarray(times).astype("datetime64[s]").astype(np.int64) if np.asarray(times).dtype.kind == "M" \
                else np.asarray(times)
            by_time = None if (np.diff(ts) == step).all() else ts  # off the grid: the periods by time
            for k, (period, count) in enumerate(((day, params.days), (7 * day, params.weeks)), start=1):
                views[k, sl] = seasonal_view(xs, scale_floor, period, count, smooth, params.min_lags, by_time, step)
                lead = period + params.warm_up  # a period for the scale, then warm_up of z for the record
                if by_time is None:
                    starts[k] = params.min_lags * period + lead
                else:  # quiet: a stretch of too few lags at the start (and lead after) or of half a period (warm_up)
                    cols = same_phase(by_time, period * step, count, step / 2)
                    few = [sum(c is not None for c in lags) < params.min_lags for lags in cols]
                    quiet[k] = np.zeros(n, dtype=bool)
                    c = 0
                    while c < n:
                        if not few[c]:
                            c += 1
                            continue
                        end = c
                        while end < n and few[end]:
                            end += 1
                        if c == 0 or end - c >= max(1, period // 2):
                            quiet[k][c:end + (lead if c == 0 else params.warm_up)] = True
                        c = end
                    starts[k] = 0
        surprise[sl] = views[:, sl].max(axis=0)
        new = novel(xs, fl, params)
        if explained is not None:
            why = np.atleast_2d(np.asarray(explained))[sl].astype(np.int8)
            # a signed cause explains moves its way only: +1 a rise, -1 a fall (from the recent level)
            side = np.sign(np.nan_to_num(xs - baseline[sl], nan=0.0)).astype(np.int8)
            cause = (why != 0) & ((why == side) | (np.abs(why) > 1))
            views[:, sl] = np.where(cause, 0.0, views[:, sl])
            new &= ~cause
        ratio = np.zeros(xs.shape)
        for k, v in enumerate(views[:, sl]):
            if not v.any():
                continue
            r = v / record(v, params)
            if k:  # a seasonal view's ratio counts from a period and warm_up after its first, min_lags periods in
                r[:, :starts[k]] = 0.0
                if quiet[k] is not None:
                    r[:, quiet[k]] = 0.0
            kind[sl] = np.where(r > ratio, k, kind[sl])
            np.maximum(ratio, r, out=ratio)
        kind[sl] = np.where(new & (ratio < params.novel_ratio), 0, kind[sl])  # a novel value: at least novel_ratio
        ratio = np.where(new, np.maximum(ratio, params.novel_ratio), ratio)
        ratio[:, :params.warm_up] = 0.0
        hold = max(params.hold_min, round(params.hold_s / step)) if step > 0 else params.hold_min
        ratio = ratio / np.maximum(previous_max(ratio, hold), 1.0)
        score[sl] = ratio / (ratio + 1.0)
    return Result(score, views, baseline, kind, surprise)
