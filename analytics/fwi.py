"""The Canadian Forest Fire Weather Index System, as Indonesia's FDRS (BMKG SPBK) uses it.

Daily codes from noon weather: FFMC, DMC, DC (fuel moisture), ISI, BUI, FWI
(fire behaviour). Each function is vectorized over nodes (arrays broadcast);
`fwi_daily` runs a season day by day. Near the equator (|lat| < 15°) the DMC day
length is 9.0 h in every month and the DC day-length factor 1.39, as in xclim
and GFWED; elsewhere the 46° N tables of the original system apply (the southern
hemisphere uses them shifted by six months).

References
----------
.. [1] Van Wagner, C. E. (1987), Development and structure of the Canadian Forest
   Fire Weather Index System, Canadian Forestry Service, Forestry Technical Report 35.
.. [2] Van Wagner, C. E. and Pickett, T. L. (1985), Equations and FORTRAN program for
   the Canadian Forest Fire Weather Index System, Forestry Technical Report 33.
.. [3] de Groot, W. J., Field, R. D. et al. (2006), Development of the Indonesian and
   Malaysian fire danger rating systems, Mitigation and Adaptation Strategies for
   Global Change 12, 165-180.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

START = {"ffmc": 85.0, "dmc": 6.0, "dc": 15.0}  # CFS start-up values [2]
_LE_46N = np.array([6.5, 7.5, 9.0, 12.8, 13.9, 13.9, 12.4, 10.9, 9.4, 8.0, 7.0, 6.0])
_LF_46N = np.array([-1.6, -1.6, -1.6, 0.9, 3.8, 5.8, 6.4, 5.0, 2.4, 0.4, -1.6, -1.6])
EQUATOR_LE = 9.0
EQUATOR_LF = 1.39

#: Class thresholds (lower bounds of Sedang, Tinggi, Ekstrem): configuration, with sources.
CLASSES = {
    "fwi": ((1.5, 6.5, 13.5), "ASEAN SEA-FDRS: Low 0-1, Moderate 2-6, High 7-13, Extreme >13 (whole FWI)"),
    "ffmc": ((73.0, 78.0, 83.0), "provisional; de Groot, Wardati & Wang 2005 (ignition 81-83, hotspots >= 78)"),
    "dc": ((140.0, 260.0, 350.0), "provisional; Field et al. 2004 (severe haze above DC 388.2)"),
}


def _arr(x):
    return np.asarray(x, dtype=float)


def _out(x):
    return float(x) if np.ndim(x) == 0 else x


def _nan_if_missing(result, *inputs):
    """NaN wherever an input is NaN: a missing observation must not look like a dry day."""
    missing = np.zeros(np.shape(result), dtype=bool)
    for x in inputs:
        missing = missing | np.isnan(x)
    return np.where(missing, np.nan, result)


def _month_index(month, lat):
    m = np.asarray(month, dtype=int) - 1
    south = _arr(lat) < 0
    return np.where(south, (m + 6) % 12, m)


def day_length(lat, month):
    """DMC effective day length Le (hours)."""
    lat = _arr(lat)
    return _out(np.where(np.abs(lat) < 15, EQUATOR_LE, _LE_46N[_month_index(month, lat)]))


def day_length_factor(lat, month):
    """DC day-length factor Lf."""
    lat = _arr(lat)
    return _out(np.where(np.abs(lat) < 15, EQUATOR_LF, _LF_46N[_month_index(month, lat)]))


def ffmc(temp_c, rh_pct, wind_kmh, rain_mm, ffmc_yesterday):
    """Fine Fuel Moisture Code [1]_ (eqs. 1-10)."""
    t, h, w, p, f0 = map(_arr, (temp_c, rh_pct, wind_kmh, rain_mm, ffmc_yesterday))
    mo = 147.2 * (101.0 - f0) / (59.5 + f0)
    rf = p - 0.5
    wet = p > 0.5
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        add = 42.5 * rf * np.exp(-100.0 / (251.0 - mo)) * (1.0 - np.exp(-6.93 / rf))
        add = np.where(mo > 150.0, add + 0.0015 * (mo - 150.0) ** 2 * np.sqrt(rf), add)
    mo = np.where(wet, np.minimum(mo + np.where(wet, add, 0.0), 250.0), mo)
    ed = 0.942 * h ** 0.679 + 11.0 * np.exp((h - 100.0) / 10.0) + 0.18 * (21.1 - t) * (1.0 - np.exp(-0.115 * h))
    ew = 0.618 * h ** 0.753 + 10.0 * np.exp((h - 100.0) / 10.0) + 0.18 * (21.1 - t) * (1.0 - np.exp(-0.115 * h))
    ko = 0.424 * (1.0 - (h / 100.0) ** 1.7) + 0.0694 * np.sqrt(w) * (1.0 - (h / 100.0) ** 8)
    kd = ko * 0.581 * np.exp(0.0365 * t)
    k1 = 0.424 * (1.0 - ((100.0 - h) / 100.0) ** 1.7) + 0.0694 * np.sqrt(w) * (1.0 - ((100.0 - h) / 100.0) ** 8)
    kw = k1 * 0.581 * np.exp(0.0365 * t)
    m = np.where(mo > ed, ed + (mo - ed) * 10.0 ** (-kd),
                 np.where(mo < ew, ew - (ew - mo) * 10.0 ** (-kw), mo))
    return _out(_nan_if_missing(np.clip(59.5 * (250.0 - m) / (147.2 + m), 0.0, 101.0), t, h, w, p, f0))


def dmc(temp_c, rh_pct, rain_mm, dmc_yesterday, month, lat):
    """Duff Moisture Code [1]_ (eqs. 11-17)."""
    t, h, p, p0 = map(_arr, (temp_c, rh_pct, rain_mm, dmc_yesterday))
    with np.errstate(divide="ignore", invalid="ignore"):
        re = 0.92 * p - 1.27
        mo = 20.0 + 280.0 / np.exp(0.023 * p0)
        b = np.where(p0 <= 33.0, 100.0 / (0.5 + 0.3 * p0),
                     np.where(p0 <= 65.0, 14.0 - 1.3 * np.log(p0), 6.2 * np.log(p0) - 17.2))
        mr = mo + 1000.0 * re / (48.77 + b * re)
        pr = np.maximum(0.0, 43.43 * (5.6348 - np.log(mr - 20.0)))
    pr = np.where(p > 1.5, pr, p0)
    k = 1.894 * (np.maximum(t, -1.1) + 1.1) * (100.0 - h) * _arr(day_length(lat, month)) * 1e-6
    return _out(_nan_if_missing(np.maximum(pr, 0.0) + 100.0 * k, t, h, p, p0))


def dc(temp_c, rain_mm, dc_yesterday, month, lat):
    """Drought Code [1]_ (eqs. 18-23)."""
    t, p, d0 = map(_arr, (temp_c, rain_mm, dc_yesterday))
    with np.errstate(divide="ignore", invalid="ignore"):
        rd = 0.83 * p - 1.27
        qr = 800.0 * np.exp(-d0 / 400.0) + 3.937 * rd
        dr = np.maximum(0.0, 400.0 * np.log(800.0 / qr))
    dr = np.where(p > 2.8, dr, d0)
    v = np.maximum(0.0, 0.36 * (np.maximum(t, -2.8) + 2.8) + _arr(day_length_factor(lat, month)))
    return _out(_nan_if_missing(dr + 0.5 * v, t, p, d0))


def isi(wind_kmh, ffmc_today):
    """Initial Spread Index [1]_ (eqs. 24-26)."""
    w, f = _arr(wind_kmh), _arr(ffmc_today)
    m = 147.2 * (101.0 - f) / (59.5 + f)
    ff = 91.9 * np.exp(-0.1386 * m) * (1.0 + m ** 5.31 / 4.93e7)
    return _out(0.208 * np.exp(0.05039 * w) * ff)


def bui(dmc_today, dc_today):
    """Buildup Index [1]_ (eqs. 27a-b)."""
    p, d = _arr(dmc_today), _arr(dc_today)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = 0.8 * p * d / (p + 0.4 * d)
        high = p - (1.0 - 0.8 * d / (p + 0.4 * d)) * (0.92 + (0.0114 * p) ** 1.7)
    u = np.where(p <= 0.4 * d, low, high)
    return _out(np.where((p == 0) & (d == 0), 0.0, np.maximum(u, 0.0)))


def fwi(isi_today, bui_today):
    """Fire Weather Index [1]_ (eqs. 28-30)."""
    r, u = _arr(isi_today), _arr(bui_today)
    fd = np.where(u <= 80.0, 0.626 * u ** 0.809 + 2.0, 1000.0 / (25.0 + 108.64 * np.exp(-0.023 * u)))
    b = 0.1 * r * fd
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.exp(2.72 * (0.434 * np.log(np.where(b > 1.0, b, np.e))) ** 0.647)
    return _out(np.where(b > 1.0, s, b))


@dataclass
class FwiDays:
    """One row per day (and a column per node when the inputs are 2-D)."""

    ffmc: np.ndarray
    dmc: np.ndarray
    dc: np.ndarray
    isi: np.ndarray
    bui: np.ndarray
    fwi: np.ndarray


def fwi_daily(temp_c, rh_pct, wind_kmh, rain_mm, month, lat, start=None) -> FwiDays:
    """Run the system over consecutive days.

    Parameters
    ----------
    temp_c, rh_pct, wind_kmh : array_like, shape (days,) or (days, nodes)
        Noon (12:00 local standard time, WIB in Pontianak) temperature °C, relative
        humidity %, and 10-m wind km/h.
    rain_mm : array_like, same shape
        Rain of the 24 hours ending at noon, mm.
    month : array_like of int, shape (days,)
    lat : float or array_like, shape (nodes,)
    start : dict, optional
        Yesterday's codes for the first day (``ffmc``, ``dmc``, ``dc``); the CFS
        start-up values 85, 6 and 15 by default. A day with a missing input keeps
        NaN for that day, and the next day starts again from the start-up values.

    Returns
    -------
    FwiDays

    Examples
    --------
    >>> out = fwi_daily([17.0], [42.0], [25.0], [0.0], [4], 44.0)
    >>> [round(float(x[0]), 1) for x in (out.ffmc, out.dmc, out.dc, out.isi, out.bui, out.fwi)]
    [87.7, 8.5, 19.0, 10.9, 8.5, 10.1]
    """
    t, h, w, p = (np.atleast_1d(_arr(x)) for x in (temp_c, rh_pct, wind_kmh, rain_mm))
    month = np.atleast_1d(np.asarray(month, dtype=int))
    start = {**START, **(start or {})}
    shape = np.broadcast_shapes(t.shape, h.shape, w.shape, p.shape)
    rows = {k: np.full(shape, np.nan) for k in ("ffmc", "dmc", "dc", "isi", "bui", "fwi")}
    prev = {k: np.broadcast_to(_arr(v), shape[1:]).copy() for k, v in start.items()}
    for d in range(shape[0]):
        td, hd, wd, pd = (np.broadcast_to(x, shape)[d] for x in (t, h, w, p))
        f = ffmc(td, hd, wd, pd, prev["ffmc"])
        m = dmc(td, hd, pd, prev["dmc"], month[d], lat)
        c = dc(td, pd, prev["dc"], month[d], lat)
        i = isi(wd, f)
        b = bui(m, c)
        rows["ffmc"][d], rows["dmc"][d], rows["dc"][d] = f, m, c
        rows["isi"][d], rows["bui"][d], rows["fwi"][d] = i, b, fwi(i, b)
        for key, today in (("ffmc", f), ("dmc", m), ("dc", c)):
            today = np.asarray(today, dtype=float)
            prev[key] = np.where(np.isnan(today), _arr(start[key]), today)
    return FwiDays(**rows)


def danger_class(code: str, value, thresholds=None):
    """Class 0-3 (Rendah, Sedang, Tinggi, Ekstrem) of FWI, FFMC or DC values; -1 for NaN."""
    bounds = np.asarray(thresholds if thresholds is not None else CLASSES[code][0], dtype=float)
    v = _arr(value)
    cls = np.where(np.isnan(v), -1, np.searchsorted(bounds, v, side="right"))
    return int(cls) if np.ndim(cls) == 0 else cls
