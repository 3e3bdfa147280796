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

Each page speaks one language (`dashboards.words`): the site pages come in both, the overview is in
Bahasa Indonesia, fleet health in English. Every metric name and label comes from the measurement table,
which metrics a site has from its nodes' hardware profiles; the JSON is deterministic (sorted
keys, ids from the layout), so the committed files change only when their source does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as mdash

from dashboards.panels import (
    COUNT,
    DATASOURCE,
    INDEX,
    MIXED,
    Fixed,
    Query,
    fire_mappings,
    grid_table,
    interval,
    ispu_mappings,
    ispu_thresholds,
    label,
    last_value,
    series,
    unit_of,
)
from dashboards.words import WORDS
from rimba import profiles, wib
from rimba.lineproto import LIVE, live_value
from rimba.fleet import SEND_EVERY

TIMEZONE = wib.IANA
LANGS = ("id", "en")
CHART_METRICS = ("air_temp_c", "air_rh_pct", "pm25_ugm3", "water_level_cm", "soil_vwc_pct", "rain_mm")
OVERVIEW_LANG = "id"  # the city's officers
FLEET_LANG = "en"  # the technicians' page, in the words of the firmware and the logs
DEFAULT_STEP_S = 600  # the analytics' grid (analyze_step_s) when a page is built without settings
DEFAULT_STATS_S = 10  # how often ingest stores its counters (stats_every_s)


@dataclass
class Page:
    uid: str
    title: str
    folder: str
    public: bool
    model: dict


@dataclass(frozen=True)
class Cadence:
    """How often each kind of point is written: the floor of every panel's `$__interval`."""

    readings_s: int
    index_s: int = DEFAULT_STEP_S
    ingest_s: int = DEFAULT_STATS_S
    status_s: int = DEFAULT_STEP_S * SEND_EVERY  # a node's status comes with each send session

    @classmethod
    def of(cls, fleet, settings=None) -> Cadence:
        slowest = max((n.cadence_s for n in fleet.nodes.values()), default=DEFAULT_STEP_S)
        status = max((n.cadence_s * n.send_every for n in fleet.nodes.values()), default=slowest * SEND_EVERY)
        if settings is None:
            return cls(slowest, status_s=status)
        return cls(slowest, int(settings.analyze_step_s), max(1, round(settings.stats_every_s)), status)

    @property
    def readings(self) -> str:
        return interval(self.readings_s)

    @property
    def index(self) -> str:
        return interval(max(self.index_s, self.readings_s))

    @property
    def status(self) -> str:
        return interval(self.status_s)

    @property
    def ingest(self) -> str:
        return interval(self.ingest_s)


@cache
def profile_metrics(profile: str) -> frozenset:
    """The metrics a node of this hardware profile measures (hardware/profiles/<profile>.toml, its sensors)."""
    return frozenset(profiles.metrics(profile))


def site_metrics(fleet, site: str) -> set:
    return {m for n in fleet.nodes_of(site) for m in profile_metrics(n.profile)}


def _q(select: str, site: str | None = None, where: str = "", group: str = "GROUP BY time($__interval) fill(null)"):
    cond = [f"\"site\" = '{site}'"] if site else []
    cond += [where] if where else []
    cond.append("$timeFilter")
    return f"{select} WHERE {' AND '.join(cond)} {group}".strip()


def _per_node_total(select: str, site: str, group_time: bool) -> str:
    """A site's rain: each gauge's total (one node's sum), then their mean, so 3 gauges are not 3 times the rain."""
    inner_group = 'GROUP BY time($__interval), "node"' if group_time else 'GROUP BY "node"'
    inner = _q(select, site, group=inner_group)
    outer = "GROUP BY time($__interval) fill(null)" if group_time else ""
    return f'SELECT mean("total") FROM ({inner}) WHERE $timeFilter {outer}'.strip()


def _layout(builder, panels: list) -> None:
    """Place (panel, width, height) left to right in rows of 24 columns; ids follow the order."""
    x = y = row_h = 0
    for i, (panel, w, h) in enumerate(panels, start=1):
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        builder.with_panel(panel.id(i).grid_pos(mdash.GridPos(h=h, w=w, x=x, y=y)))
        x += w
        row_h = max(row_h, h)


