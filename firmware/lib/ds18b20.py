# Maxim DS18B20 1-Wire thermometer (soil or water temperature).
# Datasheet: Maxim DS18B20 (19-7487 Rev 6): Skip ROM 0xCC, Convert T 0x44 (750 ms at 12 bits), Read
# Scratchpad 0xBE; 9 bytes T_LSB T_MSB TH TL CONFIG FF res 10 CRC; CRC-8/MAXIM over the first eight
# (crc8.maxim); temperature signed 16-bit x 0.0625 °C. 85.0 °C is the power-on value: read without a
# finished conversion, it is an error, not a temperature.
from micropython import const

import crc8

_SKIP_ROM = const(0xCC)
_CONVERT = const(0x44)
_READ = const(0xBE)
_CONVERT_MS = const(750)


def convert(raw):
    if raw & 0x8000:
        raw -= 0x10000
    return raw * 0.0625


class DS18B20:
    def __init__(self, ow, sleep_ms):
        self._ow = ow  # a onewire.OneWire: reset(), writebyte(), readinto()
        self._sleep_ms = sleep_ms
        self._buf = bytearray(9)
        self.errors = 0

    def read(self):
        """Temperature °C, or None after counting an error."""
        ow = self._ow
        try:
            if not ow.reset():
                raise OSError(19)
            ow.writebyte(_SKIP_ROM)
            ow.writebyte(_CONVERT)
            self._sleep_ms(_CONVERT_MS)
            if not ow.reset():
                raise OSError(19)
            ow.writebyte(_SKIP_ROM)
            ow.writebyte(_READ)
            ow.readinto(self._buf)
        except OSError:
            self.errors += 1
            return None
        b = self._buf
        if crc8.maxim(b, 0, 8) != b[8]:
            self.errors += 1
            return None
        t = convert(b[0] | (b[1] << 8))
        if t == 85.0:
            self.errors += 1  # the power-on value: the conversion did not happen
            return None
        return t
