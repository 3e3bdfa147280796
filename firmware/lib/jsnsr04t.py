# JSN-SR04T v2/v3 waterproof ultrasonic sensor in UART mode (the river level at Bansir Laut).
# Frame FF H L SUM at 9600 8N1, SUM = (0xFF + H + L) & 0xFF, distance H*256+L in millimetres, measured
# by the module at c = 343 m/s; with the air temperature known, the distance is rescaled to
# c = 331.3 + 0.606 T m/s (the speed of sound in dry air, linear near ambient: Kinsler et al., Fundamentals
# of Acoustics, ch. 5). In on-request mode the node sends 0x55 for each ping.
# The median of several pings goes out; pings inside the 20-25 cm blind zone are rejected.

BLIND_MM = 250
TRIGGER = b"\x55"


def parse(frame):
    """Distance in mm from one 4-byte frame, or None."""
    if len(frame) != 4 or frame[0] != 0xFF or (0xFF + frame[1] + frame[2]) & 0xFF != frame[3]:
        return None
    return frame[1] * 256 + frame[2]


def speed_of_sound(air_temp_c):
    return 331.3 + 0.606 * air_temp_c


def corrected_mm(mm, air_temp_c, module_c=343.0):
    """The module's distance rescaled to the speed of sound at air_temp_c."""
    return mm * speed_of_sound(air_temp_c) / module_c


class JSNSR04T:
    def __init__(self, uart, sleep_ms, mount_cm, pings=5):
        self._uart = uart
        self._sleep_ms = sleep_ms
        self.mount_cm = mount_cm  # the transducer's height above the site's datum
        self.pings = pings
        self.errors = 0

    def read(self, air_temp_c=None):
        """Water level in cm above the datum (mount height minus the distance), or None."""
        got = []
        for _ in range(self.pings):
            try:
                self._uart.read(self._uart.any() or 0)
                self._uart.write(TRIGGER)
                self._sleep_ms(100)
                data = self._uart.read(4) or b""
            except OSError:
                continue
            mm = parse(data)
            if mm is not None and mm >= BLIND_MM:
                got.append(mm)
        if not got:
            self.errors += 1
            return None
        got.sort()
        mm = got[len(got) // 2]
        if air_temp_c is not None:
            mm = corrected_mm(mm, air_temp_c)
        return round(self.mount_cm - mm / 10, 1)
