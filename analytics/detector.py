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
  `weeks` earlier weeks (median), when the grid step divides a day. The same phase is found by time
  (`phase_lags`) in a series with gaps, so a missing hour does not make each later value meet another
  hour of the day before; on a regular grid that is a count of columns. The view is the median z over
  the last `1/smooth_per_day` of a day, so that a changed stretch of the day shows, at once and
  whole, once it fills more than half of that, and one odd value does not (that is the level view's to judge).
  A mean there rose by a step per value, and the hold (below), which judges each value against the
  largest before it, let such a ramp through only where it first passed its record, weakly: a day
  that did not warm up, or a missing daily peak, scored 0.53 to 0.55 whatever its size.

- **range**: a value outside the range of all the values before it, by more than `novel_tol` of
  that range (and at least the row's ``floor``), is news whatever the views say: its ratio is at
  least `novel_ratio`. This is the "spatial anomaly" of Numenta's NAB detector (a value beyond the
  minimum or maximum seen so far by its `spatialTolerance`, 0.05, scores 1: numenta/NAB,
  nab/detectors/numenta/numenta_detector.py); the tolerance is that published value, not one
  chosen on NAB here. Its kind is the level view's.

Each view is judged against its own recent record: the ratio of the view's surprise to the
largest it gave over roughly the previous `memory` values (at least `z_floor`; each value
raises the record by at most `raise_by` times the record it met, so a short glitch cannot set
the bar for what follows); a seasonal view's ratio counts only from a period and `warm_up` values after its first
surprise (`view_starts`, `season_lead`: until then its scale and its record are being made of its own values). The
largest ratio over the views is divided by the largest it reached over the previous `hold_s` seconds (one alarm
per incident), and r maps into [0, 1] as r / (r + 1).

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
count, sum and sum of squares (the spread floor), the smallest and largest value so far (the
range), each view's record blocks (``RECORD_BLOCKS`` block maxima covering `memory` values, and the
current block's), and the last `hold` ratios.
`State` names them; `score_rows` computes them all from the start of the window it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, rank_filter

from analytics.robust import nanmedian


@dataclass(frozen=True)
class Params:
    """The detector's constants; the defaults are the values chosen by cross-validation on NAB
    (`bench.nab_cv`, leave one category out: the candidate with the best cross-validated score), but for the
    range check's two, set beforehand and not tuned (Numenta's published tolerance, and twice the record)."""

    windows: tuple = (240,)  # values in the recent-level baselines
    recent: int = 5  # values averaged for the slow variant of the level view
    days: int = 7  # earlier days the day view uses (two at least)
    weeks: int = 4  # earlier weeks the week view uses (two at least)
    smooth_per_day: int = 12  # the seasonal surprise is the median z over this fraction of a day
    memory: int = 500  # values of a view's own record its surprise is judged against
    warm_up: int = 100  # values before the first score
    z_floor: float = 2.0  # a record below this z is no record: a quiet series does not make every wobble news
    raise_by: float = 3.0  # the most one value multiplies a view's record by
    hold_s: int = 4 * 3600  # how long a raised surprise stands for its incident (at least hold_min values)
    hold_min: int = 3
    min_lags: int = 2  # earlier periods a seasonal view needs before it scores
    spread_frac: float = 0.02  # without a floor, scales are at least this fraction of the series' spread
    novel_tol: float | None = 0.05  # a value beyond the range seen so far by this fraction of it is news (None: off)
    novel_ratio: float = 2.0  # the ratio such a value scores at least (twice its view's record)


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
    ts = seconds(times)
    if len(ts) < 2:
        return 0
    return int(round(float(np.median(np.diff(ts[:warm_up + 1])))))  # (readings a fraction of a second late: 3599.9)


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
    if w < n:
        lo[..., w:] = hi[..., :n - w]
    return (hi - lo) / np.minimum(np.arange(1, n + 1), w)


def trailing_nanmean(a: np.ndarray, w: int) -> np.ndarray:
    """Mean of the values that are not NaN among the last w (fewer at the start) along the last axis, NaN where
    there are none; without NaN, `trailing_mean` to the bit.

    Examples
    --------
    >>> trailing_nanmean(np.array([[1.0, np.nan, 3.0, np.nan, np.nan]]), 2).tolist()
    [[1.0, 1.0, 3.0, 3.0, nan]]
    """
    missing = np.isnan(a)
    if not missing.any():
        return trailing_mean(a, w)
    n = a.shape[-1]
    hi = np.cumsum(np.where(missing, 0.0, a), axis=-1)
    k = np.cumsum(~missing, axis=-1)
    lo, k_lo = np.zeros_like(hi), np.zeros_like(k)
    if w < n:
        lo[..., w:], k_lo[..., w:] = hi[..., :n - w], k[..., :n - w]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > k_lo, (hi - lo) / (k - k_lo), np.nan)


def trailing_rank(x: np.ndarray, w: int, q: float) -> np.ndarray:
    """The q-quantile (0..1, by rank) of the w values before each one, along the last axis of x (rows, time).

    Before the w-th value the window is padded with the row's first value. One pass of SciPy's
    one-dimensional rank filter over all rows laid end to end (each behind its own padding, so no
    row sees another's values): O(log w) per value.
    """
    return trailing_kth(x, w, min(w - 1, max(0, round(q * (w - 1)))))


