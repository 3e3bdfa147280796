"""The committed dashboards as Grafana 11.3 itself would read them, without a Grafana server: its dashboard types
(@grafana/schema, type-checked by tsc), its unit registry, interval, transformations and colour rules
(@grafana/data, run in node), its InfluxDB annotation migration, and Rimba's own rules: one language a page, every
GROUP BY on tags, a minimum interval on every time series, an alias on every stat. What the panels draw from real
data is tests/test_dashboards.py's strict check."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from rimba.metrics import ISPU_CATEGORIES
from dashboards import build, panels
from dashboards.words import WORDS
from rimba import lineproto
from rimba.fleet import load_fleet
from rimba.metrics import METRICS
from tests import grafana_like as g
from rimba.dev.harness import ROOT

BUNDLE = ROOT / "dashboards" / "bundle"
PAGES = {p.stem: json.loads(p.read_text()) for p in sorted(BUNDLE.glob("dashboards/*/*.json"))}
PUBLIC = set(json.loads((BUNDLE / "public-dashboards.json").read_text())["public"])
# Tags of each measurement (everything else is a field). The contract's table in docs/contract.md for what ingest
# writes; the analytics' own from analytics/data.py and analyze.py; tests/test_dashboards.py checks both tables
# against SHOW TAG KEYS of a real database.
ANALYTICS_TAGS = {"qc": {"site", "node", "metric", "check"}, "anomaly": {"site", "node", "metric", "kind", "severity"},
                  "index": {"site", "node"}, "alert": {"site", "node", "rule", "metric", "severity"}}


def contract_tags() -> dict:
    """The storage table of docs/contract.md: measurement -> tags."""
    text = (ROOT / "docs" / "contract.md").read_text()
    out = {}
    for m, tags in re.findall(r"^\| `(\w+)` \| ([a-z, ]+) \|", text, re.MULTILINE):
        out[m] = {t.strip() for t in tags.split(",")}
    return out


TAGS = {**contract_tags(), **ANALYTICS_TAGS}


def _panels(model):
    return model["panels"]


def _influx_targets(panel):
    return [t for t in panel["targets"] if "query" in t]


# --- Grafana's types ----------------------------------------------------------------------------------------------


def test_every_dashboard_type_checks_against_grafanas_schema(tmp_path):
    """tsc --strict over each dashboard as a `RimbaDashboard` literal (tests/grafana/rimba-dashboard.ts)."""
    files = {f"{uid.replace('-', '_')}.ts": g.dashboard_ts(model) for uid, model in PAGES.items()}
    r = g.tsc(files, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_type_check_rejects_what_grafana_would_not_take(tmp_path):
    """A table's `options: null`, the old `style` key, an annotation without its target's query, an unknown enum
    value: each one alone makes tsc fail, so the check above can fail."""
    overview = PAGES["rimba-overview"]
    table = next(i for i, p in enumerate(overview["panels"]) if p["type"] == "table")
    stat = next(i for i, p in enumerate(overview["panels"]) if p["type"] == "stat")
    breakages = {
        "null_options": lambda m: m["panels"][table].__setitem__("options", None),
        "style": lambda m: m.__setitem__("style", "dark"),
        "old_annotation": lambda m: m["annotations"]["list"][0].__setitem__("target", None) or
        m["annotations"]["list"][0].__setitem__("query", "SELECT 1"),
        "enum": lambda m: m["panels"][stat]["options"].__setitem__("colorMode", "background-solid"),
    }
    for name, breaks in breakages.items():
        model = json.loads(json.dumps(overview))
        breaks(model)
        r = g.tsc({f"{name}.ts": g.dashboard_ts(model)}, tmp_path)
        assert r.returncode != 0 and f"{name}.ts" in r.stdout, (name, r.stdout)
        (tmp_path / f"{name}.ts").unlink()


# --- units ----------------------------------------------------------------------------------------------------------


def _units(model) -> set:
    out = set()
    for p in _panels(model):
        out.add(p["fieldConfig"]["defaults"].get("unit", "none"))
        for o in p["fieldConfig"].get("overrides", []):
            out |= {prop["value"] for prop in o["properties"] if prop["id"] == "unit"}
    return out


def test_every_unit_is_a_grafana_unit_id():
    """The table in dashboards/panels.py against @grafana/data's registry: each id is one Grafana lists, or its
    custom form `suffix:`; and Grafana prints 312 in it without the id itself (the symptom of an unknown id)."""
    used = set().union(*(_units(m) for m in PAGES.values()))
    table = set(panels.GRAFANA_UNITS.values()) | {panels.COUNT, panels.INDEX}
    assert used <= table, used - table
    answer = g.grafana({"units": sorted(table | {"lengthcm", "con\u00b5gm3"})})
    registry = set(answer["registry"])
    assert len(registry) > 200 and "celsius" in registry
    # the issue's two: not in the registry, and printed as the id
    assert answer["printed"]["lengthcm"] == "312 lengthcm" and "lengthcm" not in registry
    assert "con\u00b5gm3" not in registry and "con\u03bcgm3" in registry
    for unit in table:
        assert unit in registry or unit.startswith("suffix:"), f"{unit!r} is not a Grafana unit id"
    assert answer["printed"]["suffix:cm"] == "312 cm" and answer["printed"][panels.unit_of("pm25_ugm3")] == "312 μg/m³"
    for metric in METRICS.values():  # every measurement has its Grafana unit
        assert panels.unit_of(metric.name) in table


# --- $__interval ----------------------------------------------------------------------------------------------------


def test_our_interval_is_grafanas():
    """tests/grafana_like.calculate_interval against @grafana/data's rangeutil.calculateInterval."""
    cases = [[span, points, low] for span in (3600_000, 86400_000, 3 * 86400_000, 7 * 86400_000, 30 * 86400_000)
             for points in (120, 374, 500, 774, 1572, 3000) for low in (None, "10s", "1m", "10m", "1h")]
    theirs = g.grafana({"intervals": cases})["intervals"]
    for (span, points, low), t in zip(cases, theirs, strict=True):
        assert g.calculate_interval(span, points, low) == (t["intervalMs"], t["interval"]), (span, points, low)


