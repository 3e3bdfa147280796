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

    def ifconfig(self, config=None):
        """(ip, netmask, gateway, dns), as MicroPython's WLAN.ifconfig; set before connect for a static address."""
        if config is None:
            return tuple(world.W.get("static_ip") or ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1"))
        if len(config) != 4 or not all(isinstance(a, str) and len(a.split(".")) == 4 for a in config):
            raise ValueError("ifconfig needs (ip, netmask, gateway, dns) as dotted strings")
        world.W["static_ip"] = list(config)

    def isconnected(self):
        return self._active and self._joined and world.W.get("wifi", True)

    def status(self, what=None):
        return world.W.get("rssi", -70) if what == "rssi" else 1010
