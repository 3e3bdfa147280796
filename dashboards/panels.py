"""Building blocks for Rimba's Grafana dashboards: InfluxQL queries, Grafana's unit ids, panels.

Dashboards are built with grafana-foundation-sdk's typed builders. The SDK has no InfluxDB query type,
so `InfluxQL` is ours: a raw InfluxQL target as Grafana's InfluxDB data source stores it (`query`,
`rawQuery`, `resultFormat`, `alias`). Queries use Grafana's `$timeFilter` and `$__interval` macros; the
tests expand them as Grafana 11 does (tests/grafana_like.py) and run them against a real InfluxDB.

What a panel draws depends on more than its query, so these builders fix it for every panel:
- a time series has a minimum interval (`interval`, the data's cadence): Grafana's `$__interval` is the
  time range over the panel's width in pixels, rounded, never below it. Without it a 24-hour chart on a
  wide screen gets 2-minute buckets for 10-minute data, and a line of one value between empty buckets
  is not drawn at all;
- points are shown where a series is sparse (`showPoints: auto` draws a value with no neighbour);
- a stat names its value (`alias`), never Grafana's `measurement.function`;
- every unit is one of Grafana's unit ids (`GRAFANA_UNITS`), checked against `@grafana/data`.
"""

from __future__ import annotations

import itertools

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as mcommon
from grafana_foundation_sdk.models import dashboard as mdash

from rimba import metrics
from rimba.metrics import FWI_CLASSES, ISPU_CATEGORIES, METRICS

DATASOURCE_UID = "rimba-influxdb"
DATASOURCE = mdash.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
MIXED = mdash.DataSourceRef(type_val="datasource", uid="-- Mixed --")
GRAFANA_DS = {"type": "grafana", "uid": "grafana"}  # Grafana's built-in data source (snapshot frames)
# Fire danger classes (SEA-FDRS: blue, green, yellow, red), as fixed colours so that both themes show the same
# background; these are Grafana's own palette values (packages/grafana-data/src/themes/palette.ts)
FWI_COLOURS = {"biru": "#1F60C4", "hijau": "#37872D", "kuning": "#F2CC0C", "merah": "#C4162A"}

# Measurement-table unit -> Grafana unit id. Grafana's ids are the `value`s of the categories in
# @grafana/data's valueFormats (packages/grafana-data/src/valueFormats/categories.ts); an id it does not
# know is printed as it is ("312 lengthcm"). Grafana 11.3 has no centimetre, so the river level uses
# Grafana's custom-unit form `suffix:<text>`. µg/m³ is `conμgm3` with U+03BC (Greek mu), not U+00B5.
GRAFANA_UNITS = {
    "°C": "celsius", "%": "percent", "hPa": "pressurehpa", "µg/m³": "con\u03bcgm3", "ppm": "ppm", "lx": "lux",
    "mm": "lengthmm", "cm": "suffix:cm", "V": "volt", "dBm": "dBm", "s": "s", "d": "d", "": "none",
}
COUNT = "short"  # a plain number (counters, nodes)
INDEX = "none"  # an index without a unit (ISPU, fire danger class)


class InfluxQL(cogvariants.Dataquery):
    """One raw InfluxQL target."""

    def __init__(self, ref_id: str, query: str, result_format: str = "time_series", alias: str | None = None):
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict:
        out = {"refId": self.ref_id, "datasource": {"type": "influxdb", "uid": DATASOURCE_UID},
               "query": self.query, "rawQuery": True, "resultFormat": self.result_format}
        if self.alias:
            out["alias"] = self.alias
        return out


class Snapshot(cogvariants.Dataquery):
    """A fixed table carried in the dashboard (the built-in data source's `snapshot` query, a DataFrameJSON):
    columns of strings or of numbers."""

    def __init__(self, ref_id: str, columns: dict):
        self.ref_id = ref_id
        self.columns = columns

    def to_json(self) -> dict:
        frame = {"schema": {"refId": self.ref_id, "fields": [
            {"name": k, "type": "number" if all(isinstance(x, int | float) for x in v) else "string"}
            for k, v in self.columns.items()]},
                 "data": {"values": [list(v) for v in self.columns.values()]}}
        return {"refId": self.ref_id, "datasource": dict(GRAFANA_DS), "queryType": "snapshot", "snapshot": [frame]}


class Query(cogbuilder.Builder[InfluxQL]):
    def __init__(self, ref_id: str, query: str, result_format: str = "time_series", alias: str | None = None):
        self._q = InfluxQL(ref_id, query, result_format, alias)

    def build(self) -> InfluxQL:
        return self._q


