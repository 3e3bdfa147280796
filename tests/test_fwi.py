"""The fire weather index system against the standard 49-day test data of Van Wagner & Pickett (1985)."""

import doctest

import numpy as np
import pytest

from analytics import fwi as fwi_mod
from analytics.fwi import danger_class, fwi_daily
from rimba.dev.harness import ROOT

pytestmark = pytest.mark.unit  # no stack, no process

rows = np.loadtxt(ROOT / "tests" / "data" / "cfs_fwi_49days.txt", comments="#", skiprows=6)
COLS = ["mth", "day", "lat", "temp", "rh", "ws", "pr", "ffmc", "dmc", "dc", "isi", "bui", "fwi"]
DATA = {c: rows[:, i] for i, c in enumerate(COLS)}


def test_all_49_days_to_one_decimal():
    out = fwi_daily(DATA["temp"], DATA["rh"], DATA["ws"], DATA["pr"], DATA["mth"].astype(int), 44.0)
    assert len(rows) == 49
    for code in ("ffmc", "dmc", "dc", "isi", "bui", "fwi"):
        got = np.round(getattr(out, code), 1)
        bad = np.flatnonzero(np.abs(got - DATA[code]) > 0.051)
        assert not len(bad), f"{code}: day {bad[0] + 1} gives {got[bad[0]]}, published {DATA[code][bad[0]]}"


def test_vectorized_over_nodes_equals_one_node_at_a_time():
    rng = np.random.default_rng(3)
    days, nodes = 40, 6
    t = rng.uniform(22, 35, (days, nodes))
    h = rng.uniform(40, 100, (days, nodes))
    w = rng.uniform(0, 25, (days, nodes))
    p = np.where(rng.random((days, nodes)) < 0.4, rng.exponential(12, (days, nodes)), 0.0)
    month = np.full(days, 8)
    lat = np.array([-0.03, 0.5, 44.0, -30.0, 10.0, -0.04])
    together = fwi_daily(t, h, w, p, month, lat)
    for n in range(nodes):
        alone = fwi_daily(t[:, n], h[:, n], w[:, n], p[:, n], month, lat[n])
        for code in ("ffmc", "dmc", "dc", "isi", "bui", "fwi"):
            np.testing.assert_allclose(getattr(together, code)[:, n], getattr(alone, code))


def test_equatorial_dry_spell_matches_the_reference_run():
    # Van Wagner 1987's equations with the equatorial day-length factors (Le 9.0, Lf 1.39, as xclim's
    # _day_length branches for |lat| < 15): 33 °C, 55 %, 10 km/h, no rain, start 85/6/15; a reference run
    days = 30
    out = fwi_daily(np.full(days, 33.0), np.full(days, 55.0), np.full(days, 10.0), np.zeros(days),
                    np.full(days, 8), -0.03)
    for day, ffmc, dmc, dc, fwi in ((1, 88.3, 8.6, 22.1, 5.6), (7, 88.9, 24.3, 65.0, 10.6),
                                    (14, 89.2, 42.6, 114.9, 14.9), (30, 90.0, 84.5, 229.2, 23.4)):
        i = day - 1
        assert (round(float(out.ffmc[i]), 1), round(float(out.dmc[i]), 1), round(float(out.dc[i]), 1),
                round(float(out.fwi[i]), 1)) == (ffmc, dmc, dc, fwi)


def test_missing_weather_gives_nan_that_day_and_restarts():
    out = fwi_daily([30.0, np.nan, 30.0], [60.0, 60.0, 60.0], [10.0, 10.0, 10.0], [0.0, 0.0, 0.0], [8, 8, 8], 0.0)
    assert np.isnan(out.ffmc[1]) and np.isnan(out.fwi[1])
    fresh = fwi_daily([30.0], [60.0], [10.0], [0.0], [8], 0.0)
    assert out.ffmc[2] == pytest.approx(fresh.ffmc[0])


def test_danger_classes():
    assert [danger_class("fwi", v) for v in (0, 1, 2, 6, 7, 13, 14, float("nan"))] == [0, 0, 1, 1, 2, 2, 3, -1]
    assert [danger_class("dc", v) for v in (100, 140, 300, 388)] == [0, 1, 2, 3]
    assert danger_class("ffmc", 83.0, thresholds=(70, 80, 90)) == 2


def test_docstring_examples():
    assert doctest.testmod(fwi_mod).failed == 0
