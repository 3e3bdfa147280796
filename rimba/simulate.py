"""`rimba simulate`: contract traffic for the fleet file's nodes.

Each simulated node behaves like the firmware: it samples at its cadence into a
bounded buffer (dropping the oldest and reporting `lost` when full), sends every
`send_every` samples in batches of at most `batch` readings, keeps what is not
acknowledged and resends it, and publishes a retained `status`. Options add
outages (buffered backfill), duplicate sends (a lost PUBACK) and sensor faults
(spikes, stuck values, drift, dropouts, out-of-range values), whose ground truth
is kept in `Simulation.truth` for the analytics tests.

Values come from `rimba.climate` and are deterministic: the same seed gives the
same readings, and a resent reading is identical.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from rimba import contract
from rimba.climate import DAY, Climate, Haze
from rimba.errors import RimbaError
from rimba.fleet import Node, load_fleet
from rimba.metrics import METRICS

log = logging.getLogger("rimba.simulate")

PROFILE_METRICS = {
    "forest": ("air_temp_c", "air_rh_pct", "air_pressure_hpa", "soil_temp_c", "soil_vwc_pct", "light_lux",
               "rain_mm", "batt_v", "rssi_dbm"),
    "river": ("water_level_cm", "water_temp_c", "air_temp_c", "air_rh_pct", "rain_mm", "batt_v", "rssi_dbm"),
    "air": ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3", "air_temp_c", "air_rh_pct", "batt_v", "rssi_dbm"),
}
NOISE = {"air_temp_c": 0.15, "air_rh_pct": 0.8, "air_pressure_hpa": 0.3, "soil_temp_c": 0.05, "soil_vwc_pct": 0.2,
         "light_lux": 0.03, "pm1_ugm3": 0.08, "pm25_ugm3": 0.08, "pm10_ugm3": 0.08, "water_level_cm": 0.8,
         "water_temp_c": 0.05, "co2_ppm": 5.0, "batt_v": 0.005, "rssi_dbm": 3.0}
RELATIVE = {"light_lux", "pm1_ugm3", "pm25_ugm3", "pm10_ugm3"}
DECIMALS = {"air_pressure_hpa": 1, "light_lux": 0, "co2_ppm": 0, "rssi_dbm": 0, "batt_v": 3}


FAULT_KINDS = ("spike", "stuck", "drift", "dropout", "out-of-range", "noise")


@dataclass(frozen=True)
class Fault:
    """A sensor fault injected into one node's metric over [start, end)."""

    node: str
    metric: str
    kind: str  # spike | stuck | drift | dropout | out-of-range
    start: float
    end: float
    size: float = 0.0  # spike/out-of-range: offset; drift: units per day; stuck: the stuck value (nan: first)


@dataclass
class SimNode:
    node: Node
    metrics: tuple
    climate: Climate
    epoch: int
    send_every: int = 6
    batch: int = 50
    capacity: int = 2000
    canopy: float = 1.0
    seq: int = 0
    buffer: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    dropped: int = 0
    last_t: float | None = None
    since_send: int = 0
    clock_offset: int = 0  # the node's clock minus true time; nonzero with tq "rtc"
    sent_seq: int = 0  # the highest seq sent at least once

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def site(self) -> str:
        return self.node.site


