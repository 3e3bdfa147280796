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


def test_phase_lags_nearest_within_half_a_step_ties_to_the_earlier_time_and_only_from_before():
    lag = detector.phase_lags
    # a reading exactly half a step off is taken; one more second is not
    assert lag([0, 150], 100, 1, 50).tolist() == [[-1, 0]]
    assert lag([0, 151], 100, 1, 50).tolist() == [[-1, -1]]
    # equally near: the earlier time; a time read twice: its first column
    assert lag([90, 110, 200], 100, 1, 10).tolist() == [[-1, -1, 0]]
    assert lag([0, 0, 100], 100, 1, 10).tolist() == [[-1, -1, 0]]
    # the nearest must come before the column: times that go back do not make a lag of a later reading
    assert lag([100, 0, 200], 100, 1, 10).tolist() == [[-1, -1, 0]]
    assert lag(np.array(["2025-11-03T00:00", "2025-11-04T00:00"], dtype="datetime64[ns]"), 86400, 2, 1).tolist() \
        == [[-1, 0], [-1, -1]]
    assert lag([0.0, 10.4, 20.0], 10, 1, 0.5).tolist() == [[-1, 0, 1]]  # seconds as given, not cut to whole ones
    assert lag([0.0, 10.9], 10, 1, 0.5).tolist() == [[-1, -1]]


def test_a_gap_longer_than_the_lags_reach_is_not_a_false_alarm_when_they_return():
    """Six days missing from an hourly daily cycle: for two days after the gap the day view has too few lags. When
    they return, its scale (the mean residual over the previous day) is of the residuals there are, not of that
    stretch's zeros, and its ratio counts again only warm_up values later, as at the series' start (found by an
    independent review: with zeros, a day view alarm of 0.73 51 readings after the lags came back)."""
    rng = np.random.default_rng(5)  # the review's series
    n = 80 * 24
    t = T0 + np.arange(n) * 3600
    x = 50 + 20 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 5, n)
    gap = 30 * 24 + 8
    keep = np.ones(n, dtype=bool)
    keep[gap:gap + 6 * 24] = False
    gapped = detector.score_rows(t[keep], x[None, keep])
    whole = detector.score_rows(t, x[None])
    assert whole.score[0, 300:].max() < anomaly.EVENT_THRESHOLD  # nothing to find (at 220, a new largest value)
    day = gapped.views[1, 0]
    assert day[gap + 48:gap + 148].max() < 1.5 * day[300:gap].max()  # no scale of zeros to inflate z (was 3x)
    assert gapped.score[0, gap:].max() < anomaly.EVENT_THRESHOLD


def test_the_seasons_start_by_time_when_readings_are_missing():
    """With a third of the readings missing, two days of lags come after far fewer than two days of rows: the day
    view counts from a day and `warm_up` (`season_lead`) after its first column with two lags (by time), not after
    2 x 288 rows."""
    rng = np.random.default_rng(8)
    n = 288 * 8
    t_all = T0 + np.arange(n) * 300
    keep = rng.random(n) > 1 / 3
    t = t_all[keep]
    seasons = detector.seasonal_views(t, len(t), 300, detector.PARAMS)
    day = next(s for s in seasons if s[0] == 1)
    lags = day[4]
    first = int(np.flatnonzero((lags >= 0).sum(axis=0) >= 2)[0])
    assert first < 2 * 288 - 150
    assert np.flatnonzero(~day[5])[0] == first + 288 + detector.PARAMS.warm_up


def test_a_missing_later_reading_changes_no_earlier_score_at_any_step():
    """Whether a series is on a regular grid depends on all its times; the views off the grid equal the grid's on
    a regular start, bit for bit, at a step whose day has fewer than four (none: as on the grid) or more."""
    rng = np.random.default_rng(9)
    for step, n in ((28800, 360), (3600, 24 * 40), (300, 288 * 5)):
        t = T0 + np.arange(n) * step
        x = 10 + np.sin(2 * np.pi * (t % 86400) / 86400)[None] + rng.normal(0, 0.2, (2, n))
        cut = n - 20
        keep = np.ones(n, dtype=bool)
        keep[cut + 5] = False
        head = detector.score_rows(t[:cut], x[:, :cut])
        gapped = detector.score_rows(t[keep], x[:, keep])
        for name in ("score", "views", "kind", "surprise"):
            np.testing.assert_array_equal(getattr(head, name), getattr(gapped, name)[..., :cut], err_msg=f"{step} {name}")


