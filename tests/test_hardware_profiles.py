"""Hardware profiles as data: the firmware's pins are the profiles', every sensor's metrics are contract names,
the bill of materials adds up, and the wiring diagrams are drawn from the pin maps (and are current)."""

import ast
import xml.etree.ElementTree as ET

import pytest

from hardware import profiles
from rimba.errors import ConfigError
from rimba.metrics import METRICS
from rimba.dev.harness import ROOT

pytestmark = pytest.mark.unit  # no stack, no process


def firmware_constant(name: str):
    """A literal constant of firmware/lib/sensors.py (PINS, PROFILES, COLUMNS), read without running
    MicroPython code."""
    tree = ast.parse((ROOT / "firmware" / "lib" / "sensors.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in firmware/lib/sensors.py")


def test_the_node_s_profile_tables_are_generated_from_the_files():
    assert profiles.generated_block(profiles.SENSORS_PY.read_text()) == profiles.firmware_block(), \
        "the generated block of firmware/lib/sensors.py is stale: run python -m hardware.profiles"


def test_regenerating_replaces_only_the_block(tmp_path):
    path = tmp_path / "sensors.py"
    path.write_text("import machine\n" + profiles.BEGIN + "PINS = {}\n" + profiles.END + "x = 1\n")
    profiles.write_firmware(path)
    assert path.read_text() == "import machine\n" + profiles.firmware_block() + "x = 1\n"
    path.write_text("import machine\n")
    with pytest.raises(ConfigError, match="no generated block"):
        profiles.write_firmware(path)


def test_a_pin_two_profiles_put_on_different_gpios_stops_the_generation(monkeypatch):
    real = profiles.profile_pins
    monkeypatch.setattr(profiles, "profile_pins", lambda n: {**real(n), "sda": 5} if n == "river" else real(n))
    with pytest.raises(ConfigError, match="profile river: pin sda is GPIO5"):
        profiles.firmware_block()


@pytest.mark.parametrize("name", ["forest", "river", "air"])
def test_the_firmware_pins_and_sensors_are_the_profiles(name):
    p = profiles.load(name)
    fw = firmware_constant("PINS")
    for role, gpio in p["pins"].items():
        assert fw[role] == gpio, f"{name}: {role} is GPIO{gpio} in the profile, GPIO{fw[role]} in the firmware"
    assert {s["part"] for s in p["sensors"]} == set(firmware_constant("PROFILES")[name])
    # the node's columns are the profile's metrics in the order of its rows
    assert firmware_constant("COLUMNS")[name] == tuple(m for s in p["sensors"] for m in s["metrics"])
    for s in p["sensors"]:
        assert all(m in METRICS for m in s["metrics"])
    adc = [p["pins"][k] for k in p["pins"] if k.endswith("_adc")]
    assert all(32 <= g <= 39 for g in adc)  # ADC1 only: ADC2 stops working while Wi-Fi runs


@pytest.mark.parametrize("name", ["forest", "river", "air"])
def test_bill_of_materials_and_wiring(name, tmp_path):
    p = profiles.load(name)
    lines = profiles.bom_lines(p)
    total = sum(b["qty"] * b["price_idr"] for b in p["bom"])
    assert lines[-1].split()[-1] == f"{total:,}".replace(",", ".") and 200_000 < total < 2_000_000
    assert all(b["description"] and b["qty"] > 0 for b in p["bom"])
    svg = profiles.wiring_svg(p)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert all(f"GPIO{g}" in svg for g in p["pins"].values())
    committed = ROOT / "hardware" / "wiring" / f"{name}.svg"
    assert committed.read_text() == svg, "regenerate: python -m hardware.profiles"


def test_the_platform_s_default_sends_are_the_firmware_s():
    """A node the fleet file gives no send_every sends as the firmware's default does (fleet.SEND_EVERY, used by
    bundles, the pages' cadence, the overdue alerts and rollouts)."""
    from hardware.bundle import firmware_config
    from rimba.fleet import SEND_EVERY, SEND_EVERY_MAX, Node

    assert SEND_EVERY == firmware_config().DEFAULTS["send_every"]
    assert SEND_EVERY_MAX == firmware_config().REMOTE["send_every"][2]
    assert Node("n", "s", "forest", 600).send_every == SEND_EVERY
    assert Node("n", "s", "forest", 600, {"send_every": 3}).send_every == 3
