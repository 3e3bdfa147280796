# The node's clock: the RTC, in UNIX seconds whatever the port's epoch (the ESP32 port counts from
# 2000-01-01, the unix port from 1970; DOMAIN.md 5.13), and the linear drift correction of buffered
# times between two NTP syncs.
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
    its time had accumulated. A reading before the first sync gets the first sync's whole error; a
    reading after the last sync is already on the corrected clock.
    """
    if not syncs:
        return t
    prev_set = None
    for set_at, before, after in syncs:
        if t <= before:
            err = after - before
            if prev_set is None or before <= prev_set:
                return t + err
            return t + err * (t - prev_set) / (before - prev_set)
        prev_set = set_at
    return t
