# This node's sensors, by profile: a callable that reads them all and returns {metric: value or None}
# for every metric of its profile (`columns`, the same every wake: a batch is one column list, and a
# failed chip is a null in its column, not a change of columns). Pins are the profiles' (the generated
# block below; ADC1 pins only: ADC2 stops working with Wi-Fi). A chip that fails to start or to
# answer reports None (null on the wire) and counts an error: never 0. Long waits (the PMS5003's fan,
# DS18B20 conversions) use light sleep.
import machine


# --- generated from hardware/profiles/*.toml by `python -m hardware.profiles`: do not edit ---
# every profile's pins (one GPIO per role), each profile's sensors in the order the node reads
# them, and its metrics in the order of its rows; the battery divider and the rain gauge's bucket
PINS = {
    'batt_adc': 35,
    'onewire': 4,
    'rain': 27,
    'scl': 22,
    'sda': 21,
    'soil_adc': 34,
    'soil_power': 25,
    'uart_rx': 16,
    'uart_tx': 17,
}
PROFILES = {
    'air': ('pms5003', 'sht4x'),
    'forest': ('sht4x', 'soil', 'ds18b20', 'rain'),
    'river': ('jsnsr04t', 'ds18b20', 'sht4x', 'rain'),
}
COLUMNS = {
    'air': ('pm1_ugm3', 'pm25_ugm3', 'pm10_ugm3', 'air_temp_c', 'air_rh_pct'),
    'forest': ('air_temp_c', 'air_rh_pct', 'soil_vwc_pct', 'soil_temp_c', 'rain_mm'),
    'river': ('water_level_cm', 'water_temp_c', 'air_temp_c', 'air_rh_pct', 'rain_mm'),
}
BATTERY_DIVIDER = 2.0
MM_PER_TIP = 0.2794
# --- end of generated ---


_gauge: list = []  # the rain gauge, if this profile has one: light sleep must not lose its tips


def _sleep_ms(ms):
    if ms >= 100 and _gauge:
        _gauge[0].light_sleep(ms)
    elif ms >= 100:
        machine.lightsleep(ms)
    else:
        import time
        time.sleep_ms(ms)


def _ticks_ms():
    import time
    return time.ticks_ms()


class Reader:
    def __init__(self, profile, cfg):
        self.chips = {}
        self.errors = {}
        profile = profile if profile in PROFILES else "forest"
        self.columns = COLUMNS[profile]
        for name in PROFILES[profile]:
            try:
                self.chips[name] = _make(name, cfg)
            except (OSError, ImportError, ValueError) as err:
                self.errors[name] = str(err)
        self.names = tuple(self.chips)  # counted for the energy model
        self.ops = {}  # other operations for the energy model (the wakes rain tips took)

    def __call__(self):
        out = {}
        c = self.chips
        air_t = None
        if "sht4x" in c:
            v = c["sht4x"].read()
            out["air_temp_c"] = None if v is None else round(v[0], 2)
            out["air_rh_pct"] = None if v is None else round(v[1], 1)
            air_t = out["air_temp_c"]
        if "soil" in c:
            out["soil_vwc_pct"] = c["soil"].read()
        if "ds18b20" in c:
            t = c["ds18b20"].read()
            out["water_temp_c" if "water_temp_c" in self.columns else "soil_temp_c"] = None if t is None else round(t, 2)
        if "rain" in c:
            out["rain_mm"] = c["rain"].read()
            self.ops["tip_wakes"] = c["rain"].tip_wakes
        if "jsnsr04t" in c:
            out["water_level_cm"] = c["jsnsr04t"].read(air_t)
        if "pms5003" in c:
            v = c["pms5003"].read()
            out["pm1_ugm3"], out["pm25_ugm3"], out["pm10_ugm3"] = v if v is not None else (None, None, None)
        return {m: out.get(m) for m in self.columns}  # a chip that did not start: None in its columns


def _make(name, cfg):
    Pin = machine.Pin
    if name == "sht4x":
        import sht4x
        i2c = machine.I2C(0, scl=Pin(PINS["scl"]), sda=Pin(PINS["sda"]), freq=100000)
        return sht4x.SHT4x(i2c, _sleep_ms)
    if name == "soil":
        import soil
        adc = machine.ADC(Pin(PINS["soil_adc"]), atten=machine.ADC.ATTN_11DB)
        return soil.Soil(adc, Pin(PINS["soil_power"], Pin.OUT), _sleep_ms, cfg["soil_dry_mv"],
                         cfg["soil_wet_mv"])
    if name == "ds18b20":
        import ds18b20
        import onewire
        return ds18b20.DS18B20(onewire.OneWire(Pin(PINS["onewire"])), _sleep_ms)
    if name == "rain":
        import rain
        gauge = rain.Rain(Pin(PINS["rain"], Pin.IN, Pin.PULL_UP), _ticks_ms, MM_PER_TIP)
        _gauge.append(gauge)
        return gauge
    if name == "jsnsr04t":
        import jsnsr04t
        uart = machine.UART(2, baudrate=9600, tx=PINS["uart_tx"], rx=PINS["uart_rx"], timeout=200)
        return jsnsr04t.JSNSR04T(uart, _sleep_ms, cfg["mount_cm"])
    if name == "pms5003":
        import pms5003
        uart = machine.UART(2, baudrate=9600, tx=PINS["uart_tx"], rx=PINS["uart_rx"], timeout=200)
        return pms5003.PMS5003(uart, _sleep_ms)
    raise ValueError("unknown sensor " + name)


def reader(profile, cfg):
    return Reader(profile, cfg)


def before_sleep(reader, ms):
    """Just before deep sleep: the rain gauge learns when the next sample is due and arms its wake."""
    if "rain" in reader.chips:
        import rclock
        reader.chips["rain"].sleep(rclock.now() + ms // 1000)


def resume(profile, sample_ms):
    """The sleep after a boot that took no sample (a firmware update that did not complete): the gauge
    armed again, and the ms until the sample that was due (sample_ms for a profile without a gauge)."""
    if "rain" not in PROFILES.get(profile, ()):
        return sample_ms
    import rain
    import rclock
    ms = rain.resume(machine.Pin(PINS["rain"], machine.Pin.IN, machine.Pin.PULL_UP), rclock.now)
    return max(ms, 1000)  # deepsleep(0) would be for ever


def tip_wake():
    """main.py's path for a wake by the rain gauge: count, re-arm; ms until the next sample (0: now)."""
    import rain
    import rclock
    return rain.tip_wake(machine.Pin(PINS["rain"], machine.Pin.IN, machine.Pin.PULL_UP), rclock.now)
