"""The one table of measurements (contract v1, "Metric names"), the derived fields of the `index`
measurement with their units and labels, and the scales they are read on (ISPU, fire danger).

A module that needs a metric's or a derived field's name, unit, label, range or resolution takes it from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    low: float
    high: float
    label_en: str
    label_id: str
    dec: int = 0  # wire v2: values travel as integers in steps of 10 ** -dec
    # the largest plausible change between two samples a few minutes apart, and the offset from the site's
    # other nodes over a day that is a sensor's drift, not the place (None: not judged so): the quality
    # checks' defaults (analytics.quality.Limits) and the scale of the simulator's spikes and drifts
    step: float | None = None
    drift: float | None = None

    def in_range(self, value: float) -> bool:
        return self.low <= value <= self.high


_TABLE = (
    Metric("air_temp_c", "°C", -40, 85, "Air temperature", "Suhu udara", dec=2, step=4.0, drift=1.5),
    Metric("air_rh_pct", "%", 0, 100, "Relative humidity", "Kelembapan udara", dec=1, step=20.0, drift=8.0),
    Metric("air_pressure_hpa", "hPa", 300, 1100, "Air pressure", "Tekanan udara", dec=1, step=3.0, drift=2.0),
    Metric("soil_temp_c", "°C", -40, 85, "Soil temperature", "Suhu tanah", dec=2, step=2.0, drift=1.5),
    Metric("soil_vwc_pct", "%", 0, 100, "Soil moisture", "Kelembapan tanah", dec=1, step=10.0, drift=8.0),
    Metric("pm1_ugm3", "µg/m³", 0, 2000, "PM1", "PM1", dec=1, step=150.0, drift=10.0),
    Metric("pm25_ugm3", "µg/m³", 0, 2000, "PM2.5", "PM2.5", dec=1, step=200.0, drift=15.0),
    Metric("pm10_ugm3", "µg/m³", 0, 2000, "PM10", "PM10", dec=1, step=300.0, drift=25.0),
    Metric("co2_ppm", "ppm", 0, 40000, "CO₂", "CO₂", dec=0, step=400.0),
    Metric("light_lux", "lx", 0, 200000, "Light", "Cahaya", dec=0),
    Metric("rain_mm", "mm", 0, 500, "Rain", "Hujan", dec=3),
    Metric("water_level_cm", "cm", -1000, 5000, "River level", "Tinggi muka air", dec=1, step=50.0, drift=20.0),
    Metric("water_temp_c", "°C", -5, 60, "Water temperature", "Suhu air", dec=2, step=2.0, drift=1.0),
    Metric("batt_v", "V", 0, 6, "Battery", "Baterai", dec=3, step=0.4),
    Metric("rssi_dbm", "dBm", -127, 0, "Signal", "Sinyal", dec=0, step=40.0),
)

METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}
"""Metric name → definition, in the contract's order."""


@dataclass(frozen=True)
class Derived:
    """A field the analytics computes and stores in the `index` measurement (not a measurement)."""

    name: str
    unit: str  # "" for an index or a class without a unit
    label_en: str
    label_id: str
    source: str  # where its definition comes from


_DERIVED = (
    Derived("dew_point_c", "°C", "Dew point", "Titik embun", "Magnus formula (Alduchov and Eskridge 1996)"),
    Derived("heat_index_c", "°C", "Heat index", "Indeks panas", "US NWS heat index (Rothfusz 1990, NWS SR 90-23)"),
    Derived("humidex", "°C", "Humidex", "Humidex", "Masterton and Richardson 1979 (Environment Canada)"),
    Derived("pm25_corr_ugm3", "µg/m³", "PM2.5, humidity-corrected", "PM2.5 terkoreksi kelembapan",
            "US EPA correction for PurpleAir (Barkjohn et al. 2021), fitted in the US"),
    Derived("pm_correction", "", "PM correction applied", "Koreksi PM yang dipakai",
            "the correction's name, stored beside the corrected value (analytics.indices)"),
    Derived("ispu_pm25", "", "ISPU (PM2.5)", "ISPU (PM2.5)", "Permen LHK P.14/2020"),
    Derived("ispu_pm10", "", "ISPU (PM10)", "ISPU (PM10)", "Permen LHK P.14/2020"),
    Derived("ffmc", "", "Fine fuel moisture code", "Kode kelembapan bahan halus", "Van Wagner 1987"),
    Derived("dmc", "", "Duff moisture code", "Kode kelembapan lapisan duff", "Van Wagner 1987"),
    Derived("dc", "", "Drought code", "Kode kekeringan", "Van Wagner 1987"),
    Derived("isi", "", "Initial spread index", "Indeks penyebaran awal", "Van Wagner 1987"),
    Derived("bui", "", "Buildup index", "Indeks bahan bakar tersedia", "Van Wagner 1987"),
    Derived("fwi", "", "Fire weather index", "Indeks cuaca kebakaran", "Van Wagner 1987"),
    Derived("fwi_class", "", "Fire danger class", "Kelas bahaya kebakaran", "ASEAN SEA-FDRS classes"),
    Derived("batt_days_left", "d", "Battery days left", "Sisa hari baterai", "the battery's trend (analytics)"),
)

DERIVED: dict[str, Derived] = {d.name: d for d in _DERIVED}
"""Derived field name → definition: the one table of the `index` measurement's fields."""


# The scales the derived indices are read on, for the analytics and the pages alike.
# ISPU categories (Permen LHK P.14/MENLHK/SETJEN/KUM.1/7/2020, Indeks Standar Pencemar Udara):
# (upper bound, Indonesian name, English name, colour name, hex colour)
ISPU_CATEGORIES = (
    (50, "Baik", "Good", "hijau", "#2E9E44"),
    (100, "Sedang", "Moderate", "biru", "#1F6FD1"),
    (200, "Tidak Sehat", "Unhealthy", "kuning", "#F2C200"),
    (300, "Sangat Tidak Sehat", "Very unhealthy", "merah", "#D62728"),
    (float("inf"), "Berbahaya", "Hazardous", "hitam", "#000000"),
)
# Fire danger classes, in the order of the analytics' class numbers 0-3 (ASEAN SEA-FDRS: Rendah, Sedang,
# Tinggi, Ekstrem): (Indonesian name, English name, colour name)
FWI_CLASSES = (("Rendah", "Low", "biru"), ("Sedang", "Moderate", "hijau"), ("Tinggi", "High", "kuning"),
               ("Ekstrem", "Extreme", "merah"))


def unit(name: str) -> str:
    """The unit of a measurement or a derived field (KeyError for neither)."""
    return METRICS[name].unit if name in METRICS else DERIVED[name].unit
