"""Ingest against the real Mosquitto and InfluxDB: exactly once, acks, dead letters, replay."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import threading
import time

from rimba.contract import TOPIC_ROOT
from rimba.fleet import load_fleet
from rimba.adapters.mqtt import Mqtt
from rimba.dev.simulate import Publisher, Simulation
from rimba.dev.harness import fleet_text
from rimba.dev.harness import ROOT, VECTORS, env_for, payload_of, wait_until


class AckWatcher:
    """Collects the retained acks as the broker delivers them."""

    def __init__(self, settings):
        self.acks: dict = {}
        self.lock = threading.Lock()
        self.mqtt = Mqtt(settings.broker, f"ackwatch-{random.getrandbits(32)}", v5=False,
                         subscriptions=(f"{TOPIC_ROOT}/+/+/ack",), on_message=self._on)
        self.mqtt.start()

    def _on(self, topic, payload, mid, qos, retain):
        body = json.loads(payload)
        with self.lock:
            self.acks[topic.split("/")[3]] = (body["epoch"], body["seq"])

    def close(self):
        self.mqtt.stop()


def ingest_counters(platform) -> dict:
    rows = platform.influx.rows("SELECT * FROM ingest GROUP BY instance ORDER BY time DESC LIMIT 1")
    return {r["instance"]: r for r in rows}


def received_total(platform) -> int:
    return sum(r["received"] for r in ingest_counters(platform).values())


def make_sim(platform, nodes, hours=6, seed=3, rtc=()):
    sim = Simulation(load_fleet(platform.fleet_path), seed=seed, nodes=set(nodes), rtc_nodes=set(rtc), send_every=3, batch=10)
    now = time.time()
    return sim, sim.history(now - hours * 3600, now - 120, resend_prob=0.2)


def test_exactly_once_with_resends_and_reordering(platform_factory):
    nodes = {f"eo-{i:02d}": ("smp29" if i % 2 else "bansir-laut", "forest" if i % 2 else "river") for i in range(12)}
    p = platform_factory(nodes)
    sim, events = make_sim(p, nodes, rtc=["eo-01", "eo-02", "eo-03"])
    msgs = [(topic, payload) for _t, topic, payload in events]
    random.Random(5).shuffle(msgs)  # out-of-order batches, resends anywhere
    expected = sim.expected()
    assert len(msgs) > len(set(msgs)), "the traffic must hold resends"
    watcher = AckWatcher(p.settings)
    p.ingest()
    pub = Publisher(p.settings, client_id="pub-eo")
    for topic, payload in msgs:
        pub.publish(topic, sim.restamp(topic, payload, time.time()))
    pub.close()
    wait_until(lambda: received_total(p) >= len(msgs), 60, "ingest to receive everything")
    wait_until(lambda: p.count() >= expected, 60, f"{expected} readings stored")
    assert p.count() == expected
    # every seq of every node exactly once
    rows = p.influx.rows("SELECT count(seq), min(seq), max(seq) FROM reading GROUP BY node")
    per_node = {r["node"]: (r["count"], r["min"], r["max"]) for r in rows}
    assert per_node == {n: (sim.nodes[n].sent_seq, 1, sim.nodes[n].sent_seq) for n in nodes}
    # rebased clocks carry their correction; trusted ones do not
    rebased = p.influx.rows("SELECT count(clock_offset_s) FROM reading GROUP BY node")
    assert {r["node"]: r["count"] for r in rebased} == {n: sim.nodes[n].sent_seq for n in ("eo-01", "eo-02", "eo-03")}
    # the last ack of each node covers all its readings
    wait_until(lambda: all(watcher.acks.get(n) == (sim.nodes[n].epoch, sim.nodes[n].sent_seq) for n in nodes), 30,
               "every node's ack to reach its last seq")
    watcher.close()
    # backfill older than 15 minutes at receipt is late, fresher readings are not
    assert p.count("SELECT count(seq) FROM reading WHERE late = true") > expected * 0.9
    assert p.count("SELECT count(seq) FROM reading WHERE late = false AND time < now() - 16m") == 0
    assert p.count("SELECT count(seq) FROM reading WHERE late = true AND time > now() - 14m") == 0


def corpus() -> list:
    """The golden invalid vectors the ingest can receive, plus large hostile ones."""
    subscribed = [v for v in VECTORS["invalid"] if v["topic"].startswith("rimba/v1/") and v["topic"].count("/") == 4]
    out = [(v["topic"], payload_of(v), v["code"]) for v in subscribed]
    up = "rimba/v1/smp29/smp29-03/up"
    many = {"v": 1, "node": "smp29-03", "epoch": 1, "now": int(time.time()), "tq": "ntp",
            "r": [{"seq": i + 1, "t": int(time.time())} for i in range(10_000)]}
    out.append((up, json.dumps(many).encode(), "too-large"))
    out.append((up, b"{" + b" " * 100_000 + b"}", "too-large"))
    out.append((up, bytes(range(256)) * 8, "not-utf8"))
    out.append((up, "\u2028{\"v\":1}".encode(), "bad-json"))
    return out


def test_bad_input_is_dead_lettered_and_good_traffic_flows(platform_factory):
    nodes = {"smp29-03": ("smp29", "forest"), "bansir-laut-01": ("bansir-laut", "river"), "good-01": ("smp29", "air")}
    p = platform_factory(nodes)
    bad = corpus()
    assert len(bad) >= 50
    sim, events = make_sim(p, ["good-01"], hours=12)
    good = [(topic, payload) for _t, topic, payload in events]
    valid = [(v["topic"], payload_of(v)) for v in VECTORS["up_valid"]]
    ing = p.ingest()
    pub = Publisher(p.settings, client_id="pub-bad")
    stream = []
    for i, (topic, payload, _code) in enumerate(bad):
        stream.append((topic, payload))
        stream.extend(good[i * len(good) // len(bad):(i + 1) * len(good) // len(bad)])
    stream.extend(valid)
    for topic, payload in stream:
        pub.publish(topic, payload)
    pub.close()
    wait_until(lambda: received_total(p) >= len(stream), 60, "ingest to receive everything")
    assert ing.proc.poll() is None, "ingest must keep running"
    wait_until(lambda: p.count("SELECT count(seq) FROM reading WHERE node = 'good-01'") == sim.expected(), 30,
               "the good node's readings")
    out = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "list", "--json"], env=env_for(p.values),
                         capture_output=True, text=True, cwd=ROOT, check=True)
    kept = [json.loads(line) for line in out.stdout.splitlines()]
    by_payload = {}
    for k in kept:
        by_payload.setdefault(k["sha256"], []).append(k["code"])
        assert k["length"] <= 16 * 1024 or len(k["payload"]) <= 4 * 16 * 1024 // 3 + 4  # evidence, not bulk
    for topic, payload, code in bad:
        key = hashlib.sha256(payload).hexdigest()
        assert code in by_payload.get(key, []), f"{code} not kept for {payload[:60]!r}"
    unclear = [k["reason"] for k in kept if not (k["reason"].startswith(k["code"] + ":") and len(k["reason"]) > len(k["code"]) + 3)]
    assert not unclear
    # the good vectors around them were stored; an out-of-range value is kept aside
    assert p.count("SELECT count(seq) FROM reading WHERE node = 'bansir-laut-01'") == 1
    out_of_range = next(v for v in VECTORS["up_valid"] if v["expect"].get("faults"))
    assert by_payload[hashlib.sha256(payload_of(out_of_range)).hexdigest()] == ["out-of-range"]
    assert not p.influx.rows("SELECT air_rh_pct FROM reading WHERE air_rh_pct > 100")
    # nothing impossible got in
    times = p.influx.rows("SELECT min(seq) FROM reading WHERE time < '2024-01-01T00:00:00Z'")
    assert not times
    assert not p.influx.rows(f"SELECT seq FROM reading WHERE time > {int((time.time() + 600) * 1e9)}")


def test_deadletter_replay_after_the_fleet_is_fixed(platform_factory):
    """An unknown node's batch, one of its values out of range: replayed once the node is in the fleet file,
    its three readings are stored (the value is dropped) and its ack covers them."""
    p = platform_factory({"known-01": ("smp29", "forest")})
    p.ingest()
    now = int(time.time())
    body = {"v": 1, "node": "newbie-01", "epoch": 5, "now": now, "tq": "ntp",
            "r": [{"seq": s, "t": now - 60 * (4 - s), "air_temp_c": 27.0 + s} for s in (1, 2, 3)]}
    body["r"][1]["air_rh_pct"] = 140.0
    watcher = AckWatcher(p.settings)
    pub = Publisher(p.settings, client_id="pub-replay")
    pub.publish("rimba/v1/smp29/newbie-01/up", json.dumps(body).encode())
    pub.close()
    env = env_for(p.values)

    def listed():
        r = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "list"], env=env, capture_output=True,
                           text=True, cwd=ROOT)
        return r.stdout if "unknown-node" in r.stdout else None

    line = wait_until(listed, 30, "the dead letter to be listed")
    assert "rimba/v1/smp29/newbie-01/up" in line and "not in the fleet file" in line
    p.fleet_path.write_text(fleet_text({"known-01": ("smp29", "forest"), "newbie-01": ("smp29", "forest")}))
    r = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "replay"], env=env, capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "replayed 1, still refused 0, readings stored 3" in r.stdout
    assert p.count("SELECT count(seq) FROM reading WHERE node = 'newbie-01'") == 3
    assert not p.influx.rows("SELECT air_rh_pct FROM reading WHERE node = 'newbie-01'")
    r = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "list"], env=env, capture_output=True,
                       text=True, cwd=ROOT)
    assert "newbie-01" not in r.stdout
    # at its next wake the node sends the batch again: a duplicate now, and its ack covers it
    pub = Publisher(p.settings, client_id="pub-replay-2")
    pub.publish("rimba/v1/smp29/newbie-01/up", json.dumps(body).encode())
    pub.close()
    wait_until(lambda: watcher.acks.get("newbie-01") == (5, 3), 30, "the replayed node's ack")
    watcher.close()


def test_status_and_the_ingests_own_counters(platform_factory):
    p = platform_factory({"stat-01": ("bansir-laut", "river")})
    p.ingest()
    now = int(time.time())
    pub = Publisher(p.settings, client_id="pub-status")
    pub.publish("rimba/v1/bansir-laut/stat-01/status",
                json.dumps({"v": 1, "state": "sleeping", "t": now, "fw": "1.0.0", "cfg": 7, "boot": 17,
                            "reset": "deepsleep", "batt_v": 3.94, "rssi_dbm": -71, "buffered": 0, "dropped": 12,
                            "wake": now + 600}).encode(), retain=True)
    pub.publish("rimba/v1/bansir-laut/stat-01/status", b'{"v":1,"state":"lost"}', retain=True)
    pub.close()
    wait_until(lambda: len(p.influx.rows("SELECT * FROM node_status")) >= 2, 30, "two status points")
    assert len(p.influx.rows("SELECT * FROM node_status")) == 2, p.influx.rows("SELECT * FROM node_status")
    rows = wait_until(lambda: len(p.influx.rows("SELECT * FROM node_status")) == 2 and
                      p.influx.rows("SELECT * FROM node_status"), 30, "two status points")
    sleeping = next(r for r in rows if r["state"] == "sleeping")
    assert sleeping["time"] == now and sleeping["batt_v"] == 3.94 and sleeping["cfg"] == 7 and sleeping["fw"] == "1.0.0"
    assert sleeping["dropped"] == 12 and sleeping["site"] == "bansir-laut"
    lost = next(r for r in rows if r["state"] == "lost")
    assert abs(lost["time"] - now) < 60
    counters = wait_until(lambda: ingest_counters(p).get(p.values["mqtt_client_id"]), 30, "counters")
    for key in ("received", "stored", "duplicates", "dead_lettered", "spooled", "write_retries", "lag_s"):
        assert key in counters
    assert counters["received"] >= 2
    # clean up the retained status so later tests do not receive it
    pub = Publisher(p.settings, client_id="pub-status")
    pub.publish("rimba/v1/bansir-laut/stat-01/status", b"", retain=True)
    pub.close()


def test_points_the_database_refuses_are_dead_lettered_not_retried(platform_factory):
    p = platform_factory({"typed-01": ("smp29", "forest"), "typed-02": ("smp29", "forest")})
    now = int(time.time())
    # someone else wrote air_temp_c as a string into this shard: InfluxDB now refuses our floats there
    p.influx.write(f'reading,node=other,site=smp29 air_temp_c="warm" {now - 3600}\n'.encode(), precision="s")
    p.ingest()
    pub = Publisher(p.settings, client_id="pub-typed")
    for node in ("typed-01", "typed-02"):
        body = {"v": 1, "node": node, "epoch": 3, "now": now, "tq": "ntp",
                "r": [{"seq": 1, "t": now - 120, "air_temp_c": 27.5}, {"seq": 2, "t": now - 60, "soil_vwc_pct": 33.0}]}
        pub.publish(f"rimba/v1/smp29/{node}/up", json.dumps(body).encode())
    pub.close()
    env = env_for(p.values)

    def refused():
        r = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "list", "--json", "--code", "db-refused"],
                           env=env, capture_output=True, text=True, cwd=ROOT)
        rows = [json.loads(x) for x in r.stdout.splitlines()]
        return rows if len(rows) == 2 else None

    rows = wait_until(refused, 30, "two refused points")
    assert all("air_temp_c=27.5" in r["payload"] and r["kind"] == "point" for r in rows)
    assert all("conflict" in r["reason"] for r in rows), rows[0]["reason"]
    # the readings without the conflicting field got in
    wait_until(lambda: p.count("SELECT count(soil_vwc_pct) FROM reading") == 2, 30, "the other readings")


def test_refused_database_credentials_stop_ingest_loudly(platform_factory):
    """A small honest stand-in for InfluxDB that answers 401, as a real one does to a bad token."""
    import http.server

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"error":"authorization failed"}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        p = platform_factory({"auth-01": ("smp29", "forest")})
        ing = p.ingest(influx_url=f"http://127.0.0.1:{server.server_address[1]}", influx_token="wrong")
        wait_until(lambda: ing.proc.poll() is not None, 30, "ingest to stop")
        assert ing.proc.returncode == 2
        assert "refused the credentials (401)" in ing.output()
    finally:
        server.shutdown()


def test_a_replay_goes_by_its_clock_and_takes_no_live_process_s_spool_rows(platform_factory, tmp_path):
    """`rimba deadletter replay` writes what it replayed, and with it the rows of processes that died; it judged
    them by the machine's clock whatever clock it was given, so under another clock a live process's rows looked
    dead at once (the same defect as the writer's claim before a97b968)."""
    from ingest import replay
    from ingest.service import transact
    from ingest.store import Store

    p = platform_factory({"smp29-03": ("smp29", "forest")})
    t0 = float(VECTORS["received"])  # a fixed time, long before the machine's
    store = Store(tmp_path / "shared.sqlite3")
    body = {"v": 1, "node": "smp29-03", "epoch": 7, "now": int(t0), "tq": "ntp",
            "r": [{"seq": s, "t": int(t0) - 300 + s, "air_temp_c": 27.5} for s in (1, 2)]}
    transact(store, load_fleet(p.fleet_path), [("rimba/v1/smp29/smp29-03/up", json.dumps(body).encode(), t0, 1, 1,
                                                 False)], "live", clock=lambda: t0)
    store.beat("live", t0)
    replay.replay(p.settings, store, clock=lambda: t0 + 1)  # nothing to replay; the live process's rows stay its own
    assert [o for (o,) in store.db.execute("SELECT owner FROM spool")] == ["live"]
    assert p.count() == 0
    store.close()
