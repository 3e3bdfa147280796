"""What a site's weekly report shows, gathered: hourly site means per metric, the flagged readings, the
anomaly events, and the days per ISPU category. `rimba report` hands it to dashboards.report to draw."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from analytics import indices
from analytics.data import load_cube
from rimba import wib
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
    flags: list  # qc rows (humid-pm left out: a caution, not an error)
    events: list  # anomaly rows
    ispu_days: list  # days per ISPU category, Baik .. Berbahaya, from each day's mean PM2.5 corrected for humidity


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
        flags = influx.rows(f"SELECT \"value\", \"metric\" FROM qc WHERE site = '{site}' AND \"check\" != "
                            f"'humid-pm' AND time >= {start}s AND time < {end}s")
        events = influx.rows(f"SELECT \"end\", \"metric\", \"message\" FROM anomaly WHERE site = '{site}' "
                             f"AND time >= {start}s AND time < {end}s")
    finally:
        influx.close()
    rows = [i for i, s in enumerate(cube.sites) if s == site]
    if not rows:
        raise ConfigError(f"--site {site}: it has no nodes in the fleet file")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hours without a value stay NaN: gaps in the chart
        site_mean = {m: np.nanmean(cube.metric(m)[rows], axis=0) for m in REPORT_METRICS if m in cube.metrics}
        site_mean = {m: v for m, v in site_mean.items() if np.isfinite(v).any()}
        ispu_days = [0] * len(ISPU_CATEGORIES)
        if "pm25_ugm3" in site_mean:
            pm = cube.metric("pm25_ugm3")[rows]
            if "air_rh_pct" in cube.metrics:  # the product's ISPU is of the humidity-corrected value: so is this
                pm = np.asarray(indices.pm25_corrected(pm, cube.metric("air_rh_pct")[rows]))
            daily_pm = np.nanmean(np.nanmean(pm, axis=0)[:days * 24].reshape(days, 24), axis=1)
            for c in np.atleast_1d(indices.ispu_category(indices.ispu(daily_pm, "pm25"))):
                if c >= 0:
                    ispu_days[int(c)] += 1
    if not site_mean:
        raise ConfigError(f"no readings for {site} between {wib.date(start)} and {wib.date(end)} WIB")
    return Week(site, fleet.sites[site].name, days, start, end, cube.times, site_mean, flags, events, ispu_days)
