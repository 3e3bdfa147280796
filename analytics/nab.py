"""The main anomaly detector, in the form the Numenta Anomaly Benchmark scores.

`score(timestamps, values)` returns one anomaly score in [0, 1] per row and is
causal: the score of row i uses rows 0..i only (appending rows never changes an
earlier score; a test holds it to that).

How it scores (first version):
- a robust baseline of the recent past: median and MAD of the values before a
  short gap, at two time scales;
- the surprise of the newest value, and of the mean of the last few values,
  against each baseline, as a robust z (mapped into [0, 1] by z / (z + 8));
- one alarm per incident: a surprise counts only when it exceeds every score
  given over the recent past, so a long anomaly raises one alarm, not hundreds.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SCALES = (48, 240)  # baseline windows, rows
RECENT = 5  # rows averaged for the slow signal
SUPPRESS = 300  # rows after an alarm during which only a bigger surprise counts
GROWTH = 1.5  # within the suppression span, a new alarm needs this much more surprise
Z_HALF = 8.0  # the robust z that maps to a score of 0.5  # fraction of the series length after an alarm during which only a bigger surprise counts


def _rolling_median_mad(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of x[t-w:t] (the w rows before t) for every t; NaN for t < w."""
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= w:
        return med, mad
    win = sliding_window_view(x[:-1], w)  # win[k] = x[k : k+w], the baseline of t = k + w
    m = np.median(win, axis=1)
    med[w:] = m
    mad[w:] = np.median(np.abs(win - m[:, None]), axis=1)
    return med, mad


def score(timestamps, values) -> np.ndarray:
    """Anomaly score in [0, 1] for each row, causal.

    Parameters
    ----------
    timestamps : array_like of datetime64
        Row times (unused by this version beyond their order).
    values : array_like of float
        The series; NaN is carried forward from the last value.

    Returns
    -------
    ndarray of float, in [0, 1]
    """
    x = np.asarray(values, dtype=float).copy()
    n = len(x)
    if n == 0:
        return np.zeros(0)
    # carry the last value forward over NaN (causal)
    idx = np.where(np.isnan(x), 0, np.arange(n))
    np.maximum.accumulate(idx, out=idx)
    x = x[idx]
    x = np.where(np.isnan(x), 0.0, x)
    recent = np.convolve(x, np.ones(RECENT) / RECENT)[:n]  # mean of the last RECENT rows (causal)
    raw = np.zeros(n)
    # a floor for the scale: the spread of everything seen so far (expanding, causal)
    k = np.arange(1, n + 1)
    mean = np.cumsum(x) / k
    spread = np.sqrt(np.maximum(np.cumsum(x * x) / k - mean * mean, 0.0)) + 1e-9
    for w in SCALES:
        med, mad = _rolling_median_mad(x, w)
        sigma = 1.4826 * mad + 0.02 * spread + 1e-9
        z_point = (x - med) / sigma
        z_mean = (recent - med) / (sigma / math.sqrt(RECENT))
        z = np.fmax(np.abs(z_point), np.abs(z_mean) * 0.5)
        raw = np.fmax(raw, np.nan_to_num(z, nan=0.0))
    # one alarm per incident: keep a score only when it beats everything given in the recent past
    s = SUPPRESS
    out = np.zeros(n)
    past = np.concatenate([np.zeros(s), raw])
    recent_max = sliding_window_view(past[:-1], s).max(axis=1)  # max of raw[t-s:t]
    keep = raw > GROWTH * recent_max
    out[keep] = raw[keep] / (raw[keep] + Z_HALF)
    return np.clip(out, 0.0, 1.0)
