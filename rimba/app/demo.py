"""`rimba demo` (`./dev demo`): the whole platform, live, on this machine.

Brings up the stack, starts `rimba ingest` as its own process, backfills eight
days for the sample fleet (both sites, a haze episode, one node's outage with
buffered backfill, resent batches, now and then a hostile message), then keeps
the fleet sampling live and shows a terminal view until Ctrl-C. Stops what it
started, and only that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import threading
import time

from analytics import analyze
from analytics.alert_rules import SEVERITIES
from analytics.alerts import AlertStore
from hardware import provision
from ingest.store import Store
from rimba import contract, profiles, wib
from rimba.errors import RimbaError
from rimba.fleet import load_fleet
from rimba.lineproto import LIVE
from rimba.adapters.influx import Influx
from rimba.metrics import METRICS
from rimba.dev.climate import Climate, Haze
from rimba.dev.simulate import Fault, LiveRunner, Publisher, Simulation
from rimba.dev.stack import Stack

log = logging.getLogger("rimba.app.demo")
WIB = wib.TZ
# a site's last half hour in the view: what its nodes' profiles measure, in the profiles' order, and the
# battery from their statuses
SHOWN = tuple(dict.fromkeys(m for name in profiles.names() for m in profiles.metrics(name)))


def _dry(climate, t: float) -> float:
    """The latest time at or before `t` (within three days) with no rain at the site an hour either side: the
    demo's spike is a sensor's, and rain at the site would rightly explain a jump away."""
    for back in range(0, 3 * 86400, 600):
        if climate.rain_between(t - back - 3600, t - back + 3600) == 0:
            return t - back
    log.warning("no dry hour in the three days before %s: the demo's spike may be excused as rain", t)
    return t


def main(settings, args) -> int:
    stack = Stack.from_settings(settings)
    started_stack = not (stack.mosquitto.running() and stack.influxd.running())
    fleet = load_fleet(settings.fleet)
    firmware_nodes = sorted(n for n, node in fleet.nodes.items() if node.extra.get("demo") == "firmware")
    # Locked down as in the field: no anonymous access, every service and node logs in as itself.
    provision.lock(settings)
    provisioner = provision.Provisioner(settings)
    node_passwords = {n: provisioner.credentials(n) for n in firmware_nodes}
    stack.up()  # restarts a stack that was running open
    _show_locked(settings)
    state = settings.state_path
    state.mkdir(parents=True, exist_ok=True)
    ingest_log = state / "ingest.log"
    env = {**os.environ, **settings.with_(stats_every_s=1).env(), **provision.service_env(settings, "ingest")}
    viewer = provision.as_service(settings, "viewer")
    ingest = subprocess.Popen([sys.executable, "-m", "rimba", "ingest"], env=env,
                              stdout=open(ingest_log, "ab"), stderr=subprocess.STDOUT)
    view = None
    pub = None
    try:
        _wait_ready(ingest_log, ingest)
        now = time.time()
        nodes = sorted(fleet.nodes)
        seed = int(now) // 86400
        haze = Haze(now - 1.5 * 86400, 3.0, 260)
        spike_at = _dry(Climate(seed, fleet.nodes[nodes[0]].site, haze), now - 30 * 3600)
        faults = [Fault(nodes[0], "air_temp_c", "spike", spike_at, spike_at + 600, 11.0),
                  Fault(nodes[-1], "air_rh_pct", "stuck", now - 40 * 3600, now - 34 * 3600, 91.3),
                  Fault(nodes[1], "air_temp_c", "spike", now - 3 * 3600, now + 3600, 6.0)]  # ongoing: an anomaly
        sim = Simulation(fleet, seed=seed, haze=haze, send_every=3,
                         faults=faults, nodes={n for n in fleet.nodes if n not in firmware_nodes})
        pub = Publisher(provision.as_service(settings, "sim"), client_id="rimba-demo-sim", on_ack=sim.acked)
        print(f"stack: mosquitto {stack.mqtt_url}, influxdb {stack.influx_url} (data in {stack.dir})")
        print(f"ingest log: {ingest_log}")
        first = sorted(sim.nodes)[0]
        events = sim.history(now - BACKFILL_DAYS * 86400, now - 300, resend_prob=0.05,
                             outages=[(first, now - 30 * 3600, now - 20 * 3600)])
        print(f"backfilling {BACKFILL_DAYS} days: {len(events):,} batches from {len(sim.nodes)} nodes ...", flush=True)
        for _t, topic, payload in events:
            pub.publish(topic, payload)
        pub.flush()
        for sn in sim.nodes.values():
            pub.publish(*sim.status(sn, int(now), int(now + sn.node.cadence_s / args.speed)), retain=True)
        _wait_stored(viewer, sim.expected())
        analytics = AnalyticsLoop(provision.as_service(settings, "analyze"), every_s=30.0)
        analytics.start()
        first_run = analytics.wait_first()
        print(f"analyzed {BACKFILL_DAYS} days: {first_run['lines']:,} quality flags, anomaly events and index points "
              f"written; {len(first_run['changes'])} alerts fired (MQTT rimba/v1/<site>/alert; `rimba alerts list`)")
        _write_bundle_and_reports(viewer, fleet, state)
        runner = LiveRunner(sim, pub, speed=args.speed)
        live = threading.Thread(target=runner.run, name="live-fleet", daemon=True)
        live.start()
        firmware = FirmwareFleet(settings, fleet, node_passwords, state / "firmware", args.speed)
        firmware.start()
        print(f"real firmware in MicroPython: {', '.join(firmware_nodes) or 'none'} (logs in {state / 'firmware'})")
        view = LiveView(viewer, fleet, stack, ingest, pub)
        view.firmware = firmware
        view.run(args.seconds)
        runner.stop.set()
        live.join(timeout=5)
        firmware.stop.set()
        firmware.join(timeout=60)
        analytics.stop.set()
        analytics.join(timeout=60)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if pub is not None:
            try:
                pub.close()
            except (TimeoutError, RimbaError):
                pass
        ingest.terminate()
        try:
            ingest.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ingest.kill()
        if started_stack:
            stack.down()
            print("stopped the stack, the ingest and the simulated fleet")
        else:
            print("stopped the ingest and the simulated fleet; the stack was already running and stays up")


def _show_locked(settings) -> None:
    """Say how the stack is locked, and show the broker turning away a client without a login."""
    from rimba.adapters.mqtt import Mqtt

    try:
        stranger = dataclasses.replace(settings.broker, user=None, password=None)
        Mqtt(stranger, "rimba-demo-stranger", v5=False, persistent=False).start(5.0).stop()
        refused = False
    except RimbaError:
        refused = True
    print(f"locked down: broker users and ACL, InfluxDB users (in {settings.state_path / 'broker'}); "
          f"an anonymous client is {'refused' if refused else 'ACCEPTED (the lock did not take)'}")


def _wait_ready(log_path, proc, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RimbaError(f"ingest exited at start-up; see {log_path}")
        if log_path.exists() and b" ready: " in log_path.read_bytes()[-4096:]:
            return
        time.sleep(0.05)
    raise RimbaError(f"ingest did not connect within {timeout:.0f} s; see {log_path}")


def _wait_stored(settings, expected: int, timeout: float = 120.0) -> None:
    """Show the backfill landing in InfluxDB, until all of it is queryable."""
    influx = Influx.from_settings(settings)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            rows = influx.rows("SELECT count(seq) FROM reading")
            stored = rows[0]["count"] if rows else 0
            print(f"\r  stored {stored:,} of {expected:,} readings", end="", flush=True)
            if stored >= expected:
                break
            time.sleep(0.25)
    finally:
        print()
        influx.close()


BACKFILL_DAYS = 8  # the anomaly baselines want three days of history before they judge


def _write_bundle_and_reports(settings, fleet, state) -> None:
    from analytics import weekly
    from dashboards import build, report

    bundle = state / "grafana"
    files = build.write_bundle(settings, fleet, bundle)
    print(f"Grafana bundle ({len(files)} files: dashboards, data source, provisioning): {bundle}")
    for site in fleet.sites:
        week = weekly.gather(settings, site, 7)
        for lang in ("id", "en"):
            r = report.make(week, lang, out_dir=state / "reports")
            print(f"weekly report {site} ({lang}): {r.pdf} and {r.png}")


class FirmwareFleet(threading.Thread):
    """A few nodes run by the real firmware in the MicroPython unix port (rimba.dev.hostnode), waking every
    cadence / speed seconds on the demo's clock: their world's time is the real time at each wake."""

    def __init__(self, settings, fleet, nodes: dict, home, speed: float):
        """`nodes`: {node id: its broker password}."""
        super().__init__(name="firmware-nodes", daemon=True)
        from hardware.bundle import node_config
        from rimba.dev.hostnode import FirmwareNode

        self.stop = threading.Event()
        self.every_s = max(2.0, min(fleet.nodes[n].cadence_s for n in nodes) / speed) if nodes else 60.0
        self.nodes = []
        for i, n in enumerate(sorted(nodes)):
            cfg = node_config(settings, fleet, n, mqtt_password=nodes[n])
            cfg.update(send_every=2, wifi_timeout_ms=500, puback_ms=3000)
            node = FirmwareNode(home, n, cfg.pop("site"), cfg.pop("mqtt_port"), **{k: v for k, v in cfg.items()
                                                                                    if k != "node"})
            node.set(drift=0.01 * (i + 1), soil_mv=1900 + 100 * i, soil_temp_c=26.8, water_temp_c=29.4,
                     water_distance_mm=1450, air_temp_c=29.0, air_rh_pct=78.0, batt_v=3.92)
            self.nodes.append(node)
        self.wakes = 0
        self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for node in self.nodes:
                node.set(true=time.time())
                try:
                    r = node.wake(expect_sleep=False)
                    self.wakes += 1
                    self.failures += r.returncode != 0
                    with (node.home / "wake.log").open("a") as log:
                        log.write(r.stdout + r.stderr)
                    del node.runs[:-5]
                except (OSError, RimbaError):
                    self.failures += 1
            self.stop.wait(self.every_s)


class AnalyticsLoop(threading.Thread):
    """`rimba analyze` inside the demo: a run now, then one every `every_s`."""

    def __init__(self, settings, every_s: float):
        super().__init__(name="analytics", daemon=True)
        self.settings = settings
        self.every_s = every_s
        self.stop = threading.Event()
        self.first = threading.Event()
        self.result: dict = {}
        self.error: Exception | None = None

    def run(self) -> None:
        analyzer = analyze.Analyzer(self.settings)
        try:
            while not self.stop.is_set():
                try:
                    self.result = analyzer.run(int(time.time()))
                except RimbaError as err:
                    self.error = err
                self.first.set()
                self.stop.wait(self.every_s)
        finally:
            analyzer.close()

    def wait_first(self, timeout: float = 300.0) -> dict:
        if not self.first.wait(timeout) or self.error is not None:
            raise RimbaError(f"the first analytics run failed: {self.error or 'it took too long'}")
        return self.result


class LiveView:
    """A terminal page refreshed every second: rates, health, latest values per site."""

    def __init__(self, settings, fleet, stack, ingest, pub):
        self.settings = settings
        self.fleet = fleet
        self.stack = stack
        self.ingest = ingest
        self.pub = pub
        self.influx = Influx.from_settings(settings)
        self.store = Store.in_state_dir(settings.state_path)
        self.history: list = []
        self.tty = sys.stdout.isatty()
        self._hostile = 0

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds if seconds else None
        while end is None or time.monotonic() < end:
            if self.ingest.poll() is not None:
                raise RimbaError("ingest stopped; see its log")
            self._maybe_hostile()
            print(self.render(), flush=True)
            time.sleep(1.0 if self.tty else 5.0)

    def _maybe_hostile(self) -> None:
        """Now and then a message an attacker or a broken node might send: it must be dead-lettered."""
        self._hostile += 1
        if self._hostile % 20 == 1:
            site = next(iter(self.fleet.sites))
            self.pub.publish(contract.topic(site, "intruder-01", "up"),
                             json.dumps({"v": 1, "node": "intruder-01", "epoch": 1, "now": int(time.time()),
                                         "tq": "ntp", "r": [{"seq": 1, "t": int(time.time()), "air_temp_c": 99}]})
                             .encode())

    def _alerts(self) -> list:
        path = self.settings.state_path / "alerts.sqlite"
        if not path.exists():
            return []
        store = AlertStore(path)
        try:
            return store.incidents("firing")
        finally:
            store.close()

    def _counters(self) -> dict:
        try:
            rows = self.influx.rows("SELECT * FROM ingest ORDER BY time DESC LIMIT 1")
        except RimbaError:
            return {}
        return rows[0] if rows else {}

    def render(self) -> str:
        c = self._counters()
        now = time.monotonic()
        stored = c.get("stored", 0) or 0
        self.history.append((now, stored))
        self.history = [h for h in self.history if now - h[0] <= 10]
        t0, s0 = self.history[0]
        rate = (stored - s0) / (now - t0) if now > t0 else 0.0
        try:
            seen = len(self.influx.rows("SELECT count(seq) FROM reading WHERE time > now() - 1h GROUP BY node"))
            means = self.influx.rows("SELECT " + ", ".join(f"mean({m}) AS {m}" for m in SHOWN) +
                                     " FROM reading WHERE time > now() - 30m GROUP BY site")
            batt = {r["site"]: r["batt_v"] for r in self.influx.rows(
                "SELECT mean(batt_v) AS batt_v FROM node_status WHERE time > now() - 2h GROUP BY site")}
        except RimbaError:
            seen, means, batt = 0, [], {}
        try:
            qc = self.influx.rows(f'SELECT count(flag) FROM qc WHERE {LIVE["qc"]} AND time > now() - 3d '
                                  'GROUP BY "check"')
        except RimbaError:
            qc = []
        dead = self.store.deadletter_count()
        lines = []
        if self.tty:
            lines.append("\x1b[2J\x1b[H")
        clock = dt.datetime.now(WIB).strftime("%Y-%m-%d %H:%M:%S WIB")
        lines.append(f"Rimba live demo  {clock}   (Ctrl-C to stop)")
        lines.append(f"mosquitto {self.stack.mqtt_url}   influxdb {self.stack.influx_url}/{self.settings.influx_db}")
        lines.append("")
        lines.append(f"readings/s {rate:8.1f}   stored {stored:>9,}   duplicates {c.get('duplicates', 0):>6,}   "
                     f"nodes seen (1 h) {seen}/{len(self.fleet.nodes)}")
        lines.append(f"dead letters {dead:>5,}   spooled {c.get('spooled', 0):>6,}   write retries "
                     f"{c.get('write_retries', 0):>4,}   lag {c.get('lag_s', 0.0):5.1f} s")
        flags = ", ".join(f"{r['check']} {r['count']}" for r in qc) or "none"
        lines.append(f"quality flags (3 days): {flags}")
        fw = getattr(self, "firmware", None)
        if fw is not None and fw.nodes:
            lines.append(f"real firmware (MicroPython, 96 KiB heap): {len(fw.nodes)} nodes, {fw.wakes} wakes, "
                         f"{fw.failures} failed")
        firing = self._alerts()
        lines.append(f"alerts firing: {len(firing)}")
        for inc in _worth_showing(firing, 4):
            lines.append(f"  {inc['severity']:8} {inc['site']:12} {inc['node'] or '(site)':14} {inc['message'][:70]}")
        by_site = {r["site"]: r for r in means}
        for sid, site in self.fleet.sites.items():
            lines.append("")
            lines.append(f"{site.name} ({sid}), last 30 min")
            row = by_site.get(sid, {})
            row = {**row, "batt_v": batt.get(sid)}
            vals = [f"{METRICS[m].label_en} {row[m]:,.1f} {METRICS[m].unit}" for m in (*SHOWN, "batt_v")
                    if row.get(m) is not None]
            lines.append("  " + ("   ".join(vals) if vals else "(no readings yet)"))
        return "\n".join(lines)


_SEVERITY = {s: -i for i, s in enumerate(SEVERITIES)}  # the gravest first


def _worth_showing(firing: list, n: int) -> list:
    """Up to `n` incidents for the view: the most severe of each kind first (an officer should see that both
    a haze and a faulty sensor are going on), then the rest by severity, newest first."""
    ranked = sorted(firing, key=lambda inc: (_SEVERITY.get(inc["severity"], 3), -(inc.get("start") or 0)))
    first, seen = [], set()
    for inc in ranked:
        if inc["kind"] not in seen:
            seen.add(inc["kind"])
            first.append(inc)
    rest = [inc for inc in ranked if inc not in first]
    return (first + rest)[:n]
