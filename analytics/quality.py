"""Data-quality checks, vectorized over the whole fleet at once.

Input is a cube ``x`` of shape (nodes, time, metrics) on a regular time grid,
NaN where there is no value; metric names come from the measurement table. The
result is a cube of bit flags of the same shape; nothing is "corrected". Each
check is a few array operations over all nodes and metrics together; the tests
hold every one of them against a plain per-point loop.

Flags (combine with ``|``; stored as the `qc` measurement's `flag` field):

    RANGE     outside the metric's physical range (the measurement table)
    SPIKE     one sample far from both neighbours, in the same direction; or, for the
              metrics a site's air shares (`SITE_SHARED`), one to three samples off two of the
              site's other nodes and back, by far less than the step limit (`_site_spikes`)
    STEP      a jump to a new level larger than the metric's step limit
              (SPIKE and STEP are not raised where the weather explains the jump: rain at
              the site within a step, for the metrics rain moves, the way rain moves them
              (`RAIN_SIGN`) or, as the shower ends, back; or the site's other nodes jumping
              the same way at the same time. A spike is the weather's only when both of its
              jumps are)
    FLAT      `flat_n` samples or more within the metric's flat tolerance of each other
              (a stuck sensor, still dithering by a digit or two); not humidity at the SHT4x's 100 %
              crop (SATURATED_RH and above) while another node of the site is there too: fog, a
              saturated night
    GAP       no value here while the node reported at other times (a dropout)
    NOISE     reversals between large sample-to-sample changes crowding a short window
    DRIFT     a day-long offset from the median of the same site's nodes (values
              flagged SPIKE, FLAT or NOISE left out, and humidity at saturation left out of
              the median: `comparable`)
    HUMID_PM  a particulate reading taken in condensing air (relative humidity at or
              above `condensing_rh`, 97 %: fog, mist and rain drops in the inlet), which no
              humidity correction can fix. Below it, humid air is corrected for instead
              (`analytics.indices.pm25_corrected`, Barkjohn et al. 2021). Source: Jayaratne,
              R. et al. (2018), "The influence of humidity on the performance of a low-cost
              air particle mass sensor and the effect of atmospheric fog", Atmos. Meas. Tech.
              11, 4883-4890, https://doi.org/10.5194/amt-11-4883-2018 (a PMS1003 read several
              times the reference in fog).
    FAN       a particulate sensor sinking against the city's: its level on log(1 + x) minus the
              upper quartile of the city's PM sensors fell from each of `fan_blocks` consecutive
              blocks of `fan_block` samples (medians) to the next by at least `fan_fall`, a fall
              that lasted a day; held while the level stays below where that fall began.
              A PMS5003 draws its sample through the laser chamber with its fan (Plantower PMS5003
              series data manual, 2016); a fan wearing out draws less and less air, and all its
              channels read a growing factor low. The city's air moves the city together; a
              site's own background goes up and down, or changes once, but rarely falls for a
              whole day against everyone else (a local source dying away over a day would, and
              is flagged too). Fans only sink, so the reference is the upper quartile, which stays
              with the healthy sensors while several sink at once. Needs `fan_sensors` PM sensors
              with a value at the time (the node itself included); none of the three mass
              channels' ratios is used, for a PMS5003 computes them from the same light pulses.
              A hold ends where the node's technician replaced the sensor (the fleet file's
              `pm_replaced`, `rimba node replaced`): a new unit may read lower than the old one did
              before its fall, and would stay flagged. From there, a fall is found only from the
              new unit's own readings (a day of them), so a lower-reading unit is no fall either.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

from analytics.robust import nanmedian
from rimba.metrics import METRICS

RANGE, SPIKE, STEP, FLAT, GAP, NOISE, DRIFT, HUMID_PM, FAN = (1 << i for i in range(9))
FLAG_NAMES = {RANGE: "range", SPIKE: "spike", STEP: "step", FLAT: "flat", GAP: "gap", NOISE: "noise",
              DRIFT: "drift", HUMID_PM: "humid-pm", FAN: "fan"}
PM_METRICS = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3")
# values that do not measure their quantity, left out of what is computed from them (the indices): not STEP
# (a new level may be real), GAP or NOISE (the values there are still the sensor's)
UNFIT = RANGE | SPIKE | FLAT | DRIFT | FAN | HUMID_PM

# Per-metric limits for samples a few minutes apart: largest plausible change between two samples
# (spike, step), whether a long constant run is suspicious, and the offset from neighbours that
# counts as drift. Configuration, not physics: override through `Limits`.
_STEP = {m.name: m.step for m in METRICS.values() if m.step is not None}
_DRIFT = {m.name: m.drift for m in METRICS.values() if m.drift is not None}
# how far a stuck sensor's values may still wander: a digit or two of what the nodes report. Where the
# reported steps are coarse against a quiet day's changes (a DS18B20's 1/16 °C, a PM sensor's 1 µg/m³),
# only exact repeats count: a quiet night there looks like a stuck sensor.
_FLAT_TOL = {"air_temp_c": 0.03, "air_rh_pct": 0.1, "air_pressure_hpa": 0.2, "soil_vwc_pct": 0.05,
             "water_level_cm": 0.3}
# the smallest change that means something per metric, about a sensor's resolution and noise (particulates:
# on log(1 + x), about 15 %); the anomaly scores use the same floors (`analytics.anomaly`)
SCALE_FLOOR = {"air_temp_c": 0.3, "air_rh_pct": 2.0, "air_pressure_hpa": 0.5, "soil_temp_c": 0.2,
               "soil_vwc_pct": 1.0, "pm1_ugm3": 3.0, "pm25_ugm3": 4.0, "pm10_ugm3": 6.0, "co2_ppm": 20.0,
               "light_lux": 2000.0, "rain_mm": 1.0, "water_level_cm": 5.0, "water_temp_c": 0.2, "batt_v": 0.05,
               "rssi_dbm": 4.0}
LOG_FLOOR = 0.15
_NOT_FLAT = ("rain_mm", "light_lux")  # zero for hours is normal (no rain, night), and bursts too
# the metrics a rain shower moves at once, and which way: humidity up to saturation, the air and the soil cooler,
# the soil wetter, run-off raising the river, the light dimmer, particulates washed out. A move the other way
# while it rains is not the rain's (the analytics' anomaly scores read the same table).
RAIN_SIGN = {"air_rh_pct": 1, "air_temp_c": -1, "soil_temp_c": -1, "soil_vwc_pct": 1, "water_level_cm": 1,
             "light_lux": -1, "pm1_ugm3": -1, "pm25_ugm3": -1, "pm10_ugm3": -1}
RAIN_MOVES = tuple(RAIN_SIGN)
# the metrics the air itself carries, which go back within minutes of a shower's end (the air dries, warms,
# brightens, fills with particles again); the soil drains over days and run-off reaches the river for hours,
# so their return is never one step
RAIN_RETURNS = ("air_rh_pct", "air_temp_c", "light_lux", "pm1_ugm3", "pm25_ugm3", "pm10_ugm3")
# the metrics the air of a site shares: their nodes, tens of metres apart, read the same weather, and a node
# going off the others' median for a few samples and back is its sensor (SPIKE against the site)
SITE_SHARED = ("air_temp_c", "air_rh_pct", "air_pressure_hpa")


# Relative humidity at or above this is saturation as a capacitive sensor reads it (the SHT4x's tolerance
# is +-1.8 %RH typical at best, and its readings are cropped at 100 %: Sensirion SHT4x datasheet, version 6.6,
# the humidity specification and §4.6): within a point of that crop a value cannot be
# compared with the site's other nodes, and is left out of their median; a node pinned there (water in its
# enclosure) is still compared with the others.
SATURATED_RH = 99.0


def comparable(metric: str, x) -> np.ndarray | None:
    """Where values of `metric` (an array) may make a site's median: None for all of them; for humidity, where
    below SATURATED_RH (a wet enclosure reads 100 % for days; with three of a site's five nodes wet, a median
    of all five would be theirs, and the dry ones would seem off)."""
    if metric != "air_rh_pct":
        return None
    with np.errstate(invalid="ignore"):
        return ~(np.asarray(x) >= SATURATED_RH)


@dataclass
class Limits:
    step: dict = field(default_factory=lambda: dict(_STEP))
    drift: dict = field(default_factory=lambda: dict(_DRIFT))
    flat_n: int = 12  # samples
    flat_tol: dict = field(default_factory=lambda: dict(_FLAT_TOL))
    flat_exempt: tuple = _NOT_FLAT  # also exempt from NOISE: rain and light come in bursts
    noise_window: int = 6  # samples, centred
    noise_factor: float = 2.5  # times the upper quartile of the changes (about 4 times their median)
    drift_window: int = 144  # samples (a day at 10 minutes)
    condensing_rh: float = 97.0
    together: float = 0.5  # a jump is the site's when the site's median jump is this share of it, same sign
    # SPIKE against the site (`_site_spikes`): up to `site_spike_n` samples (a spike's longest) off
    # `site_spike_nodes` other nodes of the site or more by `site_spike` SCALE_FLOORs, against the sample
    # before and the sample after. site_spike chosen by leave-one-seed-out cross-validation on
    # bench.detection's tuning seeds (`python -m bench.detection --tune-spike`), reported there with the
    # held-out score
    site_spike: float = 3.0
    # per metric where it differs from site_spike (metric, SCALE_FLOORs), chosen by the same cross-validation
    # (jointly, every fold chose these): a site's air temperatures differ more than their 0.3 °C floor says
    site_spike_of: tuple = (("air_temp_c", 4.0), ("air_rh_pct", 2.5))
    site_spike_n: int = 3
    site_spike_nodes: int = 2

    # FAN: chosen by leave-one-seed-out cross-validation on bench.detection's tuning seeds
    # (`python -m bench.detection --tune-fan`), reported there with the held-out score
    fan_block: int = 24  # samples (four hours at 10 minutes)
    fan_blocks: int = 6  # consecutive blocks, each below the one before: a fall lasting a day
    fan_fall: float = 0.04  # on log(1 + x), from one block's median to the next, at least
    fan_sensors: int = 4  # PM sensors in the city with a value, for their upper quartile to be the reference

    @property
    def fan_day(self) -> int:
        """Samples a fall takes to be found (`fan_blocks` blocks of `fan_block`): a day at 10 minutes."""
        return self.fan_block * self.fan_blocks

    def spike_floors(self, metric: str) -> float:
        """SPIKE against the site's limit for `metric`, in SCALE_FLOORs."""
        return dict(self.site_spike_of).get(metric, self.site_spike)


