"""The indices are computed from what passed the quality checks: a value QC found unfit is left out."""

from __future__ import annotations

import numpy as np
import pytest

from analytics import indices, quality
from analytics.analyze import PM25_CORRECTED, derive
from analytics.data import Cube

pytestmark = pytest.mark.unit

STEP = 600
DAY = 86400 // STEP
T0 = 1_780_000_000 - 1_780_000_000 % 86400  # a fixed UTC midnight
METRICS = ("air_temp_c", "air_rh_pct", "pm25_ugm3", "pm10_ugm3")


def cube(days: int = 2) -> Cube:
    n = days * DAY
    values = np.empty((2, n, len(METRICS)))
    values[:, :, 0] = 29.0
    values[:, :, 1] = 80.0
    values[:, :, 2] = 40.0
    values[:, :, 3] = 60.0
    return Cube(["a", "b"], ["s", "s"], T0 + STEP * np.arange(n), METRICS, values)


def test_without_flags_every_value_counts():
    c = cube()
    d = derive(c, STEP)
    assert np.isfinite(d["ispu_pm25"][:, DAY:]).all()
    assert d[PM25_CORRECTED][0, 0] == pytest.approx(float(indices.pm25_corrected(40.0, 80.0)))


def test_a_dying_fan_leaves_the_ispu_unknown_rather_than_too_clean():
    c = cube()
    flags = np.zeros(c.values.shape, np.uint16)
    flags[0, DAY // 2:, METRICS.index("pm25_ugm3")] = quality.FAN  # node a's fan, from noon of day 1
    flags[0, DAY // 2:, METRICS.index("pm10_ugm3")] = quality.FAN
    c.values[0, DAY // 2:, 2:] /= 4  # sinking
    d = derive(c, STEP, flags)
    healthy = derive(c, STEP)["ispu_pm25"]
    last = -1
    assert healthy[0, last] < healthy[1, last]  # read as it is, the sinking sensor says the air is cleaner
    assert np.isnan(d["ispu_pm25"][0, last]) and np.isnan(d["ispu_pm10"][0, last])  # unknown instead
    assert d["ispu_pm25"][1, last] == healthy[1, last]  # the healthy node is not touched
    # a day with a quarter of it unfit or less still has its 24-hour mean (the regulation's 75 %)
    flags[:] = 0
    flags[1, :DAY // 4, METRICS.index("pm25_ugm3")] = quality.SPIKE
    assert np.isfinite(derive(c, STEP, flags)["ispu_pm25"][1, DAY - 1])


@pytest.mark.parametrize("flag", [quality.RANGE, quality.FLAT, quality.DRIFT])
def test_humidity_qc_found_unfit_gives_no_heat_index_and_no_corrected_pm(flag):
    c = cube()
    flags = np.zeros(c.values.shape, np.uint16)
    flags[1, 5, METRICS.index("air_rh_pct")] = flag  # say, water in the enclosure: RH pinned at 100 %
    d = derive(c, STEP, flags)
    assert np.isnan(d["heat_index_c"][1, 5]) and np.isnan(d["dew_point_c"][1, 5]) and np.isnan(d[PM25_CORRECTED][1, 5])
    assert np.isfinite(d["heat_index_c"][1, 4]) and np.isfinite(d["heat_index_c"][0, 5])


@pytest.mark.parametrize("flag", [quality.STEP, quality.GAP, quality.NOISE])
def test_flags_that_do_not_say_the_value_is_wrong_leave_it_in(flag):
    c = cube()
    flags = np.full(c.values.shape, flag, np.uint16)
    for k, v in derive(c, STEP, flags).items():
        np.testing.assert_array_equal(v, derive(c, STEP)[k], err_msg=k)


def test_the_weekly_reports_ispu_days_are_of_the_corrected_pm_without_the_hours_qc_found_unfit():
    from analytics.weekly import ispu_days

    days = 3
    pm = np.full((2, days * 24), 30.0)
    rh = np.full((2, days * 24), 85.0)
    none = np.zeros(pm.shape, bool)
    corrected = float(indices.pm25_corrected(30.0, 85.0))
    want = int(indices.ispu_category(indices.ispu(np.array([corrected]), "pm25"))[0])
    assert ispu_days(pm, rh, none, days)[want] == days  # the product's correction, not the raw 30
    assert ispu_days(pm, None, none, days)[int(indices.ispu_category(indices.ispu(np.array([30.0]), "pm25"))[0])] == 3
    # node 0's sensor dies on day 2 and reads 500 (say, a flooded inlet): flagged, left out
    pm[0, 24:48] = 500.0
    unfit = none.copy()
    unfit[0, 24:48] = True
    assert ispu_days(pm, rh, unfit, days) == ispu_days(np.full(pm.shape, 30.0), rh, none, days)
    assert ispu_days(pm, rh, none, days) != ispu_days(pm, rh, unfit, days)
    # a day every hour of which is unfit has no category
    unfit[:, 48:] = True
    assert sum(ispu_days(pm, rh, unfit, days)) == 2


def test_a_foggy_night_at_the_sensors_crop_keeps_its_indices_and_a_box_alone_there_does_not():
    c = cube()
    rh = METRICS.index("air_rh_pct")
    c.values += np.random.default_rng(5).normal(0, 0.3, c.values.shape)  # a day's wobble: nothing stuck
    c.values[:, 30:70, rh] = 100.0  # fog: the SHT4x reads its 100 % crop for hours, at every node of the site
    c.values[0, 120:200, rh] = 100.0  # later node 0 alone there: a stuck sensor or water in its box
    flags = quality.check(c.values, c.metrics, c.sites)
    d = derive(c, STEP, flags)
    assert np.isfinite(d["dew_point_c"][:, 30:70]).all() and np.isfinite(d["heat_index_c"][:, 30:70]).all()
    assert np.isnan(d[PM25_CORRECTED][:, 30:70]).all()  # but PM in condensing air is (humid-pm)
    assert np.isnan(d["dew_point_c"][0, 140:200]).all() and np.isfinite(d["dew_point_c"][1, 140:200]).all()
