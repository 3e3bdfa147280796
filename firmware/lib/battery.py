# Battery voltage through the profile's divider (two 1 MOhm resistors: sensors.BATTERY_DIVIDER) on the
# batt_adc pin with 11 dB attenuation (ESP32 quick reference: ADC.read_uv() is calibrated microvolts).
# Returns volts, or None.
import machine

from sensors import BATTERY_DIVIDER, PINS


def read():
    try:
        adc = machine.ADC(machine.Pin(PINS["batt_adc"]), atten=machine.ADC.ATTN_11DB)
        return round(adc.read_uv() * BATTERY_DIVIDER / 1e6, 3)
    except (OSError, ValueError):
        return None