def _per_metric(metrics, table, default=np.nan):
    return np.array([table.get(m, default) for m in metrics], dtype=float)


def check(x, metrics, site_of=None, limits: Limits | None = None, pm_reference=None, fan_before=None,
          replaced=None) -> np.ndarray:
    """Flag every value of ``x`` (nodes, time, metrics); return uint16 flags of the same shape.

    Parameters
    ----------
    x : ndarray, shape (nodes, time, metrics)
        Values on a regular time grid; NaN where missing.
    metrics : sequence of str
        The metric name of each column (from the measurement table).
    site_of : sequence of str, optional
        The site of each node; nodes of one site are each other's neighbours for DRIFT.
    limits : Limits, optional
    pm_reference : ndarray, shape (time, particulate metrics of x in order), optional
        The city's PM reference for FAN (`pm_reference`), when x holds only some of the city's
        PM sensors; by default, from x's own nodes.
    fan_before : (ndarray, ndarray, ndarray), optional
        What FAN carries from before x's first column, with `pm_reference`: the particulates of the steps just
        before it (nodes, steps, particulate metrics of x in order; NaN where none or out of range), the
        reference over those steps (steps, particulate metrics), and the hold carried into x's first column
        (nodes, particulate metrics: `fan_hold`). A window that begins in or after a fan's fall cannot see the fall
        alone: with them, a fan that died before the window stays flagged while it stays sunk.
    replaced : sequence of sequences of int, optional
        Per node, the columns of x (negative before it) from which a replaced particulate sensor reads
        (`replaced_columns`): FAN's hold ends there, and a fall is found only from the new sensor's readings.
    """
    lim = limits or Limits()
    x = np.asarray(x, dtype=float)
    flags = np.zeros(x.shape, dtype=np.uint16)
    # blocks of whole sites (a node's flags depend on it and its site only), small enough to stay
    # in the processor's cache
    sites = np.asarray(site_of) if site_of is not None else np.arange(x.shape[0]) // BLOCK
    _, first, group = np.unique(sites, return_index=True, return_inverse=True)
    block = []
    for g in np.argsort(first):
        block.extend(np.flatnonzero(group == g))
        if len(block) >= BLOCK or g == np.argsort(first)[-1]:
            idx = np.array(block)
            flags[idx] = _check_block(x[idx], metrics, None if site_of is None else sites[idx], lim)
            block = []
    pm = [j for j, m in enumerate(metrics) if m in PM_METRICS]
    if pm:  # against the city's PM sensors, not only the site's
        sub = flags[:, :, pm]  # a copy (fancy indexing): written back
        ok = np.where(sub & RANGE, np.nan, x[:, :, pm])
        reach = lim.fan_day
        if fan_before is not None:
            before, ref_before, level0 = fan_before
            k = before.shape[1]
            ref = pm_reference if pm_reference is not None else \
                _city_reference(ok, lim, fresh_mask(replaced, len(x), 0, x.shape[1], reach))
            hot = fan_sinking(np.concatenate([before, ok], axis=1), lim, np.concatenate([ref_before, ref], axis=0),
                              level0, hold_from=k, fresh=fresh_mask(replaced, len(x), k, x.shape[1], reach))[:, k:]
        else:
            hot = fan_sinking(ok, lim, pm_reference, fresh=fresh_mask(replaced, len(x), 0, x.shape[1], reach))
        np.bitwise_or(sub, np.uint16(FAN), out=sub, where=hot)
        flags[:, :, pm] = sub
    return flags


