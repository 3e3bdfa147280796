# The fakes' own CRC-8s, table-driven and independent of the firmware's lib/crc8.py (a bug there must
# not be mirrored by the sensors it talks to). The chip is not in the firmware's filesystem either: on
# the board these checksums come from the sensors themselves.
# Sensirion SHT4x datasheet, "Checksum Calculation": polynomial 0x31, init 0xFF, CRC(0xBEEF) = 0x92.
# Maxim DS18B20 datasheet / Application Note 27: polynomial 0x31 reflected (0x8C), init 0.


def _table(poly, reflected):
    out = bytearray(256)
    for byte in range(256):
        c = byte
        for _ in range(8):
            if reflected:
                c = (c >> 1) ^ poly if c & 1 else c >> 1
            else:
                c = ((c << 1) ^ poly) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        out[byte] = c
    return out


_SHT, _DS = _table(0x31, False), _table(0x8C, True)


def sensirion(data):
    crc = 0xFF
    for b in data:
        crc = _SHT[crc ^ b]
    return crc


def maxim(data):
    crc = 0
    for b in data:
        crc = _DS[crc ^ b]
    return crc