class Simulation:
    """Nodes of a fleet and their readings; no network here (see `Publisher`)."""

    def __init__(self, fleet, seed: int = 1, haze: Haze | None = None, faults=(), send_every: int = 6,
                 batch: int = 50, metrics: tuple | None = None, capacity: int = 2000, nodes=None,
                 rtc_nodes=(), rtc_offset: int = -400 * DAY):
        self.fleet = fleet
        self.seed = seed
        self.faults = list(faults)
        self.truth: list = []  # (node, metric, kind, t) of every value a fault changed
        climates = {sid: Climate(seed, sid, haze) for sid in fleet.sites}
        self.nodes: dict[str, SimNode] = {}
        rng = random.Random(f"{seed}/epochs")
        for n in fleet.nodes.values():
            if nodes is not None and n.id not in nodes:
                continue
            m = metrics or PROFILE_METRICS.get(n.profile, PROFILE_METRICS["forest"])
            self.nodes[n.id] = SimNode(n, m, climates[n.site], rng.getrandbits(32), send_every, batch, capacity,
                                       canopy=0.12 if n.profile == "forest" else 1.0,
                                       clock_offset=rtc_offset if n.id in rtc_nodes else 0)

    def _value(self, sn: SimNode, metric: str, t: float, r: random.Random):
        v = sn.climate.value(metric, t, sn.last_t, sn.canopy)
        sigma = NOISE.get(metric, 0.0)
        v += r.gauss(0, sigma * (v if metric in RELATIVE else 1.0))
        for f in self.faults:
            if f.node == sn.id and f.metric == metric and f.start <= t < f.end:
                if f.kind == "dropout":
                    self.truth.append((sn.id, metric, f.kind, t))
                    return None
                if f.kind == "spike":
                    v += f.size
                elif f.kind == "drift":
                    v += f.size * (t - f.start) / DAY
                elif f.kind == "stuck":
                    v = f.size
                elif f.kind == "out-of-range":
                    v = METRICS[metric].high + abs(f.size) + 1
                elif f.kind == "noise":  # a loose wire or a failing sensor: scatter of `size`
                    v += r.gauss(0, f.size)
                self.truth.append((sn.id, metric, f.kind, t))
        m = METRICS[metric]
        if m.in_range(v) or any(f.kind == "out-of-range" and f.node == sn.id and f.metric == metric
                                and f.start <= t < f.end for f in self.faults):
            return round(v, DECIMALS.get(metric, 2))
        return round(min(max(v, m.low), m.high), DECIMALS.get(metric, 2))

    def sample(self, sn: SimNode, t: int) -> dict:
        """Take one reading at node time t and put it in the node's buffer."""
        sn.seq += 1
        r = random.Random(f"{self.seed}/{sn.id}/{sn.epoch}/{sn.seq}")
        reading = {"seq": sn.seq, "t": int(t) + sn.clock_offset}
        for metric in sn.metrics:
            reading[metric] = self._value(sn, metric, t, r)
        sn.last_t = t
        sn.buffer.append(reading)
        sn.since_send += 1
        if len(sn.buffer) > sn.capacity:
            gone = sn.buffer.pop(0)["seq"]
            sn.dropped += 1
            if sn.lost and sn.lost[-1][1] == gone - 1:
                sn.lost[-1][1] = gone
            else:
                sn.lost.append([gone, gone])
        return reading

    def due(self, sn: SimNode) -> bool:
        return sn.since_send >= sn.send_every

    def batches(self, sn: SimNode, now: int) -> list:
        """The node's whole unacknowledged buffer as contract `up` messages: [(topic, payload)]."""
        sn.since_send = 0
        out = []
        tq = "rtc" if sn.clock_offset else "ntp"
        for i in range(0, max(len(sn.buffer), 1 if sn.lost else 0), sn.batch):
            chunk = sn.buffer[i:i + sn.batch]
            if chunk:
                sn.sent_seq = max(sn.sent_seq, chunk[-1]["seq"])
            body = {"v": 1, "node": sn.id, "epoch": sn.epoch, "now": int(now) + sn.clock_offset, "tq": tq,
                    "fw": "sim-1",
                    "r": chunk}
            if i == 0 and sn.lost:
                body["lost"] = sn.lost
            out.append((contract.topic(sn.site, sn.id, "up"), json.dumps(body, separators=(",", ":")).encode()))
        return out

    def status(self, sn: SimNode, now: int, wake: int, state: str = "sleeping") -> tuple:
        body = {"v": 1, "state": state, "t": int(now), "fw": "sim-1", "cfg": 1, "boot": 1, "reset": "deepsleep",
                "batt_v": round(sn.climate.battery(now), 3), "rssi_dbm": -72, "buffered": len(sn.buffer),
                "dropped": sn.dropped, "wake": int(wake)}
        return contract.topic(sn.site, sn.id, "status"), json.dumps(body, separators=(",", ":")).encode()

    def acked(self, node: str, epoch: int, seq: int) -> None:
        """The platform's ack arrived: free the buffer up to `seq`."""
        sn = self.nodes.get(node)
        if sn is None or sn.epoch != epoch:
            return
        sn.buffer = [r for r in sn.buffer if r["seq"] > seq]
        sn.lost = [x for x in sn.lost if x[1] > seq]

    def history(self, start: float, end: float, outages=(), resend_prob: float = 0.0, clear: bool = True):
        """Every message the fleet sends between start and end, in time order: [(send_time, topic, payload)].

        With `clear`, a sent buffer is taken as acknowledged at once (no broker in the loop);
        `outages` is [(node, start, end)]: sends fail, the buffer keeps growing.
        """
        rng = random.Random(f"{self.seed}/resend")
        events = []
        for sn in self.nodes.values():
            cad = sn.node.cadence_s
            t = start + _offset(sn.id, cad)
            while t < end:
                self.sample(sn, int(t))
                down = any(o[0] == sn.id and o[1] <= t < o[2] for o in outages)
                if self.due(sn) and not down:
                    send_t = int(t) + 2
                    for topic, payload in self.batches(sn, send_t):
                        events.append((send_t, topic, payload))
                        if resend_prob and rng.random() < resend_prob:
                            events.append((send_t + 1, topic, payload))
                    if clear:
                        sn.buffer.clear()
                        sn.lost.clear()
                t += cad
        events.sort(key=lambda e: e[0])
        return events

    def expected(self) -> int:
        """Readings sent at least once (the nodes drop only their oldest, before sending)."""
        return sum(sn.sent_seq - sn.dropped for sn in self.nodes.values())

    def restamp(self, topic: str, payload: bytes, now: float) -> bytes:
        """Set a batch's `now` to the true send time `now` on the node's clock: a batch built
        ahead of time from a node with an unsynchronised clock must say when it really left."""
        sn = self.nodes.get(topic.split("/")[3])
        if sn is None or not sn.clock_offset or not topic.endswith("/up"):
            return payload
        body = json.loads(payload)
        body["now"] = int(now) + sn.clock_offset
        return json.dumps(body, separators=(",", ":")).encode()


