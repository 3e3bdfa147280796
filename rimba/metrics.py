"""The one table of measurements (wire contract v1, "Metric names").

Every module that needs a metric's name, unit or physical range imports it from
here; names are never retyped elsewhere.
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

    def in_range(self, value: float) -> bool:
        return self.low <= value <= self.high


_TABLE = (
    Metric("air_temp_c", "°C", -40, 85, "Air temperature", "Suhu udara", dec=2),
    Metric("air_rh_pct", "%", 0, 100, "Relative humidity", "Kelembapan udara", dec=1),
    Metric("air_pressure_hpa", "hPa", 300, 1100, "Air pressure", "Tekanan udara", dec=1),
    Metric("soil_temp_c", "°C", -40, 85, "Soil temperature", "Suhu tanah", dec=2),
    Metric("soil_vwc_pct", "%", 0, 100, "Soil moisture", "Kelembapan tanah", dec=1),
    Metric("pm1_ugm3", "µg/m³", 0, 2000, "PM1", "PM1", dec=1),
    Metric("pm25_ugm3", "µg/m³", 0, 2000, "PM2.5", "PM2.5", dec=1),
    Metric("pm10_ugm3", "µg/m³", 0, 2000, "PM10", "PM10", dec=1),
    Metric("co2_ppm", "ppm", 0, 40000, "CO₂", "CO₂", dec=0),
    Metric("light_lux", "lx", 0, 200000, "Light", "Cahaya", dec=0),
    Metric("rain_mm", "mm", 0, 500, "Rain", "Hujan", dec=3),
    Metric("water_level_cm", "cm", -1000, 5000, "River level", "Tinggi muka air", dec=1),
    Metric("water_temp_c", "°C", -5, 60, "Water temperature", "Suhu air", dec=2),
    Metric("batt_v", "V", 0, 6, "Battery", "Baterai", dec=3),
    Metric("rssi_dbm", "dBm", -127, 0, "Signal", "Sinyal", dec=0),
)

METRICS: dict[str, Metric] = {m.name: m for m in _TABLE}
"""Metric name → definition, in the contract's order."""
