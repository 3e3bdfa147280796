"""The main anomaly detector, in the form the Numenta Anomaly Benchmark scores.

`score(timestamps, values)` returns one anomaly score in [0, 1] per row and is
causal: the score of row i uses rows 0..i only (appending rows never changes an
earlier score; a test holds it to that).

How it scores:

- three views of surprise, each a robust z against what the past would have
  said: the value against the recent level (median and MAD of the previous 48
  and 240 rows, for the value itself and for the mean of the last few), and
  against the same time of day on earlier days and the same time of week on
  earlier weeks (medians over up to 7 days and 4 weeks, when the timestamps
  give a sub-daily grid), the seasonal ones averaged over an hour or two of
  rows so that a changed day shows rather than one odd reading;
- each view is judged against its own recent record: the score is how far the
  view's surprise exceeds the largest it gave over the previous `MEMORY`
  rows. A new kind of surprise scores high once; the same surprise again soon
  after does not (one alarm per incident, and no tuning per series, since the
  ratio has no units). Each row raises the record by at most `RAISE` times
  the record it met, so that a glitch of one or a few rows cannot set the bar
  for the next `MEMORY` rows and hide a real incident behind it; a sustained
  incident still raises the bar to its own size;
- one alarm per incident across the views too: the largest ratio over the
  views is divided by the largest it reached over the previous `HOLD_S`
  seconds (at least 1), so that views taking turns on the same incident do
  not raise it again and again; only something more surprising than what was
  just raised is news;
- the result r maps into [0, 1] as r / (r + 1).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analytics.robust import nanmedian

LEVEL_WINDOWS = (48, 240)  # rows of the recent-level baselines
RECENT = 5  # rows averaged for the slow variant of the level view
DAYS, WEEKS = 7, 4  # earlier days and weeks the seasonal baselines use (two at least)
SMOOTH_PER_DAY = 12  # the seasonal surprise is averaged over a twelfth of a day
MEMORY = 500  # rows of a view's own record its surprise is judged against
WARM_UP = 100  # rows before the first score
Z_FLOOR = 1.0  # a record below one robust z is no record: a quiet series does not make every wobble news
RAISE = 2.0  # the most one row multiplies a view's record by
HOLD_S = 4 * 3600  # how long a raised surprise stands for its incident (at least HOLD_MIN rows)
HOLD_MIN = 3


def _carry_forward(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    n = len(x)
    idx = np.where(np.isnan(x), 0, np.arange(n))
    np.maximum.accumulate(idx, out=idx)
    x = x[idx]
    return np.where(np.isnan(x), 0.0, x)


def _spread(x: np.ndarray) -> np.ndarray:
    """Standard deviation of everything seen so far (a floor for the scales), causal."""
    k = np.arange(1, len(x) + 1)
    mean = np.cumsum(x) / k
    return np.sqrt(np.maximum(np.cumsum(x * x) / k - mean * mean, 0.0)) + 1e-9


def _trailing_mean(a: np.ndarray, w: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(a)])
    hi = np.arange(1, len(a) + 1)
    lo = np.maximum(hi - w, 0)
    return (c[hi] - c[lo]) / (hi - lo)


def level_view(x: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Robust z of the value (and half that of the mean of the last RECENT rows) against the rows before."""
    n = len(x)
    padded = np.concatenate([np.full(RECENT - 1, x[0]), x])
    recent = sliding_window_view(padded, RECENT).mean(axis=1)  # the last RECENT rows (exact for a constant)
    out = np.zeros(n)
    for w in LEVEL_WINDOWS:
        if n <= w:
            continue
        win = sliding_window_view(x[:-1], w)  # win[k] = x[k : k + w], the past of row k + w
        med = np.median(win, axis=1)
        mad = np.median(np.abs(win - med[:, None]), axis=1)
        sigma = 1.4826 * mad + 0.02 * spread[w:]
        z = np.fmax(np.abs(x[w:] - med) / sigma, 0.5 * np.abs(recent[w:] - med) / (sigma / math.sqrt(RECENT)))
        out[w:] = np.fmax(out[w:], z)
    return out


