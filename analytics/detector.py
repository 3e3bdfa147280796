"""The anomaly detector: one code path for the product's series and for the Numenta Anomaly Benchmark.

`score_rows(times, x)` scores many series at once, one per row of ``x`` (rows, time); NAB's single
series is one row, the product's are one per node and metric (`analytics.anomaly`). It is causal:
the score of column i uses columns 0..i only, so appending data never changes a past score.

How it scores
-------------
Three views of surprise, each a robust z against what the past would have said:

- **level**: the value (and half that of the mean of the last `recent` values) against the
  recent level: the exact median of the previous `windows[k]` values, with a scale from their
  interquartile range (SciPy's one-dimensional rank filter, O(log w) per value).
- **day** and **week**: the value against the same phase on up to `days` earlier days and
  `weeks` earlier weeks (median), when the grid step divides a day; the z is averaged over a
  `1/smooth_per_day` of a day, so that a changed day shows rather than one odd value.

Each view is judged against its own recent record: the ratio of the view's surprise to the
largest it gave over roughly the previous `memory` values (at least `z_floor`; each value
raises the record by at most `raise_by` times the record it met, so a short glitch cannot set
the bar for what follows). The largest ratio over the views is divided by the largest it reached
over the previous `hold_s` seconds (one alarm per incident), and r maps into [0, 1] as r / (r + 1).

Context (the product's, not NAB's)
----------------------------------
- ``floor``: per row, the smallest scale that means something in the series' units (a sensor's
  resolution and noise); NAB has none, so its scale floor is a fraction of the series' spread.
- ``explained``: where a known cause accounts for a move (rain, for humidity, cooling and soil
  wetting); the views see no surprise there and their records are not raised by it.
- ``reference``: per row, what the node's neighbours say (the median of the other nodes of its
  site); when given, the views look at the difference from it, so weather that moves the whole
  site cancels and a node that moves alone stands out.

State (what a streaming run would carry from one value to the next)
-------------------------------------------------------------------
Per series: the last ``max(windows)`` values (level), the last ``days`` days and ``weeks`` weeks
of values at the grid step (day and week views, as z over the last smoothing window), the running
count, sum and sum of squares (the spread floor), each view's record blocks (``RECORD_BLOCKS``
block maxima covering `memory` values, and the current block's), and the last `hold` ratios.
`State` names them; `score_rows` computes them all from the start of the window it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, rank_filter



@dataclass(frozen=True)
class Params:
    """The detector's constants; the defaults are the values chosen by cross-validation on NAB
    (`bench.nab_cv`, leave one category out)."""

    windows: tuple = (48, 240)  # values in the recent-level baselines
    recent: int = 3  # values averaged for the slow variant of the level view
    days: int = 7  # earlier days the day view uses (two at least)
    weeks: int = 4  # earlier weeks the week view uses (two at least)
    smooth_per_day: int = 12  # the seasonal surprise is averaged over this fraction of a day
    memory: int = 500  # values of a view's own record its surprise is judged against
    warm_up: int = 100  # values before the first score
    z_floor: float = 1.0  # a record below this z is no record: a quiet series does not make every wobble news
    raise_by: float = 3.0  # the most one value multiplies a view's record by
    hold_s: int = 2 * 3600  # how long a raised surprise stands for its incident (at least hold_min values)
    hold_min: int = 3
    min_lags: int = 2  # earlier periods a seasonal view needs before it scores
    spread_frac: float = 0.1  # without a floor, scales are at least this fraction of the series' spread


PARAMS = Params()
RECORD_BLOCKS = 10  # blocks the record's memory is kept in
ROW_BLOCK = 16  # series whose views are computed together: their working arrays stay in the processor's cache
IQR_SIGMA = 1 / 1.349  # sigma / interquartile range for Gaussian noise


@dataclass
class Result:
    score: np.ndarray  # (rows, time) in [0, 1]
    views: np.ndarray  # (views, rows, time): each view's equivalent z, 0 where it does not apply
    baseline: np.ndarray  # (rows, time): the level view's usual value, its first window's (NaN early)
    kind: np.ndarray  # (rows, time) int8: the view (VIEW_NAMES) whose ratio gave the score
    surprise: np.ndarray  # (rows, time): the largest view, before any `explained` cause was taken out


VIEW_NAMES = ("level", "day", "week")


def grid_step(times, warm_up: int = PARAMS.warm_up) -> int:
    """The grid step in seconds, from the first `warm_up` steps only (so a score never depends on later rows)."""
    ts = np.asarray(times)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[s]").astype(np.int64)
    if len(ts) < 2:
        return 0
    return int(np.median(np.diff(ts[:warm_up + 1])))


def carry_forward(x: np.ndarray) -> np.ndarray:
    """Each NaN replaced by the last value before it along the last axis (0 before the first)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    idx = np.where(np.isnan(x), 0, np.arange(n))
    np.maximum.accumulate(idx, axis=-1, out=idx)
    out = np.take_along_axis(x, idx, axis=-1)
    return np.where(np.isnan(out), 0.0, out)