def test_the_issues_figures_without_a_minimum_interval():
    """What the issue saw on a 1920 px screen: a half-width 24-hour panel gets 2m, a full-width 7-day one 5m."""
    desktop = g.SCREENS[2]
    assert g.calculate_interval(86400_000, g.panel_width(12, desktop), None)[1] == "2m"
    assert g.calculate_interval(7 * 86400_000, g.panel_width(24, desktop), None)[1] == "5m"


def test_every_time_series_has_the_datas_cadence_as_its_minimum_interval():
    fleet = load_fleet(ROOT / "fleet.toml")
    cadence = max(n.cadence_s for n in fleet.nodes.values())
    for uid, model in PAGES.items():
        for p in _panels(model):
            if p["type"] in ("timeseries", "stat"):
                assert p.get("interval"), f"{uid} / {p['title']}: no minimum interval"
                floor = g.interval_to_ms(p["interval"]) / 1000
                reads = any('FROM "reading"' in t["query"] or 'FROM "index"' in t["query"]
                            for t in _influx_targets(p))
                assert not reads or floor >= cadence, f"{uid} / {p['title']}: {p['interval']} < the cadence"
            if p["type"] == "timeseries":
                assert p["fieldConfig"]["defaults"]["custom"]["showPoints"] != "never", p["title"]
                for t in _influx_targets(p):
                    assert "GROUP BY time($__interval)" in t["query"] and re.search(r"fill\((null|none)\)",
                                                                                      t["query"]), t["query"]


# --- queries: aliases, GROUP BY on tags ----------------------------------------------------------------------------


def test_every_stat_names_its_value():
    for uid, model in PAGES.items():
        for p in _panels(model):
            if p["type"] == "stat":
                assert all(t.get("alias") for t in p["targets"]), f"{uid} / {p['title']}: no alias"
            if p["type"] == "timeseries":
                assert all(t.get("alias") for t in p["targets"]), f"{uid} / {p['title']}: no alias"


