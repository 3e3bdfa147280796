# A fake `esp32` module: wake_on_ext0 as the MicroPython ESP32 port documents it (an RTC GPIO, a level);
# machine's sleeps honour it. Like the chip's, the setting is in RAM: every wake must arm it again.
import machine

WAKEUP_ALL_LOW, WAKEUP_ANY_HIGH = False, True
RTC_GPIOS = {0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39}


def wake_on_ext0(pin, level):
    if pin is None:
        machine._ext0[0] = None
        return
    if pin.n not in RTC_GPIOS:
        raise ValueError("invalid pin for ext0 wake: not an RTC GPIO")
    machine._ext0[0], machine._ext0[1] = pin.n, 1 if level else 0
