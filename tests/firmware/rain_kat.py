# The rain gauge's counter across "deep sleep": tips counted by the interrupt (debounced), kept in RTC
# memory, reported as millimetres since the previous reading. Run twice by the test (two wakes).
import json
import sys

import rain
import world
from fakebus import FakePin

clock = [0]
pin = FakePin()
r = rain.Rain(pin, lambda: clock[0], 0.2794)  # the bucket of the Argent Data Systems 80422
if sys.argv[-1] == "first":
    for t in (0, 5, 100, 400, 405, 1000):  # two bounces inside 20 ms
        clock[0] = t
        pin.handler(pin)
    out = {"tips": r.tips}
    world.save()  # what deep sleep keeps
else:
    out = {"carried": r.tips, "mm": r.read(), "after": r.tips}
print(json.dumps(out))