def trailing_kth(x: np.ndarray, w: int, rank: int) -> np.ndarray:
    """The rank-th smallest (from 0) of the w values before each one along the last axis of x (rows, time), as
    `trailing_rank`."""
    rows, n = x.shape
    padded = np.concatenate([np.repeat(x[:, :1], w, axis=1), x], axis=1)  # (rows, w + n)
    # inclusive window ending at column c: columns c - w + 1 .. c
    out = rank_filter(padded.ravel(), rank, size=w, mode="nearest", origin=(w - 1) // 2 if w % 2 else w // 2 - 1)
    out = out.reshape(rows, w + n)
    return out[:, w - 1:w - 1 + n]  # the window ending just before each value


def level_view(x: np.ndarray, scale_floor: np.ndarray, p: Params, offset: int = 0) -> tuple:
    """Robust z of each value against the recent level; also the level (of the first window).

    For each window of W values, the value at t is compared with the median m of the W values
    before it, with the scale the interquartile range over 1.349 (the Gaussian sigma) plus
    `scale_floor`; the mean of the last `recent` values is compared too, at half weight. Zero until
    W values exist. `offset`: the index of x's first column in the whole series (a `Stream`'s
    context); with an offset, only the columns with max(windows) columns before them in x are exact.
    """
    rows, n = x.shape
    out = np.zeros((rows, n))
    level = np.full((rows, n), np.nan)
    recent = trailing_mean(x, p.recent)
    for w in p.windows:
        if offset + n <= w:
            continue
        med = trailing_rank(x, w, 0.5)
        iqr = trailing_rank(x, w, 0.75) - trailing_rank(x, w, 0.25)
        s = IQR_SIGMA * iqr + scale_floor
        z = np.fmax(np.abs(x - med) / s, 0.5 * np.abs(recent - med) / (s / math.sqrt(p.recent)))
        z[:, :max(0, w - offset)] = 0.0
        out = np.fmax(out, z)
        if w == p.windows[0]:
            level[:, max(0, w - offset):] = med[:, max(0, w - offset):]
    return out, level


def seasonal_view(x: np.ndarray, scale_floor: np.ndarray, period: int, count: int, smooth: int,
                  min_lags: int = 2, offset: int = 0, lag_cols: np.ndarray | None = None) -> np.ndarray:
    """Robust z of each value against the median of the same phase `period` values apart, up to `count` back.

    The scale is 1.25 times the mean absolute seasonal residual over the previous period (at least
    `scale_floor`); the view is the median of the last `smooth` z (`trailing_median`). Zero until `min_lags`
    earlier periods exist. The median is taken in float32, one stretch of a period at a time: within the stretch every
    value has the same number of earlier periods, min(count, k) in the k-th, so no lag is missing.
    `offset`: the index of x's first column in the whole series (stretches are counted from the series'
    start); with an offset, only the columns with `seasonal_context` columns before them are exact.
    `lag_cols` (count, n), for a series not on a regular grid (`phase_lags`): the earlier columns of the same
    phase by time, -1 where a gap left none; the median is then of the lags there are, and a value with fewer
    than `min_lags` of them has no residual. (A series with gaps counted in rows would compare, after its
    first gap, each hour with another hour of the day before.)
    """
    rows, n = x.shape
    if lag_cols is not None:
        none = (lag_cols >= 0).sum(axis=0) < min_lags
        return _smoothed_z(x, _resid_by_time(x, lag_cols, none), scale_floor, period, smooth, none)
    if period < 4 or offset + n <= min_lags * period:
        return np.zeros((rows, n))
    x32 = x.astype(np.float32)
    resid = np.zeros((rows, n))
    first = max(min_lags * period, offset)  # the first column, counted from the series' start, with a residual
    for a in range(first - (first - min_lags * period) % period, offset + n, period):  # whole stretches
        b = min(offset + n, a + period)
        lags_n = min(count, a // period)
        lo = max(a, offset + lags_n * period)  # columns whose lags are all in x
        if lo >= b:
            continue
        lags = [x32[:, lo - j * period - offset:b - j * period - offset] for j in range(1, lags_n + 1)]
        resid[:, lo - offset:b - offset] = np.abs(x[:, lo - offset:b - offset] - median_of(lags))
    early = np.zeros(n, dtype=bool)
    early[:max(0, min_lags * period - offset)] = True
    return _smoothed_z(x, resid, scale_floor, period, smooth, early)


def _smoothed_z(x: np.ndarray, resid: np.ndarray, scale_floor: np.ndarray, period: int, smooth: int,
                none: np.ndarray) -> np.ndarray:
    """A seasonal view from its residuals: each over 1.25 times their mean over the previous period (of those
    there are: NaN is none; at least `scale_floor`), zero in the columns `none` (too few earlier periods), the
    median of the last `smooth`."""
    rows = x.shape[0]
    scale = np.concatenate([np.full((rows, 1), np.nan), trailing_nanmean(resid, period)[:, :-1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = resid / (1.25 * scale + scale_floor)
    z = np.nan_to_num(z, nan=0.0, posinf=0.0)
    z[:, none] = 0.0
    return trailing_median(z, smooth)


def _resid_by_time(x: np.ndarray, lag_cols: np.ndarray, none: np.ndarray) -> np.ndarray:
    """|x - the median of its lags| (float32, as `median_of`), the lags the columns `lag_cols` (count, n) name
    (-1: none). Where too few exist (`none`, (n,)): zero before the first value that has them (as on a regular
    grid, whose scale is made of those zeros at first), NaN after it, so that a later stretch without lags leaves
    the scale of the residuals there are."""
    valid = lag_cols >= 0
    lags = np.where(valid[None], x.astype(np.float32)[:, np.maximum(lag_cols, 0)], np.float32(np.nan))
    med = nanmedian(lags, axis=1)  # (rows, n): the mean of the middle two of the lags there are
    later = np.maximum.accumulate(~none)  # from the first value with enough lags on
    return np.where(none[None], np.where(later[None], np.nan, 0.0), np.abs(x - np.where(none[None], 0.0, med)))


def seconds(times) -> np.ndarray:
    """UNIX seconds of times given as numbers (as they are) or datetime64 (whole seconds, int64). A time that is not
    one (NaN, NaT, infinite) is refused: a reading's time is where its day and week views find its phase.

    Examples
    --------
    >>> seconds([0.0, float("nan")])
    Traceback (most recent call last):
    ValueError: 1 of 2 times are not finite (the first at index 1); drop those readings or give them their times
    """
    ts = np.asarray(times)
    if ts.dtype.kind == "M":
        bad = np.isnat(ts)
        ts = ts.astype("datetime64[s]").astype(np.int64)
    else:
        bad = ~np.isfinite(ts) if ts.dtype.kind == "f" else np.zeros(ts.shape, dtype=bool)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(ts)} times are not finite (the first at index "
                         f"{int(np.flatnonzero(bad)[0])}); drop those readings or give them their times")
    return ts


def phase_lags(times, period_s: int, count: int, tol_s: float) -> np.ndarray:
    """For each column of a series read at `times`, the columns of the same phase 1..`count` periods before
    (count, n): the column whose time is nearest t - j * period_s, within `tol_s` (of equally near ones the
    earlier time, of one time its first column), if it comes before; -1 where none does (a gap, or, where times go
    back by about a period, a nearest reading that comes later). datetime64 times are taken in whole seconds.

    Examples
    --------
    >>> phase_lags([0, 10, 20, 40, 51], 20, 2, 5).tolist()  # none read near 31: 51's first lag is missing
    [[-1, -1, 0, 2, -1], [-1, -1, -1, 0, 1]]
    """
    ts = seconds(times)
    n = len(ts)
    order = np.argsort(ts, kind="stable")
    sts = ts[order]
    out = np.full((count, n), -1, dtype=np.int64)
    if n == 0:
        return out
    for j in range(1, count + 1):
        target = ts - j * period_s
        k = np.searchsorted(sts, target)  # the first time at or after the target
        below, above = np.clip(k - 1, 0, n - 1), np.clip(k, 0, n - 1)
        d_below = np.where(k > 0, target - sts[below], np.inf)
        d_above = np.where(k < n, sts[above] - target, np.inf)
        near = np.where(d_above < d_below, above, below)
        near = np.searchsorted(sts, sts[near])  # the first column of that time
        col = order[near]
        out[j - 1] = np.where((np.minimum(d_below, d_above) <= tol_s) & (col < np.arange(n)), col, -1)
    return out


def trailing_median(a: np.ndarray, w: int) -> np.ndarray:
    """The median of the last w values, the value itself included, along the last axis of a (rows, time); the
    lower of the middle two for an even w, so that what it shows holds for more than half of them (of two
    values, both). Before the w-th value the window is padded with the row's first.

    Examples
    --------
    >>> trailing_median(np.array([[0.0, 0.0, 9.0, 0.0, 0.0, 5.0, 5.0]]), 3).tolist()  # one odd value, then a change
    [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]]
    """
    ext = np.concatenate([a, a[:, -1:]], axis=1)  # the window before column c + 1 is the one ending at c
    return trailing_kth(ext, w, (w - 1) // 2)[:, 1:]


def seasonal_context(period: int, count: int, smooth: int) -> int:
    """Columns a seasonal view needs before a value to score it as the whole series would."""
    return count * period + period + smooth


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


def novel_values(xs: np.ndarray, floor: np.ndarray, p: Params, lo: np.ndarray | None = None,
                 hi: np.ndarray | None = None) -> tuple:
    """Where each value lies outside the range of the values before it: (mask, lo, hi).

    A value is novel when it is above the largest value before it, or below the smallest, by more than
    `novel_tol` times that range and at least `floor` (per row), and the range is not empty (a series
    flat so far has none: Numenta's NAB detector, numenta/NAB nab/detectors/numenta/numenta_detector.py,
    its "spatial anomaly" with a tolerance of 0.05). xs (rows, time) has no NaN (carried forward);
    `lo` and `hi` (rows,) are the smallest and largest value before xs's first column (a `Stream`'s
    state; none: xs is the series' start), and the returned ones include xs. All False when
    `novel_tol` is None.

    Examples
    --------
    >>> m, lo, hi = novel_values(np.array([[0.0, 1.0, 1.04, 1.1, -0.1]]), np.zeros(1), PARAMS)
    >>> m.tolist(), float(lo[0]), float(hi[0])
    ([[False, False, False, True, True]], -0.1, 1.1)
    """
    rows, n = xs.shape
    lo = np.full(rows, np.inf) if lo is None else lo
    hi = np.full(rows, -np.inf) if hi is None else hi
    if n == 0 or p.novel_tol is None:
        run_lo = np.minimum(lo, xs.min(axis=1)) if n else lo
        run_hi = np.maximum(hi, xs.max(axis=1)) if n else hi
        return np.zeros((rows, n), dtype=bool), run_lo, run_hi
    before_hi = np.maximum.accumulate(np.concatenate([hi[:, None], xs[:, :-1]], axis=1), axis=1)
    before_lo = np.minimum.accumulate(np.concatenate([lo[:, None], xs[:, :-1]], axis=1), axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf before the first value: no range
        span = before_hi - before_lo
        margin = np.maximum(p.novel_tol * span, np.asarray(floor, dtype=float).reshape(-1, 1))
        mask = (span > 0) & ((xs > before_hi + margin) | (xs < before_lo - margin))
    return mask, np.minimum(before_lo[:, -1], xs[:, -1]), np.maximum(before_hi[:, -1], xs[:, -1])


def with_novelty(ratio: np.ndarray, kind: np.ndarray, novel: np.ndarray, p: Params) -> None:
    """Novel values' ratios raised to at least `novel_ratio`, their kind the level view's where that
    raised them (in place)."""
    raised = novel & (ratio < p.novel_ratio)
    ratio[raised] = p.novel_ratio
    kind[raised] = 0


def record(view: np.ndarray, p: Params) -> np.ndarray:
    """Each view value's record: the largest of about the previous `memory` values (at least z_floor), each
    entering the record at most `raise_by` times the record it met (`records`, gathered)."""
    return np.concatenate([bars.copy() for _, bars in records(view, p)], axis=1) if view.shape[1] else view.copy()


def records(view: np.ndarray, p: Params, chunk: int = 256, state: tuple | None = None, offset: int = 0):
    """The record of each view value, `chunk` values of time at a time: yields (start, bars), bars (rows, <= chunk)
    the records of the values from column start on (one buffer, overwritten by the next chunk).

    Sequential by nature (what a value adds depends on the record before it), so it runs along time,
    all rows at once. The memory is RECORD_BLOCKS blocks of memory // RECORD_BLOCKS values: the record
    covers the current block and the last RECORD_BLOCKS - 1 complete ones. `state` (ring, past, current),
    from `record_state`, is carried on in place; `offset` is the index of view's first column in the
    whole series (the blocks are counted from its start).
    """
    rows, n = view.shape
    size = max(1, p.memory // RECORD_BLOCKS)
    ring, past, current = record_state(rows, p) if state is None else state
    entering = np.empty(rows)
    buf = np.empty((rows, min(chunk, n)))
    for start in range(0, n, chunk):
        bars = buf[:, :min(chunk, n - start)]
        for i in range(bars.shape[1]):
            t = offset + start + i
            bar = np.maximum(past, current, out=bars[:, i])
            np.multiply(bar, p.raise_by, out=entering)
            np.minimum(view[:, start + i], entering, out=entering)
            np.maximum(current, entering, out=current)
            if (t + 1) % size == 0:
                ring[(t // size) % (RECORD_BLOCKS - 1)] = current
                np.maximum(ring.max(axis=0), p.z_floor, out=past)
                current[:] = 0.0
        yield start, bars


def record_state(rows: int, p: Params) -> tuple:
    """A record before any value: (ring of complete blocks' maxima, max(z_floor, ring), the current block's)."""
    return np.zeros((RECORD_BLOCKS - 1, rows)), np.full(rows, p.z_floor), np.zeros(rows)


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
    seasons = seasonal_views(times, n, step, params)
    why_all = None if explained is None else np.atleast_2d(np.asarray(explained))
    novel = None if params.novel_tol is None else np.zeros((rows, n), dtype=bool)  # the range check
    for lo in range(0, rows, ROW_BLOCK):  # the views, a few series at a time (their arrays stay in cache)
        sl = slice(lo, lo + ROW_BLOCK)
        xs = carry_forward(x[sl] if reference is None else x[sl] - ref[sl])
        scale_floor = np.maximum(params.spread_frac * running_spread(xs), fl[sl, None]) + 1e-9
        views[0, sl], baseline[sl] = level_view(xs, scale_floor, params)
        for k, period, count, smooth, lag_cols, _ in seasons:  # (views that cannot apply: zero, untouched)
            views[k, sl] = seasonal_view(xs, scale_floor, period, count, smooth, params.min_lags, lag_cols=lag_cols)
        np.max(views[:, sl], axis=0, out=surprise[sl])
        if novel is not None:
            novel[sl] = novel_values(xs, fl[sl], params)[0]
        if why_all is not None:
            why = why_all[sl].astype(np.int8)
            if why.any():
                # a signed cause explains moves its way only: +1 a rise, -1 a fall (from the recent level)
                side = np.sign(np.nan_to_num(xs - baseline[sl], nan=0.0)).astype(np.int8)
                cause = (why != 0) & ((why == side) | (np.abs(why) > 1))
                views[:, sl] = np.where(cause, 0.0, views[:, sl])
                if novel is not None:
                    novel[sl] &= ~cause
    ratio = score
    starts = view_starts(params, step)
    quiet = {k: q for k, *_, q in seasons if q is not None}  # off the grid: where a seasonal view's ratio is 0
    for k in quiet:
        starts[k] = 0
    for k, v in enumerate(views):  # each view's surprise over its record; the largest is the ratio
        if not v.any():
            continue
        for start, bars in records(v, params):
            span = slice(start, start + bars.shape[1])
            r = np.divide(v[:, span], bars, out=bars)
            _quiet(r, start, starts[k])
            if k in quiet:
                r[:, quiet[k][span]] = 0.0
            kind[:, span][r > ratio[:, span]] = k
            np.maximum(ratio[:, span], r, out=ratio[:, span])
    if novel is not None:
        with_novelty(ratio, kind, novel, params)
    hold = max(params.hold_min, round(params.hold_s / step)) if step > 0 else params.hold_min
    for lo in range(0, rows, ROW_BLOCK):  # one alarm per incident
        r = ratio[lo:lo + ROW_BLOCK]
        r[:, :params.warm_up] = 0.0
        r /= np.maximum(previous_max(r, hold), 1.0)
        np.divide(r, r + 1.0, out=r)
    return Result(score, views, baseline, kind, surprise)


def seasonal_views(times, n: int, step: int, p: Params) -> list:
    """(view index, period, count, smooth, lag columns, quiet columns) of each seasonal view that applies to a
    series of n columns read at `times` with grid step `step`: when the step divides a day into four or more, and
    the series has a value with `min_lags` earlier periods. On a regular grid the periods are counted in columns
    (lag columns and quiet None: `view_starts` says where the view's ratio counts). Otherwise by time
    (`phase_lags`, within half a step), and quiet (n,) marks the columns where the view's ratio does not count
    (`quiet_after`): a stretch without `min_lags` lags at the series' start, or after a gap longer than the lags
    reach, if it lasts half a period or more, and the columns after it (`season_lead` at the start, `warm_up` after a
    gap), so that the view's record is made again of its own values, and its scale (the mean residual over the
    previous period, of the residuals there are) of enough of them (with a scale of the stretch's zeros, a review
    found a false alarm of 0.73 there). A regular stretch at the start is quiet exactly where `view_starts` would
    be, so its scores do not change when a later reading is missing."""
    if not (0 < step < 86400 and 86400 % step == 0) or n == 0:
        return []
    ts = seconds(times)
    if len(ts) != n:
        raise ValueError(f"{len(ts)} times for {n} columns")
    regular = bool((np.diff(ts) == step).all())
    day = 86400 // step
    smooth = max(2, day // p.smooth_per_day)
    out = []
    for k, (period, count) in enumerate(((day, p.days), (7 * day, p.weeks)), start=1):
        if period < 4:  # (as `seasonal_view` on a regular grid: no view)
            continue
        if regular:
            if n > p.min_lags * period:
                out.append((k, period, count, smooth, None, None))
            continue
        lag_cols = phase_lags(ts, period * step, count, step / 2)
        none = (lag_cols >= 0).sum(axis=0) < p.min_lags
        if none.all():
            continue
        out.append((k, period, count, smooth, lag_cols,
                    quiet_after(none, max(1, period // 2), p.warm_up, season_lead(p, period))))
    return out


def quiet_after(none: np.ndarray, long: int, warm_up: int, lead: int) -> np.ndarray:
    """The columns of a seasonal view off the grid whose ratio does not count: the stretch of columns without lags
    (`none`, (n,) bool) that starts the series and the `lead` columns after it (`season_lead`), as
    `view_starts` on a regular grid, and each later stretch of at least `long` columns and the `warm_up` after it.

    Examples
    --------
    >>> none = np.array([1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    >>> quiet_after(none, 3, 2, 3).astype(int).tolist()  # the start and the stretch of three, not the one alone
    [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    """
    n = len(none)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], none.astype(np.int8), [0]])))
    quiet = np.zeros(n, dtype=bool)
    for a, b in zip(edges[::2], edges[1::2], strict=True):  # stretches a..b-1
        if a == 0 or b - a >= long:
            quiet[a:min(n, b + (lead if a == 0 else warm_up))] = True
    return quiet


def season_lead(p: Params, period: int) -> int:
    """Columns after a seasonal view's first residual before its ratio counts: a period, so that its scale (the mean
    residual over the previous period) is made of residuals, not of the zeros before them, and then `warm_up`, so
    that its record is made of such z first. With only `warm_up` after the first residual, the scale was still
    partly of zeros when the ratio began to count: on a series read regularly the inflated z had made a record that
    hid the view for its memory, but in a sparse one (70 % of 15-minute readings missing) the zeros filled most of
    the week view's scale window after the record had forgotten them: a false alarm of 0.77 on day 21.5 (an outside
    review). A memory instead of `warm_up` (tried) scored NAB and those series the same and left the product's day
    view blind for 7.5 days of every window, not 4.7."""
    return period + p.warm_up


def view_starts(p: Params, step: int) -> list:
    """The column from which each view (VIEW_NAMES) can judge its values against its record: for a seasonal view
    `season_lead` columns after its first surprise (`min_lags` periods in), so that its scale and its record are made
    of its own values before any of them can raise an alarm; never when it cannot apply at this step. The level view
    from the start (the detector's own `warm_up` covers its first window). Without it a view's first values met a
    record of nothing (`z_floor`): on NAB's hourly series the week view, starting at two weeks, alarmed in four of
    the six realAdExchange files at that very hour."""
    never = np.iinfo(np.int64).max
    starts = [0, never, never]
    if 0 < step < 86400 and 86400 % step == 0:
        day = 86400 // step
        starts[1], starts[2] = (p.min_lags * period + season_lead(p, period) for period in (day, 7 * day))
    return starts


def _quiet(r: np.ndarray, first: int, start: int) -> None:
    """Zero the ratios r (rows, k) of columns `first`..`first + k - 1` that come before a view's `start` (in place)."""
    if first < start:
        r[:, :start - first] = 0.0


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


STATE_VERSION = 5  # of `Stream.to_bytes`: raise it whenever what a Stream carries, or how it scores, changes


def fresh_range(k: int, n: int) -> np.ndarray:
    """The range (smallest, largest) of k series without a value after n columns: none yet, or the zeros they
    are carried as (`carry_forward`)."""
    return np.zeros((2, k)) if n else np.stack([np.full(k, np.inf), np.full(k, -np.inf)])


class StateVersionError(ValueError):
    """A saved Stream of another STATE_VERSION (or not one at all): rebuild it from the history."""


def _saved(arrays: dict, meta: list, params: Params) -> bytes:
    """Arrays as an npz, with STATE_VERSION and the rest of `meta` and the constants they were made with."""
    import io

    buf = io.BytesIO()
    np.savez(buf, meta=np.array([STATE_VERSION, *meta], dtype=np.int64),
             params=np.frombuffer(repr(params).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def _loaded(blob: bytes, params: Params) -> tuple:
    """(arrays, the rest of meta) of `_saved`; StateVersionError when of another version or constants."""
    import io

    try:
        with np.load(io.BytesIO(blob)) as npz:
            z = {k: npz[k] for k in npz.files}  # each read of an npz member decodes it again
        version, *meta = (int(v) for v in z["meta"])
    except (ValueError, KeyError, OSError) as err:
        raise StateVersionError(f"not a detector state: {err}") from err
    if version != STATE_VERSION or bytes(z["params"]).decode() != repr(params):
        raise StateVersionError(f"detector state version {version} with other constants; this is {STATE_VERSION}")
    return z, meta


class Stream:
    """The detector carried from one stretch of columns to the next (incremental runs).

    ``advance(x, ...)`` scores the next columns of the rows exactly as one `score_rows` call over the
    whole series would have scored them (to floating-point rounding: the running sums here start from
    the carried ones). What it carries is the list in the module docstring: the last `keep` values of
    each referenced, carried-forward series (the views' context), the running sum and sum of squares
    (the spread floor), the smallest and largest value so far (the range), each view's record
    (`record_state`), the last `hold` ratios, and the column count (warm-up, record blocks and seasonal
    stretches are counted from the series' start).

    `checkpoint()` and `restore()` take the stream back to an earlier column, for values that arrive
    late: the context kept is `keep + rewind` columns, so a checkpoint up to `rewind` columns old can be
    restored. `to_bytes()` and `from_bytes()` save and load it, versioned by STATE_VERSION.
    """

    def __init__(self, rows: int, step_s: int, params: Params = PARAMS, floor=None, rewind: int = 0):
        self.p, self.step, self.rewind = params, int(step_s), int(rewind)
        self.floor = np.zeros(rows) if floor is None else np.broadcast_to(np.asarray(floor, float), (rows,)).copy()
        self.n = 0
        self.tail = np.zeros((rows, 0))
        self.floors = np.zeros((rows, 0))  # the scale floor of the last columns (the seasonal z's smoothing)
        self.sums = np.zeros((2, rows))
        self.range = np.stack([np.full(rows, np.inf), np.full(rows, -np.inf)])  # smallest and largest value so far
        self.rec = [record_state(rows, params) for _ in VIEW_NAMES]
        self.ratios = np.zeros((rows, self.hold))

    @property
    def rows(self) -> int:
        return self.tail.shape[0]

    @property
    def hold(self) -> int:
        return max(self.p.hold_min, round(self.p.hold_s / self.step)) if self.step > 0 else self.p.hold_min

    def _seasons(self) -> list:
        """(view index, period, count, smooth) of the seasonal views that can apply at this step."""
        step = self.step
        if not (0 < step < 86400 and 86400 % step == 0):
            return []
        day = 86400 // step
        smooth = max(2, day // self.p.smooth_per_day)
        return [(k, period, count, smooth) for k, (period, count) in
                enumerate(((day, self.p.days), (7 * day, self.p.weeks)), start=1)]

    @property
    def keep_floors(self) -> int:
        return max([smooth for *_, smooth in self._seasons()] + [1])

    @property
    def keep(self) -> int:
        """Columns of context the views need before a value."""
        need = [max(self.p.windows), self.p.recent]
        need += [seasonal_context(period, count, smooth) for _, period, count, smooth in self._seasons()]
        return max(need)

    def add_rows(self, k: int, floor=0.0) -> None:
        """k more series, as if they had been there from the start without a value (zeros, carried)."""
        rows = self.rows
        self.floor = np.concatenate([self.floor, np.broadcast_to(np.asarray(floor, float), (k,))])
        self.tail = np.concatenate([self.tail, np.zeros((k, self.tail.shape[1]))])
        fresh_floor = np.broadcast_to(np.asarray(floor, float), (k,))[:, None] + 1e-9  # no spread yet: the floor
        self.floors = np.concatenate([self.floors, np.broadcast_to(fresh_floor, (k, self.floors.shape[1]))])
        self.sums = np.concatenate([self.sums, np.zeros((2, k))], axis=1)
        self.range = np.concatenate([self.range, fresh_range(k, self.n)], axis=1)
        fresh = record_state(k, self.p)
        self.rec = [tuple(np.concatenate([a, b], axis=-1) for a, b in zip(r, fresh, strict=True)) for r in self.rec]
        self.ratios = np.concatenate([self.ratios, np.zeros((k, self.hold))])
        assert self.rows == rows + k

    def advance(self, x, explained=None, reference=None) -> Result:
        """Score the next columns: x (rows, k); explained and reference as in `score_rows`."""
        p = self.p
        x = np.atleast_2d(np.asarray(x, dtype=float))
        rows, k = x.shape
        if reference is not None:
            x = x - np.broadcast_to(np.asarray(reference, dtype=float), x.shape)
        last = self.tail[:, -1:] if self.tail.shape[1] else np.full((rows, 1), np.nan)
        xs = carry_forward(np.concatenate([last, x], axis=1))[:, 1:]
        n0 = self.n
        # the spread floor: the running sums carried, added in the same order as one pass would
        cs = np.cumsum(np.concatenate([self.sums[:, :, None], np.stack([xs, xs * xs])], axis=2), axis=2)[:, :, 1:]
        count = n0 + 1 + np.arange(k)
        mean = cs[0] / count
        spread = np.sqrt(np.maximum(cs[1] / count - mean * mean, 0.0))
        scale_floor = np.maximum(p.spread_frac * spread, self.floor[:, None]) + 1e-9
        ctx = self.tail[:, -self.keep:] if n0 >= self.keep else self.tail  # the whole series while it is short
        seg = np.concatenate([ctx, xs], axis=1)
        off = n0 - ctx.shape[1]
        # the context's own scale floors where a view looks at them (the seasonal z's smoothing), else any
        seg_floor = np.concatenate([np.ones(ctx.shape), scale_floor], axis=1)
        kf = min(self.floors.shape[1], ctx.shape[1])
        if kf:
            seg_floor[:, ctx.shape[1] - kf:ctx.shape[1]] = self.floors[:, -kf:]
        views = np.zeros((len(VIEW_NAMES), rows, k))
        cut = max(0, ctx.shape[1] - max(p.windows))  # the level view needs its windows only (not the seasons')
        lv, level = level_view(seg[:, cut:], seg_floor[:, cut:], p, off + cut)
        views[0], baseline = lv[:, -k:], level[:, -k:]
        for v, period, cnt, smooth in self._seasons():
            if n0 + k > p.min_lags * period:
                views[v] = seasonal_view(seg, seg_floor, period, cnt, smooth, p.min_lags, off)[:, -k:]
        surprise = views.max(axis=0)
        novel, lo, hi = novel_values(xs, self.floor, p, *self.range)
        if explained is not None:
            why = np.broadcast_to(np.asarray(explained), (rows, k)).astype(np.int8)
            if why.any():
                side = np.sign(np.nan_to_num(xs - baseline, nan=0.0)).astype(np.int8)
                cause = (why != 0) & ((why == side) | (np.abs(why) > 1))
                views = np.where(cause, 0.0, views)
                novel &= ~cause
        ratio = np.zeros((rows, k))
        kind = np.zeros((rows, k), dtype=np.int8)
        starts = view_starts(p, self.step)
        for v in range(len(VIEW_NAMES)):
            for start, bars in records(views[v], p, state=self.rec[v], offset=n0):
                span = slice(start, start + bars.shape[1])
                r = np.divide(views[v][:, span], bars, out=bars)
                _quiet(r, n0 + start, starts[v])
                kind[:, span][r > ratio[:, span]] = v
                np.maximum(ratio[:, span], r, out=ratio[:, span])
        with_novelty(ratio, kind, novel, p)
        ratio[:, :max(0, p.warm_up - n0)] = 0.0
        joined = np.concatenate([self.ratios, ratio], axis=1)
        held = previous_max(joined, self.hold)[:, -k:]
        score = ratio / np.maximum(held, 1.0)
        score /= score + 1.0
        self.ratios = joined[:, -self.hold:].copy()
        self.sums = cs[:, :, -1].copy()
        self.range = np.stack([lo, hi])
        self.tail = np.concatenate([self.tail, xs], axis=1)[:, -(self.keep + self.rewind):]
        self.floors = np.concatenate([self.floors, scale_floor], axis=1)[:, -(self.keep_floors + self.rewind):]
        self.n = n0 + k
        return Result(score, views, baseline, kind, surprise)

    def checkpoint(self) -> dict:
        """What restore() needs to take the stream back to this column (not the context: it is kept)."""
        return {"n": self.n, "sums": self.sums.copy(), "range": self.range.copy(), "ratios": self.ratios.copy(),
                "rec": [tuple(a.copy() for a in r) for r in self.rec]}

    def restore(self, ck: dict) -> None:
        """Back to a checkpoint; series added since it are as they were then (no value yet)."""
        back = self.n - ck["n"]
        if back < 0 or self.tail.shape[1] - back < min(ck["n"], self.keep):
            raise ValueError(f"checkpoint at column {ck['n']} is out of reach (now {self.n}, rewind {self.rewind})")
        had = ck["sums"].shape[1]
        extra = self.rows - had
        self.tail = self.tail[:, :self.tail.shape[1] - back]
        self.floors = self.floors[:, :max(0, self.floors.shape[1] - back)]
        self.n = ck["n"]
        self.sums = np.concatenate([ck["sums"], np.zeros((2, extra))], axis=1)
        self.range = np.concatenate([ck["range"], fresh_range(extra, ck["n"])], axis=1)
        self.ratios = np.concatenate([ck["ratios"], np.zeros((extra, self.hold))])
        fresh = record_state(extra, self.p)
        self.rec = [tuple(np.concatenate([a.copy(), b], axis=-1) for a, b in zip(r, f, strict=True))
                    for r, f in zip(ck["rec"], [fresh] * len(VIEW_NAMES), strict=True)]
        if extra:
            self.tail[had:] = 0.0
            self.floors[had:] = self.floor[had:, None] + 1e-9

    def to_bytes(self) -> bytes:
        arrays = {"floor": self.floor, "tail": self.tail, "floors": self.floors, "sums": self.sums, "range": self.range,
                  "ratios": self.ratios}
        for v, r in enumerate(self.rec):
            for i, a in enumerate(r):
                arrays[f"rec{v}_{i}"] = a
        return _saved(arrays, [self.n, self.step, self.rewind], self.p)

    @classmethod
    def from_bytes(cls, blob: bytes, params: Params = PARAMS) -> Stream:
        z, (n, step, rewind) = _loaded(blob, params)
        s = cls(len(z["floor"]), step, params, z["floor"], rewind)
        s.n, s.tail, s.floors, s.sums, s.ratios = n, z["tail"], z["floors"], z["sums"], z["ratios"]
        s.range = z["range"]
        s.rec = [tuple(z[f"rec{v}_{i}"] for i in range(3)) for v in range(len(VIEW_NAMES))]
        return s


class Rows:
    """Series of one metric, each at its own column: the state of many `Stream` rows side by side, for runs
    that recompute only the series whose data changed (`analytics.incremental`).

    Each row carries what a Stream carries (its context right-aligned in `tail` and `floors`, `width` and
    `fwidth` columns of them valid), its own column count `n`, and a checkpoint at the columns passed by
    `mark`. `take(rows)` gives a Stream of rows at one column; `put(rows, stream)` keeps what it became;
    `back_to(rows, col)` takes rows back to their checkpoint at `col`. A row left at its column while others
    go on is exactly what it would be had it gone on with no value since, once it is taken on from there.
    `to_bytes()` and `from_bytes()` save and load it all, versioned by STATE_VERSION; `changes()` gives only
    what changed since the last `saved()` (each row's carried values, the blocks of `SAVED_BLOCK` columns of
    its context that it passed or rewound, the checkpoints it marked), in parts that `from_parts` assembles.
    """

    SAVED_BLOCK = 256  # columns of a row's context in one saved part

    def __init__(self, step_s: int, params: Params = PARAMS, rewind: int = 0):
        probe = Stream(0, step_s, params, rewind=rewind)
        self.p, self.step, self.rewind, self.hold = params, int(step_s), int(rewind), probe.hold
        self.cap, self.cap_f = probe.keep + self.rewind, probe.keep_floors + self.rewind
        self.n = np.zeros(0, np.int64)
        self.width = np.zeros(0, np.int64)
        self.fwidth = np.zeros(0, np.int64)
        self.floor = np.zeros(0)
        self.tail = np.zeros((0, self.cap))
        self.floors = np.zeros((0, self.cap_f))
        self.sums = np.zeros((2, 0))
        self.range = np.zeros((2, 0))  # each row's smallest and largest value so far (the range check)
        self.rec = [record_state(0, params) for _ in VIEW_NAMES]
        self.ratios = np.zeros((0, self.hold))
        self.checks: dict = {}  # column -> a Stream.checkpoint() of every row
        self.since = np.zeros(0, np.int64)  # per row: the first column changed since the last saved() (CLEAN: none)
        self.marked: dict = {}  # column -> arrays of the rows that marked their checkpoint there since then

    CLEAN = np.iinfo(np.int64).max

    def __len__(self) -> int:
        return len(self.n)

    def _fresh(self, n: int, rows: int) -> dict:
        return {"n": n, "sums": np.zeros((2, rows)), "range": fresh_range(rows, n), "ratios": np.zeros((rows, self.hold)),
                "rec": [record_state(rows, self.p) for _ in VIEW_NAMES]}

    @staticmethod
    def _join_ck(a: dict, b: dict) -> dict:
        return {"n": a["n"], "sums": np.concatenate([a["sums"], b["sums"]], axis=1),
                "range": np.concatenate([a["range"], b["range"]], axis=1),
                "ratios": np.concatenate([a["ratios"], b["ratios"]]),
                "rec": [tuple(np.concatenate([x, y], axis=-1) for x, y in zip(r, s, strict=True))
                        for r, s in zip(a["rec"], b["rec"], strict=True)]}

    def add(self, k: int, floor, n: int) -> None:
        """k more series at column n, as if they had been there from the start without a value."""
        fl = np.broadcast_to(np.asarray(floor, float), (k,))
        self.n = np.concatenate([self.n, np.full(k, n, np.int64)])
        self.width = np.concatenate([self.width, np.full(k, min(n, self.cap), np.int64)])
        self.fwidth = np.concatenate([self.fwidth, np.full(k, min(n, self.cap_f), np.int64)])
        self.floor = np.concatenate([self.floor, fl])
        self.tail = np.concatenate([self.tail, np.zeros((k, self.cap))])  # carried forward from no value: zeros
        self.floors = np.concatenate([self.floors, np.broadcast_to(fl[:, None] + 1e-9, (k, self.cap_f))])
        self.sums = np.concatenate([self.sums, np.zeros((2, k))], axis=1)
        self.range = np.concatenate([self.range, fresh_range(k, n)], axis=1)
        fresh = record_state(k, self.p)
        self.rec = [tuple(np.concatenate([a, b], axis=-1) for a, b in zip(r, fresh, strict=True)) for r in self.rec]
        self.ratios = np.concatenate([self.ratios, np.zeros((k, self.hold))])
        self.checks = {c: self._join_ck(ck, self._fresh(c, k)) for c, ck in self.checks.items()}
        self.since = np.concatenate([self.since, np.full(k, n - min(n, self.cap), np.int64)])  # all of it: new

    def take(self, rows) -> Stream:
        """A Stream of these rows (a copy), which must be at one column."""
        rows = np.asarray(rows, dtype=np.int64)
        n = self.n[rows]
        if len(rows) and (n != n[0]).any():
            raise ValueError("rows at different columns")
        w, wf = int(self.width[rows].min(initial=self.cap)), int(self.fwidth[rows].min(initial=self.cap_f))
        s = Stream(len(rows), self.step, self.p, self.floor[rows], self.rewind)
        s.n = int(n[0]) if len(rows) else 0
        s.tail, s.floors = self.tail[rows, self.cap - w:], self.floors[rows, self.cap_f - wf:]
        s.sums, s.ratios, s.range = self.sums[:, rows], self.ratios[rows], self.range[:, rows]
        s.rec = [tuple(a[..., rows] for a in r) for r in self.rec]
        return s

    def put(self, rows, s: Stream) -> None:
        """Keep the state of a Stream taken from these rows."""
        rows = np.asarray(rows, dtype=np.int64)
        w, wf = s.tail.shape[1], s.floors.shape[1]
        self.since[rows] = np.minimum(self.since[rows], np.minimum(self.n[rows], s.n))  # passed or rewound from there
        self.tail[rows, self.cap - w:], self.floors[rows, self.cap_f - wf:] = s.tail, s.floors
        self.width[rows], self.fwidth[rows], self.n[rows] = w, wf, s.n
        self.sums[:, rows], self.ratios[rows], self.range[:, rows] = s.sums, s.ratios, s.range
        for mine, theirs in zip(self.rec, s.rec, strict=True):
            for a, b in zip(mine, theirs, strict=True):
                a[..., rows] = b

    def mark(self, rows, s: Stream) -> None:
        """Keep the checkpoint of a Stream taken from these rows, at its column."""
        ck = self.checks.get(s.n)
        if ck is None:
            ck = self.checks[s.n] = self._fresh(s.n, len(self))
        got = s.checkpoint()
        self.marked.setdefault(s.n, []).append(np.asarray(rows, dtype=np.int64))
        ck["sums"][:, rows], ck["ratios"][rows], ck["range"][:, rows] = got["sums"], got["ratios"], got["range"]
        for mine, theirs in zip(ck["rec"], got["rec"], strict=True):
            for a, b in zip(mine, theirs, strict=True):
                a[..., rows] = b

    def back_to(self, rows, col: int) -> None:
        """These rows back to their checkpoint at column `col` (ValueError when it is out of reach)."""
        rows = np.asarray(rows, dtype=np.int64)
        ck = self.checks[col]
        for n in np.unique(self.n[rows]):
            sel = rows[self.n[rows] == n]
            s = self.take(sel)
            s.restore({"n": col, "sums": ck["sums"][:, sel], "ratios": ck["ratios"][sel], "range": ck["range"][:, sel],
                       "rec": [tuple(a[..., sel] for a in r) for r in ck["rec"]]})
            self.put(sel, s)

    def forget(self, before: int) -> None:
        """Drop the checkpoints before column `before`."""
        self.checks = {c: ck for c, ck in self.checks.items() if c >= before}

    def to_bytes(self) -> bytes:
        cols = sorted(self.checks)
        arrays = {"n": self.n, "width": self.width, "fwidth": self.fwidth, "floor": self.floor, "tail": self.tail,
                  "floors": self.floors, "sums": self.sums, "range": self.range, "ratios": self.ratios,
                  "cols": np.array(cols, dtype=np.int64)}
        for v, r in enumerate(self.rec):
            for i, a in enumerate(r):
                arrays[f"rec{v}_{i}"] = a
                arrays[f"ck_rec{v}_{i}"] = np.array([self.checks[c]["rec"][v][i] for c in cols]).reshape(
                    (len(cols),) + a.shape)
        arrays["ck_sums"] = np.array([self.checks[c]["sums"] for c in cols]).reshape((len(cols), 2, len(self)))
        arrays["ck_range"] = np.array([self.checks[c]["range"] for c in cols]).reshape((len(cols), 2, len(self)))
        arrays["ck_ratios"] = np.array([self.checks[c]["ratios"] for c in cols]).reshape(
            (len(cols), len(self), self.hold))
        return _saved(arrays, [self.step, self.rewind], self.p)

    @classmethod
    def from_bytes(cls, blob: bytes, params: Params = PARAMS) -> Rows:
        z, (step, rewind) = _loaded(blob, params)
        r = cls(step, params, rewind)
        for name in ("n", "width", "fwidth", "floor", "tail", "floors", "sums", "range", "ratios"):
            setattr(r, name, z[name])
        r.rec = [tuple(z[f"rec{v}_{i}"] for i in range(3)) for v in range(len(VIEW_NAMES))]
        r.checks = {int(c): {"n": int(c), "sums": z["ck_sums"][k], "ratios": z["ck_ratios"][k], "range": z["ck_range"][k],
                             "rec": [tuple(z[f"ck_rec{v}_{i}"][k] for i in range(3)) for v in range(len(VIEW_NAMES))]}
                    for k, c in enumerate(z["cols"])}
        r.since = np.zeros(len(r.n), np.int64)  # nothing of it saved in parts yet
        r.marked = {c: [np.arange(len(r.n))] for c in r.checks}
        return r

    # --- saving what changed (analytics.snapshot) ------------------------------------------------------------

    def _carried(self, rows, ck: dict | None = None) -> np.ndarray:
        """Per row (rows, k): what a row carries besides its context (ck: a checkpoint's, without n and widths)."""
        src = ck if ck is not None else {"sums": self.sums, "range": self.range, "ratios": self.ratios, "rec": self.rec}
        parts = [src["sums"][:, rows].T, src["range"][:, rows].T, src["ratios"][rows]]
        for ring, past, current in src["rec"]:
            parts += [ring[:, rows].T, past[rows, None], current[rows, None]]
        head = [] if ck is not None else [np.stack([self.n[rows], self.width[rows], self.fwidth[rows]], axis=1),
                                          self.floor[rows, None]]
        return np.concatenate([np.asarray(a, dtype=float) for a in head + parts], axis=1)

    def _uncarried(self, m: np.ndarray) -> dict:
        """`_carried`'s columns (without the head) back into arrays (rows along the last axis, as kept)."""
        h, b = self.hold, RECORD_BLOCKS - 1
        out = {"sums": m[:, 0:2].T.copy(), "range": m[:, 2:4].T.copy(), "ratios": m[:, 4:4 + h].copy(), "rec": []}
        at = 4 + h
        for _ in VIEW_NAMES:
            out["rec"].append((m[:, at:at + b].T.copy(), m[:, at + b].copy(), m[:, at + b + 1].copy()))
            at += b + 2
        return out

    def _blocks(self, r: int, arr: np.ndarray, cap: int, width: int, since: int) -> list:
        """The saved blocks of row r's context `arr` (tail or floors) from column `since` on: (b, bytes), each
        bytes its first column and the values from there to the block's end (or the row's column)."""
        n, bs = int(self.n[r]), self.SAVED_BLOCK
        left = n - width
        out = []
        for b in range(max(since, left) // bs, (n - 1) // bs + 1 if n else 0):
            c0, c1 = max(b * bs, left), min((b + 1) * bs, n)
            if c0 < c1:
                out.append((b, np.concatenate([[float(c0)], arr[r, cap - n + c0:cap - n + c1]]).tobytes()))
        return out

    def changes(self) -> dict:
        """What changed since the last `saved()`: {"rows": {row: bytes} (what each changed row carries), "tail" and
        "floors": {(row, block): bytes}, "drop": {row: (lowest tail block, lowest floors block) still needed},
        "checks": {(row, column): bytes}, "checks_from": the oldest checkpoint column kept (None: none)}."""
        dirty = np.flatnonzero(self.since != self.CLEAN)
        out = {"rows": {}, "tail": {}, "floors": {}, "drop": {}, "checks": {},
               "checks_from": min(self.checks) if self.checks else None}
        if len(dirty):
            for r, blob in zip(dirty.tolist(), self._carried(dirty), strict=True):
                out["rows"][r] = blob.tobytes()
        for r in dirty.tolist():
            since = int(self.since[r])
            for b, blob in self._blocks(r, self.tail, self.cap, int(self.width[r]), since):
                out["tail"][(r, b)] = blob
            for b, blob in self._blocks(r, self.floors, self.cap_f, int(self.fwidth[r]), since):
                out["floors"][(r, b)] = blob
            n = int(self.n[r])
            out["drop"][r] = ((n - int(self.width[r])) // self.SAVED_BLOCK, (n - int(self.fwidth[r])) // self.SAVED_BLOCK)
        for col, groups in self.marked.items():
            ck = self.checks.get(col)
            if ck is None:
                continue  # forgotten since
            rows = np.unique(np.concatenate(groups))
            for r, blob in zip(rows.tolist(), self._carried(rows, ck), strict=True):
                out["checks"][(r, col)] = blob.tobytes()
        return out

    def touch_all(self) -> None:
        """Everything counts as changed: the next `changes()` gives the whole state."""
        self.since[:] = 0
        self.marked = {c: [np.arange(len(self))] for c in self.checks}

    def saved(self) -> None:
        """What `changes()` gave is saved: nothing has changed since."""
        self.since[:] = self.CLEAN
        self.marked = {}

    def header(self) -> bytes:
        """The Rows' own constants, versioned (with `changes()`' parts, what `from_parts` needs)."""
        return _saved({}, [self.step, self.rewind, len(self)], self.p)

    @classmethod
    def from_parts(cls, header: bytes, rows: dict, tail: dict, floors: dict, checks: dict,
                   params: Params = PARAMS) -> Rows:
        """A Rows from the parts of every `changes()` since it was made, the newest of each key (StateVersionError
        when the header is of another version or other constants, ValueError when a row's part is missing)."""
        _, (step, rewind, k) = _loaded(header, params)
        r = cls(step, params, rewind)
        if set(rows) != set(range(k)):
            raise ValueError(f"detector state: {k} rows, {len(rows)} saved")
        m = np.stack([np.frombuffer(rows[i], dtype=float) for i in range(k)]) if k else np.zeros((0, 4 + r.hold))
        r.n, r.width, r.fwidth = (m[:, j].astype(np.int64) for j in range(3))
        r.floor = m[:, 3].copy()
        c = r._uncarried(m[:, 4:])
        r.sums, r.range, r.ratios, r.rec = c["sums"], c["range"], c["ratios"], c["rec"]
        for arr, cap, parts in ((np.zeros((k, r.cap)), r.cap, tail), (np.zeros((k, r.cap_f)), r.cap_f, floors)):
            width = r.width if cap == r.cap else r.fwidth
            for (i, _b), blob in parts.items():
                v = np.frombuffer(blob, dtype=float)
                c0, n = int(v[0]), int(r.n[i])
                lo, hi = max(c0, n - int(width[i])), min(c0 + len(v) - 1, n)
                if lo < hi:
                    arr[i, cap - n + lo:cap - n + hi] = v[1 + lo - c0:1 + hi - c0]
            if cap == r.cap:
                r.tail = arr
            else:
                r.floors = arr
        for col in sorted({c for _, c in checks}):
            ck = r._fresh(col, k)
            got = [(i, np.frombuffer(b, dtype=float)) for (i, cc), b in checks.items() if cc == col]
            idx = np.array([i for i, _ in got], dtype=np.int64)
            u = r._uncarried(np.stack([v for _, v in got]))
            ck["sums"][:, idx], ck["range"][:, idx], ck["ratios"][idx] = u["sums"], u["range"], u["ratios"]
            for mine, theirs in zip(ck["rec"], u["rec"], strict=True):
                for a, b in zip(mine, theirs, strict=True):
                    a[..., idx] = b
            r.checks[col] = ck
        r.since = np.full(k, cls.CLEAN, np.int64)
        return r
