"""Dashboards as code: committed and current, and what each panel draws from eight days of the sample fleet in a
real InfluxDB when its queries are expanded as Grafana 11.3 expands them (tests/grafana_like.py); `publish`
against a server that records what Grafana would get. Grafana's types, units and rules without data:
tests/test_dashboards_grafana.py."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as mdash

from dashboards import build
from rimba import settings as settings_mod
from rimba.dev.climate import Haze
from rimba.fleet import load_fleet
from rimba.metrics import DERIVED, METRICS
from rimba.dev.simulate import Fault, Publisher, Simulation
from tests import grafana_like as g
from rimba.dev.harness import ROOT, env_for, wait_until

BUNDLE = ROOT / "dashboards" / "bundle"
PANEL_TYPES = {"stat", "timeseries", "table"}


def built(tmp_path):
    s = settings_mod.build(env={})
    return build.write_bundle(s, load_fleet(ROOT / "fleet.toml"), tmp_path), tmp_path


def test_the_committed_bundle_is_what_the_source_builds(tmp_path):
    files, out = built(tmp_path)
    committed = sorted(str(p.relative_to(BUNDLE)) for p in BUNDLE.rglob("*") if p.is_file())
    assert committed == files, "run: rimba dashboards build"
    for rel in files:
        assert (out / rel).read_text() == (BUNDLE / rel).read_text(), f"{rel} drifted; run: rimba dashboards build"


def test_builds_are_identical(tmp_path):
    a, out_a = built(tmp_path / "a")
    b, out_b = built(tmp_path / "b")
    assert a == b and all((out_a / f).read_bytes() == (out_b / f).read_bytes() for f in a)


def dashboards_in(bundle: Path):
    return {p.stem: json.loads(p.read_text()) for p in sorted(bundle.glob("dashboards/*/*.json"))}


@pytest.mark.parametrize("uid", sorted(dashboards_in(BUNDLE)))
def test_valid_against_grafanas_schema(uid):
    """The SDK's models are generated from Grafana's dashboard schema: a round trip through them keeps every
    key (except an annotation's InfluxDB target, which that schema leaves to the data source plugin; tsc checks
    it against Grafana 11.3's own types in tests/test_dashboards_grafana.py)."""
    model = dashboards_in(BUNDLE)[uid]
    back = json.loads(json.dumps(mdash.Dashboard.from_json(model), cls=JSONEncoder))
    lost = []

    def walk(a, b, path):
        if isinstance(a, dict):
            for k, v in a.items():
                if k not in b:
                    lost.append(f"{path}/{k}")
                else:
                    walk(v, b[k], f"{path}/{k}")
        elif isinstance(a, list):
            assert len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]")
    walk(model, back, "")
    assert all(re.fullmatch(r"/annotations/list\[\d+\]/target/\w+", p) for p in lost), lost
    # and what the schema cannot say: ids unique, panels on the 24-column grid without overlap, every query
    # on Rimba's data source with its own refId, Pontianak's time
    assert model["uid"] == uid and 8 <= len(uid) <= 40 and model["timezone"] == "Asia/Pontianak"
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in model["panels"]:
        assert p["type"] in PANEL_TYPES and p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']} overlaps another"
        cells |= mine
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in p["targets"]:  # Rimba's InfluxDB, or a fixed table carried in the dashboard (a mixed panel)
            assert (t["datasource"]["uid"] == build.DATASOURCE.uid and t["rawQuery"]) or (
                t["queryType"] == "snapshot" and p["datasource"]["uid"] == "-- Mixed --"), p["title"]


