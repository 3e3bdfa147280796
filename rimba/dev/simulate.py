"""`rimba simulate`: contract traffic for the fleet file's nodes.

Each simulated node behaves like the firmware: it samples at its cadence into a
bounded buffer (dropping the oldest and reporting `lost` when full), sends every
`send_every` samples in batches of at most `batch` readings, keeps what is not
acknowledged and resends it, and publishes a retained `status`. Options add
outages (buffered backfill), duplicate sends (a lost PUBACK) and sensor faults
(spikes, stuck values, drift, dropouts, out-of-range values), whose ground truth
is kept in `Simulation.truth` for the analytics tests.

Values come from `rimba.dev.climate` and are deterministic: the same seed gives the
same readings, and a resent reading is identical.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from rimba import contract, profiles
from rimba.dev.climate import DAY, Climate, Haze
from rimba.errors import RimbaError
from rimba.fleet import Node, load_fleet
from rimba.metrics import METRICS

log = logging.getLogger("rimba.dev.simulate")

# what a node of each profile sends in its readings: its sensors' metrics (hardware/profiles/*.toml), as the
# firmware does; the battery and the signal go in its status
PROFILE_METRICS = {name: profiles.metrics(name) for name in profiles.names()}
NOISE = {"air_temp_c": 0.15, "air_rh_pct": 0.8, "air_pressure_hpa": 0.3, "soil_temp_c": 0.05, "soil_vwc_pct": 0.2,
         "light_lux": 0.03, "pm1_ugm3": 0.08, "pm25_ugm3": 0.08, "pm10_ugm3": 0.08, "water_level_cm": 0.8,
         "water_temp_c": 0.05, "co2_ppm": 5.0, "batt_v": 0.005, "rssi_dbm": 3.0}
RELATIVE = {"light_lux", "pm1_ugm3", "pm25_ugm3", "pm10_ugm3"}
DECIMALS = {"air_pressure_hpa": 1, "light_lux": 0, "co2_ppm": 0, "rssi_dbm": 0, "batt_v": 3}


FAULT_KINDS = ("spike", "stuck", "drift", "dropout", "out-of-range", "noise", "dead-fan", "wet", "log")
# the smallest step each metric is reported in: a stuck sensor's values still dither by it
RESOLUTION = {"air_temp_c": 0.01, "air_rh_pct": 0.01, "air_pressure_hpa": 0.1, "soil_temp_c": 0.0625,
              "soil_vwc_pct": 0.01, "pm1_ugm3": 1.0, "pm25_ugm3": 1.0, "pm10_ugm3": 1.0, "water_level_cm": 0.1,
              "water_temp_c": 0.0625, "co2_ppm": 1.0, "batt_v": 0.001, "rssi_dbm": 1.0}
# A DS18B20 that lost its power-on conversion reads its reset value, +85 °C (Maxim DS18B20 datasheet,
# 19-7487 Rev 6, "Operation - measuring temperature"); one that does not answer is read as -127 °C by
# the common drivers. Both are what a node reports in the field, in range or not.
DS18B20_ERRORS = (85.0, -127.0)
# A PMS5003's three mass channels are computed from the same light pulses of the same air stream (Plantower
# PMS5003 series data manual, 2016: one fan, one chamber, one laser): less air through the chamber sinks all
# three together, and PM1 <= PM2.5 <= PM10 still holds.
PM_CHANNELS = ("pm1_ugm3", "pm25_ugm3", "pm10_ugm3")


@dataclass(frozen=True)
class Fault:
    """A sensor fault injected into one node's metric over [start, end).

    Kinds and their `size`:

    - spike: an offset of `size` (one or a few samples, or longer for a sustained offset)
    - stuck: held at `size` (nan: the value when it stuck), dithering by the metric's resolution
    - drift: `size` units per day from the start, on top of the true value
    - dropout: no value
    - out-of-range: `size` itself is reported (a DS18B20 error value, say); 0: the range's top + 1
    - noise: scatter of `size`
    - dead-fan: a PM sensor's fan dying: the reading sinks to exp(-days / size) of the true value, on all
      of the sensor's channels (`PM_CHANNELS`) whichever one the fault names
    - wet: water in the enclosure: humidity pinned at 99.5-100 %
    - log: a floating log under the ultrasonic sensor: the water level reads `size` higher
    """

    node: str
    metric: str
    kind: str
    start: float
    end: float
    size: float = 0.0


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
        self._faults_of: dict = {}
        for f in self.faults:
            hit = PM_CHANNELS if f.kind == "dead-fan" and f.metric in PM_CHANNELS else (f.metric,)
            for metric in hit:
                self._faults_of.setdefault((f.node, metric), []).append(f)
        self._stuck_at: dict = {}
        climates = {sid: Climate(seed, sid, haze) for sid in fleet.sites}
        self.nodes: dict[str, SimNode] = {}
        rng = random.Random(f"{seed}/epochs")
        for n in fleet.nodes.values():
            if nodes is not None and n.id not in nodes:
                continue
            m = metrics or PROFILE_METRICS[n.profile]
            self.nodes[n.id] = SimNode(n, m, climates[n.site], rng.getrandbits(32), send_every, batch, capacity,
                                       canopy=0.12 if n.profile == "forest" else 1.0,
                                       clock_offset=rtc_offset if n.id in rtc_nodes else 0)

    def _value(self, sn: SimNode, metric: str, t: float, r: random.Random):
        v = sn.climate.value(metric, t, sn.last_t, sn.canopy)
        sigma = NOISE.get(metric, 0.0)
        v += r.gauss(0, sigma * (v if metric in RELATIVE else 1.0))
        raw = False
        for f in self._faults_of.get((sn.id, metric), ()):
            if f.start <= t < f.end:
                if f.kind == "dropout":
                    self.truth.append((sn.id, metric, f.kind, t))
                    return None
                if f.kind in ("spike", "log"):
                    v += f.size
                elif f.kind == "drift":
                    v += f.size * (t - f.start) / DAY
                elif f.kind == "stuck":
                    if f not in self._stuck_at:
                        self._stuck_at[f] = v if f.size != f.size else f.size
                    v = self._stuck_at[f] + RESOLUTION.get(metric, 0.01) * r.choice((-1, 0, 0, 1))
                elif f.kind == "out-of-range":
                    v = f.size if f.size else METRICS[metric].high + 1
                    raw = True
                elif f.kind == "noise":  # a loose wire or a failing sensor: scatter of `size`
                    v += r.gauss(0, f.size)
                elif f.kind == "dead-fan":  # less and less air through the chamber
                    v *= math.exp(-(t - f.start) / DAY / max(f.size, 1e-3))
                elif f.kind == "wet":
                    v = 99.5 + 0.5 * r.random()
                self.truth.append((sn.id, metric, f.kind, t))
        m = METRICS[metric]
        if raw or m.in_range(v):
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

    def arrays(self, start: int, end: int, step_s: int = 600, metrics: tuple = tuple(METRICS)):
        """The readings the nodes would send over [start, end), on a grid of step_s, without any network:
        (node ids, their sites, grid times, values (nodes, time, metrics) with NaN where none).

        A grid step holds the mean of the node's readings in it (the total, for rain), as the analytics
        loads them from the database; the values are the very ones `history` would send.
        """
        times = np.arange(start - start % step_s, end, step_s)
        ids = sorted(self.nodes)
        total = np.zeros((len(ids), len(times), len(metrics)))
        count = np.zeros(total.shape)
        col = {m: j for j, m in enumerate(metrics)}
        for i, node in enumerate(ids):
            sn = self.nodes[node]
            cad = sn.node.cadence_s
            t = start + _offset(sn.id, cad)
            while t < end:
                reading = self.sample(sn, int(t))
                sn.buffer.clear()
                k = (int(t) - int(times[0])) // step_s
                for m, v in reading.items():
                    if m in col and v is not None:
                        total[i, k, col[m]] += v
                        count[i, k, col[m]] += 1
                t += cad
        with np.errstate(invalid="ignore"):
            values = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
        if "rain_mm" in col:
            values[:, :, col["rain_mm"]] = np.where(count[:, :, col["rain_mm"]] > 0, total[:, :, col["rain_mm"]],
                                                    np.nan)
        return ids, [self.nodes[n].site for n in ids], times, values

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


# what each realistic fault kind can hit, by node profile
FAULT_TARGETS = {
    "stuck": ("air_temp_c", "air_rh_pct", "air_pressure_hpa", "soil_vwc_pct", "water_level_cm"),
    "spike": ("air_temp_c", "air_rh_pct", "air_pressure_hpa", "soil_vwc_pct", "water_level_cm", "pm25_ugm3"),
    "drift": ("air_temp_c", "air_rh_pct", "soil_vwc_pct", "air_pressure_hpa"),
    "out-of-range": ("soil_temp_c", "water_temp_c"),
    "dead-fan": ("pm25_ugm3",),
    "wet": ("air_rh_pct",),
    "log": ("water_level_cm",),
}
# spikes and drifts are sized by the metric's plausible change between samples and its drift offset
# (rimba.metrics: step, drift); a drift totals this many of those over the fault, at least


def realistic_faults(sim: Simulation, kind: str, start: float, end: float, count: int, seed: int) -> list:
    """`count` faults of one kind on random nodes and metrics of `sim`, in [start, end), as the field makes them.

    - stuck: 4-36 h, at the value it stuck at, dithering by the resolution
    - spike: 1-3 samples, of many sizes (log-uniform 1-20 times the metric's largest plausible change
      between samples), up or down (PM: up)
    - drift: 2-5 days, reaching 2-4 times the day-long limit at which neighbours disagree
    - out-of-range: 1-12 h of a DS18B20 error value (85 or -127 °C)
    - dead-fan: 1-4 days of PM sinking with an e-folding time of 0.3-1.5 days
    - wet: 1-4 days of humidity pinned near 100 %
    - log: 10-60 min of a water level 30-250 cm high
    Faults do not overlap on a node and metric. The first day of [start, end) is left clean (the
    detector's warm-up).
    """
    rng = random.Random(f"{seed}/faults/{kind}")
    targets = [(n, m) for n, sn in sorted(sim.nodes.items()) for m in sn.metrics if m in FAULT_TARGETS[kind]]
    out, busy = [], {}
    tries = 0
    while len(out) < count and tries < 100 * count and targets:
        tries += 1
        node, metric = rng.choice(targets)
        cad = sim.nodes[node].node.cadence_s
        if kind == "stuck":
            dur = rng.uniform(4, 36) * 3600
        elif kind == "spike":
            dur = rng.randint(1, 3) * cad
        elif kind == "drift":
            dur = rng.uniform(2, 5) * DAY
        elif kind == "out-of-range":
            dur = rng.uniform(1, 12) * 3600
        elif kind in ("dead-fan", "wet"):
            dur = rng.uniform(1, 4) * DAY
        else:
            dur = rng.uniform(10, 60) * 60
        t0 = rng.uniform(start + DAY, end - dur)
        t0 -= t0 % cad
        span = (t0 - 6 * 3600, t0 + dur + 6 * 3600)
        if any(a < span[1] and span[0] < b for a, b in busy.get((node, metric), ())):
            continue
        busy.setdefault((node, metric), []).append((t0, t0 + dur))
        if kind == "spike":
            size = math.exp(rng.uniform(0, math.log(20))) * METRICS[metric].step
            size *= 1 if metric == "pm25_ugm3" or rng.random() < 0.5 else -1
        elif kind == "drift":
            size = rng.uniform(2, 4) * METRICS[metric].drift / (dur / DAY) * rng.choice((-1, 1))
        elif kind == "out-of-range":
            size = rng.choice(DS18B20_ERRORS)
        elif kind == "dead-fan":
            size = rng.uniform(0.3, 1.5)
        elif kind == "log":
            size = rng.uniform(30, 250)
        else:
            size = float("nan")
        out.append(Fault(node, metric, kind, t0, t0 + dur, size))
    return out


def _as_v2(topic: str, payload: bytes) -> list:
    """A v1 message's v2 form: `up` as v2 batches (the node's boot 1), `status` with `"v":2`."""
    from rimba.dev.wire2 import to_v2

    body = json.loads(payload)
    v2_topic = topic.replace(contract.root(1) + "/", contract.root(2) + "/", 1)
    if topic.endswith("/up"):
        return [(v2_topic, json.dumps(b, separators=(",", ":")).encode()) for b in to_v2(body, boot=body.get("boot", 1))]
    return [(v2_topic, json.dumps(dict(body, v=2), separators=(",", ":")).encode())]


def _offset(node_id: str, cadence: int) -> int:
    return random.Random(node_id).randrange(cadence)


class Publisher:
    """Publishes with QoS 1 over one connection and waits for the broker's PUBACKs."""

    def __init__(self, settings, client_id: str = "rimba-simulator", on_ack=None, wire: int = 1):
        from rimba.adapters.mqtt import Mqtt

        self._on_ack = on_ack
        self.wire = wire
        subs = tuple(f"{contract.root(v)}/+/+/ack" for v in contract.VERSIONS) if on_ack else ()
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
        """Publish a v1 message; a v2 publisher sends it as the same readings in v2 batches (`rimba.dev.wire2`)."""
        if self.wire == 2 and topic.startswith(contract.root(1) + "/"):
            for t2, p2 in _as_v2(topic, payload):
                self._pending.append(self.mqtt.publish(t2, p2, qos=1, retain=retain))
        else:
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
    pub = Publisher(settings, on_ack=sim.acked, wire=args.wire)
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
