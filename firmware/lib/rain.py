# Tipping-bucket rain gauge, reed switch to ground with a pull-up; each tip is the profile's mm_per_tip
# (sensors.MM_PER_TIP, from hardware/profiles/*.toml: 0.2794 mm, the bucket of Argent Data Systems' 80422).
#
# Counted whether the CPU runs or sleeps:
# - running: a Pin IRQ on the falling edge, with a 20 ms debounce;
# - asleep (deep or light sleep): no IRQ fires, so the gauge's pin is armed as the ext0 wake source,
#   low level (esp32.wake_on_ext0(pin, esp32.WAKEUP_ALL_LOW); MicroPython docs, `esp32` module; ESP-IDF
#   "Sleep Modes": ext0 is the RTC IO wake source, GPIO 27 is RTC_GPIO17 in the ESP32 Technical Reference
#   Manual's RTC IO table). A tip wakes the chip; `tip_wake` counts it, waits until the switch has opened
#   and stayed open for the debounce time, arms ext0 again and sleeps for the rest of the sample interval.
#   Chosen with the energy model (hardware/power.py, README "The node firmware"): a wake per tip costs
#   about 0.23 mAh a day in a Pontianak year, against about 0.14 mAh for a ULP counter polling every
#   20 ms (whose binary nothing here can check) and a BOM change for an external counter.
# The count, the wakes it took and the next sample's due time are kept in RTC memory
# (machine.RTC().memory(): kept across deep sleep, lost at power-off); each reading reports the rain
# since the previous one and starts the count again.
import struct

import machine
from micropython import const

DEBOUNCE_MS = const(20)
RELEASE_MS = const(500)  # a switch closed longer than this is stuck: ext0 stays off until it opens
_FMT = "<IIi"  # tips, tip wakes, due (RTC UNIX seconds of the next sample)


def _load():
    mem = machine.RTC().memory()
    return list(struct.unpack(_FMT, mem[:12])) if len(mem) >= 12 else [0, 0, 0]


def _save(state):
    machine.RTC().memory(struct.pack(_FMT, *state))


def _released(pin):
    """Wait (light sleep, with a deadline) until the switch is open and stays open DEBOUNCE_MS."""
    import esp32

    esp32.wake_on_ext0(None, esp32.WAKEUP_ALL_LOW)  # not while waiting for the level it would wake on
    waited = 0
    open_for = 0
    while waited < RELEASE_MS:
        if pin.value():
            open_for += 10
            if open_for >= DEBOUNCE_MS:
                return True
        else:
            open_for = 0
        machine.lightsleep(10)
        waited += 10
    return False


def arm(pin):
    """Make the next tip wake the sleeping chip (unless the switch is stuck closed)."""
    import esp32

    if _released(pin):
        esp32.wake_on_ext0(pin, esp32.WAKEUP_ALL_LOW)


def tip_wake(pin, now):
    """A wake by the gauge (ext0): count the tip, re-arm; the ms left until the next sample (0: due now)."""
    state = _load()
    state[0] += 1
    state[1] += 1
    _save(state)
    return resume(pin, now)


def resume(pin, now):
    """Re-arm after a wake that took no sample; the ms left until the next sample (0: due now)."""
    arm(pin)
    return max(0, _load()[2] - now()) * 1000


class Rain:
    def __init__(self, pin, ticks_ms, mm_per_tip):
        self._pin = pin
        self._ticks_ms = ticks_ms
        self.mm_per_tip = mm_per_tip
        self._last = None
        self.tip_wakes = 0  # wakes the last reading's tips took (the energy model counts them)
        pin.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._tip)

    @property
    def tips(self):
        return _load()[0]

    def _tip(self, _pin):
        now = self._ticks_ms()
        if self._last is not None and now - self._last < DEBOUNCE_MS:
            return  # contact bounce
        self._last = now
        state = _load()
        state[0] += 1
        _save(state)

    def read(self):
        """Millimetres since the previous reading."""
        state = _load()
        mm = round(state[0] * self.mm_per_tip, 2)
        self.tip_wakes = state[1]
        state[0] = state[1] = 0
        _save(state)
        return mm

    def light_sleep(self, ms):
        """machine.lightsleep(ms) that counts the tips that end it early (no IRQ fires in light sleep),
        then sleeps the whole ms again: a longer wait, never a shorter one, and never a lost tip."""
        import esp32

        for _ in range(64):  # a deadline: at most 64 tips in one wait
            arm(self._pin)
            machine.lightsleep(ms)
            if machine.wake_reason() != machine.EXT0_WAKE:
                break
            state = _load()
            state[0] += 1
            _save(state)
        esp32.wake_on_ext0(None, esp32.WAKEUP_ALL_LOW)  # running again: the IRQ counts

    def sleep(self, due):
        """Before any sleep: remember when the next sample is due, and arm the gauge's wake."""
        state = _load()
        state[2] = due
        _save(state)
        arm(self._pin)