def site_page(fleet, site_id: str, lang: str, cadence: Cadence | None = None) -> Page:
    w = WORDS[lang]
    heat, ispu_pm25, fire_class = (label(n, lang) for n in ("heat_index_c", "ispu_pm25", "fwi_class"))
    c = cadence or Cadence.of(fleet)
    site = fleet.sites[site_id]
    have = site_metrics(fleet, site_id)
    reading = 'FROM "reading"'
    now_panels = []

    def now_stat(title, select, unit, help_, every, decimals=1, coloured=False, where=""):
        p = last_value(title, _q(select, site_id, where), unit, help_, title, every, decimals, coloured)
        p = p.time_from("24h")
        now_panels.append(p)
        return p

    now_stat(label("air_temp_c", lang), f'SELECT mean("air_temp_c") {reading}', unit_of("air_temp_c"),
             w["temp_help"], c.readings)
    now_stat(label("air_rh_pct", lang), f'SELECT mean("air_rh_pct") {reading}', unit_of("air_rh_pct"), w["rh_help"],
             c.readings, 0)
    now_stat(heat, 'SELECT mean("heat_index_c") FROM "index"', unit_of("air_temp_c"), w["heat_help"],
             c.index, where=live_value("heat_index_c"))
    if "pm25_ugm3" in have:
        now_stat(ispu_pm25, 'SELECT mean("ispu_pm25") FROM "index"', INDEX, w["ispu_help"], c.index, 0, True,
                 live_value("ispu_pm25")) \
            .thresholds(ispu_thresholds()).mappings(ispu_mappings(lang))
    fire = last_value(fire_class, _q('SELECT last("fwi_class") FROM "index"', site_id, group=""), INDEX,
                      w["fire_help"], fire_class, c.index, 0, True).time_from("3d").mappings(fire_mappings(lang))
    now_panels.append(fire)
    if "rain_mm" in have:
        rain = last_value(w["rain"], _per_node_total('SELECT sum("rain_mm") AS "total" FROM "reading"', site_id,
                                                     False), unit_of("rain_mm"), w["rain_help"], w["rain"], c.readings)
        now_panels.append(rain.time_from("24h"))
    if "water_level_cm" in have:
        now_stat(label("water_level_cm", lang), f'SELECT mean("water_level_cm") {reading}', unit_of("water_level_cm"),
                 w["river_help"], c.readings, 0)
    layout = [(p, max(3, 24 // len(now_panels)), 5) for p in now_panels]
    for span, title, width in (("24h", w["day"], 12), ("7d", w["week"], 12)):
        for metric in (m for m in CHART_METRICS if m in have):
            name = label(metric, lang)
            if metric == "rain_mm":
                q = _per_node_total('SELECT sum("rain_mm") AS "total" FROM "reading"', site_id, True)
                p = series(f"{name} · {title}", [Query("A", q, alias=name)], unit_of(metric), c.readings,
                           w["rain_chart"], bars=True)
            else:
                queries = [Query("A", _q(f'SELECT mean("{metric}") {reading}', site_id), alias=name),
                           Query("B", _q('SELECT max("value") FROM "qc"', site_id,
                                         f"\"metric\" = '{metric}' AND {LIVE['qc']}",
                                         "GROUP BY time($__interval) fill(none)"), alias=w["flagged"])]
                p = series(f"{name} · {title}", queries, unit_of(metric), c.readings, w["flag_note"], "B")
            layout.append((p.time_from(span), width, 8))
        hi = series(f"{heat} · {title}",
                    [Query("A", _q('SELECT mean("heat_index_c") FROM "index"', site_id, live_value("heat_index_c")),
                           alias=heat)],
                    unit_of("air_temp_c"), c.index, w["heat_help"])
        layout.append((hi.time_from(span), width, 8))
    uid = f"rimba-site-{site_id}-{lang}"
    b = (gdash.Dashboard(site.name + w["english"]).uid(uid).tags(["rimba", "public", site_id, lang])
         .timezone(TIMEZONE).editable().refresh("1m").time("now-24h", "now").readonly())
    _layout(b, layout)
    return Page(uid, site.name, "Rimba public", True, _model(b))


def _annotation(name: str, colour: str, query: str, text: str, tags: str) -> dict:
    """An InfluxQL annotation in the current form: everything in `target`. The InfluxDB plugin's migration
    (prepareAnnotation, Grafana 9.2 and later) leaves an annotation without a `target` as it is, and then it runs
    nothing; this is the shape that migration produces."""
    return {"datasource": {"type": "influxdb", "uid": DATASOURCE.uid}, "enable": True, "iconColor": colour,
            "name": name, "target": {"refId": "Anno", "query": query, "rawQuery": True, "resultFormat": "table",
                                     "queryType": "tags", "fromAnnotations": True, "textColumn": text,
                                     "tagsColumn": tags, "titleColumn": "", "timeEndColumn": "",
                                     "limit": 100, "matchAny": False, "tags": [], "type": "tags"}}


FIRING = ('SELECT "message", "severity", "id" FROM (SELECT last("state") AS "state", "message", "severity", "id" '
          'FROM "alert" GROUP BY "site", "node", "rule", "metric") WHERE "state" = \'firing\' '
          'GROUP BY "site", "node", "rule", "metric"')
"""Every open incident, one row each: the newest point of each incident key (site, node, rule, metric) still says
`firing`. No time window: an incident stays listed while the analytics is stopped, with the time it was last seen."""


def overview(fleet, cadence: Cadence | None = None, lang: str = OVERVIEW_LANG) -> Page:
    w = WORDS[lang]
    heat, ispu_pm25, fire_class = (label(n, lang) for n in ("heat_index_c", "ispu_pm25", "fwi_class"))
    col = w["col"]
    c = cadence or Cadence.of(fleet)
    layout = []
    for site_id, site in fleet.sites.items():
        ispu = last_value(f"{site.name}: {ispu_pm25}", _q('SELECT max("ispu_pm25") FROM "index"', site_id,
                                                                  live_value("ispu_pm25")), INDEX,
                          w["ispu_help"], site.name, c.index, 0, True).thresholds(ispu_thresholds()) \
            .mappings(ispu_mappings(lang)).time_from("24h")
        fire = last_value(f"{site.name}: {fire_class.lower()}", _q('SELECT max("fwi_class") FROM "index"', site_id,
                                                                   group=""), INDEX, w["fire_help"], site.name,
                          c.index, 0, True).mappings(fire_mappings(lang)).time_from("3d")
        seen = last_value(f"{site.name}: {w['nodes_1h']}",
                          _q('SELECT count("n") FROM (SELECT count("seq") AS "n" FROM "reading"', site_id,
                             group='GROUP BY "node")'), COUNT, w["nodes_help"].format(n=len(fleet.nodes_of(site_id))),
                          site.name, c.readings, 0).time_from("1h")
        layout += [(ispu, 8, 5), (fire, 8, 5), (seen, 8, 5)]
    ispu_week = series(w["ispu_site"], [
        Query(chr(65 + i), _q('SELECT max("ispu_pm25") FROM "index"', s, live_value("ispu_pm25")),
              alias=fleet.sites[s].name)
        for i, s in enumerate(fleet.sites)], INDEX, c.index, w["ispu_help"])
    layout.append((ispu_week.time_from("7d").thresholds(ispu_thresholds()), 24, 8))
    events = grid_table(w["events"], [Query(
        "A", _q('SELECT "site", "node", "metric", "severity", "message", "score" FROM "anomaly"', where=LIVE["anomaly"],
                group=""),
        "table")], w["events_help"], rename={k: col[k] for k in ("Time", "site", "node", "metric", "severity",
                                                                   "message", "score")})
    nodes = sorted(fleet.nodes.values(), key=lambda n: n.id)
    last_seen = grid_table(w["heard"], [
        Query("A", 'SELECT last("seq") AS "seq" FROM "reading" GROUP BY "node"', "table"),
        Fixed("B", {"node": [n.id for n in nodes], "site": [n.site for n in nodes],
                    "profile": [n.profile for n in nodes], "never": [0] * len(nodes)})],
        w["heard_help"], datasource=MIXED, transformations=[
        # every node of the fleet file, heard from or not; then the silent first: Grafana sorts empty values
        # last, so the sort key is the newest reading's time, or 0 for a node never heard from
        mdash.DataTransformerConfig(id_val="joinByField", options={"byField": "node", "mode": "outerTabular"}),
        mdash.DataTransformerConfig(id_val="calculateField", options={
            "mode": "reduceRow", "reduce": {"include": ["Time", "never"], "reducer": "max"}, "alias": "order",
            "replaceFields": False}),
        mdash.DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "order", "desc": False}]}),
        mdash.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"seq": True, "never": True, "order": True},
            "indexByName": {"Time": 0, "node": 1, "site": 2, "profile": 3},
            "renameByName": {"Time": col["heard"], "node": col["node"], "site": col["site"],
                             "profile": col["profile"]}})])
    firing = grid_table(w["firing"], [Query("A", FIRING, "table")], w["firing_help"],
                        rename={k: col[k] for k in ("Time", "site", "node", "rule", "metric", "severity", "message",
                                                    "id")})
    layout += [(firing, 24, 8), (events, 14, 10), (last_seen, 10, 10)]
    b = (gdash.Dashboard(w["overview"]).uid("rimba-overview").tags(["rimba", "officers", lang]).timezone(TIMEZONE)
         .refresh("1m").time("now-7d", "now"))
    _layout(b, layout)
    model = _model(b)
    model.setdefault("annotations", {}).setdefault("list", []).extend([
        _annotation(w["anomalies"], "red", f'SELECT "message", "node" FROM "anomaly" WHERE {LIVE["anomaly"]} AND '
                    '$timeFilter', "message", "node"),
        # when each incident began (its first `firing` point in the range)
        _annotation(w["alerts"], "orange", 'SELECT first("message") AS "message", "node" FROM "alert" WHERE '
                    '"state" = \'firing\' AND $timeFilter GROUP BY "site", "node", "rule", "metric"', "message",
                    "node"),
        _replaced(w["replaced"])])
    return Page("rimba-overview", w["overview"], "Rimba", False, model)


