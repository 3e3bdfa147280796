# A fake `machine` module for the unix port, following the ESP32 quick reference's signatures:
# Pin, ADC, I2C (a simulated SHT4x), RTC (drifting as the world says), WDT, deepsleep, lightsleep, reset,
# reset_cause, wake_reason. Deep sleep and reset end the process; the next run is the next wake.
#
# Strict where the chip is (MicroPython ESP32 quick reference; ESP-IDF sleep modes and ADC guides):
# - deep sleep is a reset: RAM, IRQ handlers and esp32.wake_on_ext0 are gone; RTC memory stays, and is
#   lost at power-on; machine.wake_reason() says what ended the sleep (the timer, or ext0);
# - no Pin IRQ fires while the CPU sleeps (light or deep): an edge then is seen only as an ext0 wake,
#   if one is armed for the level the pin reaches (ext0 is level-triggered: armed on a level the pin
#   already has, the sleep ends at once); while the CPU runs, the IRQ handler gets each falling edge;
# - ADC only on ADC pins; ADC2 (GPIO 0, 2, 4, 12-15, 25-27) fails while Wi-Fi is on; raw 12-bit
#   conversions at 11 dB with a per-chip calibration offset (world "adc_offset_mv") in read_uv();
# - GPIO 34-39 are inputs only.
# The rain gauge: world "rain_tips" lists the true times its reed switch closes, for "rain_closure_ms".
import sys
import time

import checksums
import world
from rxbuf import RxBuffer

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
EXT0_WAKE = PIN_WAKE = 2
EXT1_WAKE, TIMER_WAKE = 3, 4
SLEEP, DEEPSLEEP = 2, 4
if world.W.get("cause", "power") == "power":
    world.W.pop("rtc_mem", None)  # RTC memory does not survive a power loss
_ext0 = [None, None]  # armed pin number and level (esp32.wake_on_ext0), in RAM: gone at every reset
_irqs = []  # [pin number, handler]
_seen = [world.true_now()]  # edges up to this true time have fired their IRQ (or happened asleep)


def reset_cause():
    return {"deepsleep": DEEPSLEEP_RESET, "power": PWRON_RESET, "crash": SOFT_RESET,
            "watchdog": WDT_RESET}[world.W.get("cause", "power")]


def wake_reason():
    return {"ext0": EXT0_WAKE, "timer": TIMER_WAKE}.get(world.W.get("wake"), 0)


def _tips():
    return world.W.get("rain_tips", ())


def _level(n, t):
    """The pin's level at true time t: the rain gauge's reed switch pulls it low while closed."""
    if n == 27:
        closed = world.W.get("rain_closure_ms", 50) / 1000
        for tip in _tips():
            if tip <= t < tip + closed:
                return 0
    return 1


def _fire():
    """Falling edges since the last call, while the CPU ran: their IRQ handlers run (late, not lost)."""
    now = world.true_now()
    for n, handler in _irqs:
        if n == 27:
            for tip in _tips():
                if _seen[0] < tip <= now:
                    handler(Pin(n))
    _seen[0] = now


def _sleep_until(ms):
    """Sleep of the CPU: the true time it ends, at an armed ext0 level, or when ms have passed."""
    _fire()
    now = world.true_now()
    end = now + ms / 1000
    n, level = _ext0
    reason = "timer"
    if n is not None:
        if _level(n, now) == level:
            end, reason = now, "ext0"
        elif level == 0 and n == 27:
            for tip in _tips():
                if now < tip <= end:
                    end, reason = tip, "ext0"
                    break
    world.W["wake"] = reason
    _seen[0] = end  # edges while asleep fire no IRQ
    return end


def deepsleep(ms=0):
    world.W.pop("wdt_ms", None)  # a reset: the watchdog is off until armed again
    end = _sleep_until(ms)
    world.W["true"] = end
    world.W["cause"] = "deepsleep"
    world.W["slept_ms"] = ms
    world.W["radio"] = False
    world.save()
    sys.exit(0)


def reset():
    world.W.pop("wdt_ms", None)
    world.W["true"] = world.true_now() + 1
    world.W["cause"] = "crash"
    world.W["radio"] = False
    world.W.pop("wake", None)
    world.save()
    sys.exit(3)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


