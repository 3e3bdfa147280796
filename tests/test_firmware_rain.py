"""Rain that falls while the node sleeps is counted: the firmware in the real MicroPython interpreter, the
host fakes as strict as the chip (no IRQ fires in light or deep sleep; only an armed ext0 level ends a sleep)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rimba.dev.hostnode import FAKES, FirmwareNode, micropython
from rimba.dev.harness import ROOT

START = 1_764_300_000  # 2025-11-28 03:20 UTC, a fixed time
MM = 0.2794


def storm(start: float, mm: float, minutes: float) -> list:
    """Tip times of `mm` of rain spread evenly over `minutes`."""
    n = round(mm / MM)
    return [start + (i + 0.5) * minutes * 60 / n for i in range(n)]


def run_until(node: FirmwareNode, end: float) -> int:
    wakes = 0
    while node.world["true"] < end:
        node.wake()
        wakes += 1
        assert wakes < 1000
    return wakes


def test_a_storm_during_deep_sleep_is_counted_tip_by_tip(tmp_path):
    """23.8 mm (85 tips) in 25 minutes, all while the node sleeps between its 10-minute samples: every tip
    wakes it (ext0), is counted and the node sleeps on; the samples keep their cadence and report it all."""
    node = FirmwareNode(tmp_path, "rain-01", "smp29", 9, start=START, send_every=1000)
    tips = storm(START + 30, 23.8, 25)
    node.set(rain_tips=tips)
    wakes = run_until(node, START + 4 * 600 + 5)  # the samples at START, + 600, ..., + 2400 and the tips between
    readings = node.buffered()
    assert [r["seq"] for r in readings] == [1, 2, 3, 4, 5]  # the tip wakes took no reading
    gaps = [b["t"] - a["t"] for a, b in zip(readings, readings[1:])]
    assert all(600 <= g <= 602 for g in gaps), gaps  # the cadence (600 s after each wake's awake time) held
    assert sum(r["rain_mm"] for r in readings) == pytest.approx(len(tips) * MM, abs=0.011)
    assert wakes == len(tips) + 5
    assert node.world["wake"] == "timer"
    ops = json.loads((node.root / "cycle.json").read_text())["ops"]
    assert ops["tip_wakes"] == len(tips) and ops["wakes"] == 5  # for the energy model


def test_a_tip_during_a_sensor_wait_in_light_sleep_is_counted_once(tmp_path):
    """The DS18B20 conversion waits 750 ms in light sleep, where no IRQ fires: a tip then ends the light
    sleep (ext0), is counted, and the wait resumes."""
    node = FirmwareNode(tmp_path, "rain-02", "smp29", 9, start=START, send_every=1000)
    node.set(rain_tips=[START + 0.5])
    node.wake()
    assert node.buffered()[0]["rain_mm"] == round(MM, 2)


def test_a_reed_switch_stuck_closed_does_not_keep_waking_the_node(tmp_path):
    node = FirmwareNode(tmp_path, "rain-03", "smp29", 9, start=START, send_every=1000)
    node.set(rain_tips=[START + 100], rain_closure_ms=3_600_000)  # closed for an hour
    wakes = run_until(node, START + 3 * 600 - 1)
    assert wakes <= 5 and len(node.buffered()) == 3


def fake_run(tmp_path, script: str) -> dict:
    world = tmp_path / "world.json"
    if not world.exists():
        world.write_text(json.dumps({"true": START, "rtc": [START, START], "rain_tips": [START + 5, START + 15]}))
    (tmp_path / "s.py").write_text(script)
    env = {**os.environ, "MICROPYPATH": f"{FAKES}:{ROOT / 'firmware' / 'lib'}", "RIMBA_WORLD": str(world)}
    r = subprocess.run([micropython(), str(tmp_path / "s.py")], env=env, capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(world.read_text()) | {"out": r.stdout.strip()}


def test_the_fake_fires_no_irq_while_the_cpu_sleeps_and_wakes_only_on_an_armed_ext0_level(tmp_path):
    w = fake_run(tmp_path, """
import machine, esp32
seen = []
p = machine.Pin(27, machine.Pin.IN, machine.Pin.PULL_UP)
p.irq(trigger=machine.Pin.IRQ_FALLING, handler=lambda pin: seen.append(1))
machine.lightsleep(10000)   # both tips fall in it: no IRQ, no ext0 armed, the sleep runs to its end
a = (len(seen), machine.wake_reason())
esp32.wake_on_ext0(p, esp32.WAKEUP_ALL_LOW)
import world
world.W["rain_tips"] = [world.true_now() + 3]
machine.lightsleep(10000)   # armed: ends at the tip
print(a, len(seen), machine.wake_reason())
t = world.true_now()
machine.deepsleep(60000)    # still armed and the switch still closed: ext0 is a level, the sleep ends at once
""")
    assert w["out"] == "(0, 4) 0 2"
    assert w["wake"] == "ext0" and w["cause"] == "deepsleep" and w["true"] - START < 20
    w = fake_run(tmp_path, """
import machine
print(machine.wake_reason(), machine.reset_cause())
machine.deepsleep(60000)    # a new process after the reset: nothing armed, the timer ends this sleep
""")
    assert w["out"] == "2 4" and w["wake"] == "timer"
