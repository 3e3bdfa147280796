# Tipping-bucket rain gauge, reed switch to ground with a pull-up (DOMAIN.md 5.12): 0.2794 mm per tip,
# counted by an interrupt with a 20 ms debounce. The count is kept across deep sleep in RTC memory
# (machine.RTC().memory(), which survives deep sleep but not a power loss); each reading reports the
# rain since the previous one and starts the count again.
import struct

import machine

MM_PER_TIP = 0.2794
DEBOUNCE_MS = 20


class Rain:
    def __init__(self, pin, ticks_ms, mm_per_tip=MM_PER_TIP):
        self._rtc = machine.RTC()
        self._ticks_ms = ticks_ms
        self.mm_per_tip = mm_per_tip
        self._last = None
        self.tips = self._load()
        pin.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._tip)

    def _load(self):
        mem = self._rtc.memory()
        return struct.unpack("<I", mem[:4])[0] if len(mem) >= 4 else 0

    def _save(self):
        self._rtc.memory(struct.pack("<I", self.tips))

    def _tip(self, _pin):
        now = self._ticks_ms()
        if self._last is not None and now - self._last < DEBOUNCE_MS:
            return  # contact bounce
        self._last = now
        self.tips += 1
        self._save()

    def read(self):
        """Millimetres since the previous reading."""
        mm = round(self.tips * self.mm_per_tip, 2)
        self.tips = 0
        self._save()
        return mm
