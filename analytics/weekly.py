"""What a site's weekly report shows, gathered: hourly site means per metric, the flagged readings, the
anomaly events, and the days per ISPU category. `rimba report` hands it to dashboards.report to draw."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from analytics import indices, quality
from analytics.data import load_cube
from rimba import lineproto, wib
from rimba.adapters.influx import Influx
from rimba.errors import ConfigError
from rimba.fleet import load_fleet
from rimba.metrics import ISPU_CATEGORIES

REPORT_METRICS = ("air_temp_c", "air_rh_pct", "pm25_ugm3", "rain_mm", "water_level_cm", "soil_vwc_pct")


@dataclass
class Week:
    site: str
    name: str  # the site's name in the fleet file
    days: int
    start: int  # a WIB midnight, Unix seconds
    end: int
    times: np.ndarray  # the hours, Unix seconds
    site_mean: dict  # metric -> hourly means over the site's nodes (NaN: no value that hour)
    flags: list  # qc rows shown (humid-pm left out of them: a caution to a reader, though its hours are left
    # out of the ISPU days, as the product's ISPU leaves them out: condensing air no correction can fix)
    events: list  # anomaly rows, one an incident (`incidents`)
    ispu_days: list  # days per ISPU category, Baik .. Berbahaya (`ispu_days`)


# the checks whose flags say a value is not its quantity (`quality.UNFIT`), by their names in the `qc` points
UNFIT_CHECKS = tuple(name for bit, name in quality.FLAG_NAMES.items() if bit & quality.UNFIT)


def ispu_days(pm25: np.ndarray, rh: np.ndarray | None, unfit: np.ndarray, days: int) -> list:
    """Days per ISPU category (Baik .. Berbahaya) from each day's mean of the site's hourly PM2.5 (nodes,
    hours), corrected for humidity where it is known, as the product's ISPU is, and without the hours QC
    found unfit (`unfit`: the node's PM2.5 or humidity flagged in that hour). A day with no value has none."""
    pm = np.asarray(pm25, dtype=float)
    if rh is not None:
        pm = np.asarray(indices.pm25_corrected(pm, rh))
    pm = np.where(unfit, np.nan, pm)
    out = [0] * len(ISPU_CATEGORIES)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        daily = np.nanmean(np.nanmean(pm, axis=0)[:days * 24].reshape(days, 24), axis=1)
    for c in np.atleast_1d(indices.ispu_category(indices.ispu(daily, "pm25"))):
        if c >= 0:
            out[int(c)] += 1
    return out


def incidents(rows: list) -> list:
    """Anomaly rows with one row an incident: rows of the same node and metric whose times overlap ([time, end])
    are one incident, the newest of them kept. The analytics write an event again when they find it again; one
    whose start or kind moved (late readings rescored, or its state rebuilt after the detector's constants
    changed) is a point of its own beside the earlier one, and the week counted the incident twice."""
    def end(r) -> int:
        return int(r.get("end") or r["time"])

    out: list = []
    last: dict = {}  # (node, metric) -> index in out of the incident that ends last
    for r in sorted(rows, key=lambda r: (int(r["time"]), end(r))):
        k = last.get((r.get("node"), r.get("metric")))
        if k is not None and int(r["time"]) <= end(out[k]):
            out[k] = {**r, "time": out[k]["time"], "end": max(end(out[k]), end(r))}
            continue
        last[(r.get("node"), r.get("metric"))] = len(out)
        out.append(r)
    return out


def gather(settings, site: str, days: int, until: int | None = None) -> Week:
    """The `days` whole WIB days before `until` (now when None) at `site`; a ConfigError for a site with
    no nodes or no readings."""
    fleet = load_fleet(settings.fleet)
    if site not in fleet.sites:
        raise ConfigError(f"--site {site}: not in the fleet file; sites are {', '.join(sorted(fleet.sites))}")
    end = wib.midnight_before(int(time.time()) if until is None else int(until))  # whole days
    start = end - days * 86400
    influx = Influx.from_settings(settings)
    try:
        cube = load_cube(influx, fleet, start, end, 3600)
        week = f"site = '{site}' AND time >= {start}s AND time < {end}s"
        flags = influx.rows(f"SELECT \"value\", \"metric\" FROM qc WHERE {week} AND {lineproto.LIVE['qc']} AND "
                            "\"check\" != 'humid-pm'")
        events = incidents(influx.rows(f"SELECT \"end\", \"metric\", \"message\", \"node\" FROM anomaly WHERE {week} "
                                       f"AND {lineproto.LIVE['anomaly']}"))
        checks = " OR ".join(f"\"check\" = '{c}'" for c in UNFIT_CHECKS)
        unfit_rows = influx.rows(f"SELECT \"flag\", \"node\" FROM qc WHERE {week} AND {lineproto.LIVE['qc']} AND "
                                 f"(\"metric\" = 'pm25_ugm3' OR \"metric\" = 'air_rh_pct') AND ({checks})")
    finally:
        influx.close()
    rows = [i for i, s in enumerate(cube.sites) if s == site]
    if not rows:
        raise ConfigError(f"--site {site}: it has no nodes in the fleet file")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hours without a value stay NaN: gaps in the chart
        site_mean = {m: np.nanmean(cube.metric(m)[rows], axis=0) for m in REPORT_METRICS if m in cube.metrics}
        site_mean = {m: v for m, v in site_mean.items() if np.isfinite(v).any()}
        ispu = [0] * len(ISPU_CATEGORIES)
        if "pm25_ugm3" in site_mean:
            unfit = np.zeros((len(rows), len(cube.times)), dtype=bool)
            row_of = {cube.nodes[i]: k for k, i in enumerate(rows)}
            for r in unfit_rows:  # a flagged 10-minute value leaves its node's hour out
                hour = (int(r["time"]) - start) // 3600
                if r.get("node") in row_of and 0 <= hour < unfit.shape[1]:
                    unfit[row_of[r["node"]], hour] = True
            rh = cube.metric("air_rh_pct")[rows] if "air_rh_pct" in cube.metrics else None
            ispu = ispu_days(cube.metric("pm25_ugm3")[rows], rh, unfit, days)
    if not site_mean:
        raise ConfigError(f"no readings for {site} between {wib.date(start)} and {wib.date(end)} WIB")
    return Week(site, fleet.sites[site].name, days, start, end, cube.times, site_mean, flags, events, ispu)
