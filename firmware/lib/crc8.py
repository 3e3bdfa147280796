# CRC-8 checks of the node's sensors.
# Sensirion: SHT3x/SHT4x/SCD4x datasheets, "Checksum Calculation": polynomial 0x31
#   (x^8 + x^5 + x^4 + 1), initialisation 0xFF, no reflection, no final XOR; CRC(0xBEEF) = 0x92.
# Maxim/Dallas: DS18B20 datasheet and Application Note 27: the same polynomial, reflected (0x8C),
#   initialisation 0; CRC("123456789") = 0xA1.
from micropython import const

_SENSIRION_POLY = const(0x31)
_MAXIM_POLY = const(0x8C)


def sensirion(data, start=0, end=None):
    crc = 0xFF
    for i in range(start, len(data) if end is None else end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ _SENSIRION_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def maxim(data, start=0, end=None):
    crc = 0
    for i in range(start, len(data) if end is None else end):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc >> 1) ^ _MAXIM_POLY if crc & 1 else crc >> 1
    return crc
