"""`python -m bench.ota`: what a firmware update costs a forest node, on the air and in charge.

Two forest nodes of the compiled firmware (MicroPython unix port, 96 KiB heap, static address) wake twelve
times each, sampling every 10 minutes and sending every hour, against the real Mosquitto and ingest. Node B
is offered a release before its first send (`rimba firmware release` builds it, the rollout's offer is
published as its retained config); node A is not. The operations each counted (wakes, Wi-Fi connects, MQTT
sessions and their length, bytes sent and received) go into hardware.power, and the update's cost is B
minus A: like for like, the same wakes, the same world. Two releases: a full one (every file of the
application changed, all fetched) and a typical one (one module changed; the others are copied from the
running slot, not fetched). Time on air is the power model's: bytes at 802.11b's 1 Mbit/s (8 µs a byte,
the slowest rate, so an upper bound), the radio's connect and session times as measured on a board by
glenn20 (hardware/power.py); the session lengths measured here are the host's, not a radio's.
Writes bench/results/ota.json.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hardware import power
from hardware import release as rel
from rimba import settings as settings_mod
from rimba.adapters.influx import Influx
from rimba.dev.stack import Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
WAKES = 12
KEY = "6b" * 32
WORLD = {"air_temp_c": 27.31, "air_rh_pct": 84.2, "soil_mv": 2075, "soil_temp_c": 26.43}
STATIC = ["192.168.4.29", "255.255.255.0", "192.168.4.1", "192.168.4.1"]


def tree(tmp: Path, version: str, every_file: bool) -> Path:
    """The firmware tree at `version`: every module changed (a line added at the top moves every line, so
    every compiled file differs), or only node.py (its FW line)."""
    src = tmp / f"src-{version}"
    shutil.copytree(ROOT / "firmware", src, ignore=shutil.ignore_patterns("__pycache__", "host"))
    node_py = src / "lib" / "node.py"
    node_py.write_text(re.sub(r'^FW = "[^"]*"', f'FW = "{version}"', node_py.read_text(), flags=re.MULTILINE))
    if every_file:
        for path in [*(src / "lib").glob("*.py"), src / "main.py"]:
            path.write_text(f"# release {version}\n" + path.read_text())
    return src


def ops_of(node) -> dict:
    return json.loads((node.root / "cycle.json").read_text())["ops"]


def day(ops: dict) -> power.Day:
    return power.Day(ops["wakes"] + ops.get("update_boots", 0), ops["wifi"], ops["mqtt"], ops["bytes"],
                     {k: n * power.SENSORS[k][0] for k, n in ops.items() if k in power.SENSORS},
                     tip_wakes=ops.get("tip_wakes", 0), wifi_static=ops.get("wifi_static", 0),
                     mqtt_s=ops.get("mqtt_ms", 0) / 1000, bytes_received=ops.get("bytes_in", 0))


def run(tmp: Path, port: int, name: str, fw: dict, offered) -> tuple:
    """(ops, runs of the firmware) of twelve wakes; `offered(name)` publishes the offer before the first."""
    from rimba.dev.hostnode import FirmwareNode

    node = FirmwareNode(tmp, name, "smp29", port, start=time.time() - (WAKES + 6) * 600, sample_s=600,
                        send_every=6, wifi_ip=STATIC, fw_key=KEY, **fw)
    node.set(**WORLD)
    if offered:
        offered(name)
    runs = 0
    while True:
        r = node.wake(expect_sleep=False)  # a reset (into the update, into the trial) is a run too
        assert r.returncode in (0, 3), r.stdout + r.stderr
        runs += 1
        if ops_of(node)["wakes"] >= WAKES:
            return ops_of(node), runs, node.boot_record


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from rimba.dev.hostnode import compile_firmware, heap_for
    from rimba.adapters.mqtt import Mqtt
    from rimba.dev.harness import fleet_text
    from rimba.dev.harness import IngestProcess, env_for

    kinds = {"full": True, "typical": False}
    names = ["ota-a-full", "ota-b-full", "ota-a-typical", "ota-b-typical"]
    report: dict = {"wakes": WAKES, "note": "B (offered the release) minus A (not), same wakes and world"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stack = Stack(tmp / "stack", free_port(), free_port())
        stack.up()
        try:
            (tmp / "fleet.toml").write_text(fleet_text({n: ("smp29", "forest") for n in names}))
            values = {"mqtt_url": stack.mqtt_url, "influx_url": stack.influx_url, "influx_db": "ota",
                      "state_dir": str(tmp / "state"), "fleet": str(tmp / "fleet.toml")}
            s = settings_mod.build(overrides=values, env={})
            Influx(stack.influx_url, "ota").create_database()
            ingest = IngestProcess(env_for(values), tmp / "ingest.log").start().wait_subscribed()
            lib = compile_firmware(tmp / "fw")
            fw = {"lib": lib, "heap": heap_for(lib)}
            pub = Mqtt(s.broker, "bench-ota", v5=False, persistent=False).start()
            for kind, every in kinds.items():
                version = "9.0.0" if every else "9.0.1"
                blobs = rel.build(tree(tmp, version, every))
                files = rel.manifest(blobs)
                pub.wait_published([pub.publish(f"rimba/v2/fw/{files[p]}", data, qos=1, retain=True)
                                    for p, data in blobs.items()], 60)

                def offered(name, files=files, version=version):
                    body = json.dumps({"v": 2, "rev": 1, "fw": rel.offer(KEY, files, version)}).encode()
                    pub.wait_published([pub.publish(f"rimba/v2/smp29/{name}/config", body, qos=1, retain=True)], 10)

                a_ops, a_runs, _ = run(tmp, s.broker.port, f"ota-a-{kind}", fw, None)
                b_ops, b_runs, b_rec = run(tmp, s.broker.port, f"ota-b-{kind}", fw, offered)
                assert b_rec == {"good": "b"}, b_rec  # the update was taken, and is good
                da, db = day(a_ops), day(b_ops)
                (mc_a, s_a), (mc_b, s_b) = da.charge_mc(static_ip=True), db.charge_mc(static_ip=True)
                steps = {k: (db.steps(True)[k][0] - da.steps(True)[k][0], db.steps(True)[k][1] - da.steps(True)[k][1])
                         for k in db.steps(True)}
                report[kind] = {
                    "version": version, "files": len(files), "release_bytes": sum(len(b) for b in blobs.values()),
                    "fetched_bytes_on_air": b_ops.get("bytes_in", 0) - a_ops.get("bytes_in", 0),
                    "sent_bytes_extra": b_ops["bytes"] - a_ops["bytes"],
                    "extra_runs": b_runs - a_runs, "extra_wifi": b_ops["wifi"] - a_ops["wifi"],
                    "extra_mqtt": b_ops["mqtt"] - a_ops["mqtt"],
                    "mc": mc_b - mc_a, "mah": (mc_b - mc_a) / power.MC_PER_MAH, "awake_s": s_b - s_a,
                    "steps": {k: {"mC": mc, "s": sec} for k, (mc, sec) in steps.items() if mc or sec}}
                print(f"{kind} update ({len(files)} files, {report[kind]['release_bytes']:,} bytes released): "
                      f"{report[kind]['fetched_bytes_on_air']:,} bytes fetched, "
                      f"{report[kind]['extra_runs']} extra boots, {report[kind]['extra_wifi']} extra Wi-Fi connects; "
                      f"{report[kind]['mc']:.0f} mC = {report[kind]['mah']:.3f} mAh, "
                      f"{report[kind]['awake_s']:.2f} s more awake", flush=True)
                for k, v in report[kind]["steps"].items():
                    print(f"    {k:40} {v['mC']:8.1f} mC {v['s']:7.2f} s")
            pub.wait_published([pub.publish(t, b"", qos=1, retain=True) for t in
                                [f"rimba/v2/smp29/{n}/config" for n in names]], 10)
            pub.stop()
            ingest.stop()
        finally:
            stack.down()
    (ROOT / "bench" / "results" / "ota.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
