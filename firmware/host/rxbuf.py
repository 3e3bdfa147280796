# The receiving side of a fake UART (MicroPython's machine.UART: any() and read(n), None when nothing has
# come): bytes queued by whatever stands for the device, read in order. The host board's UART and the
# driver tests' scripted one share it.


class RxBuffer:
    def __init__(self, stream=b""):
        self.rx = bytearray(stream)

    def any(self):
        return len(self.rx)

    def read(self, n=None):
        if not self.rx:
            return None
        n = len(self.rx) if n is None else n
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out
