"""The detector's fast path (`analytics.detector.score_rows`) against the slow one it replaced
(`tests/naive_detector.py`), on seeded series with gaps, context and every view in play."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import anomaly, detector
from tests.naive_detector import naive_score_rows

pytestmark = pytest.mark.unit  # no stack, no process

T0 = 1764262800  # 2025-11-28 00:00 WIB, a fixed time


def fleet(rows, n, step, seed, nan_frac=0.02):
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) * step
    phase = 2 * np.pi * (t % 86400) / 86400
    x = 20 + 3 * np.sin(phase)[None, :] + rng.normal(0, 0.5, (rows, n)) + rng.normal(0, 2, (rows, 1))
    x[:, n // 2:n // 2 + 20] += rng.normal(0, 6, (rows, 1))  # an incident in some rows
    x[rng.random(x.shape) < nan_frac] = np.nan
    x[3, :50] = np.nan  # a series that starts late
    return t, x


def assert_same(fast, slow):
    for name in ("score", "views", "baseline", "surprise"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12, atol=1e-12,
                                   equal_nan=True, err_msg=name)
    np.testing.assert_array_equal(fast.kind, slow.kind)


@pytest.mark.parametrize("params", [detector.PARAMS, anomaly.PRODUCT, replace(detector.PARAMS, windows=(48, 240))],
                         ids=["nab", "product", "two-windows"])  # (the grid's other level: two windows, one baseline)
def test_fast_equals_slow_with_context_across_row_blocks(params):
    """More rows than the old block of 256 and the new block, with floors, rain and neighbours."""
    rows, n = 300, 1400
    t, x = fleet(rows, n, 600, seed=11)
    rng = np.random.default_rng(12)
    floor = rng.uniform(0, 0.3, rows)
    explained = rng.choice([-1, 0, 0, 0, 1, 2], size=(rows, n)).astype(np.int8)
    reference = np.where(rng.random((rows, n)) < 0.01, np.nan, rng.normal(0, 0.1, (rows, n)))
    reference[-30:] = 0.0  # series without neighbours
    args = (t, x, params)
    kw = dict(floor=floor, explained=explained, reference=reference, step_s=600)
    assert_same(detector.score_rows(*args, **kw), naive_score_rows(*args, **kw))


def test_fast_equals_slow_with_the_week_view():
    """Long enough for two earlier weeks at a 30-minute step, so all three views speak."""
    t, x = fleet(20, 48 * 22, 1800, seed=13)
    fast = detector.score_rows(t, x)
    assert fast.views[2].any() and fast.views[1].any()
    assert_same(fast, naive_score_rows(t, x))


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), n=st.integers(0, 1200), step=st.sampled_from([60, 300, 700]),
       nan_frac=st.floats(0, 0.9), seed=st.integers(0, 2**32 - 1))
def test_fast_equals_slow_on_any_shape(rows, n, step, nan_frac, seed):
    t, x = fleet(max(rows, 4), n, step, seed, nan_frac) if n else (np.zeros(0), np.zeros((rows, 0)))
    assert_same(detector.score_rows(t, x, anomaly.PRODUCT), naive_score_rows(t, x, anomaly.PRODUCT))


def test_record_in_chunks_equals_the_record_stepped_whole():
    """Heavy tails (records raised by at most raise_by a step), a huge spike, a NaN, and lengths
    around the chunks of time the fast record is computed in."""
    from tests.naive_detector import record as naive_record

    rng = np.random.default_rng(21)
    for n in (1, 255, 256, 257, 1000):
        view = np.abs(rng.standard_t(2, (7, n)))
        view[2, n // 3:n // 3 + 40] = 1e6
        view[4, n // 2] = np.nan
        for params in (detector.PARAMS, anomaly.PRODUCT):
            np.testing.assert_array_equal(detector.record(view, params), naive_record(view, params))


def off_the_grid(n, step, seed):
    """A daily series read at irregular times: rows dropped (gaps of a few steps and of hours), a few read twice,
    some late by less than half a step."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) * step
    keep = rng.random(n) > 0.05
    keep[n // 3:n // 3 + 40] = False  # a gap of 40 steps
    t = t[keep]
    t[rng.random(len(t)) < 0.02] += step // 3  # late readings
    dup = np.flatnonzero(rng.random(len(t)) < 0.01)
    t = np.sort(np.concatenate([t, t[dup]]))  # read twice
    phase = 2 * np.pi * (t % 86400) / 86400
    x = 20 + 3 * np.sin(phase)[None, :] + rng.normal(0, 0.5, (3, len(t)))
    return t, x


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), step=st.sampled_from([300, 3600]))
def test_fast_equals_slow_off_the_grid(seed, step):
    """A series not on a regular grid has its seasons by time: the fast path's lags (`detector.phase_lags`,
    searchsorted) equal the slow one's, found one by one."""
    t, x = off_the_grid(24 * 40 if step == 3600 else 288 * 9, step, seed)
    fast = detector.score_rows(t, x)
    assert fast.views[1].any()
    assert_same(fast, naive_score_rows(t, x))
