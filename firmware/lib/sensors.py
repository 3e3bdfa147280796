# This node's sensors, by profile: a callable that reads them all and returns {metric: value or None}.
# Pins follow the profiles in hardware/ (ESP32 DevKitC: I2C on 21/22, battery divider on GPIO35).
# A failed sensor reports None (null on the wire) and counts an error: never 0.
import machine

PINS = {"sda": 21, "scl": 22, "batt_adc": 35}


class Reader:
    def __init__(self, chips):
        self.chips = chips
        self.names = tuple(type(c).__name__.lower() for _k, c in chips)  # counted for the energy model

    def __call__(self):
        out = {}
        for kind, chip in self.chips:
            if kind == "air":
                v = chip.read()
                out["air_temp_c"] = None if v is None else round(v[0], 2)
                out["air_rh_pct"] = None if v is None else round(v[1], 1)
        return out


def reader(profile, sleep_ms=None):
    import time

    sleep_ms = sleep_ms or time.sleep_ms
    i2c = machine.I2C(0, scl=machine.Pin(PINS["scl"]), sda=machine.Pin(PINS["sda"]), freq=100000)
    chips = []
    if profile in ("forest", "air", "river"):
        import sht4x
        chips.append(("air", sht4x.SHT4x(i2c, sleep_ms)))
    return Reader(chips)
