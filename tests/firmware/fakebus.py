# Fake buses for driver tests in MicroPython: small and honest, with the machine.I2C methods the
# drivers call (ESP32 quick reference signatures).


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
