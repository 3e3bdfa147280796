"""Indices against published values (Permen LHK P.14/2020's ISPU table, the NWS heat index, Masterton and
Richardson's humidex), and vectorized against a plain loop."""

import doctest
import math

import numpy as np
import pytest

from analytics import indices
from analytics.indices import dew_point_c, heat_index_c, humidex_c, ispu, ispu_category
from rimba.metrics import ISPU_CATEGORIES

pytestmark = pytest.mark.unit  # no stack, no process


def f_to_c(f):
    return (f - 32) * 5 / 9


# NWS heat index: (T, RH, HI); the °F rows cross-check the NWS table (90/70 -> 106, 96/65 -> 121)
HEAT = [(f_to_c(90), 70, f_to_c(105.92)), (f_to_c(96), 65, f_to_c(121.03)), (f_to_c(86), 80, f_to_c(99.80)),
        (f_to_c(84), 90, f_to_c(98.34)), (f_to_c(100), 10, f_to_c(94.12)), (f_to_c(75), 50, f_to_c(74.55)),
        (30, 80, 37.67), (31, 70, 37.60), (32, 75, 42.31), (33, 60, 39.52), (34, 55, 40.18), (28, 85, 32.90),
        (25, 50, 24.86)]


@pytest.mark.parametrize("t, rh, hi", HEAT)
def test_heat_index_published_values(t, rh, hi):
    assert heat_index_c(t, rh) == pytest.approx(hi, abs=0.011)


# Magnus dew points and humidex (Masterton & Richardson; Wikipedia 34 and 42 for 30 °C)
@pytest.mark.parametrize("t, rh, td, hx", [(30, 70, 23.93, 41.21), (32, 75, 27.01, 46.66), (33, 60, 24.20, 44.49)])
def test_dew_point_and_humidex(t, rh, td, hx):
    assert dew_point_c(t, rh) == pytest.approx(td, abs=0.01)
    assert humidex_c(t, rh) == pytest.approx(hx, abs=0.01)


PM25 = [(5, 16.13), (15.5, 50), (20, 55.64), (35, 74.44), (55.4, 100), (65.4, 110.53), (100, 146.95),
        (150.4, 200), (200, 249.60), (250.4, 300), (300, 339.74)]
PM10 = [(30, 30), (50, 50), (100, 75), (160.515, 105.26), (350, 200), (400, 271.43), (420, 300), (495.05, 487.62)]


@pytest.mark.parametrize("c, i", PM25)
def test_ispu_pm25_worked_values(c, i):
    assert ispu(c, "pm25") == pytest.approx(i, abs=0.01)


@pytest.mark.parametrize("c, i", PM10)
def test_ispu_pm10_worked_values(c, i):
    assert ispu(c, "pm10") == pytest.approx(i, abs=0.01)


def test_ispu_categories_names_and_colours():
    names = [ISPU_CATEGORIES[ispu_category(v)][1] for v in (0, 50, 51, 100, 101, 200, 201, 300, 301, 500)]
    assert names == ["Baik", "Baik", "Sedang", "Sedang", "Tidak Sehat", "Tidak Sehat", "Sangat Tidak Sehat",
                     "Sangat Tidak Sehat", "Berbahaya", "Berbahaya"]
    assert [c[3] for c in ISPU_CATEGORIES] == ["hijau", "biru", "kuning", "merah", "hitam"]
    assert ispu(900, "pm25") == 500 and ispu_category(float("nan")) == -1
    with pytest.raises(ValueError):
        ispu(10, "o3")


def test_undefined_inputs_give_nan():
    assert math.isnan(heat_index_c(30, 120)) and math.isnan(heat_index_c(float("nan"), 50))
    assert math.isnan(dew_point_c(30, 0)) and math.isnan(dew_point_c(30, -5))
    assert math.isnan(ispu(-1, "pm10")) and math.isnan(ispu(float("nan"), "pm25"))


def test_vectorized_equals_a_plain_loop():
    rng = np.random.default_rng(7)
    t = rng.uniform(15, 45, 2000)
    rh = rng.uniform(-5, 105, 2000)
    pm = rng.uniform(-10, 700, 2000)
    for arr in (t, rh, pm):
        arr[rng.choice(2000, 100, replace=False)] = np.nan
    for fn, args in ((heat_index_c, (t, rh)), (dew_point_c, (t, rh)), (humidex_c, (t, rh))):
        fast = fn(*args)
        slow = np.array([fn(a, b) for a, b in zip(*args)])
        np.testing.assert_allclose(fast, slow, equal_nan=True)
    for pol in ("pm25", "pm10"):
        np.testing.assert_allclose(ispu(pm, pol), [ispu(c, pol) for c in pm], equal_nan=True)
    cats = ispu_category(ispu(pm, "pm25"))
    assert list(cats) == [ispu_category(v) for v in ispu(pm, "pm25")]


def test_docstring_examples():
    assert doctest.testmod(indices).failed == 0


# US-EPA correction (Barkjohn et al. 2021; the 2022 extension above 50 µg/m³), worked by hand from the equations
@pytest.mark.parametrize("pm, rh, want", [(20.0, 85.0, 0.524 * 20 - 0.0862 * 85 + 5.75),
                                          (100.0, 70.0, 0.786 * 100 - 0.0862 * 70 + 5.75),
                                          (300.0, 95.0, 2.966 + 0.69 * 300 + 8.84e-4 * 300 ** 2),
                                          (2.0, 99.0, 0.0)])  # below zero: clipped
def test_pm25_correction_worked_values(pm, rh, want):
    assert indices.pm25_corrected(pm, rh) == pytest.approx(want, abs=1e-9)


def test_pm25_correction_is_continuous_and_undefined_inputs_are_nan():
    for edge in (30.0, 50.0, 210.0, 260.0):
        lo, hi = indices.pm25_corrected(edge - 1e-9, 80.0), indices.pm25_corrected(edge + 1e-9, 80.0)
        assert lo == pytest.approx(hi, abs=1e-6), edge
    x = np.linspace(0, 600, 6001)
    y = indices.pm25_corrected(x, np.full_like(x, 80.0))
    assert np.all(np.diff(y) >= -1e-12)  # more PM read, more PM corrected
    assert np.isnan(indices.pm25_corrected(-1.0, 50.0)) and np.isnan(indices.pm25_corrected(20.0, 120.0))
    assert np.isnan(indices.pm25_corrected(np.nan, 50.0))
