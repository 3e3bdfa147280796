"""Rimba's dashboards as code, and the provisioning bundle that carries them to Grafana.

- a public page per site and language (`rimba-site-{site}-{lang}`): current conditions as large
  numbers with their plain meaning, 24-hour and 7-day charts with flagged readings as red points
  and gaps as gaps, ISPU in its official colours and category names, heat index, fire danger, rain
  and, at a river site, the river level. Grafana's public dashboards take no variables, so each
  site gets its own page;
- the officers' overview (`rimba-overview`): every site's ISPU, fire danger and nodes reporting,
  anomaly events as annotations and as a table, and when each node was last heard from;
- fleet health for technicians (`rimba-fleet`): per node battery, days to empty, signal,
  firmware, configuration revision, buffered and dropped readings, clock corrections, gaps, and the
  ingest's own counters.

Every metric name and label comes from the measurement table; the JSON is deterministic (sorted
keys, ids from the layout), so the committed files change only when their source does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as mdash

from dashboards.panels import (
    DATASOURCE,
    WORDS,
    Query,
    fire_mappings,
    grid_table,
    ispu_mappings,
    ispu_thresholds,
    label,
    last_value,
    series,
    unit_of,
)
from rimba.simulate import PROFILE_METRICS

TIMEZONE = "Asia/Pontianak"  # WIB
LANGS = ("id", "en")
CHART_METRICS = ("air_temp_c", "air_rh_pct", "pm25_ugm3", "water_level_cm", "soil_vwc_pct", "rain_mm")


@dataclass
class Page:
    uid: str
    title: str
    folder: str
    public: bool
    model: dict


def site_metrics(fleet, site: str) -> set:
    return {m for n in fleet.nodes_of(site) for m in PROFILE_METRICS.get(n.profile, ())}


def _q(select: str, site: str | None = None, where: str = "", group: str = "GROUP BY time($__interval) fill(null)"):
    cond = [f"\"site\" = '{site}'"] if site else []
    cond += [where] if where else []
    cond.append("$timeFilter")
    return f"{select} WHERE {' AND '.join(cond)} {group}".strip()


def _layout(builder, panels: list) -> None:
    """Place (panel, width, height) left to right in rows of 24 columns; ids follow the order."""
    x = y = row_h = 0
    for i, (panel, w, h) in enumerate(panels, start=1):
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        builder.with_panel(panel.id(i).grid_pos(mdash.GridPos(h=h, w=w, x=x, y=y)))
        x += w
        row_h = max(row_h, h)


def site_page(fleet, site_id: str, lang: str) -> Page:
    w = WORDS[lang]
    site = fleet.sites[site_id]
    have = site_metrics(fleet, site_id)
    reading = 'FROM "reading"'
    now_panels = []

    def now_stat(title, select, unit, help_, decimals=1):
        p = last_value(title, _q(select, site_id), unit, help_, decimals).time_from("24h")
        now_panels.append(p)
        return p

    now_stat(label("air_temp_c", lang), f'SELECT mean("air_temp_c") {reading}', "celsius", w["temp_help"])
    now_stat(label("air_rh_pct", lang), f'SELECT mean("air_rh_pct") {reading}', "percent", w["rh_help"], 0)
    now_stat(w["heat_index"], 'SELECT mean("heat_index_c") FROM "index"', "celsius", w["heat_help"])
    if "pm25_ugm3" in have:
        now_stat(w["ispu"], 'SELECT mean("ispu_pm25") FROM "index"', "none", w["ispu_help"], 0) \
            .thresholds(ispu_thresholds()).mappings(ispu_mappings(lang))
    fire = last_value(w["fire"], _q('SELECT last("fwi_class") FROM "index"', site_id, group=""), "none",
                      w["fire_help"], 0).time_from("3d").mappings(fire_mappings(lang))
    now_panels.append(fire)
    rain = last_value(w["rain"], _q('SELECT mean("total") FROM (SELECT sum("rain_mm") AS "total" FROM "reading"',
                                    site_id, group='GROUP BY "node")'), "lengthmm", label("rain_mm", lang))
    now_panels.append(rain.time_from("24h"))
    if "water_level_cm" in have:
        now_stat(label("water_level_cm", lang), f'SELECT mean("water_level_cm") {reading}', "lengthcm",
                 w["river_help"], 0)
    layout = [(p, max(3, 24 // len(now_panels)), 5) for p in now_panels]
    for span, title, width in (("24h", w["day"], 12), ("7d", w["week"], 12)):
        for metric in (m for m in CHART_METRICS if m in have):
            agg = "sum" if metric == "rain_mm" else "mean"
            queries = [Query("A", _q(f'SELECT {agg}("{metric}") {reading}', site_id), alias=label(metric, lang)),
                       Query("B", _q('SELECT max("value") FROM "qc"', site_id, f"\"metric\" = '{metric}'",
                                     "GROUP BY time($__interval) fill(none)"), alias=w["flagged"])]
            p = series(f"{label(metric, lang)} · {title}", queries, unit_of(metric), w["flag_note"], "B")
            layout.append((p.time_from(span), width, 8))
        hi = series(f"{w['heat_index']} · {title}",
                    [Query("A", _q('SELECT mean("heat_index_c") FROM "index"', site_id), alias=w["heat_index"])],
                    "celsius", w["heat_help"])
        layout.append((hi.time_from(span), width, 8))
    uid = f"rimba-site-{site_id}-{lang}"
    b = (gdash.Dashboard(w["site_title"].format(name=site.name) + (" (English)" if lang == "en" else ""))
         .uid(uid).tags(["rimba", "public", site_id, lang]).timezone(TIMEZONE).editable().refresh("1m")
         .time("now-24h", "now").readonly())
    _layout(b, layout)
    return Page(uid, site.name, "Rimba public", True, _model(b))


def overview(fleet) -> Page:
    layout = []
    for site_id, site in fleet.sites.items():
        ispu = last_value(f"{site.name}: ISPU PM2.5", _q('SELECT max("ispu_pm25") FROM "index"', site_id),
                          "none", WORDS["en"]["ispu_help"], 0).thresholds(ispu_thresholds()) \
            .mappings(ispu_mappings("id")).time_from("24h")
        fire = last_value(f"{site.name}: fire danger", _q('SELECT max("fwi_class") FROM "index"', site_id,
                                                            group=""), "none", WORDS["en"]["fire_help"], 0) \
            .mappings(fire_mappings("id")).time_from("3d")
        seen = last_value(f"{site.name}: nodes reporting, 1 h",
                          _q('SELECT count("n") FROM (SELECT count("seq") AS "n" FROM "reading"', site_id,
                             group='GROUP BY "node")'), "none", "Nodes with at least one reading in the last hour, "
                          f"of {len(fleet.nodes_of(site_id))}.", 0).time_from("1h")
        layout += [(ispu, 8, 5), (fire, 8, 5), (seen, 8, 5)]
    ispu_week = series("ISPU PM2.5 by site, 7 days", [
        Query(chr(65 + i), _q('SELECT max("ispu_pm25") FROM "index"', s), alias=fleet.sites[s].name)
        for i, s in enumerate(fleet.sites)], "none")
    layout.append((ispu_week.time_from("7d").thresholds(ispu_thresholds()), 24, 8))
    events = grid_table("Anomaly events", [Query(
        "A", _q('SELECT "site", "node", "metric", "severity", "message", "score" FROM "anomaly"', group=""),
        "table")], "Runs of anomalous readings, with their peak score and a sentence.")
    last_seen = grid_table("Last heard from", [Query(
        "A", 'SELECT last("seq") AS "last seq" FROM "reading" WHERE time > now() - 30d GROUP BY "node"', "table")],
        "When each node's newest reading was taken; a node silent past its cadence raises an overdue alert.")
    firing = grid_table("Alerts firing", [Query(
        "A", 'SELECT last("message") AS "message", last("id") AS "id" FROM "alert" WHERE time > now() - 10m '
        'AND "state" = \'firing\' GROUP BY "site", "node", "rule", "severity"', "table")],
        "Open incidents from the last analytics runs (every minute); `rimba alerts list` and `ack` on the server.")
    layout += [(firing, 24, 8), (events, 14, 10), (last_seen, 10, 10)]
    b = (gdash.Dashboard("Rimba: all sites").uid("rimba-overview").tags(["rimba", "officers"]).timezone(TIMEZONE)
         .refresh("1m").time("now-7d", "now"))
    _layout(b, layout)
    model = _model(b)
    model.setdefault("annotations", {}).setdefault("list", []).append({
        "datasource": {"type": "influxdb", "uid": DATASOURCE.uid}, "enable": True, "iconColor": "red",
        "name": "Anomalies", "query": 'SELECT "message", "node" FROM "anomaly" WHERE $timeFilter',
        "textColumn": "message", "tagsColumn": "node"})
    model["annotations"]["list"].append({
        "datasource": {"type": "influxdb", "uid": DATASOURCE.uid}, "enable": True, "iconColor": "orange",
        "name": "Alerts", "query": 'SELECT first("message") AS "message" FROM "alert" WHERE $timeFilter '
        'GROUP BY "id", "node"', "textColumn": "message", "tagsColumn": "node"})  # when each incident began
    return Page("rimba-overview", "Rimba: all sites", "Rimba", False, model)


def fleet_health(fleet) -> Page:
    status = grid_table("Nodes: battery, signal, firmware", [Query(
        "A", _q('SELECT last("batt_v") AS "battery V", last("rssi_dbm") AS "signal dBm", last("fw") AS "firmware", '
                'last("cfg") AS "config rev", last("buffered") AS "buffered", last("dropped") AS "dropped", '
                'last("state") AS "state" FROM "node_status"', group='GROUP BY "node"'), "table")])
    days = grid_table("Battery: days to empty", [Query(
        "A", _q('SELECT last("batt_days_left") AS "days left" FROM "index"', group='GROUP BY "node"'), "table")],
        "From the slope of the last three days of battery voltage, to 3.3 V; empty when charging or level.")
    clocks = grid_table("Clock corrections and gaps", [
        Query("A", _q('SELECT count("clock_offset_s") AS "re-based readings" FROM "reading"',
                      group='GROUP BY "node"'), "table"),
        Query("B", _q('SELECT count("first_seq") AS "gaps" FROM "gap"', group='GROUP BY "node", "reason"'),
              "table")])
    batt = series("Battery", [Query("A", _q('SELECT mean("batt_v") FROM "reading"',
                                            group='GROUP BY time($__interval), "node" fill(null)'), alias="$tag_node")],
                  "volt")
    rssi = series("Signal", [Query("A", _q('SELECT mean("rssi_dbm") FROM "reading"',
                                           group='GROUP BY time($__interval), "node" fill(null)'), alias="$tag_node")],
                  "dBm")
    counters = series("Ingest counters", [Query(
        "A", _q('SELECT last("received") AS "received", last("stored") AS "stored", last("duplicates") AS '
                '"duplicates", last("dead_lettered") AS "dead letters", last("spooled") AS "spooled" FROM "ingest"'))],
        "short", "The ingest's own counters: what arrived, what was stored, duplicates skipped, dead letters, "
        "and what waits in its spool.")
    lag = series("Ingest lag", [Query("A", _q('SELECT max("lag_s") FROM "ingest"'), alias="lag")], "s")
    b = (gdash.Dashboard("Rimba: fleet health").uid("rimba-fleet").tags(["rimba", "technicians"])
         .timezone(TIMEZONE).refresh("1m").time("now-7d", "now"))
    _layout(b, [(status, 14, 9), (days, 10, 9), (batt, 12, 8), (rssi, 12, 8), (clocks, 12, 8), (counters, 12, 8),
                (lag, 24, 6)])
    return Page("rimba-fleet", "Rimba: fleet health", "Rimba", False, _model(b))


def _model(builder) -> dict:
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def pages(fleet) -> list:
    out = [site_page(fleet, s, lang) for s in fleet.sites for lang in LANGS]
    return out + [overview(fleet), fleet_health(fleet)]


def dumps(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def queries(model: dict) -> list:
    """Every InfluxQL query of a dashboard: (panel title, refId, query)."""
    out = []
    for panel in model.get("panels", []):
        for t in panel.get("targets", []):
            out.append((panel.get("title", ""), t["refId"], t["query"]))
    for a in model.get("annotations", {}).get("list", []):
        if "query" in a:
            out.append((a["name"], "annotation", a["query"]))
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def datasource_yaml(settings) -> str:
    """Grafana's data source provisioning for Rimba's InfluxDB (InfluxQL). Secrets stay in Grafana's
    environment (${RIMBA_INFLUX_TOKEN}, ${RIMBA_INFLUX_PASSWORD}): never in the bundle."""
    lines = ["apiVersion: 1", "datasources:", "  - name: Rimba InfluxDB", f"    uid: {DATASOURCE.uid}",
             "    type: influxdb", "    access: proxy", f"    url: {settings.influx_url}", "    isDefault: true",
             "    jsonData:", "      dbName: " + settings.influx_db, "      httpMode: POST", "      timeInterval: 1m"]
    if settings.influx_token:
        lines += ["      httpHeaderName1: Authorization", "    secureJsonData:",
                  "      httpHeaderValue1: Token ${RIMBA_INFLUX_TOKEN}"]
    elif settings.influx_user:
        lines += [f"    user: {settings.influx_user}", "    secureJsonData:",
                  "      password: ${RIMBA_INFLUX_PASSWORD}"]
    lines.append("    editable: false")
    return "\n".join(lines) + "\n"


def deploy_datasource_yaml() -> str:
    """The data source of deploy/compose.yaml (deploy/grafana/datasources/rimba.yaml): InfluxDB by its
    compose service name, as the read-only user `rimba stack lock` made; the password from Grafana's
    environment (deploy/state/broker/env/viewer.env)."""
    from rimba import settings as settings_mod

    s = settings_mod.build(overrides={"influx_url": "http://influxdb:8086", "influx_user": "rimba-reader",
                                      "influx_password": "in-viewer.env"}, env={})
    return datasource_yaml(s)


def provider_yaml(folders: list) -> str:
    lines = ["apiVersion: 1", "providers:"]
    for folder in folders:
        lines += [f"  - name: {_slug(folder)}", f"    folder: {folder}", f"    folderUid: {_slug(folder)}",
                  "    type: file", "    disableDeletion: true", "    allowUiUpdates: false", "    options:",
                  f"      path: /etc/grafana/dashboards/{_slug(folder)}"]
    return "\n".join(lines) + "\n"


def write_bundle(settings, fleet, out) -> list:
    """Write the provisioning bundle under `out`; return the files written (relative paths)."""
    from pathlib import Path

    out = Path(out)
    ps = pages(fleet)
    files = {
        "provisioning/datasources/rimba.yaml": datasource_yaml(settings),
        "provisioning/dashboards/rimba.yaml": provider_yaml(sorted({p.folder for p in ps})),
        "public-dashboards.json": json.dumps({"public": sorted(p.uid for p in ps if p.public)}, indent=2) + "\n",
    }
    for p in ps:
        files[f"dashboards/{_slug(p.folder)}/{p.uid}.json"] = dumps(p.model)
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)