def test_names_come_from_the_measurement_table():
    pages = dashboards_in(BUNDLE)
    text = json.dumps(pages["rimba-site-smp29-id"])
    assert METRICS["air_temp_c"].label_id in text and METRICS["air_temp_c"].label_en not in text
    assert METRICS["air_temp_c"].label_en in json.dumps(pages["rimba-site-smp29-en"])
    assert "Tidak Sehat" in text and "Sangat Tidak Sehat" in text and "#F2C200" in text
    assert "water_level_cm" in json.dumps(pages["rimba-site-bansir-laut-en"])
    assert "water_level_cm" not in text  # the school forest has no river gauge
    assert DERIVED["heat_index_c"].label_id in text and DERIVED["ispu_pm25"].label_id in text
    assert DERIVED["fwi_class"].label_en in json.dumps(pages["rimba-site-smp29-en"])
    from rimba.lineproto import READING_FIELDS

    fields = {"reading": {*METRICS, *READING_FIELDS}, "index": DERIVED}  # what each measurement's fields are from
    for uid, model in pages.items():
        for _title, _ref, q in build.queries(model):
            # each SELECT ... FROM "measurement" (the innermost, where there is a subquery)
            for selected, measurement in re.findall(r'SELECT ((?:(?!SELECT).)*?) FROM "([a-z_]+)"', q):
                for name in re.findall(r'\("([a-z0-9_]+)"\)', selected) if measurement in fields else ():
                    assert name in fields[measurement], f"{uid}: {name} is not a field of {measurement}: {q}"


# --- every query against the real InfluxDB --------------------------------------------------------------------


SILENT = "smp29-05"  # last heard 40 days ago
NEVER = "bansir-laut-04"  # in the fleet file, never heard from


