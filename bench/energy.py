"""`python -m bench.energy`: the firmware's energy figure, from a simulated day of the real firmware.

A forest node (the firmware in the MicroPython unix port, 96 KiB heap) wakes 144 times, sampling every
10 minutes and sending every hour, against the real Mosquitto and ingest, through a mean day of a
Pontianak year's rain (hardware.power.rain_tips_per_day, 31 tips, falling as an afternoon storm while it
sleeps); the operations it counted (wakes, tip wakes, Wi-Fi connects with a static address, MQTT
sessions and their length, bytes sent, sensor reads) go into hardware.power with a module-grade board
(25 µA asleep) and 2x18650 cells, with the static address and, for comparison, with DHCP. Reports where
the awake charge goes, step by step, and the MQTT payload bytes per reading.
Writes bench/results/energy.json.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from hardware import power
from rimba import settings as settings_mod
from rimba.influx import Influx
from rimba.stack import Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
WAKES = 144


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from rimba.hostnode import FirmwareNode
    from tests.conftest import fleet_text
    from tests.support import IngestProcess, env_for, wait_until

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stack = Stack(tmp / "stack", free_port(), free_port())
        stack.up()
        try:
            (tmp / "fleet.toml").write_text(fleet_text({"energy-01": ("smp29", "forest")}))
            values = {"mqtt_url": stack.mqtt_url, "influx_url": stack.influx_url, "influx_db": "energy",
                      "state_dir": str(tmp / "state"), "fleet": str(tmp / "fleet.toml")}
            s = settings_mod.build(overrides=values, env={})
            influx = Influx(stack.influx_url, "energy")
            influx.create_database()
            ingest = IngestProcess(env_for(values), tmp / "ingest.log").start().wait_subscribed()
            start = time.time() - (WAKES + 2) * 600
            node = FirmwareNode(tmp, "energy-01", "smp29", s.broker.port, start=start, sample_s=600, send_every=6,
                                wifi_ip=["192.168.4.29", "255.255.255.0", "192.168.4.1", "192.168.4.1"])
            tips = round(power.rain_tips_per_day())
            node.set(rain_tips=[start + 8 * 3600 + (k + 0.5) * 3 * 3600 / tips for k in range(tips)])
            texts = []
            i = 0
            while i < WAKES:
                if node.world.get("wake") == "ext0":  # a tip woke it: counted, back to sleep, no reading
                    node.wake()
                    continue
                if (i + 1) % 6 == 0:  # just before a send: the buffered readings' text is what goes out
                    texts += [line[9:] for seg in (node.root / "buf").glob("s*.log")
                              for line in seg.read_text().splitlines() if len(line) > 9]
                node.wake()
                i += 1
                if i % 24 == 0:
                    print(f"  {i}/{WAKES} wakes", flush=True)
            wait_until(lambda: influx.rows("SELECT count(seq) FROM reading")[0]["count"] >= WAKES - 6, 60, "stored")
            ingest.stop()
        finally:
            stack.down()
        ops = json.loads((node.root / "cycle.json").read_text())["ops"]
    day = power.Day(ops["wakes"], ops["wifi"], ops["mqtt"], ops["bytes"],
                    {k: n * power.SENSORS[k][0] for k, n in ops.items() if k in power.SENSORS},
                    tip_wakes=ops.get("tip_wakes", 0), wifi_static=ops.get("wifi_static", 0),
                    mqtt_s=ops.get("mqtt_ms", 0) / 1000)
    battery = power.Battery.parse("2x18650")
    b = power.budget(day, battery, power.BOARDS["module"])
    dhcp = power.budget(dataclasses.replace(day, wifi_static=0), battery, power.BOARDS["module"])
    steps = {k: {"mC": mc, "s": sec} for k, (mc, sec) in day.steps().items()}
    per_reading = ops["bytes"] / max(ops["readings_sent"], 1)
    payload_per_reading = sum(len(t) + 1 for t in texts) / max(len(texts), 1)  # each reading and its comma
    columnar_per_reading = columnar_bytes_per_reading([json.loads(t) for t in texts])
    report = {"ops_per_day": ops, "mah_per_day": b.mah_per_day, "mah_awake": b.mah_awake, "mah_sleep": b.mah_sleep,
              "mah_self_discharge": b.mah_self_discharge, "battery_days": b.days, "battery_months": b.days / 30.4,
              "mqtt_bytes_per_reading": per_reading, "payload_bytes_per_reading_in_a_batch": payload_per_reading,
              "columnar_v2_proposal_bytes_per_reading_in_a_full_batch": columnar_per_reading,
              "awake_steps_per_day": steps, "awake_s_per_day": b.awake_s_per_day,
              "battery_months_with_dhcp": dhcp.days / 30.4, "mah_per_day_with_dhcp": dhcp.mah_per_day}
    print(f"counted in a day: {ops}")
    for k, v in steps.items():
        print(f"  {k:36} {v['mC']:9.1f} mC {v['s']:8.2f} s")
    print(f"with DHCP instead of the static address: {dhcp.mah_per_day:.2f} mAh per day, "
          f"{dhcp.days / 30.4:.1f} months")
    print(f"{b.mah_per_day:.2f} mAh per day (awake {b.mah_awake:.2f}, asleep {b.mah_sleep:.2f}, self-discharge "
          f"{b.mah_self_discharge:.2f}): {b.days:,.0f} days, {b.days / 30.4:.1f} months on 2x18650")
    print(f"payload bytes per reading in a batch: {payload_per_reading:.1f}; all MQTT bytes per reading (connect, "
          f"subscribe, status and headers included, six readings a send): {per_reading:.1f}")
    print(f"the same readings as a full batch in the columnar form proposed for a contract v2 "
          f"(docs/wire-v2-proposal.md): {columnar_per_reading:.1f} bytes per reading")
    out = ROOT / "bench" / "results" / "energy.json"
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


def columnar_bytes_per_reading(readings: list, batch: int = 200) -> float:
    """Bytes per reading of full batches (`batch` readings) in the columnar JSON that
    docs/wire-v2-proposal.md proposes: metric names once, `seq` and `t` as a start and steps, values as
    integers in each metric's resolution. A size for the proposal, not something the firmware sends."""
    scale = {"air_temp_c": 100, "air_rh_pct": 10, "air_pressure_hpa": 10, "soil_temp_c": 100, "soil_vwc_pct": 10,
             "light_lux": 1, "rain_mm": 10, "batt_v": 1000, "rssi_dbm": 1}
    sizes = []
    for start in range(0, len(readings) - batch + 1, batch) or [0]:
        rows = readings[start:start + batch]
        names = sorted({k for r in rows for k in r if k not in ("seq", "t")})
        t = [r["t"] for r in rows]
        body = {"v": 2, "node": "smp29-03", "epoch": 2841937411, "now": t[-1], "tq": "ntp", "seq0": rows[0]["seq"],
                "t0": t[0], "dt": [b - a for a, b in itertools.pairwise(t)], "m": names,
                "x": [[None if r.get(m) is None else round(r[m] * scale.get(m, 100)) for m in names] for r in rows]}
        sizes.append(len(json.dumps(body, separators=(",", ":"))) / len(rows))
    return sum(sizes) / len(sizes)


if __name__ == "__main__":
    sys.exit(main())