def _offset(node_id: str, cadence: int) -> int:
    return random.Random(node_id).randrange(cadence)


class Publisher:
    """Publishes with QoS 1 over one connection and waits for the broker's PUBACKs."""

    def __init__(self, settings, client_id: str = "rimba-simulator", on_ack=None):
        from rimba.mqtt import Mqtt

        self._on_ack = on_ack
        subs = (f"{contract.TOPIC_ROOT}/+/+/ack",) if on_ack else ()
        self.mqtt = Mqtt(settings.broker, client_id, ca_file=settings.mqtt_ca_file, v5=False, subscriptions=subs,
                         on_message=self._message, max_inflight=0)
        self.mqtt.start()
        self._pending: list = []

    def _message(self, topic, payload, mid, qos, retain):
        try:
            body = json.loads(payload)
            node = topic.split("/")[3]
            self._on_ack(node, body["epoch"], body["seq"])
        except (ValueError, KeyError, IndexError, TypeError):
            log.warning("ignoring a malformed ack on %s", topic)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self._pending.append(self.mqtt.publish(topic, payload, qos=1, retain=retain))
        if len(self._pending) >= 5000:
            self.flush()

    def flush(self, timeout: float = 120.0) -> None:
        done = self.mqtt.wait_published(self._pending, timeout)
        if len(done) < len(self._pending):
            raise TimeoutError(f"{len(self._pending) - len(done)} publishes not acknowledged by the broker")
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.mqtt.stop()


class LiveRunner:
    """Runs the simulation against the broker in real time: samples every
    `cadence_s / speed` real seconds, with the node clocks at real UTC."""

    def __init__(self, sim: Simulation, publisher: Publisher, speed: float = 1.0, clock=time.time):
        self.sim = sim
        self.pub = publisher
        self.speed = speed
        self.clock = clock
        self.stop = threading.Event()
        self.published = 0
        now = clock()
        self.next = {sn.id: now + _offset(sn.id, sn.node.cadence_s) / speed for sn in sim.nodes.values()}

    def run(self, seconds: float = 0) -> None:
        end = self.clock() + seconds if seconds else None
        while not self.stop.is_set() and (end is None or self.clock() < end):
            now = self.clock()
            for sn in self.sim.nodes.values():
                if now < self.next[sn.id]:
                    continue
                self.next[sn.id] = now + sn.node.cadence_s / self.speed
                self.sim.sample(sn, int(now))
                if self.sim.due(sn):
                    for topic, payload in self.sim.batches(sn, int(now)):
                        self.pub.publish(topic, payload)
                        self.published += 1
                    wake = int(now + sn.node.cadence_s / self.speed)
                    self.pub.publish(*self.sim.status(sn, int(now), wake), retain=True)
            nxt = min(self.next.values(), default=now + 1)
            self.stop.wait(max(0.0, min(nxt - self.clock(), 0.5)))


