"""Derived indices: dew point, heat index, humidex, the Indonesian ISPU and PM2.5 corrected for humidity.

Pure, vectorized functions: each takes scalars or NumPy arrays (broadcast
together) and returns a float or an array. Undefined inputs (NaN, a relative
humidity outside 0-100 %, a negative concentration) give NaN, never a number
that looks real.

References
----------
.. [1] Alduchov, O. A. and Eskridge, R. E. (1996), "Improved Magnus form
   approximation of saturation vapor pressure", J. Appl. Meteor. 35, 601-609
   (a = 17.625, b = 243.04 °C).
.. [2] Rothfusz, L. P. (1990), "The heat index equation", NWS Technical Attachment
   SR 90-23; with the adjustments of the NWS Weather Prediction Center,
   https://www.wpc.ncep.noaa.gov/html/heatindex_equation.shtml
.. [3] Masterton, J. M. and Richardson, F. A. (1979), "Humidex, a method of
   quantifying human discomfort due to excessive heat and humidity",
   Environment Canada, CLI 1-79.
.. [4] Peraturan Menteri LHK P.14/MENLHK/SETJEN/KUM.1/7/2020 tentang Indeks Standar
   Pencemar Udara (ISPU), Lampiran: breakpoints and formula.
.. [5] Barkjohn, K. K., Gantt, B. and Clements, A. L. (2021), "Development and application
   of a United States-wide correction for PM2.5 data collected with the PurpleAir sensor",
   Atmos. Meas. Tech. 14, 4617-4637, https://doi.org/10.5194/amt-14-4617-2021 (eq. for
   PM2.5 below 50 µg/m³, fitted on 24-hour means at 39 US sites).
.. [6] Barkjohn, K. K., Holder, A. L., Frederick, S. G. and Clements, A. L. (2022),
   "Correction and accuracy of PurpleAir PM2.5 measurements for extreme wildfire smoke",
   Sensors 22, 9669, https://doi.org/10.3390/s22249669 (the extension to high
   concentrations used by the AirNow Fire and Smoke Map since October 2021).
"""

from __future__ import annotations

import functools

import numpy as np

from rimba.metrics import ISPU_CATEGORIES

MAGNUS_A = 17.625
MAGNUS_B = 243.04  # °C

# ISPU: continuous breakpoints (concentration µg/m³, index), 24-hour means, P.14/2020 [4]
_ISPU_BREAKPOINTS = {
    "pm25": (np.array([0.0, 15.5, 55.4, 150.4, 250.4, 500.0]), np.array([0.0, 50, 100, 200, 300, 500])),
    "pm10": (np.array([0.0, 50, 150, 350, 420, 500]), np.array([0.0, 50, 100, 200, 300, 500])),
}

CHUNK = 1 << 16  # values per piece when a function works through a large array


