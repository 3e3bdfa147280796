"""`rimba analyze`: the analytics over the whole fleet, once over a time range or every minute.

One run loads the last `analyze_days` of readings on the `analyze_step_s` grid
(from a WIB midnight, which the time-of-day baselines need) and:

1. flags every value (`analytics.quality`) and writes the flags as `qc` points;
2. derives dew point, heat index, humidex and ISPU (from 24-hour means) as `index` points;
3. scores anomalies (`analytics.anomaly`) and writes the events as `anomaly` points;
4. runs the fire weather index system per node over the last `FWI_DAYS` days of
   noon weather (with `fire_wind_kmh`) and writes the codes as `index` points at noon;
5. evaluates the alert rules (`analytics.alerts`): MQTT `alert` messages and
   notifications through Apprise.

Writes are idempotent (a point's tags and time fix it), so overlapping runs
rewrite the same points rather than adding new ones; what an earlier run wrote in the
window and this one does not stand by is withdrawn (`stale_points`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from analytics import alerts, anomaly, fwi, indices, quality
from analytics.data import (anomaly_line, anomaly_lines, event_tags, fan_seed, fans_written, flagged, index_lines,
                            last_contact, load_cube, maintenance_points, qc_lines, reconciled_values, superseded,
                            withdrawn)
from rimba import lineproto, wib
from rimba.fleet import load_fleet
from rimba.adapters.influx import Influx
from rimba.metrics import FWI_CLASSES, ISPU_CATEGORIES, METRICS

log = logging.getLogger("rimba.analyze")
FWI_DAYS = 30  # days of noon weather the fire codes run over (the drought code has a long memory)
# metrics whose anomalies mean something to people; rain and light come in bursts, and the node's own
# battery and signal are the fleet-health view's
ANOMALY_METRICS = tuple(m for m in METRICS if m not in ("rain_mm", "light_lux", "batt_v", "rssi_dbm"))


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


def derive(cube, step_s: int, flags=None) -> dict:
    """Derived values per node and step, NaN where their inputs are missing. With the cube's quality
    `flags`, an input QC found unfit (`quality.UNFIT`: out of range, a spike, stuck, drifting off the site,
    a dying fan, condensing air) is missing too: an ISPU from a sinking fan would tell people the air is
    cleaner than it is; a 24-hour mean short of 75 % of its day is unknown rather than wrong."""
    def metric(name: str) -> np.ndarray:
        v = cube.metric(name)
        if flags is None:
            return v
        return np.where(flags[:, :, cube.metrics.index(name)] & quality.UNFIT, np.nan, v)

    out = {}
    if "air_temp_c" in cube.metrics and "air_rh_pct" in cube.metrics:
        t, rh = metric("air_temp_c"), metric("air_rh_pct")
        out["dew_point_c"] = np.asarray(indices.dew_point_c(t, rh))
        out["heat_index_c"] = np.asarray(indices.heat_index_c(t, rh))
        out["humidex"] = np.asarray(indices.humidex_c(t, rh))
    day = max(1, 86400 // step_s)
    pm = {}
    if "pm25_ugm3" in cube.metrics:
        pm["pm25"] = metric("pm25_ugm3")
        if "air_rh_pct" in cube.metrics:
            # corrected for humidity (the raw value stays in `reading`); ISPU from the corrected value
            pm["pm25"] = out[PM25_CORRECTED] = np.asarray(indices.pm25_corrected(pm["pm25"], metric("air_rh_pct")))
    if "pm10_ugm3" in cube.metrics:
        pm["pm10"] = metric("pm10_ugm3")  # no published humidity correction for PMS5003 PM10: raw
    for pollutant, values in pm.items():
        # the regulation's basis: a 24-hour mean, with at least 75 % of the day present
        mean24 = rolling_mean(values, day, int(0.75 * day))
        out[f"ispu_{pollutant}"] = np.asarray(indices.ispu(mean24, pollutant))
    return out


DAY_MEANS = ("ispu_pm25", "ispu_pm10")  # `derive`'s fields from a 24-hour mean


# The context a step's quality flags and derived values need before it (a spike on the value before, drift on a
# centred day, the ISPU's 24-hour mean): from a window's start plus this on, a flag or a value is what the whole
# history gives, and only there does one that an analysis of the window no longer finds withdraw one written
# before; nearer the start the window lacks the evidence, and what was written with it is history.
# (Events: `data.superseded`.)
SETTLED_S = 86400
# FAN's flag holds for as long as the sensor stays sunk, on the evidence of a fall that may be older than the
# window: an analysis of the window alone (a batch, a sweep) cannot contradict it and never withdraws it; the
# service, which carries the check's hold from before its window, does (`incremental`)
UNSETTLED = quality.FAN
PM25_CORRECTED = "pm25_corr_ugm3"  # `index` field: PM2.5 corrected for humidity (indices.pm25_corrected)
INDEX_LABELS = {PM25_CORRECTED: ("pm_correction", indices.PM25_CORRECTION)}  # the correction named in the data


# The module needs 3.0-3.6 V (Espressif ESP32-WROOM-32E datasheet, "Recommended operating conditions"); behind
# the carrier's LDO (a few hundred mV of dropout at the radio's current) a cell below about 3.3 V no longer holds it.
BATTERY_EMPTY_V = 3.3
BATTERY_DAYS_MAX = 999.0  # "not draining": level or charging


def battery_days_left(batt_v: np.ndarray, step_s: int, days: float = 3.0) -> np.ndarray:
    """Days until each node's battery reaches BATTERY_EMPTY_V, from the least-squares slope of the last
    `days` of voltage (trailing, NaN-aware); BATTERY_DAYS_MAX when it is not draining, NaN without
    half the window of data."""
    w = max(2, int(days * 86400 / step_s))
    t = np.broadcast_to(np.arange(batt_v.shape[1], dtype=float) * step_s / 86400, batt_v.shape)
    valid = ~np.isnan(batt_v)
    v = np.where(valid, batt_v, 0.0)
    tt = np.where(valid, t, 0.0)
    st, sv = (rolling_mean(np.where(valid, a, np.nan), w, w // 2) for a in (tt, v))
    stt = rolling_mean(np.where(valid, tt * tt, np.nan), w, w // 2)
    stv = rolling_mean(np.where(valid, tt * v, np.nan), w, w // 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (stv - st * sv) / (stt - st * st)  # volts per day, from the window's means
        left = np.where(slope < -1e-4, (batt_v - BATTERY_EMPTY_V) / -slope, BATTERY_DAYS_MAX)
    return np.where(np.isnan(slope) | np.isnan(batt_v), np.nan, np.clip(left, 0.0, BATTERY_DAYS_MAX))


BATTERY_DAYS = 3.0  # the trend's window


def battery_lines(influx, nodes: dict, end: int) -> list:
    """`index` points of days to an empty battery, one a node of `nodes` ({node: site}): from the battery
    voltage of its statuses (a node reports it once a send session, firmware/lib/node.py), hourly means over
    the BATTERY_DAYS days before the end of `end`'s hour, at the hour of its newest status. The same within
    an hour, so the service computes it once an hour."""
    hour_end = end // 3600 * 3600 + 3600
    hours = int(BATTERY_DAYS * 24)
    start = hour_end - hours * 3600
    grid = np.full((len(nodes), hours), np.nan)
    row = {node: i for i, node in enumerate(nodes)}
    q = (f'SELECT mean("batt_v") FROM node_status WHERE time >= {start}s AND time < {hour_end}s '
         'GROUP BY time(1h), "node" fill(none)')
    for series in influx.query_stream(q, epoch="s"):
        i = row.get(series.get("tags", {}).get("node"))
        if i is not None:
            for t, v in series["values"]:
                if v is not None and start <= t < hour_end:
                    grid[i, (int(t) - start) // 3600] = v
    left = battery_days_left(grid, 3600, BATTERY_DAYS)
    out = []
    for node, i in row.items():
        seen = np.flatnonzero(~np.isnan(grid[i]))
        if seen.size and not np.isnan(left[i, seen[-1]]):
            t = start + int(seen[-1]) * 3600
            out.append(lineproto.line("index", {"site": nodes[node], "node": node},
                                      {"batt_days_left": float(left[i, seen[-1]])}, t * 1000))
    return out


def _write(influx, lines: list, chunk: int = 5000) -> None:
    for i in range(0, len(lines), chunk):
        influx.write(("\n".join(lines[i:i + chunk]) + "\n").encode())


@dataclass
class FireDays:
    times: np.ndarray  # noon WIB of each day
    codes: fwi.FwiDays  # (days, nodes)


def fire_days(hourly, lat_of: dict, wind_kmh: float) -> FireDays:
    """The fire weather codes per node for each day of an hourly cube (from a WIB midnight).

    Noon weather is the 12:00-13:00 WIB mean of the node's temperature and humidity; the rain is the
    24 hours to noon, the median over the site's nodes that measure rain (a missing gauge does not make
    a dry day).
    """
    hours = len(hourly.times)
    days = hours // 24
    t = hourly.metric("air_temp_c")[:, 12:days * 24:24].T  # (days, nodes)
    rh = hourly.metric("air_rh_pct")[:, 12:days * 24:24].T
    rain_h = hourly.metric("rain_mm")
    sites = np.asarray(hourly.sites)
    rain = np.full(t.shape, np.nan)
    for site in np.unique(sites):
        idx = np.flatnonzero(sites == site)
        for d in range(days):
            lo = max(0, d * 24 - 12)
            sums = np.nansum(rain_h[idx, lo:d * 24 + 12], axis=1)
            has = ~np.all(np.isnan(rain_h[idx, lo:d * 24 + 12]), axis=1)
            if has.any():
                rain[d, idx] = float(np.median(sums[has]))
    rain = np.where(np.isnan(rain) & ~np.isnan(t), 0.0, rain)  # a site without a gauge: counted as dry
    month = np.array([time.gmtime(wib.local(int(hourly.times[d * 24]))).tm_mon for d in range(days)], dtype=int)
    lat = np.array([lat_of[s] for s in hourly.sites])
    codes = fwi.fwi_daily(t, rh, np.full(t.shape, wind_kmh), rain, month, lat)
    return FireDays(hourly.times[12:days * 24:24][:days], codes)


def fire_values(hourly, fire: FireDays):
    """(site, node, noon, codes) for each node and day with all six codes (and the FWI's danger class)."""
    names = ("ffmc", "dmc", "dc", "isi", "bui", "fwi")
    for d, t in enumerate(fire.times):
        for i, node in enumerate(hourly.nodes):
            values = {k: float(getattr(fire.codes, k)[d, i]) for k in names}
            if any(np.isnan(v) for v in values.values()):
                continue
            values["fwi_class"] = int(fwi.danger_class("fwi", values["fwi"]))
            yield hourly.sites[i], node, int(t), values


def stale_points(influx, cube, flags, events, derived, start: int, step: int, where: str = "",
                 reassert: bool = False, replaced=None, fan_judged: dict | None = None) -> list:
    """The points that make what InfluxDB holds in a window what an analysis of it (its cube's nodes from `start` on
    the `step` grid: flags, events, derived values) stands by. Withdrawn: a flag or a derived value on the grid
    from SETTLED_S into the window on that it does not find (not an UNSETTLED check's), an event it finds again
    differently (`data.superseded`). With `reassert` (a service's sweep: it writes only what changes, so what
    another writer withdrew or overwrote would stay so), what it stands by there and InfluxDB does not hold
    live is written again: flags and values from SETTLED_S on, events of the window (the cube needs values). An
    UNSETTLED check is judged too where a node's sensor was replaced (`replaced`, per cube node: `quality.check`'s),
    from the replacement on (`quality.replaced_since`): from there the window holds all its evidence; and from the
    columns `fan_judged` gives (per cube node index: a service's, which knows where its carried holds began)."""
    end = int(cube.times[-1]) + step if len(cube.times) else start
    site_of = dict(zip(cube.nodes, cube.sites, strict=True))
    settled = start + SETTLED_S
    judged = np.array(flags, copy=True)  # the flags an analysis of the window can judge: from SETTLED_S on, not FAN
    judged[:, :max(0, (settled - start) // step)] = 0
    judged &= ~np.uint16(UNSETTLED)
    since = quality.replaced_since(replaced, len(cube.times), quality.Limits().fan_day)
    since.update(fan_judged or {})
    for i, c in since.items():  # from a replacement on, the window judges FAN too, from there (not a day in)
        judged[i, c:] |= flags[i, c:] & np.uint16(UNSETTLED)
    qc = {lineproto.point_key("qc", tags, t) for tags, t, _ in flagged(cube, judged, quality.FLAG_NAMES)}
    skip = [f"\"check\" != '{name}'" for bit, name in quality.FLAG_NAMES.items() if bit & UNSETTLED]
    out, live_qc = withdrawn(influx, "qc", settled, end, qc, cube.nodes, (start, step),
                             " AND ".join(filter(None, [where, *skip])))
    only = " OR ".join(f"\"check\" = '{name}'" for bit, name in quality.FLAG_NAMES.items() if bit & UNSETTLED)
    for i, c in since.items():  # after a replacement in the window, the window judges those checks too
        gone, seen = withdrawn(influx, "qc", start + c * step, end, qc, [cube.nodes[i]], (start, step),
                               " AND ".join(filter(None, [where, f"({only})"])))
        out += gone
        live_qc |= seen
    gone, live_events = superseded(influx, start, end, events, site_of, cube.nodes, where)
    out += gone
    out += reconciled_values(influx, derived, start, step, cube.nodes, cube.sites, settled, end, where, INDEX_LABELS,
                             reassert)
    if reassert:
        missing = np.zeros_like(judged)
        bit_of = {name: bit for bit, name in quality.FLAG_NAMES.items()}
        for tags, t, (i, k, j) in flagged(cube, judged, quality.FLAG_NAMES):
            if lineproto.point_key("qc", tags, t) not in live_qc:
                missing[i, k, j] |= bit_of[tags["check"]]
        out += qc_lines(cube, missing, quality.FLAG_NAMES)
        out += [anomaly_line(site_of[e.node], e) for e in events if start <= e.start < end and
                lineproto.point_key("anomaly", event_tags(site_of[e.node], e), e.start) not in live_events]
    return out


def fire_lines(hourly, fire: FireDays) -> list:
    return [lineproto.line("index", {"site": site, "node": node}, values, t * 1000)
            for site, node, t, values in fire_values(hourly, fire)]


@dataclass
class Analyzer:
    """Runs the analytics; keeps the alert engine (and its MQTT link) between runs. Given no `engine`, it
    builds the real one from the settings: its SQLite store under the state directory, its MQTT publisher
    (one client id a partition) and its notifier; a test hands in its own."""

    settings: object
    engine: alerts.Engine | None = None
    publisher: object = None
    rules: tuple = field(default=())
    battery_hour: int = -1  # the hour the service last computed the battery's trend in

    def __post_init__(self):
        s = self.settings
        self.rules = self.rules or alerts.load_rules(s.alert_rules)
        if self.engine is not None:
            return
        notify = alerts.apprise_notifier(s.alert_notify.split()) if s.alert_notify.strip() else None
        s.state_path.mkdir(parents=True, exist_ok=True)
        part = "" if s.analyze_partition == "1/1" and not s.analyze_sites.strip() else \
            "-" + (s.analyze_partition.replace("/", "of") if not s.analyze_sites.strip() else
                   "-".join(s.analyze_sites.replace(",", " ").split()))
        self.publisher = alerts.MqttPublisher(s, f"rimba-analyze-{s.influx_db}{part}")  # one client id a partition
        self.engine = alerts.Engine(alerts.AlertStore(s.state_path / "alerts.sqlite"), repeat_s=s.alert_repeat_s,
                                    clear_s=s.alert_clear_s, quiet=alerts.parse_quiet(s.alert_quiet_hours),
                                    publish=self.publisher, notify=notify)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        self.engine.store.close()

    def run(self, end: int, days: float | None = None, now: int | None = None) -> dict:
        s = self.settings
        step = s.analyze_step_s
        now = end if now is None else now
        days = s.analyze_days if days is None else days
        start = end - int(days * 86400)
        start = wib.midnight_before(start)  # from a WIB midnight
        fleet = load_fleet(s.fleet)
        influx = Influx.from_settings(s)
        try:
            cube = load_cube(influx, fleet, start, end, step)
            # the fans held dead where the window begins, by the flags written there (the service carried their falls),
            # but for the sensors replaced since
            records = {n: fleet.nodes[n].replaced("pm") for n in cube.nodes}
            replaced = quality.replaced_columns(cube.times, step, list(records.values()))
            flags = quality.check(cube.values, cube.metrics, cube.sites, replaced=replaced,
                                  fan_before=fan_seed(fans_written(influx, start, step), cube.nodes, cube.metrics))
            derived = derive(cube, step, flags)
            cols = [cube.metrics.index(m) for m in ANOMALY_METRICS]
            values = np.where(flags[:, :, cols] & quality.RANGE, np.nan, cube.values[:, :, cols])
            rain = cube.metric("rain_mm") if "rain_mm" in cube.metrics else None
            scores = anomaly.score_cube(values, cube.times, ANOMALY_METRICS, step, cube.sites, rain)
            events = anomaly.events(scores, values, cube.times, cube.nodes, ANOMALY_METRICS)
            fire_start = end - FWI_DAYS * 86400
            fire_start = wib.midnight_before(fire_start)
            hourly = load_cube(influx, fleet, fire_start, end, 3600, ("air_temp_c", "air_rh_pct", "rain_mm"))
            fire = fire_days(hourly, {k: v.lat for k, v in fleet.sites.items()}, s.fire_wind_kmh)
            lines = (qc_lines(cube, flags, quality.FLAG_NAMES) + index_lines(cube, derived, INDEX_LABELS)
                     + anomaly_lines(cube, events) + fire_lines(hourly, fire)
                     + battery_lines(influx, dict(zip(cube.nodes, cube.sites, strict=True)), end))
            lines += stale_points(influx, cube, flags, events, derived, start, step, replaced=replaced)
            lines += maintenance_points(influx, records, dict(zip(cube.nodes, cube.sites, strict=True)), start, end)
            _write(influx, lines)
            contact, wake = last_contact(influx, end - 30 * 86400, end)
            observations = self.observe(fleet, cube, derived, events, values, fire, hourly, contact, wake, now)
            changes = self.engine.evaluate(observations, now)
            _write(influx, self._alert_lines(changes, now))
        finally:
            influx.close()
        counts = {name: int(np.count_nonzero(flags & bit)) for bit, name in quality.FLAG_NAMES.items()}
        log.info("analyzed %d nodes x %d steps: %d points written; %d anomaly events; alerts: %s",
                 len(cube.nodes), len(cube.times), len(lines), len(events),
                 ", ".join(f"{c.what} {c.incident['id']}" for c in changes) or "no change")
        return {"nodes": len(cube.nodes), "steps": len(cube.times), "lines": len(lines), "flags": counts,
                "events": len(events), "changes": changes}

    def run_incremental(self, inc, now: int) -> dict:
        """One incremental run (`analytics.incremental`), then the alert rules over the owned nodes' last day."""
        result = inc.run(now)
        st = inc.st
        if now // 3600 != self.battery_hour:  # the battery's trend, once an hour
            owned = {st.nodes[i]: st.sites[i] for i in np.flatnonzero(st.owned)}
            lines = battery_lines(inc.influx, owned, now)
            if lines:
                inc.influx.write(("\n".join(lines) + "\n").encode())
            self.battery_hour = now // 3600
        own = np.flatnonzero(st.owned)
        last = slice(max(0, st.steps - 86400 // st.step), st.steps)
        values = st.values(own, last.start)
        times = st.start + np.arange(st.steps)[last] * st.step
        cube = load_cube_like(st, own, times, values)
        cols = [cube.metrics.index(m) for m in ANOMALY_METRICS]
        flags = st.flags[own][:, last]
        anomalous = np.where(flags[:, :, cols] & quality.RANGE, np.nan, values[:, :, cols])
        derived = {k: v[own][:, last] for k, v in st.derived.items()}
        owned = set(cube.nodes)
        events = sorted((e for e in st.events.values() if e.node in owned), key=lambda e: e.start)
        noons = sorted({t for _, t in st.fire})
        fwi_v = np.full((len(noons), len(own)), np.nan)
        for (node, t), v in st.fire.items():
            if node in owned:
                fwi_v[noons.index(t), cube.nodes.index(node)] = v["fwi"]
        fire = FireDays(np.array(noons, dtype=np.int64), fwi.FwiDays(*([fwi_v] * len(fwi.FwiDays.__dataclass_fields__))))
        fleet = load_fleet(self.settings.fleet)
        observations = self.observe(fleet, cube, derived, events, anomalous, fire, cube, st.contact, st.wake, now)
        observations = [ob for ob in observations if ob.site in inc.sites]
        changes = self.engine.evaluate(observations, now)
        alert_lines = self._alert_lines(changes, now)
        if alert_lines:
            inc.influx.write(("\n".join(alert_lines) + "\n").encode())
        return {**result, "changes": changes}

    def _alert_lines(self, changes: list, now: int) -> list:
        """Alert state for the dashboards: every open incident at this run's time, and each resolution.

        Measurement `alert` (Rimba's own, beside the contract's; like `ingest`): tags site, node (`site`
        for a site alert), rule, metric (`all` when the rule has none), severity; fields id, state, message,
        start. The tags without severity are the incident's key, so two open incidents never share a point.
        """
        incidents = [(inc, "firing") for inc in self.engine.store.open_incidents()]
        incidents += [(c.incident, "resolved") for c in changes if c.what == "resolved"]
        return [lineproto.line("alert", {"site": inc["site"], "node": inc["node"] or "site", "rule": inc["rule"],
                                         "metric": inc["metric"] or "all", "severity": inc["severity"]},
                               {"id": inc["id"], "state": state, "message": inc["message"], "start": int(inc["start"])},
                               int(now) * 1000)
                for inc, state in incidents]

    def observe(self, fleet, cube, derived, events, values, fire, hourly, contact, wake, now) -> list:
        s = self.settings
        step = s.analyze_step_s
        stale = 3 * 3600
        open_keys = {inc["key"] for inc in self.engine.store.open_incidents()}
        firing = open_keys.__contains__
        obs = []
        for rule in self.rules:
            if rule.kind == "threshold":
                if rule.metric in derived:
                    series = derived[rule.metric]
                elif rule.metric in cube.metrics:
                    series = cube.metric(rule.metric)
                else:
                    continue
                obs += alerts.threshold_observations(rule, cube.times, series, cube.nodes, cube.sites, now, firing,
                                                     stale)
            elif rule.kind == "ispu":
                for pollutant, metric in (("pm25", "pm25_ugm3"), ("pm10", "pm10_ugm3")):
                    v = derived.get(f"ispu_{pollutant}")
                    if v is None:
                        continue
                    cat = indices.ispu_category(v)
                    label = "PM2.5" if pollutant == "pm25" else "PM10"
                    obs += alerts.category_observations(
                        rule, cube.times, cat, v, cube.nodes, cube.sites, metric, now, stale,
                        lambda c, x, label=label: (f"ISPU {label} {x:.0f}: {ISPU_CATEGORIES[c][1]} "
                                                   f"({ISPU_CATEGORIES[c][2]})"))
            elif rule.kind == "fire":
                cls = fwi.danger_class("fwi", fire.codes.fwi.T)
                obs += alerts.category_observations(
                    rule, fire.times, cls, fire.codes.fwi.T, hourly.nodes, hourly.sites, None, now, 2 * 86400,
                    lambda c, x: f"fire weather index {x:.1f}: {FWI_CLASSES[c][0]} ({FWI_CLASSES[c][1]})")
            elif rule.kind == "anomaly":
                last = {}
                for i, node in enumerate(cube.nodes):
                    for j, metric in enumerate(ANOMALY_METRICS):
                        k = np.flatnonzero(~np.isnan(values[i, :, j]))
                        if k.size:
                            last[(node, cube.sites[i], metric)] = int(cube.times[k[-1]])
                obs += alerts.anomaly_observations(rule, events, last, step, now, stale)
            elif rule.kind == "overdue":
                obs += alerts.overdue_observations(rule, fleet, contact, wake, now, s.overdue_sends,
                                                   s.overdue_grace_s, s.alert_group_min)
        return obs


def load_cube_like(st, rows, times, values):
    """The incremental state's rows as a Cube (what the alert rules read)."""
    from analytics.data import Cube

    return Cube([st.nodes[i] for i in rows], [st.sites[i] for i in rows], times, tuple(METRICS), values)


def run_once(settings, start: int, end: int, step_s: int = 600) -> dict:
    """One run over [start, end) (the CLI's `--once`)."""
    analyzer = Analyzer(settings.with_(analyze_step_s=step_s))
    try:
        return analyzer.run(end, days=(end - start) / 86400)
    finally:
        analyzer.close()


def serve(run, every_s: float, stop, clock=time.time) -> tuple:
    """The service's loop: `run(now)` every `every_s` seconds of `clock` until `stop` (a threading.Event) is
    set, each run `every_s` after the last began (at least a second after it ended). A run that fails is
    logged and the next one goes on (it reads again from where the failed one stopped). Returns (runs,
    failed)."""
    runs = failed = 0
    while not stop.is_set():
        began = clock()
        runs += 1
        try:
            run(int(began))
        except Exception as err:  # noqa: BLE001 - a failed run is logged and retried, the service goes on
            failed += 1
            log.error("analysis run failed: %s (the next run reads again from where this one stopped)", err)
        stop.wait(max(1.0, every_s - (clock() - began)))
    return runs, failed


def main(settings, args) -> int:
    if args.once or args.until is not None:
        end = int(time.time()) if args.until is None else args.until
        result = run_once(settings, end - int(args.hours * 3600), end, args.step or settings.analyze_step_s)
        print(f"analyzed {result['nodes']} nodes x {result['steps']} steps; wrote {result['lines']} qc, anomaly and "
              f"index points; {result['events']} anomaly events; flags: "
              + ", ".join(f"{k} {v}" for k, v in result["flags"].items() if v)
              + "; alerts: " + (", ".join(f"{c.what} {c.incident['id']}" for c in result["changes"]) or "no change"))
        return 0
    if args.step:
        settings = settings.with_(analyze_step_s=args.step)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from analytics.incremental import Incremental

    analyzer = Analyzer(settings)
    influx = Influx.from_settings(settings)
    inc = Incremental(settings, load_fleet(settings.fleet), influx)
    print(f"analyzing every {settings.analyze_every_s} s, sites {', '.join(inc.sites)} (Ctrl-C stops)", flush=True)
    try:
        serve(lambda now: analyzer.run_incremental(inc, now), settings.analyze_every_s, stop)
    finally:
        inc.close()
        influx.close()
        analyzer.close()
    return 0
