# A fake `machine` module for the unix port, following the ESP32 quick reference's signatures:
# Pin, ADC, I2C (a simulated SHT4x), RTC (drifting as the world says), WDT, deepsleep, reset,
# reset_cause. Deep sleep and reset end the process; the next run is the next wake.
import sys
import time

import crc8
import world

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5


def reset_cause():
    return {"deepsleep": DEEPSLEEP_RESET, "power": PWRON_RESET, "crash": SOFT_RESET}[world.W.get("cause", "power")]


def deepsleep(ms=0):
    world.W["true"] = world.true_now() + ms / 1000
    world.W["cause"] = "deepsleep"
    world.W["slept_ms"] = ms
    world.save()
    sys.exit(0)


def reset():
    world.W["true"] = world.true_now() + 1
    world.W["cause"] = "crash"
    world.save()
    sys.exit(3)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


class Pin:
    IN, OUT, PULL_UP, IRQ_FALLING = 1, 3, 1, 2

    def __init__(self, n, mode=None, pull=None):
        self.n = n
        self.handler = None

    def irq(self, trigger=None, handler=None):
        self.handler = handler
        return self

    def value(self, v=None):
        return 1 if v is None else None


class ADC:
    ATTN_0DB, ATTN_11DB = 0, 3

    def __init__(self, pin, atten=None):
        self.pin = pin

    def read_uv(self):
        if self.pin.n == 34:  # the soil probe
            return int(world.W.get("soil_mv", 2000) * 1000)
        return int(world.W.get("batt_v", 3.9) / 2 * 1e6)


class I2C:
    def __init__(self, bus, scl=None, sda=None, freq=400000):
        self._resp = b""

    def writeto(self, addr, data):
        if world.W.get("i2c_crash"):
            raise RuntimeError("a driver bug")  # not a bus error: nothing in the firmware expects it
        if addr != 0x44 or world.W.get("sht_fail"):
            raise OSError(19)
        t, rh = world.W.get("air_temp_c", 28.0), world.W.get("air_rh_pct", 80.0)
        st = int((t + 45) * 65535 / 175 + 0.5)
        srh = int((rh + 6) * 65535 / 125 + 0.5)
        b = bytearray((st >> 8, st & 255, 0, srh >> 8, srh & 255, 0))
        b[2] = crc8.sensirion(b, 0, 2)
        b[5] = crc8.sensirion(b, 3, 5)
        self._resp = bytes(b)

    def readfrom_into(self, addr, buf):
        for i in range(len(buf)):
            buf[i] = self._resp[i]


class RTC:
    def _rtc(self):
        base_rtc, base_true = world.W["rtc"]
        return base_rtc + (world.true_now() - base_true) * (1 + world.W.get("drift", 0.0))

    def memory(self, data=None):
        """RTC memory: kept across deep sleep (the world file), lost at power-on."""
        return _rtc_memory(data)

    def datetime(self, dt=None):
        if dt is None:
            g = time.gmtime(int(self._rtc()))
            return (g[0], g[1], g[2], g[6], g[3], g[4], g[5], 0)
        y, mo, d, _wd, h, mi, s, _sub = dt
        world.W["rtc"] = [time.mktime((y, mo, d, h, mi, s, 0, 0)), world.true_now()]


def _rtc_memory(data=None):
    if data is None:
        return bytes.fromhex(world.W.get("rtc_mem", ""))
    world.W["rtc_mem"] = bytes(data).hex()


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        world.W.setdefault("events", []).append("wdt")

    def feed(self):
        pass


def lightsleep(ms=0):
    """Light sleep keeps RAM and the program: in the harness, simulated time moves on at once."""
    world.W["true"] = world.W["true"] + ms / 1000


class UART:
    """UART 2: a PMS5003 (frames after a wake command) or a JSN-SR04T (a frame per 0x55), as the world says."""

    def __init__(self, id, baudrate=9600, tx=None, rx=None, timeout=0):
        self.rx = bytearray()

    def write(self, data):
        data = bytes(data)
        if data == b"\x55" and "water_distance_mm" in world.W:
            mm = int(world.W["water_distance_mm"])
            h, l = mm >> 8, mm & 0xFF
            self.rx += bytes((0xFF, h, l, (0xFF + h + l) & 0xFF))
        return len(data)

    def any(self):
        return len(self.rx)

    def read(self, n=None):
        if n == 64 and "pm25_ugm3" in world.W:  # the PMS5003 streams frames while awake
            pm = (world.W.get("pm1_ugm3", 10), world.W["pm25_ugm3"], world.W.get("pm10_ugm3", 30))
            words = pm + pm + (0,) * 7
            body = bytearray(b"\x42\x4d\x00\x1c")
            for w in words:
                body += bytes((w >> 8, w & 0xFF))
            s = sum(body) & 0xFFFF
            self.rx += body + bytes((s >> 8, s & 0xFF))
        if not self.rx:
            return None
        n = len(self.rx) if n is None else n
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out
