# The simulated world around a node in the host harness: true time, the RTC's error, Wi-Fi, NTP and
# what the sensors see, in a JSON file named by $RIMBA_WORLD. Each process (one wake) reads it at
# start; deep sleep writes it back with the time advanced by the sleep, and ends the process.
import json
import os
import time

PATH = os.getenv("RIMBA_WORLD")
with open(PATH) as f:
    W = json.load(f)
_T0 = time.ticks_ms()


def true_now():
    return W["true"] + time.ticks_diff(time.ticks_ms(), _T0) / 1000


def save():
    tmp = PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(W, f)
    os.rename(tmp, PATH)
