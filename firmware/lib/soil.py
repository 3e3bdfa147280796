# Capacitive soil moisture probe v1.2 on an ESP32 ADC1 pin (DOMAIN.md 5.5): the output falls as the
# soil gets wetter. Two-point calibration per probe: pct = (dry - raw) / (dry - wet) * 100, clamped to
# 0..100; the median of several calibrated readings (ADC.read_uv, millivolts). The probe is powered
# from a pin only while it is read.


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
            mv = sorted(self._adc.read_uv() // 1000 for _ in range(self.samples))[self.samples // 2]
        except OSError:
            self.errors += 1
            return None
        finally:
            self._power.value(0)
        if mv < 150 or mv > 3100:  # outside the ADC's linear range: a broken wire or a dead probe
            self.errors += 1
            return None
        return round(percent(mv, self.dry_mv, self.wet_mv), 1)