def running_spread(x: np.ndarray) -> np.ndarray:
    """Standard deviation of each row's values so far (inclusive), causal."""
    k = np.arange(1, x.shape[-1] + 1)
    mean = np.cumsum(x, axis=-1) / k
    return np.sqrt(np.maximum(np.cumsum(x * x, axis=-1) / k - mean * mean, 0.0))


def trailing_mean(a: np.ndarray, w: int) -> np.ndarray:
    """Mean of the last w values (fewer at the start) along the last axis."""
    n = a.shape[-1]
    hi = np.cumsum(a, axis=-1)  # the sums up to and including each value
    lo = np.zeros_like(hi)  # and those before its window (none for the first w)
    lo[..., w:] = hi[..., :n - w]
    return (hi - lo) / np.minimum(np.arange(1, n + 1), w)


def trailing_rank(x: np.ndarray, w: int, q: float) -> np.ndarray:
    """The q-quantile (0..1, by rank) of the w values before each one, along the last axis of x (rows, time).

    Before the w-th value the window is padded with the row's first value. One pass of SciPy's
    one-dimensional rank filter over all rows laid end to end (each behind its own padding, so no
    row sees another's values): O(log w) per value.
    """
    rows, n = x.shape
    padded = np.concatenate([np.repeat(x[:, :1], w, axis=1), x], axis=1)  # (rows, w + n)
    rank = min(w - 1, max(0, round(q * (w - 1))))
    # inclusive window ending at column c: columns c - w + 1 .. c
    out = rank_filter(padded.ravel(), rank, size=w, mode="nearest", origin=(w - 1) // 2 if w % 2 else w // 2 - 1)
    out = out.reshape(rows, w + n)
    return out[:, w - 1:w - 1 + n]  # the window ending just before each value


def level_view(x: np.ndarray, scale_floor: np.ndarray, p: Params) -> tuple:
    """Robust z of each value against the recent level; also the level (of the first window).

    For each window of W values, the value at t is compared with the median m of the W values
    before it, with the scale the interquartile range over 1.349 (the Gaussian sigma) plus
    `scale_floor`; the mean of the last `recent` values is compared too, at half weight. Zero until
    W values exist.
    """
    rows, n = x.shape
    out = np.zeros((rows, n))
    level = np.full((rows, n), np.nan)
    recent = trailing_mean(x, p.recent)
    for w in p.windows:
        if n <= w:
            continue
        med = trailing_rank(x, w, 0.5)
        iqr = trailing_rank(x, w, 0.75) - trailing_rank(x, w, 0.25)
        s = IQR_SIGMA * iqr + scale_floor
        z = np.fmax(np.abs(x - med) / s, 0.5 * np.abs(recent - med) / (s / math.sqrt(p.recent)))
        z[:, :w] = 0.0
        out = np.fmax(out, z)
        if w == p.windows[0]:
            level[:, w:] = med[:, w:]
    return out, level


def seasonal_view(x: np.ndarray, scale_floor: np.ndarray, period: int, count: int, smooth: int,
                  min_lags: int = 2) -> np.ndarray:
    """Robust z of each value against the median of the same phase `period` values apart, up to `count` back.

    The scale is 1.25 times the mean absolute seasonal residual over the previous period (at least
    `scale_floor`); the z is averaged over the last `smooth` values. Zero until `min_lags` earlier periods
    exist. The median is taken in float32, one stretch of a period at a time: within the stretch every
    value has the same number of earlier periods, min(count, k) in the k-th, so no lag is missing.
    """
    rows, n = x.shape
    if period < 4 or n <= min_lags * period:
        return np.zeros((rows, n))
    count = min(count, (n - 1) // period)
    x32 = x.astype(np.float32)
    resid = np.zeros((rows, n))
    for a in range(min_lags * period, n, period):
        b = min(n, a + period)
        lags = [x32[:, a - j * period:b - j * period] for j in range(1, min(count, a // period) + 1)]
        resid[:, a:b] = np.abs(x[:, a:b] - median_of(lags)) if lags else np.nan
    scale = np.concatenate([np.full((rows, 1), np.nan), trailing_mean(resid, period)[:, :-1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = resid / (1.25 * scale + scale_floor)
    z = np.nan_to_num(z, nan=0.0, posinf=0.0)
    z[:, :min_lags * period] = 0.0
    return trailing_mean(z, smooth)


def median_of(planes: list) -> np.ndarray:
    """The elementwise median of a few arrays of the same shape (none NaN): the mean of the middle two of
    them sorted by a network of compare-exchanges (exact: each minimum or maximum is one of its inputs).

    Examples
    --------
    >>> float(median_of([np.array(3.0), np.array(1.0), np.array(2.0), np.array(9.0)]))
    2.5
    """
    s = list(planes)
    for end in range(len(s) - 1, 0, -1):  # bubble the largest left to the end
        for j in range(end):
            s[j], s[j + 1] = np.minimum(s[j], s[j + 1]), np.maximum(s[j], s[j + 1])
    m = len(s)
    return (s[(m - 1) // 2] + s[m // 2]) / 2.0


def record(view: np.ndarray, p: Params) -> np.ndarray:
    """Each view value's record: the largest of about the previous `memory` values (at least z_floor), each
    entering the record at most `raise_by` times the record it met (`records`, gathered)."""
    return np.concatenate([bars.copy() for _, bars in records(view, p)], axis=1) if view.shape[1] else view.copy()


def records(view: np.ndarray, p: Params, chunk: int = 256):
    """The record of each view value, `chunk` values of time at a time: yields (start, bars), bars (rows, <= chunk)
    the records of the values from column start on (one buffer, overwritten by the next chunk).

    Sequential by nature (what a value adds depends on the record before it), so it runs along time,
    all rows at once. The memory is RECORD_BLOCKS blocks of memory // RECORD_BLOCKS values: the record
    covers the current block and the last RECORD_BLOCKS - 1 complete ones.
    """
    rows, n = view.shape
    size = max(1, p.memory // RECORD_BLOCKS)
    ring = np.zeros((RECORD_BLOCKS - 1, rows))  # maxima of the complete blocks, oldest overwritten
    past = np.full(rows, p.z_floor)  # max(z_floor, ring.max(axis=0)), kept up to date at block ends
    current = np.zeros(rows)
    entering = np.empty(rows)
    buf = np.empty((rows, min(chunk, n)))
    for start in range(0, n, chunk):
        bars = buf[:, :min(chunk, n - start)]
        for i in range(bars.shape[1]):
            t = start + i
            bar = np.maximum(past, current, out=bars[:, i])
            np.multiply(bar, p.raise_by, out=entering)
            np.minimum(view[:, t], entering, out=entering)
            np.maximum(current, entering, out=current)
            if (t + 1) % size == 0:
                ring[(t // size) % (RECORD_BLOCKS - 1)] = current
                np.maximum(ring.max(axis=0), p.z_floor, out=past)
                current[:] = 0.0
        yield start, bars


def score_rows(times, x, params: Params = PARAMS, floor=None, explained=None, reference=None,
               step_s: int | None = None, out: Result | None = None) -> Result:
    """Anomaly scores of the series in the rows of x.

    Parameters
    ----------
    times : array_like (time,)
        UNIX seconds or datetime64; the median step of the warm-up decides whether the day and
        week views apply (a step that divides a day), unless `step_s` is given.
    x : array_like (rows, time)
        The series; NaN is carried forward from the last value.
    params : Params
    floor : array_like (rows,), optional
        The smallest meaningful scale per row, in the series' units. Default: none (the scale floor
        is `spread_frac` of each series' running standard deviation).
    explained : array_like of int (rows, time), optional
        Where a known cause explains the series' moves: no surprise there. 1 explains a rise from the
        recent level, -1 a fall, 2 (or True) either; 0 nothing.
    reference : array_like (rows, time), optional
        What the neighbours say: the series scored is x minus it (NaN where there is none, which counts
        as a missing value; a row of zeros for a series without neighbours).
    step_s : int, optional
    out : Result, optional
        Arrays of the result's shapes to score into (a caller scoring many batches of the same size
        keeps its memory paged in); ignored when the shapes differ.

    Returns
    -------
    Result
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    rows, n = x.shape
    if n == 0:
        return Result(np.zeros((rows, 0)), np.zeros((len(VIEW_NAMES), rows, 0)), np.zeros((rows, 0)),
                      np.zeros((rows, 0), dtype=np.int8), np.zeros((rows, 0)))
    if reference is not None:  # no reference: as missing
        ref = np.atleast_2d(np.asarray(reference, dtype=float))
        shape = np.broadcast_shapes(x.shape, ref.shape)
        x, ref = np.broadcast_to(x, shape), np.broadcast_to(ref, shape)
        rows, n = shape
    step = grid_step(times, params.warm_up) if step_s is None else int(step_s)
    if out is not None and out.score.shape == (rows, n):
        score, views, baseline, kind, surprise = out.score, out.views, out.baseline, out.kind, out.surprise
        for a in (score, views, kind):
            a.fill(0)
    else:
        score = np.zeros((rows, n))  # the ratio, until the last pass makes it the score
        views = np.zeros((len(VIEW_NAMES), rows, n))
        baseline = np.empty((rows, n))  # all written, as surprise is
        kind = np.zeros((rows, n), dtype=np.int8)
        surprise = np.empty((rows, n))
    fl = np.zeros(rows) if floor is None else np.broadcast_to(np.asarray(floor, dtype=float), (rows,))
    why_all = None if explained is None else np.atleast_2d(np.asarray(explained))
    for lo in range(0, rows, ROW_BLOCK):  # the views, a few series at a time (their arrays stay in cache)
        sl = slice(lo, lo + ROW_BLOCK)
        xs = carry_forward(x[sl] if reference is None else x[sl] - ref[sl])
        scale_floor = np.maximum(params.spread_frac * running_spread(xs), fl[sl, None]) + 1e-9
        views[0, sl], baseline[sl] = level_view(xs, scale_floor, params)
        if 0 < step < 86400 and 86400 % step == 0:
            day = 86400 // step
            smooth = max(2, day // params.smooth_per_day)
            for k, (period, count) in enumerate(((day, params.days), (7 * day, params.weeks)), start=1):
                if n > params.min_lags * period:  # else zero, as views already are (untouched, unpaged)
                    views[k, sl] = seasonal_view(xs, scale_floor, period, count, smooth, params.min_lags)
        np.max(views[:, sl], axis=0, out=surprise[sl])
        if why_all is not None:
            why = why_all[sl].astype(np.int8)
            if why.any():
                # a signed cause explains moves its way only: +1 a rise, -1 a fall (from the recent level)
                side = np.sign(np.nan_to_num(xs - baseline[sl], nan=0.0)).astype(np.int8)
                views[:, sl] = np.where((why != 0) & ((why == side) | (np.abs(why) > 1)), 0.0, views[:, sl])
    ratio = score
    for k, v in enumerate(views):  # each view's surprise over its record; the largest is the ratio
        if not v.any():
            continue
        for start, bars in records(v, params):
            span = slice(start, start + bars.shape[1])
            r = np.divide(v[:, span], bars, out=bars)
            kind[:, span][r > ratio[:, span]] = k
            np.maximum(ratio[:, span], r, out=ratio[:, span])
    hold = max(params.hold_min, round(params.hold_s / step)) if step > 0 else params.hold_min
    for lo in range(0, rows, ROW_BLOCK):  # one alarm per incident
        r = ratio[lo:lo + ROW_BLOCK]
        r[:, :params.warm_up] = 0.0
        r /= np.maximum(previous_max(r, hold), 1.0)
        np.divide(r, r + 1.0, out=r)
    return Result(score, views, baseline, kind, surprise)


def previous_max(a: np.ndarray, rows: int) -> np.ndarray:
    """The largest of the `rows` values before each one along the last axis (0 before the first)."""
    past = np.concatenate([np.zeros(a.shape[:-1] + (1,)), a[..., :-1]], axis=-1)
    k = rows  # a window of `rows` ending at the value before
    return maximum_filter1d(past, k, axis=-1, mode="constant", cval=0.0, origin=(k - 1) // 2)


def score(timestamps, values, params: Params = PARAMS) -> np.ndarray:
    """Anomaly score in [0, 1] for each value of one series, causal (the NAB interface).

    Examples
    --------
    >>> t = np.arange(400) * 300
    >>> v = np.sin(np.arange(400) / 10.0)
    >>> v[300] += 5
    >>> s = score(t, v)
    >>> bool(s[300] > 0.5 > s[200:300].max())
    True
    """
    return score_rows(timestamps, np.asarray(values, dtype=float)[None, :], params).score[0]