def add_arguments(p) -> None:
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backfill-hours", type=float, default=0, help="first send this much history (late readings)")
    p.add_argument("--live-seconds", type=float, default=0, help="then run live this long (0: until Ctrl-C)")
    p.add_argument("--speed", type=float, default=60.0, help="live: sample this many times faster than the cadence")
    p.add_argument("--haze", action="store_true", help="a three-day haze episode in the backfilled period")
    p.add_argument("--resend-prob", type=float, default=0.0, help="probability a batch is sent twice")
    p.add_argument("--no-live", action="store_true", help="only the backfill")
    p.add_argument("--until", type=int, help="backfill up to this time, UNIX seconds (default: now; implies --no-live)")
    p.add_argument("--outage", action="append", default=[], metavar="NODE:FROM_H:TO_H",
                   help="backfill: NODE cannot send from FROM_H to TO_H hours ago (repeatable)")
    p.add_argument("--fault", action="append", default=[], metavar="NODE:METRIC:KIND:FROM_H:TO_H[:SIZE]",
                   help="backfill: a sensor fault (spike, stuck, drift, dropout, out-of-range, noise), hours ago")


def _hours_ago(text: str, now: float, what: str) -> float:
    try:
        return now - float(text) * 3600
    except ValueError:
        raise RimbaError(f"{what}: {text!r} is not a number of hours") from None


def parse_outage(spec: str, now: float) -> tuple:
    parts = spec.split(":")
    if len(parts) != 3:
        raise RimbaError(f"--outage {spec!r}: expected NODE:FROM_H:TO_H, e.g. smp29-01:30:20")
    return parts[0], _hours_ago(parts[1], now, "--outage"), _hours_ago(parts[2], now, "--outage")


def parse_fault(spec: str, now: float) -> Fault:
    parts = spec.split(":")
    if len(parts) not in (5, 6) or parts[1] not in METRICS or parts[2] not in FAULT_KINDS:
        raise RimbaError(f"--fault {spec!r}: expected NODE:METRIC:KIND:FROM_H:TO_H[:SIZE] with KIND one of "
                         f"{', '.join(FAULT_KINDS)} and a metric name from the contract")
    size = float(parts[5]) if len(parts) == 6 else 0.0
    return Fault(parts[0], parts[1], parts[2], _hours_ago(parts[3], now, "--fault"),
                 _hours_ago(parts[4], now, "--fault"), size)


def main(settings, args) -> int:
    fleet = load_fleet(settings.fleet)
    now = time.time() if args.until is None else float(args.until)
    live = not args.no_live and args.until is None  # a backfill that ends in the past has no live part
    haze = Haze(now - args.backfill_hours * 3600 * 0.6, 3) if args.haze and args.backfill_hours else None
    outages = [parse_outage(o, now) for o in args.outage]
    faults = [parse_fault(f, now) for f in args.fault]
    for node in [o[0] for o in outages] + [f.node for f in faults]:
        if node not in fleet.nodes:
            raise RimbaError(f"node {node!r} is not in the fleet file {settings.fleet}")
    sim = Simulation(fleet, seed=args.seed, haze=haze, faults=faults)
    pub = Publisher(settings, on_ack=sim.acked)
    try:
        if args.backfill_hours:
            events = sim.history(now - args.backfill_hours * 3600, now - 60, resend_prob=args.resend_prob,
                                 outages=outages)
            for _t, topic, payload in events:
                pub.publish(topic, payload)
            pub.flush()
            log.info("backfilled %d messages", len(events))
        if live:
            runner = LiveRunner(sim, pub, args.speed)
            try:
                runner.run(args.live_seconds)
            except KeyboardInterrupt:
                pass
    finally:
        pub.close()
    return 0
