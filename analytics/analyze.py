"""`rimba analyze`: quality flags and indices over a time range of the whole fleet.

First version: `--once` over a window (quality checks, dew point, heat index,
humidex, ISPU from 24-hour means of PM), written back to InfluxDB as `qc` and
`index` points. Anomaly events, fire danger and alerts come next.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from analytics import indices, quality
from analytics.data import index_lines, load_cube, qc_lines
from rimba.fleet import load_fleet
from rimba.influx import Influx

log = logging.getLogger("rimba.analyze")


def rolling_mean(x: np.ndarray, w: int, min_count: int) -> np.ndarray:
    """Trailing mean over the last w steps (this one included) along axis 1, NaN-aware."""
    valid = ~np.isnan(x)
    c = np.concatenate([np.zeros(x.shape[:1] + (1,)), np.cumsum(np.where(valid, x, 0.0), axis=1)], axis=1)
    k = np.concatenate([np.zeros(x.shape[:1] + (1,)), np.cumsum(valid, axis=1)], axis=1)
    n = x.shape[1]
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - w, 0)
    s, cnt = c[:, hi] - c[:, lo], k[:, hi] - k[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt >= min_count, s / cnt, np.nan)


def derive(cube, step_s: int) -> dict:
    """Derived values per node and step, NaN where their inputs are missing."""
    out = {}
    if "air_temp_c" in cube.metrics and "air_rh_pct" in cube.metrics:
        t, rh = cube.metric("air_temp_c"), cube.metric("air_rh_pct")
        out["dew_point_c"] = np.asarray(indices.dew_point_c(t, rh))
        out["heat_index_c"] = np.asarray(indices.heat_index_c(t, rh))
        out["humidex"] = np.asarray(indices.humidex_c(t, rh))
    day = max(1, 86400 // step_s)
    for metric, pollutant in (("pm25_ugm3", "pm25"), ("pm10_ugm3", "pm10")):
        if metric in cube.metrics:
            # the regulation's basis: a 24-hour mean, with at least 75 % of the day present
            mean24 = rolling_mean(cube.metric(metric), day, int(0.75 * day))
            out[f"ispu_{pollutant}"] = np.asarray(indices.ispu(mean24, pollutant))
    return out


def run_once(settings, start: int, end: int, step_s: int = 600) -> dict:
    fleet = load_fleet(settings.fleet)
    influx = Influx.from_settings(settings)
    try:
        cube = load_cube(influx, fleet, start, end, step_s)
        flags = quality.check(cube.values, cube.metrics, cube.sites)
        lines = qc_lines(cube, flags, quality.FLAG_NAMES) + index_lines(cube, derive(cube, step_s))
        for i in range(0, len(lines), 5000):
            influx.write(("\n".join(lines[i:i + 5000]) + "\n").encode())
    finally:
        influx.close()
    counts = {name: int(np.count_nonzero(flags & bit)) for bit, name in quality.FLAG_NAMES.items()}
    log.info("analyzed %d nodes x %d steps: %d lines written; flags %s", len(cube.nodes), len(cube.times),
             len(lines), counts)
    return {"nodes": len(cube.nodes), "steps": len(cube.times), "lines": len(lines), "flags": counts}


def main(settings, args) -> int:
    end = int(time.time()) if args.until is None else args.until
    start = end - int(args.hours * 3600)
    result = run_once(settings, start, end, args.step)
    print(f"analyzed {result['nodes']} nodes x {result['steps']} steps; wrote {result['lines']} qc and index "
          f"points; flags: " + ", ".join(f"{k} {v}" for k, v in result["flags"].items() if v))
    return 0