def group_by_keys(query: str) -> list:
    """(measurement, key) for every key of every GROUP BY, inner queries included, with the measurement the
    GROUP BY groups (the innermost FROM before it)."""
    out = []
    for m in re.finditer(r"GROUP BY ((?:time\([^)]*\)|\"[^\"]+\"|\s|,)+)", query):
        before = query[:m.start()]
        measurement = re.findall(r'FROM "(\w+)"', before)[-1] if re.findall(r'FROM "(\w+)"', before) else None
        if before.rstrip().endswith(")") and before.count("(") - before.count(")") <= 0:
            # a GROUP BY after a subquery: its keys are the subquery's groups
            measurement = re.findall(r'FROM "(\w+)"', before)[0]
        for key in re.findall(r'"([^"]+)"', m.group(1)):
            out.append((measurement, key))
    return out


def test_every_group_by_names_tags_never_fields():
    """InfluxDB ignores a field in GROUP BY without a word: the table comes back grouped by less than it says."""
    assert {"reading", "node_status", "gap", "ingest"} <= set(TAGS)
    assert group_by_keys('SELECT x FROM "gap" WHERE $timeFilter GROUP BY "node", "reason"') == [("gap", "node"),
                                                                                              ("gap", "reason")]
    for uid, model in PAGES.items():
        for name, _ref, q in build.queries(model):
            for measurement, key in group_by_keys(q):
                assert key in TAGS[measurement], f"{uid} / {name}: GROUP BY {key!r}, a field of {measurement}"


def anded(condition: str, query: str) -> bool:
    """Whether `condition` is one of the query's WHERE conditions joined by AND (not an OR's side)."""
    where = re.search(r"WHERE (.*?)(?: GROUP BY |\)|$)", query)
    return bool(where) and " OR " not in where.group(1) and condition in where.group(1).split(" AND ")


def test_every_query_of_flags_or_events_keeps_only_what_stands():
    """A flag or an event the analytics withdrew is still a point, with flag 0 or score 0
    (`rimba.lineproto.withdrawal`): every panel and annotation reading them keeps `lineproto.LIVE`."""
    assert anded('"flag" > 0', 'SELECT x FROM "qc" WHERE "site" = \'a\' AND "flag" > 0 AND $timeFilter GROUP BY "node"')
    assert not anded('"flag" > 0', 'SELECT x FROM "qc" WHERE "site" = \'a\' OR "flag" > 0 AND $timeFilter')
    seen = set()
    for uid, model in PAGES.items():
        for name, _ref, q in build.queries(model):
            for measurement in re.findall(r'FROM "?(qc|anomaly|maintenance)\b', q):
                seen.add(measurement)
                assert anded(lineproto.LIVE[measurement], q), f"{uid} / {name}: {q}"
    assert seen == {"qc", "anomaly", "maintenance"}


def test_every_query_of_a_derived_value_keeps_only_the_values_that_stand():
    """A derived value whose input was later found unfit is written again as `lineproto.WITHDRAWN_VALUE`: every
    query of a field `analyze.derive` computes keeps `lineproto.live_value(field)`, so no mean or maximum takes it."""
    import numpy as np

    from analytics.analyze import derive
    from analytics.data import Cube

    metrics = tuple(METRICS)
    cube = Cube(["n"], ["s"], np.arange(300) * 600, metrics, np.full((1, 300, len(metrics)), 20.0))
    fields, seen = set(derive(cube, 600)), set()
    assert {"heat_index_c", "ispu_pm25", "pm25_corr_ugm3"} <= fields
    for uid, model in PAGES.items():
        for name, _ref, q in build.queries(model):
            if 'FROM "index"' not in q:
                continue
            for field in set(re.findall(r'"(\w+)"', q)) & fields:  # selected, aggregated or not
                seen.add(field)
                assert anded(lineproto.live_value(field), q), f"{uid} / {name}: {q}"
    assert {"heat_index_c", "ispu_pm25"} <= seen


# --- annotations ----------------------------------------------------------------------------------------------------


