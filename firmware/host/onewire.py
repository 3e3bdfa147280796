# A fake `onewire` (frozen in the ESP32 firmware, absent from the unix port): one DS18B20 whose
# temperature the world gives (soil_temp_c or water_temp_c).
import checksums
import world


class OneWire:
    def __init__(self, pin):
        self.pin = pin

    def reset(self):
        return not world.W.get("onewire_dead", False)

    def writebyte(self, b):
        pass

    def readinto(self, buf):
        t = world.W.get("water_temp_c", world.W.get("soil_temp_c", 27.0))
        raw = int(round(t / 0.0625)) & 0xFFFF
        b = bytearray((raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0))
        b[8] = checksums.maxim(b[0:8])
        for i in range(len(buf)):
            buf[i] = b[i]