def _elementwise(f):
    """Run an elementwise function of arrays over large inputs piece by piece.

    Each piece's temporaries stay in the processor's cache (and no large temporary is ever
    allocated), which makes a many-step formula several times faster over a fleet's data.
    """
    @functools.wraps(f)
    def run(*args):
        arrays = [np.asarray(a, dtype=float) for a in args if not isinstance(a, str)]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        size = int(np.prod(shape))
        if size <= 2 * CHUNK:
            return f(*args)
        arrays = iter([np.broadcast_to(a, shape) for a in arrays])
        args = [a if isinstance(a, str) else next(arrays) for a in args]
        per = max(1, CHUNK * shape[0] // size)  # rows along the first axis per piece
        out = np.empty(shape)
        for lo in range(0, shape[0], per):
            out[lo:lo + per] = f(*(a if isinstance(a, str) else a[lo:lo + per] for a in args))
        return out
    return run


def _out(x):
    """A 0-d array back to a Python float; arrays stay arrays."""
    return float(x) if np.ndim(x) == 0 else x


def _rh(air_rh_pct):
    rh = np.asarray(air_rh_pct, dtype=float)
    return np.where((rh >= 0) & (rh <= 100), rh, np.nan)


@_elementwise
def dew_point_c(air_temp_c, air_rh_pct):
    """Dew point by the Magnus formula.

    Parameters
    ----------
    air_temp_c : float or array_like
        Air temperature, °C.
    air_rh_pct : float or array_like
        Relative humidity, % (0-100; outside gives NaN; 0 gives NaN, the dew point is undefined).

    Returns
    -------
    float or ndarray
        Dew point, °C.

    References
    ----------
    Alduchov and Eskridge (1996) [1]_.

    Examples
    --------
    >>> round(dew_point_c(30.0, 70.0), 2)
    23.93
    """
    t = np.asarray(air_temp_c, dtype=float)
    rh = _rh(air_rh_pct)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.log(np.where(rh > 0, rh, np.nan) / 100.0) + MAGNUS_A * t / (MAGNUS_B + t)
        td = MAGNUS_B * gamma / (MAGNUS_A - gamma)
    return _out(td)


@_elementwise
def heat_index_c(air_temp_c, air_rh_pct):
    """NWS heat index (apparent temperature) from air temperature and humidity.

    The simple formula is used where its mean with the temperature is below 80 °F,
    the Rothfusz regression elsewhere, with the WPC adjustments for RH below 13 %
    (80-112 °F) and above 85 % (80-87 °F).

    Parameters
    ----------
    air_temp_c : float or array_like
        Air temperature, °C.
    air_rh_pct : float or array_like
        Relative humidity, % (0-100; outside gives NaN).

    Returns
    -------
    float or ndarray
        Heat index, °C.

    References
    ----------
    Rothfusz (1990) and the NWS WPC heat index equation [2]_.

    Examples
    --------
    >>> round(heat_index_c(30.0, 80.0), 2)
    37.67
    """
    t, rh = np.broadcast_arrays(np.asarray(air_temp_c, dtype=float) * 1.8 + 32.0, _rh(air_rh_pct))
    shape = t.shape
    t, rh = t.reshape(-1), rh.reshape(-1)
    simple = 1.1 * t - 10.3 + 0.047 * rh  # 0.5 * (t + 61 + (t - 68) * 1.2 + 0.094 * rh)
    # the Rothfusz regression, grouped to save passes over large arrays
    hi = (-42.379 + t * (2.04901523 - 0.00683783 * t) + rh * (10.14333127 - 0.05481717 * rh)
          + t * rh * (-0.22475541 + 0.00122874 * t + 0.00085282 * rh - 0.00000199 * t * rh))
    with np.errstate(invalid="ignore"):
        rothfusz = (simple + t) >= 160.0  # the mean of the simple formula and t reaches 80 °F
        for where, adjust in (((rh < 13) & (t >= 80) & (t <= 112), _dry_adjustment),
                              ((rh > 85) & (t >= 80) & (t <= 87), _humid_adjustment)):
            idx = np.flatnonzero(where & rothfusz)
            if idx.size:
                hi[idx] += adjust(t[idx], rh[idx])
        f = np.where(rothfusz, hi, simple).reshape(shape)
    return _out((f - 32.0) * 5.0 / 9.0)


def _dry_adjustment(t_f, rh):
    return -((13 - rh) / 4) * np.sqrt(np.clip((17 - np.abs(t_f - 95)) / 17, 0, None))


def _humid_adjustment(t_f, rh):
    return ((rh - 85) / 10) * ((87 - t_f) / 5)


@_elementwise
def humidex_c(air_temp_c, air_rh_pct):
    """Humidex from air temperature and humidity (dew point by Magnus).

    Parameters
    ----------
    air_temp_c : float or array_like
        Air temperature, °C.
    air_rh_pct : float or array_like
        Relative humidity, %.

    Returns
    -------
    float or ndarray
        Humidex (dimensionless, read as °C).

    References
    ----------
    Masterton and Richardson (1979) [3]_.

    Examples
    --------
    >>> round(humidex_c(30.0, 70.0), 2)
    41.21
    """
    t = np.asarray(air_temp_c, dtype=float)
    td_k = np.asarray(dew_point_c(air_temp_c, air_rh_pct), dtype=float) + 273.15
    e = 6.11 * np.exp(5417.7530 * (1 / 273.16 - 1 / td_k))
    return _out(t + 0.5555 * (e - 10.0))


@_elementwise
def ispu(concentration_ugm3, pollutant):
    """Indonesian air-pollution standard index (ISPU) for PM2.5 or PM10.

    Linear interpolation between continuous breakpoints,
    ``I = (Ia - Ib) / (Xa - Xb) * (Xx - Xb) + Ib``; above 500 µg/m³ it is 500
    (Berbahaya). The regulation applies it to 24-hour means.

    Parameters
    ----------
    concentration_ugm3 : float or array_like
        Concentration, µg/m³ (negative gives NaN).
    pollutant : {"pm25", "pm10"}

    Returns
    -------
    float or ndarray
        ISPU (unrounded; round for display).

    References
    ----------
    Permen LHK P.14/2020 [4]_.

    Examples
    --------
    >>> round(ispu(35.0, "pm25"), 2)
    74.44
    >>> ispu(150.0, "pm10")
    100.0
    """
    try:
        xs, ys = _ISPU_BREAKPOINTS[pollutant]
    except KeyError:
        raise ValueError(f"pollutant must be 'pm25' or 'pm10', not {pollutant!r}") from None
    c = np.asarray(concentration_ugm3, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.where(c >= 0, np.interp(c, xs, ys), np.nan)
    return _out(out)


PM25_CORRECTION = "us-epa-2021"
"""The name stored beside each corrected PM2.5 value (field `pm_correction` of the `index` points)."""


@_elementwise
def pm25_corrected(pm25_ugm3, air_rh_pct):
    """PM2.5 from a Plantower PMS5003-class optical sensor, corrected for humidity: the US-EPA correction.

    Piecewise in the sensor's reading x (µg/m³) with RH the relative humidity (%) [5]_ [6]_:

    - x < 30: ``0.524 x - 0.0862 RH + 5.75``
    - 30 <= x < 50: the slope blends from 0.524 to 0.786 (``s = x / 20 - 3/2``)
    - 50 <= x < 210: ``0.786 x - 0.0862 RH + 5.75``
    - 210 <= x < 260: a blend into the high-concentration form (``s = x / 50 - 21/5``)
    - x >= 260: ``2.966 + 0.69 x + 8.84e-4 x²`` (RH no longer enters)

    It was fitted in the United States (PurpleAir sensors, two PMS5003 each, against regulatory
    monitors), not in Pontianak: a starting point until a local co-location. The paper uses the
    sensor's "CF=1" output; the nodes send the "atm" output, which equals it below about
    30 µg/m³ and reads lower above. A result below zero is clipped at 0 µg/m³ (below what the
    sensor resolves).

    Parameters
    ----------
    pm25_ugm3 : float or array_like
        The sensor's PM2.5, µg/m³ (negative gives NaN).
    air_rh_pct : float or array_like
        Relative humidity at the node, % (outside 0-100 gives NaN).

    Returns
    -------
    float or ndarray
        Corrected PM2.5, µg/m³.

    Examples
    --------
    >>> round(pm25_corrected(20.0, 85.0), 3)
    8.903
    >>> round(pm25_corrected(100.0, 70.0), 3)
    78.316
    >>> round(pm25_corrected(300.0, 95.0), 3)
    289.526
    """
    x = np.asarray(pm25_ugm3, dtype=float)
    rh = _rh(air_rh_pct)
    x = np.where(x >= 0, x, np.nan)
    low = 0.524 * x - 0.0862 * rh + 5.75
    s1 = x / 20 - 1.5
    blend1 = (0.786 * s1 + 0.524 * (1 - s1)) * x - 0.0862 * rh + 5.75
    mid = 0.786 * x - 0.0862 * rh + 5.75
    s2 = x / 50 - 21 / 5
    blend2 = ((0.69 * s2 + 0.786 * (1 - s2)) * x - 0.0862 * rh * (1 - s2) + 2.966 * s2 + 5.75 * (1 - s2)
              + 8.84e-4 * x * x * s2)
    high = 2.966 + 0.69 * x + 8.84e-4 * x * x
    with np.errstate(invalid="ignore"):
        out = np.select([x < 30, x < 50, x < 210, x < 260, x >= 260], [low, blend1, mid, blend2, high], np.nan)
        out = np.where(np.isnan(rh) & (x < 260), np.nan, np.maximum(out, 0.0))
    return _out(out)


def ispu_category(index):
    """The ISPU category number 0-4 (Baik … Berbahaya) of rounded ISPU values; -1 for NaN.

    Examples
    --------
    >>> ISPU_CATEGORIES[ispu_category(74.44)][1]
    'Sedang'
    """
    i = np.asarray(index, dtype=float)
    bounds = np.array([c[0] for c in ISPU_CATEGORIES[:-1]])
    cat = np.searchsorted(bounds, np.round(i), side="left")
    cat = np.where(np.isnan(i), -1, cat)
    return int(cat) if np.ndim(cat) == 0 else cat
