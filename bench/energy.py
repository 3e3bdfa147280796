"""`python -m bench.energy`: the firmware's energy figure, from a simulated day of the real firmware.

A forest node (the firmware compiled with mpy-cross, in the MicroPython unix port, 96 KiB heap) wakes 144 times, sampling every
10 minutes and sending every hour, against the real Mosquitto and ingest, through a mean day of a
Pontianak year's rain (hardware.power.rain_tips_per_day, 31 tips, falling as an afternoon storm while it
sleeps); the operations it counted (wakes, tip wakes, Wi-Fi connects with a static address, MQTT
sessions and their length, bytes sent, sensor reads) go into hardware.power with a module-grade board
(25 µA asleep) and 2x18650 cells, with the static address and, for comparison, with DHCP. The day runs
once per contract version (v2, the firmware's default, and v1), so the two are compared on the same
model. Bytes on air are the payloads the node really published, taken off the broker by a listener: a
day's hourly batches, and a full batch (200 readings, a node that sends after 200 samples, as after an
outage). Reports where the awake charge goes, step by step. Writes bench/results/energy.json.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from hardware import power
from rimba import settings as settings_mod
from rimba.adapters.influx import Influx
from rimba.dev.stack import Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
WAKES = 144
FULL = 200
WORLD = {"air_temp_c": 27.31, "air_rh_pct": 84.2, "soil_mv": 2075, "soil_temp_c": 26.43}  # a forest morning
STATIC = ["192.168.4.29", "255.255.255.0", "192.168.4.1", "192.168.4.1"]


class Listener:
    """Every `up` payload the broker passes on, as published: (topic, bytes)."""

    def __init__(self, broker):
        from rimba.adapters.mqtt import Mqtt

        self.lock = threading.Lock()
        self.got: list = []
        self.mqtt = Mqtt(broker, "energy-listener", v5=False, subscriptions=("rimba/+/+/+/up",),
                         on_message=self._take).start()
        self.mqtt.subscribed.wait(10)

    def _take(self, topic, payload, mid, qos, retain):
        with self.lock:
            self.got.append((topic, bytes(payload)))

    def of(self, node: str) -> list:
        with self.lock:
            return [p for t, p in self.got if t.split("/")[3] == node]


def rows(payload: bytes) -> int:
    body = json.loads(payload)
    return len(body.get("x", body.get("r", [])))


def day(tmp: Path, port: int, node_id: str, wire: int, influx, listener, wait_until, fw: dict) -> dict:
    """The counted operations of a day of the forest node speaking `wire`, and the payloads it sent."""
    from rimba.dev.hostnode import FirmwareNode

    start = time.time() - (WAKES + 2) * 600
    node = FirmwareNode(tmp, node_id, "smp29", port, start=start, sample_s=600, send_every=6, wifi_ip=STATIC,
                        wire=wire, **fw)
    node.set(**WORLD)
    tips = round(power.rain_tips_per_day())
    node.set(rain_tips=[start + 8 * 3600 + (k + 0.5) * 3 * 3600 / tips for k in range(tips)])
    i = 0
    while i < WAKES:
        if node.world.get("wake") == "ext0":  # a tip woke it: counted, back to sleep, no reading
            node.wake()
            continue
        node.wake()
        i += 1
        if i % 48 == 0:
            print(f"  v{wire}: {i}/{WAKES} wakes", flush=True)
    wait_until(lambda: influx.rows(f"SELECT count(seq) FROM reading WHERE node = '{node_id}'")[0]["count"]
               >= WAKES - 6, 60, f"the v{wire} day stored")
    sent = listener.of(node_id)
    ops = json.loads((node.root / "cycle.json").read_text())["ops"]
    return {"ops": ops, "payload_bytes": sum(len(p) for p in sent), "payload_rows": sum(rows(p) for p in sent),
            "messages": len(sent)}


def full_batch(tmp: Path, port: int, node_id: str, wire: int, listener, wait_until, fw: dict) -> float:
    """Payload bytes per reading of the one batch a node sends after FULL samples kept (as after an outage)."""
    from rimba.dev.hostnode import FirmwareNode

    node = FirmwareNode(tmp, node_id, "smp29", port, start=time.time() - (FULL + 2) * 600, sample_s=600,
                        send_every=FULL, wifi_ip=STATIC, wire=wire, **fw)
    node.set(**WORLD)
    for _ in range(FULL):
        node.wake()
    sent = wait_until(lambda: listener.of(node_id), 30, f"the v{wire} full batch")
    payload = max(sent, key=rows)
    return len(payload) / rows(payload)


def budget(ops: dict) -> tuple:
    d = power.Day(ops["wakes"], ops["wifi"], ops["mqtt"], ops["bytes"],
                  {k: n * power.SENSORS[k][0] for k, n in ops.items() if k in power.SENSORS},
                  tip_wakes=ops.get("tip_wakes", 0), wifi_static=ops.get("wifi_static", 0),
                  mqtt_s=ops.get("mqtt_ms", 0) / 1000)
    battery = power.Battery.parse("2x18650")
    board = power.BOARDS["module"]
    hot = {t: power.budget(d, dataclasses.replace(battery, temp_c=t), board) for t in (25, 30, 35, 45)}
    return (d, power.budget(d, battery, board), power.budget(dataclasses.replace(d, wifi_static=0), battery, board),
            hot)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from rimba.dev.hostnode import compile_firmware, heap_for
    from rimba.dev.harness import fleet_text
    from rimba.dev.harness import IngestProcess, env_for, wait_until

    names = {2: "energy-02", 1: "energy-01"}
    full_names = {2: "energy-f2", 1: "energy-f1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stack = Stack(tmp / "stack", free_port(), free_port())
        stack.up()
        try:
            nodes = {n: ("smp29", "forest") for n in [*names.values(), *full_names.values()]}
            (tmp / "fleet.toml").write_text(fleet_text(nodes))
            values = {"mqtt_url": stack.mqtt_url, "influx_url": stack.influx_url, "influx_db": "energy",
                      "state_dir": str(tmp / "state"), "fleet": str(tmp / "fleet.toml")}
            s = settings_mod.build(overrides=values, env={})
            influx = Influx(stack.influx_url, "energy")
            influx.create_database()
            ingest = IngestProcess(env_for(values), tmp / "ingest.log").start().wait_subscribed()
            listener = Listener(s.broker)
            lib = compile_firmware(tmp / "fw")  # as flashed, in 96 KiB (the compiled fakes' own heap added)
            fw = {"lib": lib, "heap": heap_for(lib)}
            days = {w: day(tmp, s.broker.port, names[w], w, influx, listener, wait_until, fw) for w in (2, 1)}
            full = {w: full_batch(tmp, s.broker.port, full_names[w], w, listener, wait_until, fw) for w in (2, 1)}
            listener.mqtt.stop()
            ingest.stop()
        finally:
            stack.down()
    cell = power.Battery.parse("2x18650")
    report: dict = {"battery": "2x18650: the INR18650-30Q's recovery rows as capacity fade, Zilberman et al. (2019) "
                               "self-discharge, at the box's temperature (hardware/power.py)",
                    "box_c": cell.temp_c, "fade_month": cell.fade_month, "self_discharge_month": cell.self_discharge_month}
    for w in (2, 1):
        ops = days[w]["ops"]
        d, b, dhcp, hot = budget(ops)
        report[f"v{w}"] = {
            "ops_per_day": ops, "mah_per_day": b.mah_per_day, "mah_awake": b.mah_awake, "mah_sleep": b.mah_sleep,
            "mah_self_discharge": b.mah_self_discharge, "mah_divider": b.mah_divider, "mah_fade_day": b.mah_fade_day,
            "battery_days": b.days, "battery_months": b.days / power.DAYS_PER_MONTH,
            "battery_months_with_dhcp": dhcp.days / power.DAYS_PER_MONTH, "mah_per_day_with_dhcp": dhcp.mah_per_day,
            "battery_months_by_box_c": {t: h.days / power.DAYS_PER_MONTH for t, h in hot.items()},
            "awake_steps_per_day": {k: {"mC": mc, "s": sec} for k, (mc, sec) in d.steps().items()},
            "awake_s_per_day": b.awake_s_per_day, "mqtt_ms_per_session": ops.get("mqtt_ms", 0) / max(ops["mqtt"], 1),
            "mqtt_bytes_per_reading": ops["bytes"] / max(ops["readings_sent"], 1),
            "payload_bytes_per_reading_hourly": days[w]["payload_bytes"] / max(days[w]["payload_rows"], 1),
            "payload_bytes_per_reading_full_batch": full[w], "messages": days[w]["messages"]}
    for w in (2, 1):
        r = report[f"v{w}"]
        print(f"contract v{w}: counted in a day: {r['ops_per_day']}")
        for k, v in r["awake_steps_per_day"].items():
            print(f"  {k:36} {v['mC']:9.1f} mC {v['s']:8.2f} s")
        by_c = ", ".join(f"{m:.1f} at {t} °C" for t, m in r["battery_months_by_box_c"].items())
        print(f"  {r['mah_per_day']:.2f} mAh per day (awake {r['mah_awake']:.2f}, asleep {r['mah_sleep']:.2f}, "
              f"divider {r['mah_divider']:.2f}, self-discharge {r['mah_self_discharge']:.2f}) and the capacity "
              f"fading {r['mah_fade_day']:.2f} a day: {r['battery_days']:,.0f} days, "
              f"{r['battery_months']:.1f} months on 2x18650 in a box at {report['box_c']:g} °C "
              f"({r['battery_months_with_dhcp']:.1f} with DHCP; {by_c})")
        print(f"  payload bytes per reading: {r['payload_bytes_per_reading_full_batch']:.1f} in a full batch of "
              f"{FULL}, {r['payload_bytes_per_reading_hourly']:.1f} in the hourly batches of six; all MQTT bytes "
              f"per reading (connect, subscribe, status, headers): {r['mqtt_bytes_per_reading']:.1f}; "
              f"{r['mqtt_ms_per_session']:.0f} ms a session")
    out = ROOT / "bench" / "results" / "energy.json"
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
