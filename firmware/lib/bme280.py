# Bosch BME280 combined humidity, pressure and temperature sensor, I2C.
# Datasheet: Bosch BST-BME280-DS002, revision 1.6 (2018).
#   §5.4.3 ctrl_hum (0xF2) must be written before ctrl_meas (0xF4) to take effect
#   §3.3.3 forced mode; §5.4.4 ctrl_meas: osrs_t, osrs_p, mode = 01 (forced)
#   §4.2.2 trimming parameters: 0x88..0xA1 and 0xE1..0xE7
#   §4.2.3 compensation formulas (32-bit temperature and humidity, 64-bit pressure)
#   §5.4.1 chip id 0x60 at 0xD0
# Worked example (BMP280 datasheet §3.12, the same T and P formulas): adc_T 519888 -> 2508
# (25.08 °C), t_fine 128422; adc_P 415148 -> 25767233 (Q24.8, 100653.25 Pa).
from micropython import const

_REG_ID = const(0xD0)
_REG_CALIB_TP = const(0x88)
_REG_CALIB_H1 = const(0xA1)
_REG_CALIB_H2 = const(0xE1)
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_DATA = const(0xF7)
_CHIP_ID = const(0x60)
_OSRS_X1 = const(1)
_FORCED = const(1)
_MEASURING = const(0x08)
_MAX_WAIT_MS = const(50)  # §9.1: 9.3 ms at x1 oversampling; a generous deadline


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _s16(b, i):
    v = _u16(b, i)
    return v - 65536 if v > 32767 else v


def _s12(v):
    return v - 4096 if v > 2047 else v


class BME280:
    def __init__(self, i2c, sleep_ms, addr=0x76):
        self._i2c = i2c
        self._sleep_ms = sleep_ms
        self._addr = addr
        self._data = bytearray(8)
        self._one = bytearray(1)
        self.errors = 0
        self.ready = False
        try:
            self._load_calibration()
            self.ready = True
        except OSError:
            self.errors += 1

    def _load_calibration(self):
        i2c, a = self._i2c, self._addr
        i2c.readfrom_mem_into(a, _REG_ID, self._one)
        if self._one[0] != _CHIP_ID:
            raise OSError("not a BME280")
        tp = bytearray(24)
        i2c.readfrom_mem_into(a, _REG_CALIB_TP, tp)
        self.t1, self.t2, self.t3 = _u16(tp, 0), _s16(tp, 2), _s16(tp, 4)
        self.p = [_u16(tp, 6)] + [_s16(tp, 8 + 2 * k) for k in range(8)]  # dig_P1..P9
        i2c.readfrom_mem_into(a, _REG_CALIB_H1, self._one)
        h = bytearray(7)
        i2c.readfrom_mem_into(a, _REG_CALIB_H2, h)
        self.h1 = self._one[0]
        self.h2 = _s16(h, 0)
        self.h3 = h[2]
        self.h4 = _s12((h[3] << 4) | (h[4] & 0x0F))
        self.h5 = _s12((h[5] << 4) | (h[4] >> 4))
        self.h6 = h[6] - 256 if h[6] > 127 else h[6]

    def compensate_t(self, adc_t):
        """§4.2.3: temperature in 0.01 °C, and t_fine."""
        var1 = (((adc_t >> 3) - (self.t1 << 1)) * self.t2) >> 11
        d = (adc_t >> 4) - self.t1
        var2 = (((d * d) >> 12) * self.t3) >> 14
        t_fine = var1 + var2
        return (t_fine * 5 + 128) >> 8, t_fine

    def compensate_p(self, adc_p, t_fine):
        """§4.2.3, 64-bit version: pressure in Pa as Q24.8 (0 if undefined)."""
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self.p
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6
        var2 = var2 + ((var1 * p5) << 17)
        var2 = var2 + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * p1) >> 33
        if var1 == 0:
            return 0
        p = 1048576 - adc_p
        num = ((p << 31) - var2) * 3125
        p = num // var1 if (num >= 0) == (var1 > 0) else -((-num) // var1)  # C division truncates
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (p7 << 4)

    def compensate_h(self, adc_h, t_fine):
        """§4.2.3: relative humidity as Q22.10 %RH."""
        v = t_fine - 76800
        v = ((((adc_h << 14) - (self.h4 << 20) - (self.h5 * v)) + 16384) >> 15) * (
            ((((((v * self.h6) >> 10) * (((v * self.h3) >> 11) + 32768)) >> 10) + 2097152) * self.h2 + 8192) >> 14)
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * self.h1) >> 4)
        v = 0 if v < 0 else (419430400 if v > 419430400 else v)
        return v >> 12

    def read(self):
        """(air_temp_c, air_pressure_hpa, air_rh_pct) from one forced measurement, or None."""
        if not self.ready:
            self.errors += 1
            return None
        i2c, a = self._i2c, self._addr
        try:
            i2c.writeto_mem(a, _REG_CTRL_HUM, bytes((_OSRS_X1,)))
            i2c.writeto_mem(a, _REG_CTRL_MEAS, bytes(((_OSRS_X1 << 5) | (_OSRS_X1 << 2) | _FORCED,)))
            waited = 0
            while True:
                self._sleep_ms(2)
                waited += 2
                i2c.readfrom_mem_into(a, _REG_STATUS, self._one)
                if not self._one[0] & _MEASURING:
                    break
                if waited >= _MAX_WAIT_MS:
                    raise OSError("measurement did not finish")
            i2c.readfrom_mem_into(a, _REG_DATA, self._data)
        except OSError:
            self.errors += 1
            return None
        return self.decode(self._data)

    def decode(self, d):
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        if adc_t == 0x80000 or adc_p == 0x80000:  # §4: skipped measurement
            self.errors += 1
            return None
        t100, t_fine = self.compensate_t(adc_t)
        p = self.compensate_p(adc_p, t_fine)
        # humidity is always measured here (osrs_h x1), so 0x8000 is a real value, not "skipped"
        h = self.compensate_h(adc_h, t_fine)
        return t100 / 100, (p / 256 / 100 if p else None), h / 1024
