# The node's clock: the RTC, in UNIX seconds whatever the port's epoch (the ESP32 port counts from
# 2000-01-01, the unix port from 1970; MicroPython docs, `time` module, "Epoch"), and the linear drift
# correction of buffered times between two NTP syncs.
#
# Integers only. The ESP32 port's floats are single precision (MicroPython builds the esp32 port with
# MICROPY_FLOAT_IMPL_FLOAT): near 1.8e9 s two neighbouring floats are 128 s apart, so one float in this
# arithmetic moves a time by up to a minute. MicroPython's integers are arbitrary precision on the ESP32
# (MICROPY_LONGINT_IMPL_MPZ), so the products below are exact. tests/test_firmware_time.py runs this
# code with every float operation rounded to float32 and checks that none happens.
import time

import machine

EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0


def now():
    """UNIX seconds by the RTC."""
    y, mo, d, _wd, h, mi, s, _sub = machine.RTC().datetime()
    return time.mktime((y, mo, d, h, mi, s, 0, 0)) + EPOCH


def correct(t, syncs):
    """A reading's RTC time corrected with the sync history [[set_at, rtc_before, true_after], ...].

    Each sync measured the RTC's error (true_after - rtc_before) after running freely since the
    previous sync set it right at `set_at`: a reading taken in between gets the share of that error
    its time had accumulated, rounded to the nearest second (halves up). A reading before the first
    sync gets the first sync's whole error; a reading after the last sync is already on the corrected
    clock. All integer seconds, all integer arithmetic.
    """
    if not syncs:
        return t
    prev_set = None
    for set_at, before, after in syncs:
        if t <= before:
            err = after - before
            if prev_set is None or before <= prev_set:
                return t + err
            span = before - prev_set
            # err * (t - prev_set) / span rounded half up, as floor((2 * share + span) / (2 * span))
            return t + (2 * err * (t - prev_set) + span) // (2 * span)
        prev_set = set_at
    return t