def pm_reference(pm, limits: Limits | None = None, fresh=None) -> np.ndarray:
    """The city's particulate reference for FAN: per step and metric, the upper quartile of log(1 + x) over
    the PM sensors with a value (NumPy's linear interpolation), leaving out the sensors found sinking against
    a first reference of them all; NaN where fewer than `fan_sensors` are left.

    Parameters
    ----------
    pm : ndarray, shape (nodes, time, k)
        Particulate concentrations on a regular grid, µg/m³, NaN where missing (or out of range).
    limits : Limits, optional
    fresh : ndarray of bool, shape (nodes, time), optional
        Where replaced sensors first read (`fan_sinking`).

    Returns
    -------
    ndarray, shape (time, k)

    Examples
    --------
    >>> pm = np.array([[[9.0]], [[15.0]], [[19.0]], [[24.0]], [[np.nan]]])
    >>> np.round(np.expm1(pm_reference(pm)), 1).tolist()
    [[20.1]]
    """
    lim = limits or Limits()
    pm = np.asarray(pm, dtype=float)
    first = _upper_quartile(pm, lim)
    return _upper_quartile(np.where(_sinking(pm, first, lim, fresh=fresh)[0], np.nan, pm), lim)


_city_reference = pm_reference  # for `check`, whose argument of that name hides it