def seasonal_view(x: np.ndarray, spread: np.ndarray, period: int, count: int, smooth: int) -> np.ndarray:
    """Robust z of the value against the median of the same phase `period` rows apart, up to `count` back.

    The scale is the mean absolute seasonal residual over the previous period; the z is averaged over the
    last `smooth` rows. Zero until two earlier periods exist.
    """
    n = len(x)
    out = np.zeros(n)
    if period < 4 or n <= 2 * period:
        return out
    lags = np.full((count, n), np.nan)
    for j in range(1, count + 1):
        if j * period < n:
            lags[j - 1, j * period:] = x[:n - j * period]
    have = np.sum(~np.isnan(lags), axis=0)
    resid = np.abs(x - nanmedian(lags, axis=0))
    resid = np.where(have >= 2, resid, 0.0)
    scale = np.concatenate([[np.nan], _trailing_mean(resid, period)[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        z = resid / (1.25 * scale + 0.02 * spread)
    z = np.where(have >= 2, np.nan_to_num(z), 0.0)
    return _trailing_mean(z, smooth)


def _previous_max(a: np.ndarray, rows: int) -> np.ndarray:
    """The largest of the `rows` values before each one (0 before the first)."""
    past = np.concatenate([np.zeros(rows), a])
    return sliding_window_view(past[:-1], rows).max(axis=1)


def record(view: np.ndarray, rows: int = MEMORY, raise_by: float = RAISE) -> np.ndarray:
    """The view's record before each row: the largest of the previous `rows` values, each entering the
    record at most `raise_by` times the record it met (and at least Z_FLOOR).

    Sequential by nature (what a value adds depends on the record before it): a sliding maximum over a
    deque of candidates, O(n).
    """
    n = len(view)
    before = np.empty(n)
    kept = np.empty(n)
    candidates: deque = deque()  # row numbers whose kept values decrease from left to right
    for t in range(n):
        while candidates and candidates[0] < t - rows:
            candidates.popleft()
        bar = max(kept[candidates[0]], Z_FLOOR) if candidates else Z_FLOOR
        before[t] = bar
        kept[t] = min(view[t], raise_by * bar)
        while candidates and kept[candidates[-1]] <= kept[t]:
            candidates.pop()
        candidates.append(t)
    return before


def against_record(view: np.ndarray) -> np.ndarray:
    """The view divided by its record (`record`); 0 in the warm-up."""
    ratio = view / record(view)
    ratio[:WARM_UP] = 0.0
    return ratio


def score(timestamps, values) -> np.ndarray:
    """Anomaly score in [0, 1] for each row, causal.

    Parameters
    ----------
    timestamps : array_like of datetime64
        Row times; the median step of the warm-up rows decides whether the seasonal views apply
        (a step that divides a day).
    values : array_like of float
        The series; NaN is carried forward from the last value.

    Returns
    -------
    ndarray of float, in [0, 1]
    """
    x = _carry_forward(values)
    n = len(x)
    if n == 0:
        return np.zeros(0)
    spread = _spread(x)
    views = [level_view(x, spread)]
    ts = np.asarray(timestamps).astype("datetime64[s]").astype(np.int64)
    # the grid step from the warm-up rows only (no score before them), so that the views of row i
    # depend on rows 0..i alone
    step = int(np.median(np.diff(ts[:WARM_UP + 1]))) if n > 1 else 0
    if 0 < step < 86400 and 86400 % step == 0:
        day = 86400 // step
        smooth = max(2, day // SMOOTH_PER_DAY)
        views.append(seasonal_view(x, spread, day, DAYS, smooth))
        views.append(seasonal_view(x, spread, 7 * day, WEEKS, smooth))
    ratio = np.max([against_record(v) for v in views], axis=0)
    hold = max(HOLD_MIN, round(HOLD_S / step)) if step > 0 else HOLD_MIN
    ratio = ratio / np.maximum(_previous_max(ratio, hold), 1.0)
    return ratio / (ratio + 1.0)
