# Datasheet worked examples through fake buses, in the real MicroPython interpreter.
# Prints one JSON object; tests/test_firmware_drivers.py checks it.
import json

import bme280
import crc8
import sht4x
from fakebus import FakeI2C

out = {}
slept = []


def sleep_ms(ms):
    slept.append(ms)


# CRC-8 known answers (Sensirion and Maxim)
out["crc_beef"] = crc8.sensirion(b"\xbe\xef")
out["crc_sensirion_more"] = [crc8.sensirion(bytes(w)) for w in ((0x66, 0x66), (0x80, 0x00), (0x01, 0xF4), (0x5E, 0xB9))]
out["crc_maxim_123456789"] = crc8.maxim(b"123456789")
out["crc_maxim_rom"] = crc8.maxim(bytes((0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00)))

# SHT4x: 0x6666, 0x8000 -> 25.00 °C, 56.50 %RH; then a corrupted CRC; then a dead bus
frame = bytes((0x66, 0x66, 0x93, 0x80, 0x00, 0xA2))
bad = bytes((0x66, 0x66, 0x93, 0x80, 0x00, 0xA3))
bus = FakeI2C(0x44, responses=[frame, bad])
s = sht4x.SHT4x(bus, sleep_ms)
out["sht4x"] = s.read()
out["sht4x_bad_crc"] = s.read()
bus.fail = True
out["sht4x_dead"] = s.read()
out["sht4x_errors"] = s.errors
out["sht4x_command"] = list(bus.writes[0][1])


def le16(v):
    v &= 0xFFFF
    return (v & 0xFF, v >> 8)


calib = []
for v in (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000):
    calib += le16(v)
h2 = le16(362)
regs = {
    0xD0: (0x60,),
    0x88: calib,
    0xA1: (75,),
    0xE1: (h2[0], h2[1], 0, 315 >> 4, ((50 & 0x0F) << 4) | (315 & 0x0F), 50 >> 4, 30),
    0xF7: (0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x80, 0x00),
}
bus = FakeI2C(0x76, regs=regs)
b = bme280.BME280(bus, sleep_ms)
t100, t_fine = b.compensate_t(519888)
out["bme280_t100"] = t100
out["bme280_t_fine"] = t_fine
out["bme280_p_q24_8"] = b.compensate_p(415148, t_fine)
out["bme280_h_q22_10"] = b.compensate_h(32768, t_fine)
out["bme280_read"] = b.read()
out["bme280_ctrl_order"] = [w[0] for w in bus.writes]
bus.fail = True
out["bme280_dead"] = b.read()
out["bme280_errors"] = b.errors
wrong = bme280.BME280(FakeI2C(0x76, regs={0xD0: (0x58,)}), sleep_ms)  # a BMP280 answers
out["bme280_wrong_chip"] = [wrong.ready, wrong.read(), wrong.errors]


# DS18B20: the datasheet's temperatures, the power-on scratchpad (85.0 °C is an error), a bad CRC
import crc8 as _crc
import ds18b20
from fakebus import FakeOneWire


def pad(raw):
    b = bytearray((raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0))
    b[8] = _crc.maxim(b, 0, 8)
    return b


out["ds18b20_raw"] = [ds18b20.convert(r) for r in (0x07D0, 0x0191, 0xFF5E, 0xFC90)]
out["ds18b20_poweron_crc"] = _crc.maxim(bytes((0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10)))
ow = FakeOneWire(pad(0x0191))
d = ds18b20.DS18B20(ow, sleep_ms)
out["ds18b20_read"] = d.read()
out["ds18b20_commands"] = ow.written
d._ow = FakeOneWire(bytes((0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0x1C)))
out["ds18b20_poweron"] = d.read()
bad = pad(0x0191)
bad[8] ^= 1
d._ow = FakeOneWire(bad)
out["ds18b20_bad_crc"] = d.read()
d._ow = FakeOneWire(pad(0x0191), present=False)
out["ds18b20_absent"] = d.read()
out["ds18b20_errors"] = d.errors

