# Fake buses for driver tests in MicroPython: small and honest, with the machine.I2C methods the
# drivers call (ESP32 quick reference signatures). The UART's receiving side is the host fakes' (firmware/host).

from rxbuf import RxBuffer


class FakeI2C:
    """A register-mapped device (readfrom_mem_into/writeto_mem) and a command device
    (writeto/readfrom_into answering with queued responses)."""

    def __init__(self, addr, regs=None, responses=()):
        self.addr = addr
        self.regs = bytearray(256)
        for reg, data in (regs or {}).items():
            self.regs[reg:reg + len(data)] = bytes(data)
        self.responses = list(responses)
        self.writes = []
        self.fail = False

    def _check(self, addr):
        if self.fail or addr != self.addr:
            raise OSError(19)  # ENODEV: nobody answered

    def readfrom_mem_into(self, addr, reg, buf):
        self._check(addr)
        for i in range(len(buf)):
            buf[i] = self.regs[reg + i]

    def writeto_mem(self, addr, reg, data):
        self._check(addr)
        self.writes.append((reg, bytes(data)))
        self.regs[reg:reg + len(data)] = bytes(data)

    def writeto(self, addr, data):
        self._check(addr)
        self.writes.append((None, bytes(data)))

    def readfrom_into(self, addr, buf):
        self._check(addr)
        data = self.responses.pop(0)
        for i in range(len(buf)):
            buf[i] = data[i]


class FakeOneWire:
    """A 1-Wire bus with one device answering Read Scratchpad with the given 9 bytes."""

    def __init__(self, scratchpad, present=True):
        self.scratchpad = bytes(scratchpad)
        self.present = present
        self.written = []

    def reset(self):
        return self.present

    def writebyte(self, b):
        self.written.append(b)

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.scratchpad[i]


class FakeUART(RxBuffer):
    """A UART whose incoming bytes are scripted: each write() may queue the next answer."""

    def __init__(self, answers=(), stream=b""):
        RxBuffer.__init__(self, stream)
        self.answers = list(answers)
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        if self.answers and data == b"\x55":
            self.rx += self.answers.pop(0)
        return len(data)


class FakeADC:
    """An ESP32 ADC at 11 dB whose calibration puts raw 0 at `offset_mv`: inputs at or below it read the floor."""

    def __init__(self, mv, offset_mv=142):
        self.mv = list(mv)
        self.offset_mv = offset_mv
        self.last = self.mv[0]

    def read_uv(self):
        self.last = self.mv.pop(0) if len(self.mv) > 1 else self.mv[0]
        return max(self.last, self.offset_mv) * 1000

    def read_u16(self):
        raw = max(0, min(4095, (self.last - self.offset_mv) * 4095 // (3100 - self.offset_mv)))
        return raw * 65535 // 4095


class FakePin:
    def __init__(self):
        self.values = []
        self.handler = None

    def value(self, v=None):
        if v is not None:
            self.values.append(v)

    def irq(self, trigger=None, handler=None):
        self.handler = handler
