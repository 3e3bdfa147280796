"""A synthetic but realistic Pontianak climate, for the simulator.

Values are deterministic functions of (seed, site, time): the same reading
resent comes out identical. Shapes and magnitudes are a synthesised monthly profile, provisional until
BMKG's normals for Pontianak are at hand, within what BMKG publishes for the city (Stasiun Klimatologi
Siantan: the Kalbar normal 23 to over 33 °C, daily mean RH 73-90 %, wettest months May and October;
reported by Antara Kalbar):
- temperature: monthly Tmin/Tmax, minimum near 06:00 WIB, maximum near 13:45 WIB,
  cooled by rain;
- humidity: from a dew point near the daily minimum temperature (so it is the
  inverse of temperature and near 100 % at night);
- rain: convective events mostly 14:00–20:00 WIB, rain-day probability by month;
- PM: 8–25 µg/m³ background with traffic bumps; a haze episode 100–400 µg/m³
  peaking 08:00–12:00 WIB;
- river level: K1, O1, M2, S2 tides plus Oct–Jan discharge and rain run-off;
- light: clear-sky ~110 klux at noon, clouds, and forest canopy.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from rimba import wib

DAY = 86400

# month -> (rain mm, rain days, Tmax, Tmin, RH mean): the synthesised profile (above)
MONTHLY = {
    1: (260, 17, 31.5, 23.2, 86), 2: (210, 14, 32.0, 23.2, 85), 3: (250, 16, 32.3, 23.4, 85),
    4: (280, 18, 32.6, 23.6, 85), 5: (270, 17, 32.8, 23.7, 84), 6: (220, 14, 32.7, 23.3, 83),
    7: (165, 11, 32.8, 23.0, 81), 8: (180, 11, 33.0, 23.1, 80), 9: (230, 14, 32.8, 23.2, 82),
    10: (350, 19, 32.4, 23.3, 85), 11: (390, 21, 31.8, 23.3, 87), 12: (330, 20, 31.5, 23.2, 87),
}
# tidal constituents (period hours, amplitude cm, phase rad): illustrative, sized to BMKG Maritim Pontianak's
# high tides of 1.7-1.9 m. K1, O1, M2 and
# S2 lead a mixed, mainly diurnal tide; P1, Q1, N2, K2 and the shallow-water M4 are the smaller ones a
# real tide also has (periods: Pugh 1987, table 4.2), so that a four-constituent fit is never exact
TIDES = ((23.934, 45.0, 0.3), (25.819, 35.0, 1.1), (12.421, 15.0, 2.0), (12.0, 8.0, 0.7),
         (24.066, 14.0, 0.9), (26.868, 6.0, 2.4), (12.658, 3.5, 1.7), (11.967, 2.5, 0.2), (6.210, 2.0, 1.3))
RIVER_SWING_CM, RIVER_SWING_DAYS = 12.0, 9.0  # the Kapuas' discharge rising and falling over days


def _month(t: float) -> int:
    return time.gmtime(t + wib.OFFSET_S).tm_mon


def _rng(*key) -> random.Random:
    """A generator seeded by a stable key (string seeds are hashed the same in every run)."""
    return random.Random("/".join(map(str, key)))


@dataclass(frozen=True)
class RainEvent:
    start: float
    end: float
    rate_mm_h: float


@dataclass
class Haze:
    start: float
    days: float
    peak_ugm3: float = 320.0


class Climate:
    """Weather at one site. `haze` is an optional episode (start time, days)."""

    def __init__(self, seed: int, site: str, haze: Haze | None = None):
        self.seed = seed
        self.site = site
        self.haze = haze
        self._day_cache: dict = {}

    def _day(self, day: int) -> dict:
        d = self._day_cache.get(day)
        if d is not None:
            return d
        r = _rng(self.seed, self.site, "day", day)
        month = _month(day * DAY + DAY / 2 - wib.OFFSET_S)
        mm, rain_days, tmax, tmin, _rh = MONTHLY[month]
        events = []
        if r.random() < rain_days / 30.0:
            total = min(r.expovariate(1 / (mm / rain_days)), 150.0)
            n = 1 + (r.random() < 0.3)
            for _ in range(n):
                if r.random() < 0.8:
                    start_h = r.uniform(14, 20)
                else:
                    start_h = r.uniform(2, 7)
                dur_h = r.uniform(0.4, 2.0)
                start = day * DAY - wib.OFFSET_S + start_h * 3600
                events.append(RainEvent(start, start + dur_h * 3600, total / n / dur_h))
        d = {
            "tmax": tmax + r.gauss(0, 0.8) - (1.2 if events else 0.0),
            "tmin": tmin + r.gauss(0, 0.5),
            "cloud": min(1.0, max(0.05, r.betavariate(2, 2) + (0.3 if events else 0.0))),
            "rain": events,
            "pm_bg": r.uniform(8, 22),
        }
        self._day_cache[day] = d
        if len(self._day_cache) > 64:
            self._day_cache.pop(next(iter(self._day_cache)))
        return d

    @staticmethod
    def _local(t: float) -> tuple[int, float]:
        local = wib.local(t)
        return int(local // DAY), (local % DAY) / 3600.0

    def rain_rate(self, t: float) -> float:
        """mm/h at time t."""
        day, _ = self._local(t)
        rate = 0.0
        for dd in (day - 1, day):
            for e in self._day(dd)["rain"]:
                if e.start <= t < e.end:
                    rate += e.rate_mm_h
        return rate

    def rain_between(self, t0: float, t1: float) -> float:
        """mm fallen in (t0, t1]."""
        total = 0.0
        d0, _ = self._local(t0)
        d1, _ = self._local(t1)
        for dd in range(d0 - 1, d1 + 1):
            for e in self._day(dd)["rain"]:
                overlap = min(t1, e.end) - max(t0, e.start)
                if overlap > 0:
                    total += e.rate_mm_h * overlap / 3600
        return total

    def air_temp(self, t: float) -> float:
        day, h = self._local(t)
        d = self._day(day)
        tmin, tmax = d["tmin"], d["tmax"]
        # warm from 06:00 to 13:45, cool from 13:45 to 06:00 next day
        if 6.0 <= h < 13.75:
            frac = (1 - math.cos(math.pi * (h - 6.0) / 7.75)) / 2
        else:
            hh = h - 13.75 if h >= 13.75 else h + 24 - 13.75
            frac = (1 + math.cos(math.pi * hh / 16.25)) / 2
        temp = tmin + (tmax - tmin) * frac
        if self.rain_rate(t) > 0:
            temp = max(temp - 2.5, tmin - 0.5)  # rain cools the afternoon, barely the night
        return temp

    def dew_point(self, t: float) -> float:
        day, _ = self._local(t)
        dry = 2.5 if _month(t) in (7, 8, 9) else 0.0
        return self._day(day)["tmin"] - 0.4 - dry

    def air_rh(self, t: float) -> float:
        temp, td = self.air_temp(t), self.dew_point(t)
        if self.rain_rate(t) > 0:
            td = temp - 0.3

        def es(x):
            return 6.112 * math.exp(17.62 * x / (243.12 + x))

        return min(100.0, 100.0 * es(td) / es(temp))

    def pressure(self, t: float) -> float:
        _, h = self._local(t)
        return 1009.5 + 1.2 * math.cos(2 * math.pi * (h - 10.0) / 12.0)

    def light(self, t: float, canopy: float = 1.0) -> float:
        day, h = self._local(t)
        if not 5.7 <= h <= 17.85:
            return 0.0
        elev = max(0.0, math.sin(math.pi * (h - 5.7) / 12.15))  # sin(pi) rounds to -1e-16: no complex light
        cloud = self._day(day)["cloud"]
        if self.rain_rate(t) > 0:
            cloud = 0.9
        return 110000.0 * elev ** 1.2 * (1 - 0.75 * cloud) * canopy

    def pm25(self, t: float) -> float:
        day, h = self._local(t)
        bg = self._day(day)["pm_bg"]
        traffic = 10 * math.exp(-((h - 7.5) ** 2) / 2) + 8 * math.exp(-((h - 18.5) ** 2) / 3)
        value = bg + traffic
        if self.haze and self.haze.start <= t < self.haze.start + self.haze.days * DAY:
            # build-up in the morning as the boundary layer traps smoke (20 Sep 2019 profile)
            into = (t - self.haze.start) / (self.haze.days * DAY)
            envelope = max(0.0, math.sin(math.pi * into)) ** 0.5
            shape = 0.35 + 0.65 * math.exp(-((h - 10.0) ** 2) / 8)
            value += self.haze.peak_ugm3 * envelope * shape
        if self.rain_rate(t) > 0:
            value *= 0.5  # washout
        return value

    def water_level(self, t: float) -> float:
        hours = t / 3600.0
        level = 100.0
        for period, amp, phase in TIDES:
            level += amp * math.cos(2 * math.pi * hours / period + phase)
        if _month(t) in (10, 11, 12, 1):
            level += 40.0
        level += RIVER_SWING_CM * math.sin(2 * math.pi * t / (RIVER_SWING_DAYS * DAY) + 0.7)
        level += 0.5 * self.rain_between(t - 6 * 3600, t)  # local run-off
        return level

    def soil_vwc(self, t: float) -> float:
        # a bucket filled by the last ten days of rain, draining ~1.5 %/day
        wet = 0.0
        for back in range(10):
            mm = self.rain_between(t - (back + 1) * DAY, t - back * DAY)
            wet += mm * 0.12 * math.exp(-back / 4.0)
        return min(55.0, 24.0 + wet)

    def soil_temp(self, t: float) -> float:
        return 0.4 * self.air_temp(t - 3 * 3600) + 0.6 * 27.0

    def water_temp(self, t: float) -> float:
        _, h = self._local(t)
        return 29.0 + 0.8 * math.sin(2 * math.pi * (h - 10.0) / 24.0)

    def co2(self, t: float) -> float:
        _, h = self._local(t)
        return 425.0 + (60.0 if (h < 6 or h > 20) else 10.0)

    def battery(self, t: float) -> float:
        _, h = self._local(t)
        sun = max(0.0, math.sin(math.pi * (h - 6) / 12))
        return 3.85 + 0.25 * sun

    def value(self, metric: str, t: float, previous_t: float | None = None, canopy: float = 1.0) -> float:
        if metric == "rain_mm":
            return self.rain_between(previous_t if previous_t is not None else t - 600, t)
        fn = {
            "air_temp_c": self.air_temp, "air_rh_pct": self.air_rh, "air_pressure_hpa": self.pressure,
            "soil_temp_c": self.soil_temp, "soil_vwc_pct": self.soil_vwc, "water_level_cm": self.water_level,
            "water_temp_c": self.water_temp, "co2_ppm": self.co2, "batt_v": self.battery,
            "pm25_ugm3": self.pm25,
        }.get(metric)
        if fn is not None:
            return fn(t)
        if metric == "light_lux":
            return self.light(t, canopy)
        if metric == "pm10_ugm3":
            return self.pm25(t) * 1.45
        if metric == "pm1_ugm3":
            return self.pm25(t) * 0.7
        if metric == "rssi_dbm":
            return -72.0
        raise KeyError(metric)