# PMS5003: the datasheet-format example frame, a corrupted one, a frame found in a noisy stream
import pms5003
from fakebus import FakeUART

KAT = bytes.fromhex("424d001c000c00120015000c00120015096002bc0078000a000200019100034e")
out["pms_parse"] = pms5003.parse(KAT)
broken = bytearray(KAT)
broken[10] ^= 0x40
out["pms_bad_sum"] = pms5003.parse(bytes(broken))
uart = FakeUART(stream=b"\x00\x13\x42" + KAT + KAT[:5])
p = pms5003.PMS5003(uart, sleep_ms)
uart.rx = bytearray()
uart_stream = b"\x00\x13\x42" + KAT


class Feeding(FakeUART):
    def write(self, data):
        self.writes.append(bytes(data))
        if data == pms5003.WAKE:
            self.rx = bytearray()
        return len(data)

    def read(self, n=None):
        if n == 64:
            self.rx += uart_stream
        return FakeUART.read(self, n)


fu = Feeding()
p = pms5003.PMS5003(fu, sleep_ms)
out["pms_read"] = p.read()
out["pms_commands"] = [list(w) for w in fu.writes]
out["pms_slept_warmup"] = 30000 in slept
dead = Feeding()
dead.read = lambda n=None: b"\x42\x4d\x00"
pd = pms5003.PMS5003(dead, sleep_ms)
out["pms_dead"] = pd.read()
out["pms_errors"] = pd.errors

# JSN-SR04T: 1234 mm is ff 04 d2 d5; speed of sound; the median; the blind zone; a bad checksum
import jsnsr04t

out["jsn_parse"] = jsnsr04t.parse(bytes((0xFF, 0x04, 0xD2, 0xD5)))
out["jsn_bad"] = jsnsr04t.parse(bytes((0xFF, 0x04, 0xD2, 0xD6)))
out["jsn_c"] = [jsnsr04t.speed_of_sound(25.0), jsnsr04t.speed_of_sound(33.0)]
out["jsn_echo_30c_m"] = 5830e-6 * jsnsr04t.speed_of_sound(30.0) / 2


def frame(mm):
    h, l = mm >> 8, mm & 0xFF
    return bytes((0xFF, h, l, (0xFF + h + l) & 0xFF))


u = FakeUART(answers=[frame(1234), frame(100), frame(1240), frame(1230), bytes((0xFF, 4, 0xD2, 0)), frame(1236)])
j = jsnsr04t.JSNSR04T(u, sleep_ms, mount_cm=310.0, pings=6)
out["jsn_level"] = j.read()
out["jsn_level_25c"] = jsnsr04t.JSNSR04T(FakeUART(answers=[frame(1000)] * 3), sleep_ms, 310.0, 3).read(25.0)
j2 = jsnsr04t.JSNSR04T(FakeUART(answers=[]), sleep_ms, 310.0, 3)
out["jsn_silent"] = j2.read()
out["jsn_errors"] = j2.errors

# capacitive soil probe: two-point calibration, clamping, a broken wire
import soil
from fakebus import FakeADC, FakePin

out["soil_pct"] = [soil.percent(2350, 3200, 1500), soil.percent(3300, 3200, 1500), soil.percent(1400, 3200, 1500)]
pin = FakePin()
sp = soil.Soil(FakeADC([2000, 2010, 1990, 5000, 2005]), pin, sleep_ms, dry_mv=2750, wet_mv=1250)
out["soil_read"] = sp.read()
out["soil_power"] = pin.values
sp2 = soil.Soil(FakeADC([20]), FakePin(), sleep_ms)
out["soil_broken"] = sp2.read()
out["soil_errors"] = sp2.errors
# a probe with its wire off: the input at 0 V, read_uv() at each chip's calibration offset
out["soil_unplugged"] = [soil.Soil(FakeADC([0], offset_mv=off), FakePin(), sleep_ms).read() for off in (0, 75, 142, 160, 210)]

print(json.dumps(out))