def prepare_annotation(annotation: dict) -> dict:
    """The InfluxDB plugin's migration (public/app/plugins/datasource/influxdb/migrations.ts, prepareAnnotation):
    a target without a query is rebuilt from the legacy top-level keys; no target at all stays no target."""
    a = json.loads(json.dumps(annotation))
    target = a.get("target")
    if target and not target.get("query"):
        a["target"] = {"query": a.get("query", ""), "queryType": "tags", "fromAnnotations": True,
                       "tagsColumn": a.get("tagsColumn", ""), "textColumn": a.get("textColumn", ""),
                       "timeEndColumn": a.get("timeEndColumn", ""), "titleColumn": a.get("titleColumn", ""),
                       "name": a.get("name", ""), "limit": target.get("limit"), "matchAny": target.get("matchAny"),
                       "tags": target.get("tags"), "type": target.get("type")}
    return a


def test_annotations_run_after_grafanas_migration():
    legacy = {"name": "x", "query": "SELECT 1", "textColumn": "message"}
    assert "target" not in prepare_annotation(legacy)  # the old form: nothing runs, no warning
    for uid, model in PAGES.items():
        for a in model.get("annotations", {}).get("list", []):
            migrated = prepare_annotation(a)
            t = migrated["target"]
            assert t["query"] and t["fromAnnotations"] and t["textColumn"], f"{uid} / {a['name']}"
            assert not {"query", "textColumn", "tagsColumn"} & set(a), f"{uid} / {a['name']}: legacy keys"


# --- no nulls -------------------------------------------------------------------------------------------------------


def test_no_panel_has_null_options_or_field_config():
    for uid, model in PAGES.items():
        for p in _panels(model):
            assert isinstance(p.get("options"), dict) and p["options"], f"{uid} / {p['title']}: options"
            assert isinstance(p.get("fieldConfig", {}).get("defaults"), dict), f"{uid} / {p['title']}"


# --- one language a page --------------------------------------------------------------------------------------------


