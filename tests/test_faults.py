"""Faults mid-stream, each ending with exactly N readings stored and none twice:
ingest killed with SIGKILL, InfluxDB down for 30 s and more, Mosquitto restarted,
and two ingest processes sharing the load.

The traffic holds resends and nodes with unsynchronised clocks: their stored time
depends on when a batch is received, so a reading written twice would show up as a
second point instead of overwriting the first.
"""

from __future__ import annotations

import random
import threading
import time

from ingest.store import Store
from rimba.fleet import load_fleet
from rimba.dev.simulate import Publisher, Simulation
from rimba.dev.harness import wait_until
from tests.test_ingest import AckWatcher

NODES = {f"f-{i:02d}": ("smp29" if i % 3 else "bansir-laut", ("forest", "river", "air")[i % 3]) for i in range(30)}
RTC = {"f-01", "f-02", "f-07", "f-11"}
NOW = 1764928800  # 2025-12-05 17:00 WIB: the traffic is built from a fixed time, never from the hour the test runs


def traffic(platform, hours=24.0, seed=11):
    sim = Simulation(load_fleet(platform.fleet_path), seed=seed, nodes=set(NODES), rtc_nodes=RTC, send_every=3,
                     batch=10)
    events = sim.history(NOW - hours * 3600, NOW - 120, resend_prob=0.15)
    msgs = [(topic, payload) for _t, topic, payload in events]
    random.Random(seed).shuffle(msgs)
    return sim, msgs


class Stream(threading.Thread):
    """Publishes `msgs` in chunks, each acknowledged by the broker before the next."""

    def __init__(self, platform, sim, msgs, chunk=100, client_id="stream", pause_at=None):
        super().__init__(daemon=True)
        self.pub = Publisher(platform.settings, client_id=client_id)
        self.sim, self.msgs, self.chunk = sim, msgs, chunk
        self.sent = 0
        self.error = None
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.go_on = threading.Event()

    def run(self):
        try:
            for i in range(0, len(self.msgs), self.chunk):
                if self.pause_at is not None and i >= self.pause_at and not self.go_on.is_set():
                    self.paused.set()
                    self.go_on.wait()
                for topic, payload in self.msgs[i:i + self.chunk]:
                    self.pub.publish(topic, self.sim.restamp(topic, payload, time.time()))
                self.pub.flush()
                self.sent = min(len(self.msgs), i + self.chunk)
            self.pub.close()
        except Exception as err:  # reported by finish()
            self.error = err

    def finish(self, timeout=120):
        self.join(timeout)
        assert not self.is_alive(), "the publisher did not finish"
        assert self.error is None, self.error


def settle(platform, sim, watcher, timeout=120):
    """Every node acknowledged up to its last sent seq, the spool empty, N points stored."""
    want = {n: (sn.epoch, sn.sent_seq) for n, sn in sim.nodes.items()}
    wait_until(lambda: all(watcher.acks.get(n) == want[n] for n in want), timeout, "every node's final ack")
    store = Store.in_state_dir(platform.settings.state_path)
    try:
        wait_until(lambda: store.spool_size()[0] == 0, timeout, "the spool to drain")
    finally:
        store.close()
    expected = sim.expected()
    wait_until(lambda: platform.count() >= expected, timeout, f"{expected} readings")
    assert platform.count() == expected
    rows = platform.influx.rows("SELECT count(seq), max(seq) FROM reading GROUP BY node")
    assert {r["node"]: (r["count"], r["max"]) for r in rows} == {n: (sn.sent_seq, sn.sent_seq)
                                                                  for n, sn in sim.nodes.items()}


def test_ingest_killed_mid_stream(platform_factory):
    p = platform_factory(NODES)
    sim, msgs = traffic(p)
    watcher = AckWatcher(p.settings)
    ingest = p.ingest()
    stream = Stream(p, sim, msgs, pause_at=len(msgs) // 2)
    stream.start()
    wait_until(stream.paused.is_set, 60, "half published")
    wait_until(lambda: p.count() > 0, 60, "the first readings")
    stream.go_on.set()
    ingest.kill()  # while the second half streams in
    assert p.count() < sim.expected(), "the kill must land mid-stream"
    p.ingest()
    stream.finish()
    settle(p, sim, watcher)
    watcher.close()


def test_influxdb_down_for_30_seconds(platform_factory, stack):
    p = platform_factory(NODES)
    sim, msgs = traffic(p)
    watcher = AckWatcher(p.settings)
    spool_max = 0.2 * 1024 * 1024
    ingest = p.ingest(spool_max_mb=0.2)
    stream = Stream(p, sim, msgs, pause_at=len(msgs) // 4)
    stream.start()
    try:
        wait_until(stream.paused.is_set, 60, "a quarter published")
        wait_until(lambda: p.count() > 0, 60, "the first readings")
        stack.stop_influx()
        stream.go_on.set()
        down_at = time.monotonic()
        store = Store.in_state_dir(p.settings.state_path)
        biggest = 0

        def outage_done():
            nonlocal biggest
            biggest = max(biggest, store.spool_size()[1])
            return time.monotonic() - down_at >= 30 and stream.sent == len(msgs)

        wait_until(outage_done, 120, "30 s of outage with everything published", interval=0.1)
        assert ingest.proc.poll() is None, "ingest must ride out the outage"
        assert biggest > spool_max * 0.5, "the spool must have been used"
        # one message's lines may overshoot the limit, never more
        assert biggest <= spool_max + 64 * 1024, biggest
        assert "InfluxDB unavailable" in ingest.output()
        # acks moved while the database was down: the spool counts as durable
        assert any(watcher.acks.get(n, (0, 0))[1] > 0 for n in NODES)
        store.close()
    finally:
        stack.start_influx()
    stream.finish()
    settle(p, sim, watcher, timeout=180)
    assert "InfluxDB is back" in ingest.output()
    watcher.close()


def test_mosquitto_restarted_mid_stream(platform_factory, stack):
    p = platform_factory(NODES)
    sim, msgs = traffic(p, seed=12)
    watcher = AckWatcher(p.settings)
    p.ingest()
    stream = Stream(p, sim, msgs, chunk=50, pause_at=len(msgs) // 3)
    stream.start()
    wait_until(stream.paused.is_set, 60, "a third published")
    stack.stop_mosquitto()
    try:
        stream.go_on.set()  # the publisher queues and reconnects by itself
    finally:
        stack.start_mosquitto()
    stream.finish()
    settle(p, sim, watcher)
    watcher.close()


def test_two_ingests_share_the_load(platform_factory):
    p = platform_factory(NODES)
    sim, msgs = traffic(p, seed=13)
    watcher = AckWatcher(p.settings)
    a = p.ingest(mqtt_share_group="rimba", mqtt_client_id=p.values["mqtt_client_id"] + "-a")
    b = p.ingest(mqtt_share_group="rimba", mqtt_client_id=p.values["mqtt_client_id"] + "-b")
    stream = Stream(p, sim, msgs)
    stream.start()
    stream.finish()
    settle(p, sim, watcher)
    watcher.close()

    def received():
        rows = p.influx.rows("SELECT last(received) FROM ingest GROUP BY instance")
        return {r["instance"]: r["last"] for r in rows}

    wait_until(lambda: sum(received().values()) >= len(msgs), 30, "counters of both processes")
    received = received()
    assert all(v > len(msgs) * 0.2 for v in received.values()), received
    assert a.proc.poll() is None and b.proc.poll() is None
