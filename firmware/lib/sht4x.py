# Sensirion SHT4x humidity and temperature sensor, I2C.
# Datasheet: Sensirion SHT4x, version 6.6 (2024). §4.5 commands (0xFD high repeatability,
# 8.3 ms max), §4.6 conversion: T = -45 + 175 * S_T / 65535, RH = -6 + 125 * S_RH / 65535,
# cropped to 0..100 %; each 16-bit word is followed by its CRC-8 (§4.4, see crc8.sensirion).
from micropython import const

import crc8

_MEASURE_HIGH = const(0xFD)
_MEASURE_MS = const(9)


class SHT4x:
    def __init__(self, i2c, sleep_ms, addr=0x44):
        self._i2c = i2c
        self._sleep_ms = sleep_ms
        self._addr = addr
        self._cmd = bytearray((_MEASURE_HIGH,))
        self._buf = bytearray(6)
        self.errors = 0

    def read(self):
        """(air_temp_c, air_rh_pct), or None after counting an error."""
        try:
            self._i2c.writeto(self._addr, self._cmd)
            self._sleep_ms(_MEASURE_MS)
            self._i2c.readfrom_into(self._addr, self._buf)
        except OSError:
            self.errors += 1
            return None
        b = self._buf
        if crc8.sensirion(b, 0, 2) != b[2] or crc8.sensirion(b, 3, 5) != b[5]:
            self.errors += 1
            return None
        return convert((b[0] << 8) | b[1], (b[3] << 8) | b[4])


def convert(s_t, s_rh):
    rh = -6 + 125 * s_rh / 65535
    return -45 + 175 * s_t / 65535, min(100.0, max(0.0, rh))