def _upper_quartile(pm, lim):
    with np.errstate(invalid="ignore"):
        y = np.log1p(np.maximum(pm, 0.0))
    n = (~np.isnan(y)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps give NaN, as they should
        q = np.nanquantile(y, 0.75, axis=0)
    return np.where(n >= lim.fan_sensors, q, np.nan)


def replaced_columns(times, step: int, replaced) -> list:
    """Per node, the columns of a grid starting at ``times[0]`` (negative before it) from which a sensor replaced at
    each of its times (UNIX seconds) reads: the first step that begins at or after the replacement."""
    t0 = int(times[0]) if len(times) else 0
    return [[-(-(int(t) - t0) // int(step)) for t in ts] for ts in replaced]


def fresh_mask(replaced, nodes: int, before: int, steps: int, reach: int) -> np.ndarray | None:
    """(nodes, before + steps) True at the first column each replaced sensor reads, for an array of `before`
    columns of context ahead of a window's `steps` (`replaced` in the window's columns). A replacement less than
    `reach` columns before the window (a day: less than a fall after it takes to be found, so what was held there
    was the old sensor's) is at the array's first column; an older one is left out. None when there is none."""
    out = np.zeros((nodes, before + steps), dtype=bool)
    for i, cols in enumerate(replaced or ()):
        for c in cols:
            if -reach < c < steps:
                out[i, max(0, c + before)] = True
    return out if out.any() else None


def replaced_since(replaced, steps: int, reach: int) -> dict:
    """Node index -> the window's column from which FAN is judged from the window alone, for the nodes with a
    replacement in the window or less than `reach` columns before it (`fresh_mask`): the first such one (0 for one
    before the window). From there on, no hold from before and no fall across it: a batch or a sweep, which
    carry nothing from before their window, judge FAN too."""
    out = {}
    for i, cols in enumerate(replaced or ()):
        judged = [c for c in cols if -reach < c < steps]
        if judged:
            out[i] = max(0, min(judged))
    return out


def fan_sinking(pm, limits: Limits | None = None, reference=None, level0=None, hold_from: int = 0,
                fresh=None) -> np.ndarray:
    """FAN: where each PM sensor's reading sank against the city's for a day, and stays sunk.

    Parameters
    ----------
    pm : ndarray, shape (nodes, time, k)
        Particulate concentrations on a regular grid, µg/m³, NaN where missing (or out of range).
    limits : Limits, optional
    reference : ndarray, shape (time, k), optional
        `pm_reference` of the city's PM sensors; by default of `pm`'s.
    level0 : ndarray, shape (nodes, k), optional
        The hold carried into column `hold_from` (`fan_hold`: the level a sensor found sinking must rise above,
        NaN where none holds; +inf where one holds at a level not known, as a state built from what was written
        knows it: the first block median from there on, plus the fall a finding needs, is taken for it); the
        columns before it are context only, for the falls that end after it. A
        window that begins after a fan's fall cannot see the fall: without what was held before it, a fan that
        died more than a window ago reads as a clean sensor.
    hold_from : int
    fresh : ndarray of bool, shape (nodes, time), optional
        Where a replaced sensor first reads (`fresh_mask`): a hold ends there, a hold carried into `hold_from` ends
        at one at or before it, and a fall is found only from medians of the new sensor's samples.

    Returns
    -------
    ndarray of bool, shape (nodes, time, k)

    Notes
    -----
    With r = log(1 + x) - reference and m(t) the median of r over the `fan_block` samples to t (NaN with
    fewer than half of them), the fall is found at t when m(t - i b) < m(t - (i + 1) b) - fan_fall for
    every i < fan_blocks - 1 (b = fan_block): flagged there, and on while m stays below
    m(t - (fan_blocks - 1) b) - (fan_blocks - 1) fan_fall, the level the fall began at less the fall
    it needed, and through a gap where m is NaN (a node silent for hours, its fan no better for it). Earlier
    values only: appending data never changes a past flag.
    """
    return _fan(pm, limits, reference, level0, hold_from, fresh)[0]


def fan_hold(pm, limits: Limits | None = None, reference=None, level0=None, hold_from: int = 0,
             fresh=None, found0=None) -> tuple:
    """(hold, found): the hold (nodes, k) carried out of pm's last column (`fan_sinking`'s ``level0`` for the
    columns after it), from ``level0`` carried into column `hold_from`; and the last column where a fall set it
    (nodes, k: from ``found0``, that of ``level0``, where none was found since; -1 where none holds). A hold is
    the old sensor's, and ends, where the sensor was replaced after that fall began (`carried_hold`)."""
    _, level, found = _fan(pm, limits, reference, level0, hold_from, fresh, found0)
    return level, found


def carried_hold(level, found_at, replaced, reach: int) -> np.ndarray:
    """A hold carried into a window (`fan_hold`, for the columns of the window: `found_at` where the fall that set
    it was found, `replaced` per node the columns replaced sensors read from, as `check` takes them) with the
    holds of the sensors replaced before the window and after their fall began taken out (a fall found at f is
    found from the samples from f - reach + 1 on, `reach` a day: the new sensor's own, as `_sinking` takes them, when
    they are all from its first on). One replaced in the window ends there (`check`)."""
    level = np.array(level, dtype=float, copy=True)
    for i, cols in enumerate(replaced or ()):
        for c in cols:
            if c <= 0:
                level[i, np.asarray(found_at[i]) - reach + 1 < c] = np.nan
    return level


def _fan(pm, limits, reference, level0, hold_from, fresh=None, found0=None):
    lim = limits or Limits()
    pm = np.asarray(pm, dtype=float)
    ref = pm_reference(pm, lim, fresh) if reference is None else np.asarray(reference, dtype=float)
    return _sinking(pm, ref, lim, level0, hold_from, fresh, found0)


def _sinking(pm, ref, lim, level0=None, hold_from: int = 0, fresh=None, found0=None):
    with np.errstate(invalid="ignore"):
        r = (np.log1p(np.maximum(pm, 0.0)) - ref[None]).transpose(0, 2, 1)  # (nodes, k, time)
    b, k, fall = lim.fan_block, lim.fan_blocks, lim.fan_fall
    n_t = r.shape[-1]
    m = np.full(r.shape, np.nan, dtype=np.float32)
    if n_t >= b:
        for lo in range(0, r.shape[0], BLOCK):  # a node block at a time: the windows are b times the data
            w = sliding_window_view(r[lo:lo + BLOCK].astype(np.float32), b, axis=-1)
            med = nanmedian(w, axis=-1)
            enough = (~np.isnan(w)).sum(axis=-1) >= (b + 1) // 2
            m[lo:lo + BLOCK, :, b - 1:] = np.where(enough, med, np.nan)

    def back(steps):
        out = np.full(m.shape, np.nan, dtype=np.float32)
        if steps < n_t:
            out[..., steps:] = m[..., :n_t - steps]
        return out

    found = np.ones(m.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for i in range(k - 1):
            found &= back(i * b) < back((i + 1) * b) - np.float32(fall)
    began = back((k - 1) * b) - np.float32((k - 1) * fall)
    level = np.full(m.shape[:-1], np.nan, dtype=np.float32) if level0 is None else \
        np.array(level0, dtype=np.float32).reshape(m.shape[:-1])
    if fresh is not None:  # a replaced sensor: its fall only from its own samples, no hold from before it
        fresh = np.asarray(fresh, dtype=bool)
        cols = np.arange(n_t)
        newest = np.maximum.accumulate(np.where(fresh, cols, -1), axis=-1)  # the last replacement at or before t
        found &= (cols - k * b + 1 >= newest)[:, None, :]
        level[fresh[:, :hold_from + 1].any(axis=-1)] = np.nan
    out = found.copy()
    found_at = np.full(level.shape, -1, dtype=np.int64) if found0 is None else \
        np.array(found0, dtype=np.int64).reshape(level.shape)
    for t in range(hold_from, n_t):  # held while the level stays below where the fall began, and through a gap
        if fresh is not None:
            level[fresh[:, t]] = np.nan
        found_at[found[..., t]] = t
        # a hold carried without its level (+inf: known sunk, from what was written) takes the first median's
        level = np.where(np.isinf(level) & ~np.isnan(m[..., t]), m[..., t] + np.float32((k - 1) * fall), level)
        level = np.where(found[..., t], began[..., t], level)
        with np.errstate(invalid="ignore"):
            out[..., t] |= m[..., t] < level
        level = np.where(out[..., t] | np.isnan(m[..., t]), level, np.nan)
    return out.transpose(0, 2, 1), level, np.where(np.isnan(level), -1, found_at)


BLOCK = 32  # nodes


def _check_block(x, metrics, site_of, lim):
    """Flags for x (nodes, time, metrics), worked out with time along the contiguous axis."""
    x = np.ascontiguousarray(x.transpose(0, 2, 1))  # (nodes, metrics, time)
    n_t = x.shape[-1]
    flags = np.zeros(x.shape, dtype=np.uint16)

    def mark(bit, where):
        np.bitwise_or(flags, np.uint16(bit), out=flags, where=where)

    def per_metric(table):
        return _per_metric(metrics, table)[:, None]

    present = ~np.isnan(x)
    low = np.array([METRICS[m].low for m in metrics])[:, None]
    high = np.array([METRICS[m].high for m in metrics])[:, None]
    with np.errstate(invalid="ignore"):
        out_of_range = (x < low) | (x > high)
    mark(RANGE, out_of_range)

    # spikes and steps, on values inside the physical range
    ok = np.where(out_of_range, np.nan, x)
    step = per_metric(lim.step)
    d_prev = np.full(x.shape, np.nan)
    np.subtract(ok[..., 1:], ok[..., :-1], out=d_prev[..., 1:])
    d_next = np.full(x.shape, np.nan)
    np.negative(d_prev[..., 1:], out=d_next[..., :-1])
    with np.errstate(invalid="ignore"):
        big_prev = np.abs(d_prev) > step
        big_next = np.abs(d_next) > step
        spike = big_prev & big_next & ((d_prev > 0) == (d_next > 0))
    rain = x[:, list(metrics).index("rain_mm")] if "rain_mm" in metrics else None
    along, back, together = _weather(d_prev, rain, metrics, site_of, lim)
    weather = along | back | together
    # a spike is the weather's only when both its jumps are, the way out and the way back (a short shower,
    # a pause in one, the whole site)
    weather_next = np.zeros_like(weather)
    weather_next[..., :-1] = weather[..., 1:]
    mark(SPIKE, spike & ~(weather & weather_next))
    if site_of is not None:
        mark(SPIKE, _site_spikes(ok, rain, metrics, site_of, lim))
    after_spike = np.zeros_like(spike)
    after_spike[..., 1:] = spike[..., :-1]
    mark(STEP, big_prev & ~spike & ~after_spike & ~weather)

    # flat lines: flat_n values in a row within the metric's flat tolerance (a stuck sensor still
    # dithers by a digit or two); humidity at the SHT4x's crop with another node of the site there too is not
    # stuck, it is fog or a saturated night (one node there alone, a stuck sensor or water in its box, is FLAT)
    exempt = np.array([m in lim.flat_exempt for m in metrics])[:, None]
    tol = per_metric(lim.flat_tol)
    at_crop = np.zeros(x.shape, dtype=bool)
    if "air_rh_pct" in metrics:
        j = list(metrics).index("air_rh_pct")
        with np.errstate(invalid="ignore"):
            crop = ok[:, j] >= SATURATED_RH
        at_crop[:, j] = crop & _with_another(crop, site_of)
    mark(FLAT, _in_flat_run(ok, lim.flat_n, np.where(np.isnan(tol), 0.0, tol)) & present & ~exempt & ~at_crop)

    # dropouts, for metrics the node reports at all: missing while the node reported something
    # else at this time, or while this metric came before and after
    ever = present.any(axis=-1, keepdims=True)
    reported = present.any(axis=1, keepdims=True)
    first = np.argmax(present, axis=-1)[..., None]
    last = n_t - 1 - np.argmax(present[..., ::-1], axis=-1)[..., None]
    t = np.arange(n_t)
    mark(GAP, ~present & ever & (reported | ((t > first) & (t < last))))

    # noise bursts: reversals (a local peak or dip between two large sample-to-sample changes of
    # opposite sign) crowding a centred window. One spike is one reversal, a step or a ramp none;
    # a loose wire makes many. Particulates are judged on log(1 + x): their scatter grows with
    # the concentration (optical counters against a reference: Barkjohn et al. 2021, Atmos. Meas. Tech.
    # 14, 4617-4637), so a haze episode is not noise.
    w = lim.noise_window
    if n_t > w:
        pm = [j for j, m in enumerate(metrics) if m in PM_METRICS]
        y = ok
        if pm:
            y = ok.copy()
            with np.errstate(invalid="ignore"):
                y[:, pm] = np.log1p(np.maximum(ok[:, pm], 0.0))
        d = np.full(x.shape, np.nan)
        np.subtract(y[..., 1:], y[..., :-1], out=d[..., 1:])
        size = np.abs(d)
        thin = size[..., ::max(1, w // 2)]
        # the upper quartile of the changes (numpy's "lower" rank, floor(0.75 (n - 1))): a fault that
        # holds a series still for days (water in the enclosure) must not make ordinary changes "large"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as they should
            typical = np.nanquantile(np.where(thin > 0, thin, np.nan), 0.75, axis=-1, keepdims=True,
                                     method="lower")
        # and never below the metric's floor: a series held still for days must not make noise of the rest
        least = np.array([LOG_FLOOR if m in PM_METRICS else SCALE_FLOOR.get(m, 0.0) for m in metrics])[:, None]
        typical = np.where(np.isnan(typical), typical, np.maximum(typical, least))
        with np.errstate(invalid="ignore"):
            big = size > lim.noise_factor * typical
        reversal = np.zeros(x.shape, dtype=bool)  # at t: d[t] and d[t + 1] big and of opposite sign
        reversal[..., :-1] = big[..., :-1] & big[..., 1:] & ((d[..., :-1] > 0) != (d[..., 1:] > 0))
        noisy = _centred_count(reversal, w) >= max(2, w // 3)
        mark(NOISE, noisy & present & ~exempt)

    # drift against the same site's other nodes
    if site_of is not None:
        drift = per_metric(lim.drift)
        sites = np.asarray(site_of)
        for site in np.unique(sites):
            idx = np.flatnonzero(sites == site)
            if len(idx) < 3:
                continue
            # values already explained by another check do not count towards an offset
            block = np.where(flags[idx] & (SPIKE | FLAT | NOISE), np.float32(np.nan), ok[idx].astype(np.float32))
            median = block
            for j, m in enumerate(metrics):
                usable = comparable(m, block[:, j])
                if usable is not None:
                    median = median.copy() if median is block else median
                    median[:, j] = np.where(usable, block[:, j], np.float32(np.nan))
            off = block - nanmedian(median, axis=0)
            with np.errstate(invalid="ignore"):
                drifting = np.abs(_centred_mean(off, lim.drift_window)) > drift
            sub = flags[idx]
            np.bitwise_or(sub, np.uint16(DRIFT), out=sub, where=drifting & present[idx])
            flags[idx] = sub

    # particulates in condensing air
    if "air_rh_pct" in metrics:
        with np.errstate(invalid="ignore"):
            humid = x[:, list(metrics).index("air_rh_pct")] >= lim.condensing_rh
        for j, m in enumerate(metrics):
            if m in PM_METRICS:
                np.bitwise_or(flags[:, j], np.uint16(HUMID_PM), out=flags[:, j], where=humid & present[:, j])
    return flags.transpose(0, 2, 1)


def _weather(d_prev, rain, metrics, site_of, lim):
    """Where a jump (d_prev, (nodes, metrics, time)) is the weather's: (along, back, together), each a bool
    array like d_prev.

    Rain, for the metrics in RAIN_SIGN: any gauge of the site had rain at the step, the one before or the
    one after (a gauge counts a shower at its next reading, and the nodes sample at different moments of a
    step), and the jump goes the way rain moves the metric (along); or, for the metrics in RAIN_RETURNS,
    the way back (back) as a shower ends or pauses: where another node of the site jumps the same way by
    at least `together` of it within a step (a shower's end reaches nodes a sample apart), or, where no
    other node of the site has a jump of the metric within a step to compare, where it ended (none two
    steps on: the last gauge to count it may do so a step after the node has dried). Or, with three nodes
    or more reporting the metric at a site, the site's median jump at least `together` of it in the same
    direction (together)."""
    along_out = np.zeros(d_prev.shape, dtype=bool)
    back_out = np.zeros(d_prev.shape, dtype=bool)
    out = np.zeros(d_prev.shape, dtype=bool)
    sites = np.asarray(site_of) if site_of is not None else np.arange(d_prev.shape[0]).astype(str)
    moves = np.flatnonzero([m in RAIN_SIGN for m in metrics])
    sign = np.array([RAIN_SIGN[metrics[j]] for j in moves], dtype=float)[:, None]
    returns = np.array([metrics[j] in RAIN_RETURNS for j in moves])[:, None]
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        if rain is not None and len(moves):
            wet, before, after = _rain_around(rain[idx])
            near = before | wet | after
            ended = near.copy()
            ended[:-2] &= ~wet[2:]
            d = d_prev[np.ix_(idx, moves)]
            with np.errstate(invalid="ignore"):
                along = np.sign(d) == sign
                back = (np.sign(d) == -sign) & returns
            along_out[np.ix_(idx, moves)] = along & near
            back_out[np.ix_(idx, moves)] = back & near & np.where(_others_reporting(d), _shared(d, lim), ended)
        if len(idx) >= 3:
            d = d_prev[idx]
            reporting = (~np.isnan(d)).sum(axis=0)
            med = nanmedian(d, axis=0)
            with np.errstate(invalid="ignore"):
                same = (reporting >= 3) & (np.sign(med) == np.sign(d)) & (np.abs(med) >= lim.together * np.abs(d))
            out[idx] |= same
    return along_out, back_out, out


def _around(a):
    """a (..., time) bool, or'd with its step before and its step after."""
    out = a.copy()
    out[..., 1:] |= a[..., :-1]
    out[..., :-1] |= a[..., 1:]
    return out


def _others_reporting(d):
    """For a site's jumps d (nodes, metrics, time): whether another node has one within a step."""
    has = ~np.isnan(d)
    n = _around(has).sum(axis=0)  # nodes with a jump within a step of t, each node once
    return n - _around(has) > 0


def _shared(d, lim):
    """For a site's jumps d (nodes, metrics, time): whether another node jumps the same way by at least
    `together` of each within a step."""
    out = np.zeros(d.shape, dtype=bool)
    for p in range(d.shape[0]):
        others = np.delete(d, p, axis=0)
        with np.errstate(invalid="ignore"):
            up = np.where(others > 0, others, 0.0).max(axis=0, initial=0.0)
            down = np.where(others < 0, -others, 0.0).max(axis=0, initial=0.0)
        up = maximum_filter1d(up, 3, axis=-1, mode="constant", cval=0.0)
        down = maximum_filter1d(down, 3, axis=-1, mode="constant", cval=0.0)
        with np.errstate(invalid="ignore"):
            out[p] = ((d[p] > 0) & (up >= lim.together * d[p])) | ((d[p] < 0) & (down >= -lim.together * d[p]))
    return out


def _rain_around(rain):
    """For a site's gauges (nodes, time): whether any had rain at each step, at the one before, at the one
    after."""
    with np.errstate(invalid="ignore"):
        wet = (rain > 0).any(axis=0)
    before = np.zeros_like(wet)
    before[1:] = wet[:-1]
    after = np.zeros_like(wet)
    after[:-1] = wet[1:]
    return wet, before, after


def _site_spikes(ok, rain, metrics, site_of, lim):
    """SPIKE against the site (ok: (nodes, metrics, time), in range): for the metrics in SITE_SHARED, runs of
    one to `site_spike_n` samples where the node's difference from another node of its site differs from
    that difference at the sample before the run and at the sample after it, both by more than `site_spike`
    SCALE_FLOORs and the same way for every sample of the run, against `site_spike_nodes` other nodes or
    more. The weather moves the whole site and cancels; a node off the others for a sample or three and
    back is its sensor. Pairs, not the site's median: a node's value that arrives later (nodes send at
    their own minutes) can add a flag but never take one back. Humidity at saturation (`comparable`) is no
    reference: a site saturated together (fog, rain) flags nothing. Not raised with rain at the site from
    the step before the run to the step after it (a shower reaches nodes a sample apart, either way), nor
    where one of the site's gauges (a node with a rain value in x) has not reported such a step yet (or it
    lies after x's last)."""
    out = np.zeros(ok.shape, dtype=bool)
    cols = [j for j, m in enumerate(metrics) if m in SITE_SHARED and m in SCALE_FLOOR]
    sites = np.asarray(site_of)
    n_t = ok.shape[-1]
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        if len(idx) <= lim.site_spike_nodes:
            continue
        near = np.zeros(n_t, dtype=bool)
        if rain is not None:
            gauges = rain[idx][~np.isnan(rain[idx]).all(axis=-1)]
            if len(gauges):  # a step a gauge has not reported yet (or after the last) may have had rain
                wet, _, _ = _rain_around(np.where(np.isnan(gauges), 1.0, gauges))
                near = _around(wet)
                near[-1] = True
        for j in cols:
            v = ok[idx, j]
            usable = comparable(metrics[j], v)
            ref = v if usable is None else np.where(usable, v, np.nan)
            limit = lim.spike_floors(metrics[j]) * SCALE_FLOOR[metrics[j]]
            for p in range(len(idx)):
                count = np.zeros(n_t, dtype=np.int32)
                for q in range(len(idx)):
                    if q != p:
                        count += _excursions(v[p] - ref[q], limit, lim.site_spike_n, near)
                out[idx[p], j] = count >= lim.site_spike_nodes
    return out


def _excursions(r, limit: float, longest: int, near) -> np.ndarray:
    """Where r (time) is in a run of 1 to `longest` samples each more than `limit` from r at the sample before
    the run and at the sample after it, the same way; no `near` (bool, time) from the one before to the one
    after."""
    n_t = r.shape[-1]
    out = np.zeros(n_t, dtype=bool)
    for n in range(1, longest + 1):
        if n_t < n + 2:
            break
        a, b = r[:n_t - n - 1], r[n + 1:]  # before the run, and after it
        up = np.ones(a.shape, dtype=bool)
        down = np.ones(a.shape, dtype=bool)
        dry = ~near[:n_t - n - 1] & ~near[n + 1:]
        with np.errstate(invalid="ignore"):
            for k in range(n):
                v = r[1 + k:n_t - n + k]
                up &= (v - a > limit) & (v - b > limit)
                down &= (a - v > limit) & (b - v > limit)
                dry &= ~near[1 + k:n_t - n + k]
        hit = (up | down) & dry
        for k in range(n):
            out[1 + k:n_t - n + k] |= hit
    return out


def _with_another(crop, site_of) -> np.ndarray:
    """Per node and time, whether another node of its site is at the crop then too (crop: (nodes, time));
    true throughout for a node alone at its site, or without sites: nothing to tell fog from a stuck sensor,
    and a flag that cannot be told is not raised."""
    out = np.ones(crop.shape, dtype=bool)
    if site_of is None:
        return out
    sites = np.asarray(site_of)
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        if len(idx) > 1:
            out[idx] = crop[idx].sum(axis=0) - crop[idx] >= 1
    return out


def _in_flat_run(ok, n: int, tol):
    """Whether each t lies in n consecutive values (along the last axis), none missing, whose largest and
    smallest differ by at most tol (broadcast against ok's leading axes).

    A window of n starting at s is flat when its n values are present and max - min <= tol (SciPy's
    running maximum and minimum); t lies in one when any start in t - n + 1 .. t is flat (a running
    count of flat starts, exact in integers).
    """
    length = ok.shape[-1]
    if n <= 1:
        return ~np.isnan(ok)
    if length < n:
        return np.zeros(ok.shape, dtype=bool)
    valid = ~np.isnan(ok)
    hi = maximum_filter1d(np.where(valid, ok, -np.inf), n, axis=-1, mode="nearest", origin=-(n // 2))
    lo = minimum_filter1d(np.where(valid, ok, np.inf), n, axis=-1, mode="nearest", origin=-(n // 2))
    c = np.zeros(ok.shape[:-1] + (length + 1,), dtype=np.int32)
    np.cumsum(valid, axis=-1, out=c[..., 1:])
    full = np.zeros(ok.shape, dtype=bool)  # window s .. s + n - 1 inside the data and all present
    full[..., :length - n + 1] = (c[..., n:] - c[..., :length - n + 1]) == n
    with np.errstate(invalid="ignore"):
        start = full & (hi - lo <= tol)
    k = np.zeros(ok.shape[:-1] + (length + 1,), dtype=np.int32)
    np.cumsum(start, axis=-1, out=k[..., 1:])
    t = np.arange(length)
    return (k[..., t + 1] - k[..., np.maximum(t + 1 - n, 0)]) > 0


def _centred_sum(a, w):
    """Sum over a centred window of w samples, t - w // 2 .. t - w // 2 + w - 1, clipped at the ends.

    From running sums c (a leading 0): c[min(t - h + w, n)] - c[max(t - h, 0)], h = w // 2. A window
    of zeros sums to exactly zero (a running-sum filter would leave rounding dust there).
    """
    n = a.shape[-1]
    h = w // 2
    c = np.zeros(a.shape[:-1] + (n + 1,))
    np.cumsum(a, axis=-1, out=c[..., 1:])
    out = np.empty(a.shape)
    first, last = min(h, n), max(h, n + h - w + 1)  # t in [first, last) needs no clipping
    if last > first:
        np.subtract(c[..., first - h + w:last - h + w], c[..., first - h:last - h], out=out[..., first:last])
    ends = np.array([*range(first), *range(max(first, last), n)], dtype=int)
    if len(ends):
        out[..., ends] = c[..., np.minimum(ends - h + w, n)] - c[..., np.maximum(ends - h, 0)]
    return out


def _centred_count(valid, w):
    """How many of the centred window's samples are valid (SciPy's one-pass filter, rounded)."""
    return np.rint(uniform_filter1d(valid.astype(np.float32), w, axis=-1, mode="constant") * np.float32(w))


def _centred_mean(a, w):
    valid = ~np.isnan(a)
    # single precision: the mean is compared with a limit, never with zero
    s = uniform_filter1d(np.where(valid, a, np.float32(0.0)), w, axis=-1, mode="constant") * np.float32(w)
    cnt = _centred_count(valid, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt >= w // 2, s / cnt, np.nan)
