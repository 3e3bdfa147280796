"""One burst through the real stack: simulator traffic → Mosquitto → `rimba ingest` → InfluxDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from rimba import settings as settings_mod
from rimba.fleet import parse_fleet
from rimba.adapters.influx import Influx
from rimba.dev.simulate import Publisher, Simulation
from rimba.dev.wire2 import to_v2
from ingest.writer import PARTS, part_of

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("air_temp_c", "air_rh_pct", "soil_vwc_pct", "batt_v")
NODES = 200


def fleet_dict(nodes: int) -> dict:
    return {"sites": {"smp29": {"name": "bench", "lat": 0.0, "lon": 109.3}},
            "nodes": {f"b-{i:04d}": {"site": "smp29", "profile": "forest", "cadence_s": 60} for i in range(nodes)}}


def _toml(fleet: dict) -> str:
    out = ['[sites.smp29]\nname = "bench"\nlat = 0.0\nlon = 109.3\n']
    for n in fleet["nodes"]:
        out.append(f'[nodes.{n}]\nsite = "smp29"\nprofile = "forest"\ncadence_s = 60\n')
    return "\n".join(out)


class Burst:
    def __init__(self, stack, tmp: Path, readings: int, wire: int = 1, batch: int = 10):
        self.stack = stack
        self.tmp = tmp
        self.wire = wire
        fleet = fleet_dict(NODES)
        self.fleet_path = tmp / "bench-fleet.toml"
        self.fleet_path.write_text(_toml(fleet))
        sim = Simulation(parse_fleet(fleet), seed=7, metrics=METRICS, send_every=batch, batch=batch)
        per_node = readings // NODES
        end = time.time() - 60
        self.events = sim.history(end - per_node * 60, end)
        if wire == 2:  # the same readings as contract v2 batches
            self.events = [(t, topic.replace("rimba/v1/", "rimba/v2/"), json.dumps(b, separators=(",", ":")).encode())
                           for t, topic, payload in self.events for b in to_v2(json.loads(payload), boot=1)]
        self.expected = sim.expected()
        self.last = _last_readings(self.events)
        self.messages = len(self.events)
        self.bytes = sum(len(p) for _t, _topic, p in self.events)

    def settings(self, db: str, state: Path, **over):
        values = {"mqtt_url": self.stack.mqtt_url, "influx_url": self.stack.influx_url, "influx_db": db,
                  "state_dir": str(state), "fleet": str(self.fleet_path), "mqtt_client_id": f"bench-{db}",
                  "log_level": "warning"}
        values.update(over)
        return settings_mod.build(overrides=values, env={})

    def run(self, name: str, outage: bool = False, spool_mb: float = 512) -> dict:
        db = f"bench_{name}"
        state = self.tmp / f"state-{name}"
        s = self.settings(db, state, spool_max_mb=spool_mb)
        influx = Influx(s.influx_url, db)
        influx.create_database()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RIMBA_")}, **s.env(),
               "PYTHONPATH": str(ROOT)}
        log = open(self.tmp / f"ingest-{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "rimba", "ingest", "--log-level", "info"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: b" ready: " in (self.tmp / f"ingest-{name}.log").read_bytes(), 30)
            pub = Publisher(s, client_id=f"bench-pub-{name}")
            spool_peak = 0
            if outage:
                self.stack.stop_influx()
            others0 = self._others_cpu()
            t0 = time.monotonic()
            curve = [(0.0, 0)]
            sender = threading.Thread(target=self._publish, args=(pub,))
            sender.start()
            if outage:
                from ingest.store import Store

                store = Store.in_state_dir(state)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    spool_peak = max(spool_peak, store.spool_size()[1])
                    if not sender.is_alive() and time.monotonic() - t0 > 10:
                        break
                    time.sleep(0.05)
                store.close()
                self.stack.start_influx()
            seconds, stored, more = _until_stored(influx, self.last, self.expected, t0)
            curve += more
            sender.join()
            pub.close()
            rss = _vmhwm_mb(proc.pid)
            cpu = _cpu_s(proc.pid)
            others = {k: v - others0[k] for k, v in self._others_cpu().items()}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()
        influx.query(f'DROP DATABASE "{db}"')
        influx.close()
        return {"name": name, "readings": self.expected, "stored": stored, "seconds": seconds,
                "per_s": stored / seconds, "rss_mb": rss, "cpu_s": cpu, "spool_peak_mb": spool_peak / 2**20, "curve": curve,
                "cpu_others_s": others, "published_s": self.published_s, "broker_acked_s": self.acked_s}

    def _others_cpu(self) -> dict:
        """CPU seconds so far of what shares the machine with the ingest: InfluxDB, Mosquitto, and this
        process (the publisher, and the polls of the count)."""
        own = os.times()
        return {"influxd": _cpu_s(self.stack.influxd.pid()), "mosquitto": _cpu_s(self.stack.mosquitto.pid()),
                "publisher": own.user + own.system}

    def _publish(self, pub) -> None:
        t0 = time.monotonic()
        for _t, topic, payload in self.events:
            pub.publish(topic, payload)
        self.published_s = time.monotonic() - t0  # handed to paho
        pub.flush()
        self.acked_s = time.monotonic() - t0  # every PUBACK back from the broker


def _until_stored(influx, last: list, expected: int, t0: float, timeout: float = 600) -> tuple:
    """Wait until the burst is stored: (seconds since t0, readings stored, curve [(seconds, stored)]).

    The clock stops when the last reading published of each spool part is queryable: one-point queries
    every 10 ms (the ingest keeps the broker's order within a part, and writes a part's rows in order, so
    those readings are in InfluxDB's last writes). The count of them all, a query of 20-45 ms at 200,000
    points, draws the curve every 0.25 s and then checks that every reading was stored once; were one
    still missing then, the clock would run on to the count's last poll. (The clock was the first 0.2 s
    poll of the count to see them all: up to 0.2 s late, a step of about 15 % of a 1.3 s burst, and those
    polls' CPU taken from InfluxDB.)"""
    deadline = t0 + timeout
    curve = []
    seconds = None
    next_count = 0.25
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now = time.monotonic() - t0
        if all(_has(influx, *one) for one in last):
            seconds = time.monotonic() - t0  # after the queries: late by one at most, never early
            break
        if now >= next_count:
            next_count = now + 0.25
            curve.append((now, _count(influx)))
    while (stored := _count(influx)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        seconds = None
    if seconds is None:
        seconds = time.monotonic() - t0
    curve.append((seconds, stored))
    return seconds, stored, curve


def _last_readings(events) -> list:
    """[(node, seq)]: the last reading published (v1 or v2) of each of the ingest's spool parts."""
    last: dict = {}
    for _t, topic, payload in reversed(events):
        if len(last) == PARTS:
            break
        if topic.endswith("/up"):
            body = json.loads(payload)
            if body.get("r"):
                last.setdefault(part_of(body["node"]), (body["node"], body["r"][-1]["seq"]))
            elif body.get("x"):
                last.setdefault(part_of(body["node"]), (body["node"], body["seq"] + len(body["x"]) - 1))
    if not last:
        raise ValueError("no readings published")
    return list(last.values())


def _has(influx, node: str, seq: int) -> bool:
    return bool(influx.rows(f"SELECT count(seq) FROM reading WHERE node = '{node}' AND seq = {int(seq)}"))


def _count(influx) -> int:
    rows = influx.rows("SELECT count(seq) FROM reading")
    return rows[0]["count"] if rows else 0


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("ingest did not subscribe")
        time.sleep(0.05)


def _vmhwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user + system): steadier than wall time on a busy machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def naive_baseline(stack, tmp: Path, burst: Burst) -> float:
    """The straightforward consumer: paho callback → one HTTP write per message (no dedup, no spool)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from rimba import lineproto
    from rimba import contract

    db = "bench_naive"
    influx = Influx(stack.influx_url, db)
    influx.create_database()
    writer = Influx(stack.influx_url, db)
    fleet = parse_fleet(fleet_dict(NODES))

    def on_message(client, userdata, msg):
        b = contract.decode_up(msg.topic, msg.payload, fleet)
        lines = [lineproto.reading(b.site, b.node, f, seq, False, None, t) for seq, t, f in zip(b.seqs, b.times, b.fields)]
        writer.write(("\n".join(lines) + "\n").encode())

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", clean_session=False)
    c.on_message = on_message
    c.connect(stack.host, stack.mqtt_port)
    c.subscribe("rimba/v1/+/+/up", qos=1)
    c.loop_start()
    time.sleep(0.5)
    s = burst.settings(db, tmp / "naive")
    pub = Publisher(s, client_id="bench-naive-pub")
    t0 = time.monotonic()
    burst._publish(pub)
    seconds, stored, _curve = _until_stored(influx, burst.last, burst.expected, t0)
    pub.close()
    c.loop_stop()
    c.disconnect()
    influx.query(f'DROP DATABASE "{db}"')
    return stored / seconds