def test_a_stretch_without_lags_after_the_start_leaves_the_scale_of_the_residuals_there_are():
    """Off the grid, a value without `min_lags` lags has no residual: before the series' first value with lags that
    is a zero (as on a regular grid, whose scale is made of its first period's zeros), after it none, so the scale
    after a short stretch without lags (too short to silence the view) is the mean of the residuals there are.
    With zeros it fell by the stretch's share of the period, and every z after it rose by as much."""
    n, period = 120, 20
    x = np.zeros((1, n))
    x[0, 10:] = 1.0  # every residual 1: each value against two lags of 0
    lag_cols = np.full((2, n), -1)
    lag_cols[:, 10:] = [[0], [1]]
    lag_cols[:, 60:66] = -1  # six values without lags, after the first with them
    view = detector.seasonal_view(x, np.full((1, n), 1e-9), period, 2, 2, lag_cols=lag_cols)
    np.testing.assert_allclose(view[0, 67:100], 1 / 1.25)  # the scale is 1: z = 1 / (1.25 x 1) (66: smoothed)
    assert (view[0, 60:66] == 0).all()
    np.testing.assert_array_equal(detector.quiet_after((lag_cols >= 0).sum(axis=0) < 2, period // 2, 5, 25)[60:],
                                  np.zeros(n - 60, dtype=bool))  # six of a period of twenty: not silenced


@pytest.mark.parametrize("seed", [1, 2])
def test_a_gap_of_five_days_and_some_hours_is_no_false_alarm_two_days_on(seed):
    """A second independent review's case: 130 hours missing from an hourly daily cycle leave, two days on, two
    stretches of ten hours with one lag each, too short to silence the day view. With their zeros in its scale it
    alarmed (0.62 and 0.57, 35 to 60 hours after the gap) where the series without the gap does not."""
    rng = np.random.default_rng(seed)
    n = 50 * 24
    t = T0 + np.arange(n) * 3600
    x = 10 + np.sin(2 * np.pi * (t % 86400) / 86400) + rng.normal(0, 0.15, n)
    keep = np.ones(n, dtype=bool)
    keep[20 * 24:20 * 24 + 130] = False
    after = 20 * 24
    assert detector.score_rows(t, x[None]).score[0, after + 130:].max() < anomaly.EVENT_THRESHOLD
    assert detector.score_rows(t[keep], x[None, keep]).score[0, after:].max() < anomaly.EVENT_THRESHOLD


def test_the_grid_step_of_readings_a_fraction_of_a_second_late_is_the_hour():
    """Hourly readings up to half a second after the hour, as float seconds: the median step is a hair under or over
    3600, and cut to a whole second it was 3599 in about half of such series: no day or week view at all (a third
    independent review)."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = T0 + np.arange(40 * 24) * 3600.0 + rng.uniform(0, 0.5, 40 * 24)
        assert detector.grid_step(t) == 3600


@pytest.mark.parametrize("case", [(5, 0.7), (3, 0.8), (4, 0.7)])
def test_a_sparse_series_start_is_no_false_alarm_weeks_on(case):
    """A third independent review's case: a noisy daily cycle read every 15 minutes, most readings missing (70 or
    80 %), nothing to find. The zeros before the first value with lags filled most of the week view's scale for a
    period after its first `warm_up` values: z inflated, a false alarm three to four weeks in (0.77, 0.66 and 0.60
    on days 21.5, 29.0 and 21.1 for these seeds). Its ratio now counts from a week and `warm_up` after that value
    (`season_lead`)."""
    seed, miss = case
    step, days = 900, 60
    rng = np.random.default_rng(seed * 7 + int(miss * 10) + step)  # the review's series
    n = days * 86400 // step
    t = T0 + np.arange(n) * step
    cycle = rng.uniform(0.5, 2) * np.sin(2 * np.pi * t / 86400 + rng.uniform(0, 6))
    x = cycle + rng.normal(0, rng.choice([0.05, 0.1, 0.3]), n)
    keep = rng.random(n) >= miss
    keep[:150] = True
    r = detector.score_rows(t[keep], x[None, keep])
    seasonal = np.where(r.kind[0] > 0, r.score[0], 0.0)
    week = next(s for s in detector.seasonal_views(t[keep], int(keep.sum()), step, detector.PARAMS) if s[0] == 2)
    assert (~week[5]).sum() > 100  # the week view judges (from day 41 to 53 in these series), not silenced throughout
    assert seasonal.max() < anomaly.EVENT_THRESHOLD


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_time_that_is_not_one_is_refused_with_where_it_is(bad):
    """A missing timestamp (NaN from a CSV, NaT) is refused by name and place, not scored: at the start it failed
    deep in the grid step ("cannot convert float NaN to integer"), later it was a phase no lag could match."""
    x = np.sin(np.arange(400) / 10.0)
    for where in (5, 200):
        t = np.arange(400) * 300.0
        t[where] = bad
        with pytest.raises(ValueError, match=f"1 of 400 times are not finite \\(the first at index {where}\\)"):
            detector.score(t, x)
    nat = np.datetime64("2025-11-28T00:00") + np.arange(400) * np.timedelta64(5, "m")
    nat[7] = np.datetime64("NaT")
    with pytest.raises(ValueError, match="index 7"):
        detector.score(nat, x)
