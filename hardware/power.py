"""The energy model of a node: what one day of wakes costs, and how long a battery lasts.

The same model serves `rimba hw power` (planning a profile) and the firmware's own energy figure (fed by
the operations a cycle counted: wakes, Wi-Fi connects, MQTT sessions, bytes sent, sensor warm-ups).
Figures measured on an ESP32 running MicroPython (glenn20, upy-esp32-experiments, ESPNowvsWifiEnergyUsage):
a wake with boot, filesystem and application costs 3.3 + 23.6 mC over 0.42 s; Wi-Fi with DHCP 204 mC
over 1.626 s (static IP: 100 mC, 0.734 s); an MQTT session adds 8.6 mC and 40 ms. Sending a byte at
802.11b 1 Mbps takes 8 µs at 233 mA. The board's deep-sleep current is a parameter: 10 µA for the
chip, about 25 µA for a purpose-built board, milliamps for development boards.
A linear regulator passes the current through, so charge at the board is charge from the battery.

The cells' own loss at rest is the BOM cell's datasheet figure: Samsung SDI, "Specification of product,
Lithium-ion rechargeable cell for power tools, INR18650-30Q", version 1.0 (February 2015), section 3.12
"Storage temperature (Recovery 90% after storage)": 1.5 years at -30..25 °C, 3 months at -30..45 °C or
1 month at -30..60 °C, the cell recovers at least 90 % of its capacity (note 1: from the ex-factory state,
40 ± 5 % charged). The sheet gives no separate self-discharge rate; what it guarantees is at most 10 % of
the capacity lost over those times, and the model takes that as the charge a resting cell loses. Pontianak
is 22 to 33 °C all year (BMKG's forecast ranges), never within the 25 °C row, so the 45 °C row applies:
10 % in 3 months, 3.3 % a month. The 25 °C row (0.56 % a month) is the bound a cooler site would get.

Counted too: wakes by the rain gauge (one per tip while asleep, each a full wake: boot and filesystem,
firmware/lib/rain.py), connects with a static address (Wi-Fi without DHCP), and the MQTT session's
measured length beyond the 40 ms of the measured connect-and-publish, spent listening with the radio
on at 110 mA (Wi-Fi RX, ESP32-PICO-ZERO user manual's current table).
"""

from __future__ import annotations

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

# the cell's capacity lost at rest, a month (INR18650-30Q specification v1.0, section 3.12; see above)
STORAGE_LOSS_MONTH = 0.10 / 3  # -30..45 °C: at least 90 % recovered after 3 months
STORAGE_LOSS_COOL_MONTH = 0.10 / 18  # -30..25 °C: at least 90 % after 1.5 years

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
    usable: float = 0.8  # of the rated capacity, over the temperature range and age
    self_discharge_month: float = STORAGE_LOSS_MONTH  # of the capacity, lost at rest

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
        return cls(n, mah)


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

    @property
    def mah_per_day(self) -> float:
        return self.mah_awake + self.mah_sleep + self.mah_self_discharge

    @property
    def days(self) -> float:
        return self.battery_mah_usable / self.mah_per_day


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
                  battery.capacity_mah * battery.self_discharge_month / 30, battery.capacity_mah * battery.usable)


def parse_duration(text: str) -> float:
    """'10m', '1h', '30s', '600' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"duration {text!r}: write it as 30s, 10m or 1h") from None