class Fixed(cogbuilder.Builder[Snapshot]):
    def __init__(self, ref_id: str, columns: dict):
        self._q = Snapshot(ref_id, columns)

    def build(self) -> Snapshot:
        return self._q


def label(name: str, lang: str) -> str:
    """A measurement's or a derived field's label in `lang` (rimba/metrics.py; KeyError for neither)."""
    m = METRICS[name] if name in METRICS else metrics.DERIVED[name]
    return m.label_id if lang == "id" else m.label_en


def unit_of(name: str) -> str:
    """Grafana's unit id for a measurement's or a derived field's unit (rimba/metrics.py; KeyError for a unit
    the table does not know)."""
    return GRAFANA_UNITS[metrics.unit(name)]


def interval(seconds: int) -> str:
    """A panel's minimum interval in Grafana's notation (`600` -> `10m`)."""
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


def ispu_thresholds() -> gdash.ThresholdsConfig:
    """The category colours, changing where a rounded ISPU enters the next category."""
    steps = [mdash.Threshold(None, ISPU_CATEGORIES[0][4])]
    steps += [mdash.Threshold(prev[0] + 0.5, cat[4]) for prev, cat in itertools.pairwise(ISPU_CATEGORIES)]
    return gdash.ThresholdsConfig().mode(mdash.ThresholdsMode.ABSOLUTE).steps(steps)


def ispu_mappings(lang: str) -> list:
    """ISPU ranges to the official category names and colours."""
    out = []
    lower = 0.0
    for upper, name_id, name_en, _colour, hex_colour in ISPU_CATEGORIES:
        result = mdash.ValueMappingResult(text=name_id if lang == "id" else name_en, color=hex_colour)
        out.append(mdash.RangeMap(options=mdash.DashboardRangeMapOptions(
            from_val=lower, to=None if upper == float("inf") else upper + 0.4999, result=result)))
        lower = upper + 0.5
    return out


def fire_mappings(lang: str) -> list:
    options = {str(i): mdash.ValueMappingResult(text=names[0] if lang == "id" else names[1],
                                                color=FWI_COLOURS[names[2]], index=i)
               for i, names in enumerate(FWI_CLASSES)}
    return [mdash.ValueMap(options=options)]


def last_value(stat_title: str, query: str, unit: str, description: str, alias: str, every: str,
               decimals: int = 1, coloured: bool = False) -> stat.Panel:
    """A big number: the newest value of one query. `coloured`: the value's colour (threshold or mapping)
    as a solid background, Grafana then picks dark or light text by its brightness, on either theme."""
    return (stat.Panel().title(stat_title).description(description).datasource(DATASOURCE)
            .with_target(Query("A", query, alias=alias)).unit(unit).decimals(decimals).interval(every)
            .reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(mcommon.BigValueColorMode.BACKGROUND_SOLID if coloured else mcommon.BigValueColorMode.NONE)
            .graph_mode(mcommon.BigValueGraphMode.AREA).text_mode(mcommon.BigValueTextMode.VALUE))


def series(title: str, queries: list, unit: str, every: str, description: str = "", flagged_ref: str | None = None,
           bars: bool = False):
    """A time series that shows gaps as gaps, lone values as points; a flagged-readings query as red points."""
    p = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).interval(every)
         .span_nulls(False).line_width(1).fill_opacity(8).show_points(mcommon.VisibilityMode.AUTO)
         .legend(gcommon.VizLegendOptions().display_mode(mcommon.LegendDisplayMode.LIST)
                 .placement(mcommon.LegendPlacement.BOTTOM).show_legend(True)))
    if bars:
        p = p.draw_style(mcommon.GraphDrawStyle.BARS).fill_opacity(60)
    for q in queries:
        p = p.with_target(q)
    if flagged_ref:
        p = p.override_by_query(flagged_ref, [
            mdash.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
            mdash.DynamicConfigValue(id_val="custom.pointSize", value=7),
            mdash.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])
    return p


def grid_table(title: str, queries: list, description: str = "", rename: dict | None = None,
               transformations: list = (), datasource=DATASOURCE) -> table.Panel:
    """A table; `rename` gives its columns the page's words (Grafana's `organize` transformation)."""
    p = (table.Panel().title(title).description(description).datasource(datasource).show_header(True)
         .cell_height(mcommon.TableCellHeight.SM))
    for q in queries:
        p = p.with_target(q)
    steps = list(transformations)
    if rename:
        steps.append(mdash.DataTransformerConfig(id_val="organize", options={"renameByName": rename}))
    for step in steps:
        p = p.with_transformation(step)
    return p
