# Plantower PMS5003 particulate sensor, UART 9600 8N1.
# Datasheet: Plantower PMS5003 series data manual (2016), appendix I: 32-byte frame 42 4D, length
# 00 1C, thirteen big-endian words, then the 16-bit sum of bytes 0..29; d4..d6 are PM1.0, PM2.5 and
# PM10 "under atmospheric environment" (µg/m³), used for ambient readings. Commands are 7 bytes,
# 42 4D CMD DATAH DATAL and their 16-bit sum: E4 00 00 sleeps, E4 00 01 wakes. After waking the fan
# needs 30 s before the numbers can be trusted (the data manual: stable data at least 30 s after wake-up).
import struct

SLEEP = b"\x42\x4d\xe4\x00\x00\x01\x73"
WAKE = b"\x42\x4d\xe4\x00\x01\x01\x74"
WARM_UP_MS = 30000


def parse(frame):
    """(pm1, pm25, pm10) atmospheric µg/m³ from one 32-byte frame, or None if it is not a valid frame."""
    if len(frame) != 32 or frame[0] != 0x42 or frame[1] != 0x4D or frame[2:4] != b"\x00\x1c":
        return None
    if sum(frame[:30]) & 0xFFFF != struct.unpack(">H", frame[30:32])[0]:
        return None
    d = struct.unpack(">13H", frame[4:30])
    return d[3], d[4], d[5]


class PMS5003:
    def __init__(self, uart, sleep_ms, ticks_ms=None):
        self._uart = uart  # machine.UART(…, baudrate=9600): write(), read(n), any()
        self._sleep_ms = sleep_ms
        self.errors = 0

    def read(self, warm=True):
        """Wake, wait out the warm-up, read one valid frame, sleep. (pm1, pm25, pm10) or None."""
        u = self._uart
        try:
            u.write(WAKE)
            if warm:
                self._sleep_ms(WARM_UP_MS)
            u.read(u.any() or 0)  # what came during the warm-up is stale
            for _ in range(6):  # an active-mode frame comes every 200-800 ms
                self._sleep_ms(1000)
                data = u.read(64) or b""
                i = data.find(b"\x42\x4d")
                while 0 <= i <= len(data) - 32:
                    v = parse(data[i:i + 32])
                    if v is not None:
                        return v
                    i = data.find(b"\x42\x4d", i + 1)
            self.errors += 1
            return None
        except OSError:
            self.errors += 1
            return None
        finally:
            try:
                u.write(SLEEP)
            except OSError:
                pass
