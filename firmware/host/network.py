# A fake `network` module: one station interface whose connection the world scripts.
import world

STA_IF = 0


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._joined = False

    def active(self, on=None):
        if on is not None:
            self._active = on
            world.W["radio"] = bool(on)  # ADC2 stops working while the radio is on (machine.ADC)
        return self._active

    def connect(self, ssid, password=None):
        world.W["wifi_connects"] = world.W.get("wifi_connects", 0) + 1
        world.W.setdefault("events", []).append("wifi")
        self._joined = True

    def isconnected(self):
        return self._active and self._joined and world.W.get("wifi", True)

    def status(self, what=None):
        return world.W.get("rssi", -70) if what == "rssi" else 1010
