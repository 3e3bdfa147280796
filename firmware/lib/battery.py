# Battery voltage through a 1:1 divider (two 100 kOhm resistors) on an ADC pin with 11 dB attenuation
# (ESP32 quick reference: ADC.read_uv() is calibrated microvolts). Returns volts, or None.
import machine

PIN = 35
RATIO = 2.0


def read():
    try:
        adc = machine.ADC(machine.Pin(PIN), atten=machine.ADC.ATTN_11DB)
        return round(adc.read_uv() * RATIO / 1e6, 3)
    except (OSError, ValueError):
        return None
