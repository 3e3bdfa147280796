"""What provisioning writes into a node reaches its drivers: a bundle made by `rimba firmware bundle`, run as
the board runs it (its compiled modules, its main.py, its node.json) in the real MicroPython interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rimba.dev.hostnode import FirmwareNode
from rimba.dev.harness import FLEET
from rimba.dev.harness import ROOT, env_for

START = 1_764_300_000  # 2025-11-28 03:20 UTC, a fixed time


def bundle_for(tmp_path, node_text: str, node: str):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET + "\n" + node_text)
    out = tmp_path / "bundle"
    # a broker nobody listens on: the node keeps its reading and reports that sending failed
    env = env_for({"mqtt_url": "mqtt://127.0.0.1:9", "fleet": str(fleet)})
    r = subprocess.run([sys.executable, "-m", "rimba", "firmware", "bundle", "--node", node, "--out", str(out)],
                       env=env, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return out, r


def node_from_bundle(tmp_path, out, node: str, site: str, fakes, heap: str) -> FirmwareNode:
    n = FirmwareNode(tmp_path / "run", node, site, 9, lib=out / "fw" / "a" / "lib", start=START, fakes=fakes, heap=heap)
    (n.root / "node.json").write_text((out / "data" / "node.json").read_text())  # exactly what was flashed
    return n


def test_the_soil_calibration_written_by_provisioning_is_the_one_the_probe_uses(tmp_path, compiled, heap):
    """Probe calibrated at 3000 mV dry and 1400 mV wet; at 2200 mV it reads (3000 - 2200) / 1600 = 50.0 %,
    where the firmware's defaults (2750 / 1250) would give 36.7 %."""
    out, _ = bundle_for(tmp_path, '[nodes.cal-01]\nsite = "smp29"\nprofile = "forest"\ncadence_s = 600\n'
                                  'soil_dry_mv = 3000\nsoil_wet_mv = 1400\n', "cal-01")
    assert json.loads((out / "data" / "node.json").read_text())["soil_dry_mv"] == 3000
    node = node_from_bundle(tmp_path, out, "cal-01", "smp29", compiled.parent / "fakes", heap)
    node.set(soil_mv=2200)
    r = node.wake()
    assert "unknown key" not in r.stdout and "must be" not in r.stdout, r.stdout  # every key reached the node
    assert node.buffered()[0]["soil_vwc_pct"] == 50.0


def test_the_river_mount_height_written_by_provisioning_is_the_one_the_level_uses(tmp_path, compiled, heap):
    out, _ = bundle_for(tmp_path, '[nodes.riv-01]\nsite = "bansir-laut"\nprofile = "river"\ncadence_s = 600\n'
                                  'mount_cm = 420.0\n', "riv-01")
    node = node_from_bundle(tmp_path, out, "riv-01", "bansir-laut", compiled.parent / "fakes", heap)
    node.set(water_distance_mm=1234, air_temp_c=20.0)
    node.wake()
    c = 331.3 + 0.606 * 20.0  # the speed of sound at 20 °C (the driver's own correction)
    assert node.buffered()[0]["water_level_cm"] == pytest.approx(420.0 - 123.4 * c / 343, abs=0.1)


def test_a_key_the_firmware_does_not_know_or_of_the_wrong_type_is_named_at_the_wake(tmp_path):
    node = FirmwareNode(tmp_path, "cfg-01", "smp29", 9, start=START)
    cfg = json.loads((node.root / "node.json").read_text())
    cfg.update(soil_dry=3000, soil_wet_mv="1400")
    (node.root / "node.json").write_text(json.dumps(cfg))
    node.set(soil_mv=2000)
    r = node.wake()
    assert "config: unknown key soil_dry ignored" in r.stdout
    assert "config: soil_wet_mv must be int, kept 1250" in r.stdout
    assert node.buffered()[0]["soil_vwc_pct"] == 50.0  # the defaults, (2750 - 2000) / 1500


def test_a_provisioned_value_of_the_wrong_type_stops_the_bundle_naming_the_key(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET + '\n[nodes.bad-01]\nsite = "smp29"\nprofile = "forest"\ncadence_s = 600\n'
                             'soil_dry_mv = "dry"\n')
    r = subprocess.run([sys.executable, "-m", "rimba", "firmware", "bundle", "--node", "bad-01", "--out",
                        str(tmp_path / "b")], env=env_for({"fleet": str(fleet)}), capture_output=True, text=True,
                       cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 2 and "soil_dry_mv" in r.stderr and r.stderr.count("\n") == 1, r.stderr
