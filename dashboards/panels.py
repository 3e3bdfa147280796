"""Building blocks for Rimba's Grafana dashboards: InfluxQL queries, words in two languages, panels.

Dashboards are built with grafana-foundation-sdk's typed builders. The SDK has no InfluxDB query type,
so `InfluxQL` is ours: a raw InfluxQL target as Grafana's InfluxDB data source stores it (`query`,
`rawQuery`, `resultFormat`). Queries use Grafana's `$timeFilter` and `$__interval` macros; every one
of them is run against a real InfluxDB by the tests.
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

from analytics.fwi import CLASS_NAMES
from analytics.indices import ISPU_CATEGORIES
from rimba.metrics import METRICS

DATASOURCE_UID = "rimba-influxdb"
DATASOURCE = mdash.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
FWI_COLOURS = {"biru": "blue", "hijau": "green", "kuning": "yellow", "merah": "red"}


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


class Query(cogbuilder.Builder[InfluxQL]):
    def __init__(self, ref_id: str, query: str, result_format: str = "time_series", alias: str | None = None):
        self._q = InfluxQL(ref_id, query, result_format, alias)

    def build(self) -> InfluxQL:
        return self._q


# Words on the pages. Metric labels come from the measurement table (label_en, label_id).
WORDS = {
    "id": {
        "now": "Sekarang", "day": "24 jam terakhir", "week": "7 hari terakhir", "heat_index": "Indeks panas",
        "heat_help": "Seberapa panas terasa di tubuh: suhu udara ditambah pengaruh kelembapan (NWS).",
        "ispu": "ISPU PM2.5", "ispu_help": "Indeks Standar Pencemar Udara dari rata-rata PM2.5 24 jam "
        "(Permen LHK P.14/2020): Baik, Sedang, Tidak Sehat, Sangat Tidak Sehat, Berbahaya.",
        "fire": "Bahaya kebakaran", "fire_help": "Kelas Fire Weather Index (SPBK BMKG): Rendah, Sedang, Tinggi, "
        "Ekstrem. Dihitung dari cuaca pukul 12.00 WIB di bawah kanopi (mikroklimat).",
        "rain": "Hujan 24 jam", "flagged": "ditandai", "temp_help": "Suhu udara di hutan sekolah.",
        "rh_help": "Kelembapan udara relatif.", "river_help": "Tinggi muka air Sungai Kapuas di atas datum lokasi.",
        "site_title": "{name}", "flag_note": "Titik merah: bacaan yang ditandai pemeriksaan mutu data.",
    },
    "en": {
        "now": "Now", "day": "Last 24 hours", "week": "Last 7 days", "heat_index": "Heat index",
        "heat_help": "How hot it feels: air temperature plus the effect of humidity (NWS).",
        "ispu": "ISPU PM2.5", "ispu_help": "Indonesia's air pollution index from the 24-hour mean of PM2.5 "
        "(Permen LHK P.14/2020): Good, Moderate, Unhealthy, Very unhealthy, Hazardous.",
        "fire": "Fire danger", "fire_help": "Fire Weather Index class (BMKG's FDRS): Low, Moderate, High, Extreme. "
        "From the 12:00 WIB weather under the canopy (microclimate).",
        "rain": "Rain, 24 h", "flagged": "flagged", "temp_help": "Air temperature in the school forest.",
        "rh_help": "Relative humidity of the air.", "river_help": "Kapuas river level above the site's datum.",
        "site_title": "{name}", "flag_note": "Red dots: readings flagged by the data-quality checks.",
    },
}


def label(metric: str, lang: str) -> str:
    m = METRICS[metric]
    return m.label_id if lang == "id" else m.label_en


def unit_of(metric: str) -> str:
    """Grafana's unit id for a measurement-table unit."""
    return {"°C": "celsius", "%": "percent", "hPa": "pressurehpa", "µg/m³": "conµgm3", "ppm": "ppm", "lx": "lux",
            "mm": "lengthmm", "cm": "lengthcm", "V": "volt", "dBm": "dBm"}.get(METRICS[metric].unit, "none")


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
               for i, names in enumerate(CLASS_NAMES)}
    return [mdash.ValueMap(options=options)]


def last_value(stat_title: str, query: str, unit: str, description: str, decimals: int = 1) -> stat.Panel:
    return (stat.Panel().title(stat_title).description(description).datasource(DATASOURCE)
            .with_target(Query("A", query)).unit(unit).decimals(decimals)
            .reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(mcommon.BigValueColorMode.VALUE).graph_mode(mcommon.BigValueGraphMode.AREA)
            .text_mode(mcommon.BigValueTextMode.VALUE_AND_NAME))


def series(title: str, queries: list, unit: str, description: str = "", flagged_ref: str | None = None):
    """A time series that shows gaps as gaps; a flagged-readings query drawn as red points."""
    p = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
         .span_nulls(False).line_width(1).fill_opacity(8).show_points(mcommon.VisibilityMode.NEVER)
         .legend(gcommon.VizLegendOptions().display_mode(mcommon.LegendDisplayMode.LIST)
                 .placement(mcommon.LegendPlacement.BOTTOM).show_legend(True)))
    for q in queries:
        p = p.with_target(q)
    if flagged_ref:
        p = p.override_by_query(flagged_ref, [
            mdash.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
            mdash.DynamicConfigValue(id_val="custom.pointSize", value=7),
            mdash.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])
    return p


def grid_table(title: str, queries: list, description: str = "") -> table.Panel:
    p = table.Panel().title(title).description(description).datasource(DATASOURCE)
    for q in queries:
        p = p.with_target(q)
    return p
