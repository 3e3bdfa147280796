# Capacitive soil moisture probe v1.2 on an ESP32 ADC1 pin (DFRobot SEN0193 wiki; ADC1 because ADC2 stops
# with Wi-Fi, and 11 dB for 150-2450 mV, ESP-IDF's ADC guide): the output falls as the
# soil gets wetter. Two-point calibration per probe: pct = (dry - raw) / (dry - wet) * 100, clamped to
# 0..100; the median of several calibrated readings (ADC.read_uv, millivolts). The probe is powered
# from a pin only while it is read.
#
# A probe that is not there reads null. With its wire off, the input sits at 0 V and the ADC at the
# bottom of its scale; read_uv() then returns the chip's calibration offset, which differs from chip to
# chip (ESP-IDF ADC calibration: the eFuse two-point or Vref coefficients), so a floor in millivolts
# would pass on one board and read 100 % on the next. The raw conversion (read_u16) is the same on
# every chip: at the floor the input is 0 V, which a powered probe never outputs (in water it gives
# about 1 V).
from micropython import const

FLOOR_U16 = const(1024)  # raw below 1/64 of the scale: the input is at the ADC's floor


def percent(mv, dry_mv, wet_mv):
    if dry_mv == wet_mv:
        return None
    pct = (dry_mv - mv) * 100.0 / (dry_mv - wet_mv)
    return min(100.0, max(0.0, pct))


class Soil:
    def __init__(self, adc, power_pin, sleep_ms, dry_mv=2750, wet_mv=1250, samples=5):
        self._adc = adc
        self._power = power_pin
        self._sleep_ms = sleep_ms
        self.dry_mv, self.wet_mv, self.samples = dry_mv, wet_mv, samples
        self.errors = 0

    def read(self):
        try:
            self._power.value(1)
            self._sleep_ms(100)  # the probe's oscillator settles
            mv = sorted((self._adc.read_uv() + 500) // 1000 for _ in range(self.samples))[self.samples // 2]
            floor = self._adc.read_u16() < FLOOR_U16
        except OSError:
            self.errors += 1
            return None
        finally:
            self._power.value(0)
        if floor or mv < 150 or mv > 3100:  # no probe, or outside the ADC's linear range (ESP-IDF ADC docs)
            self.errors += 1
            return None
        return round(percent(mv, self.dry_mv, self.wet_mv), 1)