@pytest.fixture(scope="module")
def filled(stack, tmp_path_factory):
    """Eight days of the sample fleet (both sites) with a haze episode still going on, faults, an outage that loses
    readings, a node whose clock was never set, a node silent for 40 days and one never heard from, a PM sensor
    recorded replaced, through ingest and one `rimba analyze --once`. Times are the current ones (ingest judges a
    reading by when it arrives), on the 10-minute grid, so every run puts the same readings in the same buckets."""
    from tests.conftest import Platform

    tmp = tmp_path_factory.mktemp("dash")
    p = Platform(stack, tmp, (ROOT / "fleet.toml").read_text())
    now = int(time.time()) // 600 * 600
    fleet = load_fleet(p.fleet_path)
    faults = [Fault("smp29-01", "air_temp_c", "spike", now - 30 * 3600, now - 30 * 3600 + 600, 11.0),
              Fault("bansir-laut-01", "water_level_cm", "out-of-range", now - 20 * 3600, now - 19 * 3600, 100.0),
              Fault("smp29-02", "air_temp_c", "spike", now - 3 * 3600, now + 3600, 6.0)]
    live = set(fleet.nodes) - {SILENT, NEVER}
    sim = Simulation(fleet, seed=8, haze=Haze(now - 3 * 86400, 3.5), faults=faults, send_every=6, capacity=40,
                     rtc_nodes={"smp29-03"}, nodes=live)
    events = sim.history(now - 8 * 86400, now - 60, outages=[("bansir-laut-02", now - 3 * 86400,
                                                             now - 2 * 86400)])
    gone = Simulation(fleet, seed=9, nodes={SILENT})
    events = gone.history(now - 40 * 86400, now - 40 * 86400 + 3 * 3600) + events
    ingest = p.ingest(gap_timeout_s=1)
    pub = Publisher(p.settings, client_id="pub-dash")
    for _t, topic, payload in events:
        pub.publish(topic, sim.restamp(topic, payload, time.time()))
    for sn in sim.nodes.values():
        pub.publish(*sim.status(sn, now, now + 600), retain=True)
    # one node on contract v2 that rolled a release back: the fleet table's firmware state (v2 statuses only)
    pub.publish("rimba/v2/smp29/smp29-01/status", json.dumps({"v": 2, "state": "sleeping", "t": now + 1, "fw": "sim-1",
                "fw_state": "rolled-back", "fw_failed": "sim-2", "wake": now + 600}).encode(), retain=True)
    pub.close()
    wait_until(lambda: p.count() >= sim.expected() + gone.expected(), 120, "the history stored")
    wait_until(lambda: p.count('SELECT count("first_seq") FROM "gap"') > 0, 60, "the outage's gap")
    _ingest_history(p, now - 8 * 86400)
    _status_history(p, sim, now - 8 * 86400, now - 60)
    from hardware.provision import Provisioner

    Provisioner(p.settings).replaced("smp29-04", "pm", now - 2 * 86400)  # a technician's record: an annotation
    r = subprocess.run([sys.executable, "-m", "rimba", "analyze", "--once", "--hours", "192", "--until",
                        str(now)], env=env_for(p.values), capture_output=True, text=True, cwd=ROOT, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr
    yield p, now
    ingest.stop()
    p.close()


def _ingest_history(p, start: int) -> None:
    """The ingest's own counters for the eight days before this test's ingest started, once a minute, in its own
    line format (rimba/lineproto.py) under its instance: a platform's ingest has been running all along."""
    from rimba import lineproto

    wait_until(lambda: p.influx.rows('SELECT first("received") FROM "ingest"'), 30, "the ingest's counters")
    instance = p.influx.rows('SHOW TAG VALUES FROM "ingest" WITH KEY = "instance"')[0]["value"]
    first = p.influx.rows('SELECT first("received") FROM "ingest"')[0]["time"]
    lines = [lineproto.line("ingest", {"instance": lineproto.tag(instance)},
                            {"received": i, "stored": i, "duplicates": 0, "dead_lettered": 0, "spooled": 0,
                             "lag_s": 1.5}, t * 1000)
             for i, t in enumerate(range(start, first - 60, 60))]
    p.influx.write("\n".join(lines).encode())


def _status_history(p, sim, start: int, end: int) -> None:
    """Each node's status at each of its send sessions in [start, end), as the ingest stored them when they came
    (its own pipeline, received when sent). Sent through the broker at once, eight days of them would meet the
    node's status budget, which a real node, sending one an hour, never does."""
    from ingest.ledger import Ledger
    from ingest.pipeline import Outcome, handle_status

    led, out = Ledger(), Outcome()
    fleet = load_fleet(p.fleet_path)
    for sn in sim.nodes.values():
        every = sn.node.cadence_s * sn.node.send_every
        for t in range(start + every, end, every):
            topic, payload = sim.status(sn, t, t + sn.node.cadence_s)
            handle_status(led, topic, payload, t, fleet, out)
    assert out.lines and not out.dead, out.dead[:3]
    p.influx.write("\n".join(out.lines).encode())


def test_the_tag_tables_are_what_is_stored(filled):
    """The tests' table of tags (docs/contract.md and the analytics') is what the real database holds."""
    from tests.test_dashboards_grafana import TAGS

    p, _now = filled
    for measurement in ("reading", "node_status", "gap", "ingest", "qc", "anomaly", "index", "alert"):
        stored = {r["tagKey"] for r in p.influx.rows(f'SHOW TAG KEYS FROM "{measurement}"')}
        assert stored == TAGS[measurement], measurement


class Drawn:
    """Every query of a dashboard expanded as Grafana 11.3 would for each screen of SCREENS and run against the
    filled database; answers cached by the expanded query."""

    DS_INTERVAL = "1m"  # the data source's timeInterval (datasource_yaml): the floor when a panel has none

    def __init__(self, influx, now: float | None = None):
        """`now`: the range's end, by default the clock's, as Grafana's (buckets are on the epoch's grid, so only
        the partial first and last ones depend on it)."""
        self.influx, self.now_ms, self.cache = influx, int((time.time() if now is None else now) * 1000), {}

    def runs(self, model: dict, panel: dict):
        """(screen, interval ms, {refId: result}) for each screen."""
        span = g.span_ms(panel.get("timeFrom") or model["time"]["from"])
        for screen in g.SCREENS:
            points = panel.get("maxDataPoints") or g.panel_width(panel["gridPos"]["w"], screen)
            ms, text = g.calculate_interval(span, points, panel.get("interval") or self.DS_INTERVAL)
            out = {}
            for t in panel["targets"]:
                if "query" in t:
                    q = g.expand(t["query"], self.now_ms - span, self.now_ms, ms, text)
                    if q not in self.cache:
                        self.cache[q] = self.influx.query(q, epoch="ms")
                    out[t["refId"]] = self.cache[q]
            yield screen[0], ms, out


def _points_only(panel: dict) -> set:
    """refIds drawn as points (the flagged readings): a lone value is a dot, by design."""
    return {o["matcher"]["options"] for o in panel["fieldConfig"].get("overrides", [])
            if o["matcher"]["id"] == "byFrameRefID"
            and {"id": "custom.drawStyle", "value": "points"} in o["properties"]}


def _adjacent(times: list, step: int) -> bool:
    return any(b - a == step for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("uid", sorted(dashboards_in(BUNDLE)))
def test_what_every_panel_draws(filled, uid):
    """The strict check: with `$__interval` from the range, the panel's width on a phone, a laptop and a desktop and
    its minimum interval, `$timeFilter` and `fill` as Grafana expands them, every line of every time series has two
    adjacent non-empty buckets (else Grafana draws nothing), every stat has a value, every table has rows."""
    p, now = filled
    model = dashboards_in(BUNDLE)[uid]
    drawn = Drawn(p.influx)
    fields = {m: {r["fieldKey"] for r in p.influx.rows(f'SHOW FIELD KEYS FROM "{m}"')}
              for m in ("reading", "index", "qc", "anomaly", "node_status", "gap", "ingest", "alert")}
    for panel in model["panels"]:
        where = f"{uid} / {panel['title']}"
        for t in panel["targets"]:
            for measurement, field in _named_fields(t.get("query", "")):
                assert field in fields[measurement], f"{where}: no field {field} in {measurement}"
        dots = _points_only(panel)
        for screen, step, answers in drawn.runs(model, panel):
            series = {ref: [s for r in res for s in r.get("series", [])] for ref, res in answers.items()}
            values = [v for ref in series for s in series[ref] for row in s["values"] for v in row[1:]
                      if v is not None]
            assert values, f"{where} ({screen}): nothing"
            if panel["type"] != "timeseries":
                continue
            for ref, found in series.items():
                if ref in dots:
                    continue
                assert found, f"{where} ({screen}): query {ref} has no series"
                for s in found:
                    for j, col in enumerate(s["columns"][1:], start=1):
                        times = [row[0] for row in s["values"] if row[j] is not None]
                        assert _adjacent(times, step), \
                            f"{where} ({screen}, {step // 1000} s buckets): {col} {s.get('tags', {})} is not drawn"
    for name, _ref, q in build.queries(model):
        if _ref == "annotation":
            span = g.span_ms(model["time"]["from"])
            assert p.influx.query(g.expand(q, now * 1000 - span, now * 1000, 600_000, "10m"))[0].get("series"), name


def test_the_haze_colours_the_ispu_charts(filled):
    """Over the 7-day chart the ISPU crosses categories: the colours are not all one."""
    from analytics.indices import ispu_category

    p, _now = filled
    model = dashboards_in(BUNDLE)["rimba-overview"]
    panel = next(x for x in model["panels"] if x["type"] == "timeseries")
    _screen, _step, answers = next(Drawn(p.influx).runs(model, panel))
    values = [row[1] for res in answers.values() for r in res for s in r.get("series", []) for row in s["values"]
              if row[1] is not None]
    assert len({int(ispu_category(v)) for v in values}) >= 3


def test_rain_is_the_mean_of_the_gauges_not_their_sum(filled):
    p, now = filled
    model = dashboards_in(BUNDLE)["rimba-site-smp29-en"]
    stat = next(x for x in model["panels"] if x["title"] == "Rain, 24 h")
    _s, _step, answers = next(Drawn(p.influx).runs(model, stat))
    shown = answers["A"][0]["series"][0]["values"][0][1]
    per_node = p.influx.rows(f'SELECT sum("rain_mm") AS "total" FROM "reading" WHERE "site" = \'smp29\' AND '
                             f'time >= {now - 86400}s AND time <= {now}s GROUP BY "node"')
    totals = [r["total"] for r in per_node]
    assert len(totals) >= 3 and shown == pytest.approx(sum(totals) / len(totals))


def test_alerts_firing_lists_every_open_incident(filled):
    """One row per open incident: a node's PM2.5 and PM10 incidents are two rows."""
    p, _now = filled
    model = dashboards_in(BUNDLE)["rimba-overview"]
    panel = next(x for x in model["panels"] if x["targets"][0].get("query") == build.FIRING)
    _s, _step, answers = next(Drawn(p.influx).runs(model, panel))
    rows = g.frames(answers["A"], table=True)
    got = len(rows[0]["data"]["values"][0]) if rows else 0
    store = subprocess.run([sys.executable, "-m", "rimba", "alerts", "list", "--json"], env=env_for(p.values),
                           capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    open_ids = {json.loads(line)["id"] for line in store.stdout.splitlines()}
    assert got >= 2 and got == len(open_ids), (got, store.stdout)
    ids = rows[0]["data"]["values"][[f["name"] for f in rows[0]["schema"]["fields"]].index("id")]
    assert set(ids) == open_ids
    pm = [i for i in ids if i.startswith("ispu-unhealthy-smp29-smp29-04-")]
    assert len(pm) == 2, ids  # PM2.5 and PM10 of one air node


def test_last_heard_from_has_the_silent_and_the_never_heard(filled):
    """Grafana's own transformations over what InfluxDB returns: every fleet node, the never heard first, then the
    one silent for 40 days (past the 30 days the old query looked back)."""
    from dashboards.words import WORDS

    p, now = filled
    model = dashboards_in(BUNDLE)["rimba-overview"]
    col = WORDS["id"]["col"]
    panel = next(x for x in model["panels"] if x["title"] == WORDS["id"]["heard"])
    _s, _step, answers = next(Drawn(p.influx).runs(model, panel))
    snapshot = next(t for t in panel["targets"] if t.get("queryType") == "snapshot")["snapshot"]
    table = g.grafana({"transform": {"frames": g.frames(answers["A"], table=True) + snapshot,
                                     "steps": panel["transformations"]}})["transformed"][0]
    assert sorted(table[col["node"]]) == sorted(load_fleet(ROOT / "fleet.toml").nodes)
    assert table[col["node"]][:2] == [NEVER, SILENT] and table[col["heard"]][0] is None
    assert table[col["heard"]][1] < (now - 30 * 86400) * 1000
    heard = table[col["heard"]][1:]
    assert heard == sorted(heard)


def _named_fields(query: str) -> list:
    """(measurement, field) for each aggregate of a field in a query's innermost FROM."""
    aliases = set(re.findall(r'AS "(\w+)"', query))
    out = []
    for select, measurement in re.findall(r'SELECT ((?:(?!SELECT).)*?) FROM "(\w+)"', query):
        for field in re.findall(r'\w+\("(\w+)"\)', select):
            if field not in aliases:
                out.append((measurement, field))
    return out


# --- publish, against a server that answers like Grafana's HTTP API and records every request -------------------


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self, version="11.3.0", token="good-token"):
        super().__init__(("127.0.0.1", 0), _GrafanaHandler)
        self.version, self.token = version, token
        self.requests, self.folders, self.datasources, self.dashboards, self.public = [], {}, {}, {}, set()
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server_port}"

    def calls(self, method: str, prefix: str = "") -> list:
        return [r for r in self.requests if r[0] == method and r[1].startswith(prefix)]


class _GrafanaHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        g = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        g.requests.append((method, self.path, body))
        path = self.path.split("?")[0]
        if path == "/api/health":
            return self._reply(200, {"database": "ok", "version": g.version})
        if path == "/api/frontend/settings":  # what grafana-client reads the version from
            return self._reply(200, {"buildInfo": {"version": g.version}})
        if self.headers.get("Authorization") != f"Bearer {g.token}":
            return self._reply(401, {"message": "invalid API key"})
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "folders"]:
            if method == "GET":
                uid = parts[2]
                return self._reply(200, g.folders[uid]) if uid in g.folders else self._reply(404, {"message": "x"})
            g.folders[body["uid"]] = body
            return self._reply(200, body)
        if parts[:2] == ["api", "datasources"]:
            if method == "GET":
                uid = parts[3]
                return self._reply(200, g.datasources[uid]) if uid in g.datasources else self._reply(404, {})
            g.datasources[body["uid"]] = body
            return self._reply(200, {"datasource": body, "message": "ok"})
        if path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            g.dashboards[uid] = g.dashboards.get(uid, 0) + 1
            return self._reply(200, {"status": "success", "uid": uid, "version": g.dashboards[uid]})
        if parts[:2] == ["api", "dashboards"] and parts[-1] == "public-dashboards":
            uid = parts[3]
            if method == "GET":
                return self._reply(200, {"uid": "p-" + uid}) if uid in g.public else self._reply(404, {})
            g.public.add(uid)
            return self._reply(200, {"uid": "p-" + uid, "isEnabled": True})
        return self._reply(404, {"message": "not found"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")


def publish_cli(url: str, token: str, bundle: Path = BUNDLE):
    env = env_for({})
    env["GRAFANA_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "rimba", "dashboards", "publish", "--out", str(bundle),
                           "--grafana", url], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=False)


def test_publish_creates_then_updates_by_uid():
    g = FakeGrafana()
    r = publish_cli(g.url, "good-token")
    assert r.returncode == 0, r.stderr
    assert len(g.calls("POST", "/api/folders")) == 2 and set(g.folders) == {"rimba", "rimba-public"}
    assert len(g.calls("POST", "/api/datasources")) == 1 and not g.calls("PUT", "/api/datasources")
    saved = g.calls("POST", "/api/dashboards/db")
    assert len(saved) == 6 and all(b["overwrite"] and b["folderUid"] in g.folders for _m, _p, b in saved)
    assert "id" not in saved[0][2]["dashboard"]
    assert g.public == {f"rimba-site-{s}-{lang}" for s in ("smp29", "bansir-laut") for lang in ("id", "en")}
    assert g.datasources["rimba-influxdb"]["jsonData"]["dbName"] == "rimba"
    # again: nothing new is created, the data source is updated, every dashboard saved as a new version
    r = publish_cli(g.url, "good-token")
    assert r.returncode == 0, r.stderr
    assert len(g.calls("POST", "/api/folders")) == 2 and len(g.calls("PUT", "/api/datasources")) == 1
    assert set(g.dashboards.values()) == {2} and len(g.calls("POST", "/api/dashboards/uid")) == 4
    assert "0 page(s) made public (4 already were)" in r.stdout
    g.shutdown()


@pytest.mark.parametrize(("version", "token", "url", "says"), [
    ("11.3.0", "wrong", None, "refused the credentials"),
    ("9.5.2", "good-token", None, "too old"),
    ("11.3.0", "good-token", "http://127.0.0.1:9", "cannot reach Grafana"),
])
def test_publish_errors_are_one_clear_line(version, token, url, says):
    g = FakeGrafana(version=version)
    r = publish_cli(url or g.url, token)
    assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
    g.shutdown()


def test_publish_without_a_bundle_says_how_to_build_it(tmp_path):
    r = publish_cli("http://127.0.0.1:9", "t", tmp_path / "nothing")
    assert r.returncode == 2 and "rimba dashboards build" in r.stderr


# --- the weekly report ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["smp29", "bansir-laut"])
@pytest.mark.parametrize("lang", ["id", "en"])
def test_the_weekly_report_renders_with_data(filled, tmp_path, site, lang):
    from analytics import weekly
    from dashboards import report

    p, now = filled
    r = report.make(weekly.gather(p.settings, site, 7, until=now + 86400), lang, out_dir=tmp_path)
    assert r.pdf.exists() and r.png.exists() and r.pages == 2
    assert r.pdf.read_bytes().count(b"/Type /Page\n") + r.pdf.read_bytes().count(b"/Type /Page ") >= 2 or \
        r.pdf.read_bytes().count(b"/Type /Page") >= 3  # two pages and the page tree
    assert r.png.stat().st_size > 50_000
    assert r.points and all(n >= 24 * 6 for n in r.points.values()), r.points  # most of a week, every chart
    text = "\n".join(r.highlights)
    assert ("Hari terpanas" if lang == "id" else "Hottest day") in text
    if site == "bansir-laut":
        assert "water_level_cm" in r.points
        assert ("Air sungai tertinggi" if lang == "id" else "Highest river level") in text
    assert sum(r.ispu_days) == 7  # both sites measure PM2.5 (an air node each)


def test_the_week_counts_an_incident_once_when_the_analytics_wrote_it_twice():
    """An event found again with another start or kind (late readings rescored, or a state rebuilt after the
    detector's constants changed) is a second `anomaly` point beside the first: one incident, not two. Another
    node's, or the same node's later one, stays an incident of its own."""
    from analytics import weekly

    t = 1764262800
    rows = [{"time": t, "end": t + 7200, "metric": "air_temp_c", "node": "n1", "message": "first"},
            {"time": t + 600, "end": t + 9000, "metric": "air_temp_c", "node": "n1", "message": "again"},
            {"time": t + 600, "end": t + 9000, "metric": "air_temp_c", "node": "n2", "message": "n2's"},
            {"time": t + 600, "end": t + 1200, "metric": "air_rh_pct", "node": "n1", "message": "humidity"},
            {"time": t + 20000, "end": t + 21000, "metric": "air_temp_c", "node": "n1", "message": "later"}]
    got = weekly.incidents(rows)
    assert [(r["node"], r["metric"], r["time"], r["end"], r["message"]) for r in got] == [
        ("n1", "air_temp_c", t, t + 9000, "again"), ("n1", "air_rh_pct", t + 600, t + 1200, "humidity"),
        ("n2", "air_temp_c", t + 600, t + 9000, "n2's"), ("n1", "air_temp_c", t + 20000, t + 21000, "later")]


def test_the_week_leaves_out_the_flags_and_events_the_analytics_withdrew(platform_factory):
    """A `qc` or `anomaly` point the analytics no longer stands by is written again with flag 0 or score 0
    (`rimba.lineproto.withdrawal`): the report shows what stands, nothing else."""
    from analytics import quality, weekly
    from rimba import lineproto

    p = platform_factory({"wk-01": ("smp29", "forest")})
    until = 1764262800  # 2025-11-28 00:00 WIB
    hours = range(until - 7 * 86400, until, 3600)
    readings = [lineproto.reading("smp29", "wk-01", f"air_temp_c={27.0 + (t // 3600) % 5!r}", k, False, None, t)
                for k, t in enumerate(hours)]
    tags = {"site": "smp29", "node": "wk-01", "metric": "air_temp_c"}
    points = [lineproto.line("anomaly", {**tags, "kind": "level", "severity": "warning"},
                             {"score": 0.8, "value": 33.0, "end": t + 3600, "message": m}, t * 1000)
              for t, m in ((until - 86400, "stands"), (until - 2 * 86400, "withdrawn"))]
    points += [lineproto.line("qc", {**tags, "check": "spike"}, {"flag": quality.SPIKE, "value": 33.0}, t * 1000)
               for t in (until - 86400, until - 2 * 86400)]
    points += [lineproto.withdrawal("anomaly", {**tags, "kind": "level", "severity": "warning"}, until - 2 * 86400),
               lineproto.withdrawal("qc", {**tags, "check": "spike"}, until - 2 * 86400)]
    p.influx.write(("\n".join(readings + points) + "\n").encode())
    week = weekly.gather(p.settings, "smp29", 7, until=until)
    assert [e["message"] for e in week.events] == ["stands"]
    assert [r["time"] for r in week.flags] == [until - 86400]


def test_report_cli_errors_are_one_line(filled, tmp_path):
    p, _now = filled
    env = env_for(p.values)
    for args, says in ((["--site", "nowhere"], "sites are"), (["--site", "smp29", "--lang", "fr"], "choose id"),
                       (["--site", "smp29", "--days", "0"], "choose 1 to 62")):
        r = subprocess.run([sys.executable, "-m", "rimba", "report", *args, "--out", str(tmp_path)], env=env,
                           capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize(("values", "has", "lacks"), [
    ({}, ["dbName: rimba"], ["secureJsonData"]),
    ({"influx_token": "s3cret-token"}, ["httpHeaderName1: Authorization", "Token ${RIMBA_INFLUX_TOKEN}"],
     ["s3cret-token"]),
    ({"influx_user": "grafana", "influx_password": "s3cret-pass"}, ["user: grafana", "${RIMBA_INFLUX_PASSWORD}"],
     ["s3cret-pass"]),
])
def test_the_data_source_speaks_influxql_to_1x_2x_and_3x_without_secrets_in_the_bundle(tmp_path, values, has, lacks):
    s = settings_mod.build(overrides=values, env={})
    files = build.write_bundle(s, load_fleet(ROOT / "fleet.toml"), tmp_path)
    text = "".join((tmp_path / f).read_text() for f in files)
    ds = (tmp_path / "provisioning/datasources/rimba.yaml").read_text()
    assert "type: influxdb" in ds and all(h in ds for h in has)
    assert not any(x in text for x in lacks)
    assert yaml.safe_load(ds)["datasources"][0]["uid"] == build.DATASOURCE.uid
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/rimba.yaml").read_text())
    assert {p["folder"] for p in provider["providers"]} == {"Rimba", "Rimba public"}