GPIOS = set(range(0, 20)) | {21, 22, 23, 25, 26, 27} | set(range(32, 40))
ADC1 = set(range(32, 40))
ADC2 = {0, 2, 4, 12, 13, 14, 15, 25, 26, 27}


class Pin:
    IN, OUT, PULL_UP, IRQ_FALLING, IRQ_RISING = 1, 3, 1, 2, 1

    def __init__(self, n, mode=None, pull=None):
        if n not in GPIOS:
            raise ValueError("invalid pin")
        if mode == Pin.OUT and n >= 34:
            raise ValueError("pin can only be input")
        self.n = n
        self._out = 0

    def irq(self, trigger=None, handler=None):
        if trigger != Pin.IRQ_FALLING:
            raise ValueError("the harness simulates falling edges only")
        _fire()
        _irqs.append([self.n, handler])
        return self

    def value(self, v=None):
        if v is not None:
            self._out = v
            return None
        _fire()
        return _level(self.n, world.true_now())


class ADC:
    ATTN_0DB, ATTN_11DB = 0, 3

    def __init__(self, pin, atten=None):
        if pin.n not in ADC1 | ADC2:
            raise ValueError("invalid Pin for ADC")
        self.pin = pin

    def _input_mv(self):
        if self.pin.n == 34:  # the soil probe; None: its wire is off and the input sits at 0 V
            mv = world.W.get("soil_mv", 2000)
            return 0 if mv is None else mv
        if self.pin.n == 35:
            return world.W.get("batt_v", 3.9) / 2 * 1000
        return 0

    def _raw(self):
        if self.pin.n in ADC2 and world.W.get("radio"):
            raise OSError(116)  # ESP_ERR_TIMEOUT: ADC2 is the Wi-Fi driver's while Wi-Fi is on
        off = world.W.get("adc_offset_mv", 142)
        return max(0, min(4095, int((self._input_mv() - off) * 4095 / (3100 - off) + 0.5)))

    def read_u16(self):
        return self._raw() * 65535 // 4095

    def read_uv(self):
        off = world.W.get("adc_offset_mv", 142)
        return int((off + self._raw() * (3100 - off) / 4095) * 1000)


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
        b[2] = checksums.sensirion(b[0:2])
        b[5] = checksums.sensirion(b[3:5])
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
    """Armed, it is on the world file at once: the harness (rimba/dev/hostnode.py), standing for the hardware,
    resets a run that outlasts it (a hung program is found by the timer, not by the program)."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        world.W.setdefault("events", []).append("wdt")
        world.W["wdt_ms"] = timeout
        world.save()

    def feed(self):
        pass


def lightsleep(ms=0):
    """Light sleep keeps RAM and the program: in the harness, simulated time moves on at once, to the end
    or to an armed ext0 level; no IRQ fires meanwhile."""
    world.W["true"] += _sleep_until(ms) - world.true_now()


class UART(RxBuffer):
    """UART 2: a PMS5003 (frames after a wake command) or a JSN-SR04T (a frame per 0x55), as the world says."""

    def __init__(self, id, baudrate=9600, tx=None, rx=None, timeout=0):
        RxBuffer.__init__(self)

    def write(self, data):
        data = bytes(data)
        if data == b"\x55" and "water_distance_mm" in world.W:
            mm = int(world.W["water_distance_mm"])
            h, l = mm >> 8, mm & 0xFF
            self.rx += bytes((0xFF, h, l, (0xFF + h + l) & 0xFF))
        return len(data)

    def read(self, n=None):
        if n == 64 and "pm25_ugm3" in world.W:  # the PMS5003 streams frames while awake
            pm = (world.W.get("pm1_ugm3", 10), world.W["pm25_ugm3"], world.W.get("pm10_ugm3", 30))
            words = pm + pm + (0,) * 7
            body = bytearray(b"\x42\x4d\x00\x1c")
            for w in words:
                body += bytes((w >> 8, w & 0xFF))
            s = sum(body) & 0xFFFF
            self.rx += body + bytes((s >> 8, s & 0xFF))
        return RxBuffer.read(self, n)