def _replaced(name: str) -> dict:
    """When a technician recorded a node's sensor replaced (`rimba node replaced`; the analytics writes the fleet
    file's records as `maintenance` points): a level that changes there is the new unit's, not the air's."""
    return _annotation(name, "blue", f'SELECT "replaced", "part", "node" FROM "maintenance" WHERE '
                       f'{LIVE["maintenance"]} AND $timeFilter', "part", "node")


def fleet_health(fleet, cadence: Cadence | None = None) -> Page:
    c = cadence or Cadence.of(fleet)
    status = grid_table("Nodes: battery, signal, firmware", [Query(
        "A", _q('SELECT last("batt_v") AS "battery V", last("rssi_dbm") AS "signal dBm", last("fw") AS "firmware", '
                'last("fw_state") AS "firmware state", last("fw_failed") AS "last rolled back", '
                'last("cfg") AS "config rev", last("buffered") AS "buffered", last("dropped") AS "dropped", '
                'last("state") AS "state" FROM "node_status"', group='GROUP BY "node"'), "table")],
        "Each node's newest status in the range. Firmware state: good, trial (a new release booted, not yet "
        "proven by an acknowledged send) or rolled-back; last rolled back: the newest release the node rolled "
        "back or refused in the range (`rimba firmware status` shows the rollout).",
        rename={"Time": "Newest status", "node": "Node"})
    days = grid_table("Battery: days to empty", [Query(
        "A", _q('SELECT last("batt_days_left") AS "days left" FROM "index"', group='GROUP BY "node"'), "table")],
        "From the slope of the last three days of battery voltage, to 3.3 V; empty when charging or level.",
        rename={"Time": "Time", "node": "Node"})
    gaps = [Query(chr(66 + i), _q(f'SELECT count("first_seq") AS "gaps: {reason}" FROM "gap"',
                                  where=f"\"reason\" = '{reason}'", group='GROUP BY "node"'), "table")
            for i, reason in enumerate(("lost", "missing", "epoch-reset"))]
    clocks = grid_table("Clock corrections and gaps", [
        Query("A", _q('SELECT count("clock_offset_s") AS "re-based readings" FROM "reading"',
                      group='GROUP BY "node"'), "table"), *gaps],
        "Readings whose time ingest re-based from the node's clock, and gaps by reason (lost: the node said so; "
        "missing: never arrived; epoch-reset: the node restarted its count).",
        transformations=[mdash.DataTransformerConfig(id_val="merge", options={})], rename={"node": "Node"})
    per_node = 'GROUP BY time($__interval), "node" fill(null)'
    # a node reports its battery and signal in its status, once a send session (firmware/lib/node.py)
    batt = series("Battery", [Query("A", _q('SELECT mean("batt_v") FROM "node_status"', group=per_node),
                                    alias="$tag_node")], unit_of("batt_v"), c.status,
                  "Each node's battery voltage, from its status at each send.")
    rssi = series("Signal", [Query("A", _q('SELECT mean("rssi_dbm") FROM "node_status"', group=per_node),
                                   alias="$tag_node")], unit_of("rssi_dbm"), c.status,
                  "Each node's Wi-Fi signal, from its status at each send.")
    counters = series("Ingest counters", [Query(
        "A", _q('SELECT last("received") AS "received", last("stored") AS "stored", last("duplicates") AS '
                '"duplicates", last("dead_lettered") AS "dead letters", last("spooled") AS "spooled" FROM "ingest"',
                group='GROUP BY time($__interval), "instance" fill(null)'), alias="$col ($tag_instance)")], COUNT, c.ingest, "The ingest's own counters: what arrived, what was stored, duplicates "
        "skipped, dead letters, and what waits in its spool.")
    lag = series("Ingest lag", [Query("A", _q('SELECT max("lag_s") FROM "ingest"', group='GROUP BY '
                                          'time($__interval), "instance" fill(null)'), alias="$tag_instance")], "s", c.ingest,
                 "How long the newest stored reading took from the node's clock to the database.")
    b = (gdash.Dashboard("Rimba: fleet health").uid("rimba-fleet").tags(["rimba", "technicians", FLEET_LANG])
         .timezone(TIMEZONE).refresh("1m").time("now-7d", "now"))
    _layout(b, [(status, 14, 9), (days, 10, 9), (batt, 12, 8), (rssi, 12, 8), (clocks, 12, 8), (counters, 12, 8),
                (lag, 24, 6)])
    model = _model(b)
    model.setdefault("annotations", {}).setdefault("list", []).append(_replaced(WORDS[FLEET_LANG]["replaced"]))
    return Page("rimba-fleet", "Rimba: fleet health", "Rimba", False, model)


def _model(builder) -> dict:
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    model.pop("style", None)  # the SDK still writes it; Grafana's dashboard schema has had no `style` since 10
    for panel in model["panels"]:
        if panel["type"] == "stat":  # options the SDK's models predate, required by Grafana 11's stat schema
            panel["options"].update({"showPercentChange": False, "percentChangeColorMode": "standard",
                                     "wideLayout": True})
    return model


def pages(fleet, settings=None) -> list:
    c = Cadence.of(fleet, settings)
    out = [site_page(fleet, s, lang, c) for s in fleet.sites for lang in LANGS]
    return out + [overview(fleet, c), fleet_health(fleet, c)]


def dumps(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def queries(model: dict) -> list:
    """Every InfluxQL query of a dashboard: (panel title, refId, query)."""
    out = []
    for panel in model.get("panels", []):
        for t in panel.get("targets", []):
            if "query" in t:
                out.append((panel.get("title", ""), t["refId"], t["query"]))
    for a in model.get("annotations", {}).get("list", []):
        if "query" in a.get("target", {}):
            out.append((a["name"], "annotation", a["target"]["query"]))
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
    ps = pages(fleet, settings)
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
