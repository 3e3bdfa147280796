"""The energy model of a node: what one day of wakes costs, and how long a battery lasts.

The same model serves `rimba hw power` (planning a profile) and the firmware's own energy figure (fed by
the operations a cycle counted: wakes, Wi-Fi connects, MQTT sessions, bytes sent, sensor warm-ups).
Figures measured on an ESP32 running MicroPython (glenn20, upy-esp32-experiments, ESPNowvsWifiEnergyUsage):
a wake with boot, filesystem and application costs 3.3 + 23.6 mC over 0.42 s; Wi-Fi with DHCP 204 mC
over 1.626 s (static IP: 100 mC, 0.734 s); an MQTT session adds 8.6 mC and 40 ms. Sending a byte at
802.11b 1 Mbps takes 8 µs at 233 mA. The board's deep-sleep current is a parameter: 10 µA for the
chip, about 25 µA for a purpose-built board, milliamps for development boards.
A linear regulator passes the current through, so charge at the board is charge from the battery.

The cells lose energy at rest in two ways, both modelled at the box's temperature (`Battery.temp_c`, its mean,
28 °C by default: Pontianak's days run from 22 to 33 °C all year (BMKG's forecast ranges), the node sits in a
shaded, ventilated radiation shield; and `swing_c`, half the day's range, 5.5 °C: a rate that grows
exponentially with temperature averages about 6 % above its value at the mean over such a day):
- capacity fade, lost for good: the BOM cell's specification (Samsung SDI, "Specification of product,
  Lithium-ion rechargeable cell for power tools, INR18650-30Q", v1.0, February 2015, section 3.12 "Storage
  temperature (Recovery 90% after storage)") guarantees at least 90 % of the capacity recovered, charged
  again, after 1.5 years at up to 25 °C, 3 months at up to 45 °C, 1 month at up to 60 °C (note 1: from the
  ex-factory state, 40 ± 5 % charged). Between the 25 °C and 45 °C rows the monthly fade is interpolated
  geometrically in temperature (a rate six times as fast over those 20 °C, the way an Arrhenius rate
  grows). The sheet's figure is a guaranteed bound, not a measurement, and at the node's higher charge the
  fade is faster than at 40 %: a pessimistic side to set against its being a bound.
- self-discharge, charge lost and recovered by charging: the sheet gives none. Zilberman, Ludwig and Jossen,
  "Reversible self-discharge and calendar aging of 18650 nickel-rich, silicon-graphite lithium-ion cells",
  Journal of Energy Storage (2019), measured about 0.4 % a month at 25 °C and 90 % charge on new 18650
  cells (nickel-rich, silicon-graphite: not the 30Q's chemistry); the model takes it, scaled to the box's
  temperature by the same factor as the fade.
(Until 2026-12 the model took the sheet's recovery bound at 45 °C, 3.3 % a month, as charge drained: a
recovery rate is what comes back after charging, and Pontianak's shade is not 45 °C.)
The battery divider every profile reads the cells through is across them all the time: two 1 MΩ resistors
(with a 100 nF capacitor at the ADC pin, the bypass ESP-IDF's ADC guide, "Minimizing Noise", recommends)
draw 1.8 µA at the cells' 3.6 V; the 100 kΩ pair of the first BOM drew 18.5 µA, unmodelled.

Counted too: wakes by the rain gauge (one per tip while asleep, each a full wake: boot and filesystem,
firmware/lib/rain.py), connects with a static address (Wi-Fi without DHCP), and the MQTT session's
measured length beyond the 40 ms of the measured connect-and-publish, spent listening with the radio
on at 110 mA (Wi-Fi RX, ESP32-PICO-ZERO user manual's current table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rimba import profiles

MC_PER_MAH = 3600.0

WAKE_MC, WAKE_S = 3.3 + 23.6, 0.07 + 0.35
WIFI_DHCP_MC, WIFI_DHCP_S = 204.0, 1.626
WIFI_STATIC_MC, WIFI_STATIC_S = 100.0, 0.734
MQTT_MC, MQTT_S = 108.6 - 100.0, 0.040
TX_MC_PER_BYTE = 8e-6 * 233.0  # 8 µs per byte at 233 mA: seconds x mA = mC
WIFI_RX_MA = 110.0  # the radio on, listening (waiting for the broker)
RX_MC_PER_BYTE = 8e-6 * WIFI_RX_MA  # a byte received at 802.11b 1 Mbps (the slowest rate: an upper bound)
MM_PER_TIP = next(s["mm_per_tip"] for s in profiles.load("forest")["sensors"] if s["part"] == "rain")
# a Pontianak year of rain: the monthly totals of the simulator's profile (rimba/dev/climate.py, itself at the low
# end of BMKG's 3,000-4,000 mm a year for Pontianak), Jan..Dec in mm
PONTIANAK_RAIN_MM = (260, 210, 250, 280, 270, 220, 165, 180, 230, 350, 390, 330)

# the cells at rest (see above): the INR18650-30Q's recovery rows, and Zilberman et al. (2019)
FADE_25C_MONTH = 0.10 / 18  # -30..25 °C: at least 90 % recovered after 1.5 years
FADE_45C_MONTH = 0.10 / 3  # -30..45 °C: at least 90 % recovered after 3 months
SELF_DISCHARGE_25C_MONTH = 0.004  # new 18650 cells at 90 % charge, 25 °C
BOX_C = 28.0  # the box's mean temperature in Pontianak's shade
DAYS_PER_MONTH = 30.4
DIVIDER_OHM = 2_000_000  # the battery divider of every profile's BOM: two 1 MΩ in series, across the cells
NOMINAL_V = 3.6  # the cells' nominal voltage (INR18650-30Q specification, 3.2)


SWING_C = 5.5  # half the day's range: Pontianak's 22 to 33 °C


def at_temperature(rate_25c: float, temp_c: float, swing_c: float = 0.0) -> float:
    """A monthly rate at 25 °C, at a mean `temp_c` swinging by `swing_c` each day (a sine): six times as fast
    at 45 °C as at 25 °C (the sheet's rows). A rate that grows exponentially averages above its value at
    the mean: over a sine of amplitude A the factor exp(k (T - 25)) averages exp(k (T_mean - 25)) I0(k A)."""
    k = math.log(FADE_45C_MONTH / FADE_25C_MONTH) / 20.0
    x = k * swing_c / 2
    i0 = sum(x ** (2 * m) / math.factorial(m) ** 2 for m in range(12))  # the modified Bessel function I0(k A)
    return rate_25c * math.exp(k * (temp_c - 25.0)) * i0


# sensors: (seconds powered per reading, mA while powered); warm-ups and conversions from each datasheet
# (DS18B20: 750 ms at 12 bits; PMS5003: 30 s after wake-up, about 100 mA; SHT4x: 8.3 ms high repeatability)
SENSORS = {
    "sht4x": (0.009, 0.5),
    "bme280": (0.010, 0.7),
    "ds18b20": (0.750, 1.5),
    "soil": (0.100, 5.0),  # switched capacitive probe: settle, then ADC
    "jsnsr04t": (0.300, 8.0),  # switched through a MOSFET: start-up and one echo
    "pms5003": (30.0, 100.0),  # fan warm-up before a trustworthy reading
    "rain": (0.0, 0.0),  # the interrupt counter costs nothing measurable
    "battery": (0.001, 0.1),
}
# each profile's sensors, from its file (hardware/profiles/*.toml), and the battery divider every node reads
PROFILES = {name: (*profiles.sensors(name), "battery") for name in profiles.names()}
BOARDS = {"chip": 10.0, "module": 25.0, "devkitc-v4": 3800.0, "devkitc-clone": 11380.0}  # deep sleep, µA


@dataclass(frozen=True)
class Battery:
    cells: int
    mah: float  # per cell (in parallel)
    # of the rated capacity: what a cell gives above the 3.3 V the board's regulator needs at the radio's
    # current (analytics.analyze.BATTERY_EMPTY_V); 0.8 is an assumption kept from the first model, not derived
    # from the INR18650-30Q's discharge curve (ageing is the fade below, not in it)
    usable: float = 0.8
    temp_c: float = BOX_C  # the box's mean temperature (the loss at rest grows with it)
    swing_c: float = SWING_C  # and half its daily range
    kind: str = "18650"  # what `parse` was told: the rest losses above are an 18650 Li-ion cell's whatever it says

    @property
    def rest_losses_modelled(self) -> bool:
        """Whether the fade and self-discharge are the named cell's own (an 18650 Li-ion), not a stand-in."""
        return self.kind == "18650"

    @property
    def fade_month(self) -> float:
        """Capacity lost for good a month, a share of the capacity."""
        return at_temperature(FADE_25C_MONTH, self.temp_c, self.swing_c)

    @property
    def self_discharge_month(self) -> float:
        """Charge lost a month at rest, a share of the capacity."""
        return at_temperature(SELF_DISCHARGE_25C_MONTH, self.temp_c, self.swing_c)

    @property
    def capacity_mah(self) -> float:
        return self.cells * self.mah

    @classmethod
    def parse(cls, text: str) -> Battery:
        """'2x18650' (3000 mAh each), '1x18650', '4xAA' (2500 mAh), or '2x3400mAh'."""
        count, _, kind = text.lower().partition("x")
        sizes = {"18650": 3000.0, "aa": 2500.0, "lifepo4": 3200.0}
        try:
            n = int(count)
            mah = sizes[kind] if kind in sizes else float(kind.removesuffix("mah"))
        except ValueError:
            raise ValueError(f"battery {text!r}: write it as 2x18650, 4xAA or 2x3400mAh") from None
        if n < 1 or mah <= 0:
            raise ValueError(f"battery {text!r}: needs at least one cell with a capacity")
        return cls(n, mah, kind=kind if kind in sizes else "mAh")


@dataclass(frozen=True)
class Day:
    """The counted operations of one day."""

    wakes: float
    wifi: float
    mqtt: float
    bytes_sent: float
    sensor_s: dict  # sensor -> seconds powered
    tip_wakes: float = 0.0  # wakes by the rain gauge
    wifi_static: float = 0.0  # of the Wi-Fi connects, those with a static address
    mqtt_s: float = 0.0  # measured length of the MQTT sessions (0: the 40 ms each of the measurement)
    bytes_received: float = 0.0  # beyond the session's own (a firmware update's files)

    def steps(self, static_ip: bool = False) -> dict:
        """Where the awake charge goes: step -> (mC, seconds) per day."""
        static = self.wifi if static_ip else self.wifi_static
        listen = max(0.0, self.mqtt_s - self.mqtt * MQTT_S)
        out = {"wake (boot, filesystem, firmware)": (self.wakes * WAKE_MC, self.wakes * WAKE_S),
               "rain tip wakes": (self.tip_wakes * WAKE_MC, self.tip_wakes * WAKE_S),
               "Wi-Fi connect": ((self.wifi - static) * WIFI_DHCP_MC + static * WIFI_STATIC_MC,
                                 (self.wifi - static) * WIFI_DHCP_S + static * WIFI_STATIC_S),
               "MQTT session": (self.mqtt * MQTT_MC, self.mqtt * MQTT_S),
               "waiting on the broker": (listen * WIFI_RX_MA, listen),
               "bytes sent": (self.bytes_sent * TX_MC_PER_BYTE, self.bytes_sent * 8e-6),
               "bytes received": (self.bytes_received * RX_MC_PER_BYTE, self.bytes_received * 8e-6)}
        for sensor, seconds in self.sensor_s.items():
            out[f"sensor {sensor}"] = (seconds * SENSORS[sensor][1], seconds)  # mA x s = mC
        return out

    def charge_mc(self, static_ip: bool = False) -> tuple:
        """(charge in mC awake, seconds awake)."""
        steps = self.steps(static_ip).values()
        return sum(mc for mc, _s in steps), sum(s for _mc, s in steps)


@dataclass(frozen=True)
class Budget:
    awake_s_per_day: float
    mah_awake: float
    mah_sleep: float
    mah_self_discharge: float
    battery_mah_usable: float
    mah_divider: float = 0.0  # the battery divider, across the cells all day
    fade_day: float = 0.0  # of the capacity, lost for good a day

    @property
    def mah_per_day(self) -> float:
        return self.mah_awake + self.mah_sleep + self.mah_divider + self.mah_self_discharge

    @property
    def mah_fade_day(self) -> float:
        """The usable capacity lost a day (a linear fade: the same share of the first capacity each day)."""
        return self.battery_mah_usable * self.fade_day

    @property
    def days(self) -> float:
        """Until the charge drawn meets the usable capacity, which fades: D x m = U (1 - f D)."""
        return self.battery_mah_usable / (self.mah_per_day + self.mah_fade_day)


def planned_day(profile: str, sample_s: float, send_s: float, reading_bytes: int = 90) -> Day:
    """The operations of a day of `profile` sampling every sample_s and sending every send_s."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: one of {', '.join(PROFILES)}")
    wakes = 86400 / sample_s
    sends = 86400 / max(send_s, sample_s)
    return Day(wakes, sends, sends, wakes * reading_bytes + sends * 250,
               {s: wakes * SENSORS[s][0] for s in PROFILES[profile]})


def rain_tips_per_day(mm_per_tip: float = MM_PER_TIP) -> float:
    """Tips of the gauge on a mean day of a Pontianak year."""
    return sum(PONTIANAK_RAIN_MM) / mm_per_tip / 365


def budget(day: Day, battery: Battery, sleep_ua: float, static_ip: bool = False) -> Budget:
    mc, awake = day.charge_mc(static_ip)
    asleep_h = (86400 - awake) / 3600
    return Budget(awake, mc / MC_PER_MAH, sleep_ua / 1000 * asleep_h,
                  battery.capacity_mah * battery.self_discharge_month / DAYS_PER_MONTH,
                  battery.capacity_mah * battery.usable, NOMINAL_V / DIVIDER_OHM * 1000 * 24,
                  battery.fade_month / DAYS_PER_MONTH)


def parse_duration(text: str) -> float:
    """'10m', '1h', '30s', '600' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"duration {text!r}: write it as 30s, 10m or 1h") from None
