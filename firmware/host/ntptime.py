# A fake `ntptime`: settime() sets the RTC to the world's true time, or fails when the world says so.
import time

import machine
import world

host = "pool.ntp.org"


def settime():
    if not world.W.get("ntp", True):
        raise OSError(110)  # ETIMEDOUT
    g = time.gmtime(int(world.true_now() + 0.5))
    machine.RTC().datetime((g[0], g[1], g[2], g[6], g[3], g[4], g[5], 0))