def _strings(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _words_of(lang: str) -> set:
    """The phrases only this language uses: its page words, metric labels and category names."""
    w = WORDS[lang]
    phrases = set(_strings({k: v for k, v in w.items()})) | {m.label_id if lang == "id" else m.label_en
                                                            for m in METRICS.values()}
    phrases |= {c[1] if lang == "id" else c[2] for c in ISPU_CATEGORIES}
    return {p for p in phrases if p and len(p) > 3}


def _text(model) -> list:
    """Everything a reader sees: titles, descriptions, legends (aliases), mapped texts, column names."""
    out = [model["title"]]
    for p in _panels(model):
        out += [p.get("title", ""), p.get("description", "")]
        out += [t.get("alias", "") for t in p["targets"]]
        out += list(_strings(p["fieldConfig"]["defaults"].get("mappings", [])))
        for step in p.get("transformations", []):
            out += list(step["options"].get("renameByName", {}).values())
    out += [a["name"] for a in model.get("annotations", {}).get("list", [])]
    return [t for t in out if t]


@pytest.mark.parametrize("uid", sorted(PAGES))
def test_each_page_speaks_one_language(uid):
    model = PAGES[uid]
    lang = next((t for t in model["tags"] if t in ("id", "en")), None)
    assert lang, f"{uid}: the page does not say its language in its tags"
    other = "en" if lang == "id" else "id"
    foreign = _words_of(other) - _words_of(lang)
    seen = "\n".join(_text(model))
    borrowed = sorted(p for p in foreign if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", seen))
    assert not borrowed, f"{uid} ({lang}) uses {other} words: {borrowed}"
    if lang == "id":
        assert "Fire Weather Index" not in json.dumps(model)
    assert build.FLEET_LANG in PAGES["rimba-fleet"]["tags"] and build.OVERVIEW_LANG in PAGES["rimba-overview"]["tags"]


# --- colours --------------------------------------------------------------------------------------------------------


def _rgb(colour: str) -> tuple:
    m = re.fullmatch(r"#([0-9a-fA-F]{6})", colour) or pytest.fail(f"{colour} is not #rrggbb")
    return tuple(int(m.group(1)[i:i + 2], 16) for i in (0, 2, 4))


def grafana_text_on(background: str) -> tuple:
    """The text colour Grafana puts on a solid background (grafana-ui utils/colors.ts,
    getTextColorForAlphaBackground; tinycolor's brightness), on either theme for an opaque colour."""
    r, gr, b = _rgb(background)
    brightness = (r * 299 + gr * 587 + b * 114) / 1000
    return (32, 34, 38) if brightness > 180 else (247, 248, 250)


def contrast(a: tuple, b: tuple) -> float:
    """WCAG 2.1 contrast ratio."""
    def lum(c):
        ch = [x / 255 for x in c]
        ch = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_category_colours_read_on_both_themes():
    """Every coloured number (ISPU, fire danger) has its official colour as a solid background and Grafana's
    contrasting text on it: at least 3:1, WCAG 2.1 AA for large text (a stat's value is), whatever the theme.
    Black as the text colour on the dark theme was unreadable."""
    coloured = 0
    for uid, model in PAGES.items():
        for p in _panels(model):
            mapped = [r for m in p["fieldConfig"]["defaults"].get("mappings", [])
                      for r in ([m["options"]["result"]] if m["type"] == "range" else m["options"].values())]
            if p["type"] != "stat" or not mapped:
                continue
            coloured += 1
            assert p["options"]["colorMode"] == "background_solid", f"{uid} / {p['title']}"
            for r in mapped:
                ratio = contrast(_rgb(r["color"]), grafana_text_on(r["color"]))
                assert ratio >= 3.0, f"{uid} / {p['title']}: {r['text']} {r['color']} {ratio:.1f}:1"
    assert coloured >= 3 * len(PAGES) - 6


# --- public pages ---------------------------------------------------------------------------------------------------


def test_public_pages_are_what_public_dashboards_can_serve():
    """Grafana's public dashboards run a dashboard's stored panel queries and nothing else: no template variables,
    no mixed or dashboard data sources. Only the site pages are public."""
    assert PUBLIC == {uid for uid in PAGES if uid.startswith("rimba-site-")}
    for uid in PUBLIC:
        model = PAGES[uid]
        assert not model.get("templating", {}).get("list")
        for p in _panels(model):
            assert p["datasource"]["uid"] == panels.DATASOURCE_UID
            assert all(t["datasource"]["uid"] == panels.DATASOURCE_UID for t in p["targets"])


# --- last heard from ------------------------------------------------------------------------------------------------


def test_last_heard_from_keeps_every_fleet_node_the_silent_first():
    """Grafana's own transformations (@grafana/data) over what InfluxDB returns for two nodes: every node of the
    fleet file is a row, the never-heard first, then the longest silent."""
    fleet = load_fleet(ROOT / "fleet.toml")
    p = next(p for p in PAGES["rimba-overview"]["panels"] if p["title"] == WORDS["id"]["heard"])
    snapshot = next(t for t in p["targets"] if t.get("queryType") == "snapshot")["snapshot"]
    heard = {"series": [{"name": "reading", "tags": {"node": "smp29-02"}, "columns": ["time", "seq"],
                         "values": [[1_700_000_000_000, 4]]},
                        {"name": "reading", "tags": {"node": "smp29-01"}, "columns": ["time", "seq"],
                         "values": [[1_600_000_000_000, 9]]}]}
    rows = g.grafana({"transform": {"frames": g.frames([heard], table=True) + snapshot,
                                    "steps": p["transformations"]}})["transformed"]
    assert len(rows) == 1
    table = rows[0]
    col = WORDS["id"]["col"]
    assert sorted(table[col["node"]]) == sorted(fleet.nodes)
    times = table[col["heard"]]
    assert table[col["node"]][-2:] == ["smp29-01", "smp29-02"] and all(t is None for t in times[:-2])
    assert set(table) == {col["heard"], col["node"], col["site"], col["profile"]}


def test_layout_has_no_overlap():
    for uid, model in PAGES.items():
        cells = set()
        for p in _panels(model):
            gp = p["gridPos"]
            mine = set(itertools.product(range(gp["x"], gp["x"] + gp["w"]), range(gp["y"], gp["y"] + gp["h"])))
            assert not cells & mine and gp["x"] + gp["w"] <= 24, f"{uid} / {p['title']}"
            cells |= mine
