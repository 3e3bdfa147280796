"""Rollouts: a canary, then waves, halted when a wave fails, with the previous release offered again.

Over the real Mosquitto (with the ingest storing the statuses in InfluxDB), nodes played by
tests/fwnodes.py: canary 2 of 5 then the rest; a canary that rolls the release back halts the rollout,
and the other nodes are offered the previous release, never the new one; a silent canary times out on
an injected clock; a rollout killed in the middle resumes; a second rollout is a no-op. Then the
rollout as a model (Hypothesis): random fleets, node behaviours, plans and kills at any step, against
an in-memory broker, the outcome checked against a plain simulation of the rules and the history of
every config published.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import release as rel
from hardware.fwbroker import FirmwareBroker
from hardware.fwstore import FirmwareStore
from hardware.ota import status_rows
from hardware.provision import Provisioner
from hardware.rollout import Plan, Rollouts, failure_limit
from rimba.errors import ConfigError
from rimba.fleet import load_fleet
from tests.fwnodes import FakeNodes
from rimba.dev.harness import ROOT, env_for, wait_until
from tests.test_release import _cli, clear_retained

NODES = {f"smp29-0{i}": "smp29" for i in range(1, 6)}
T = 1_780_000_000.0  # the injected clock starts here


def blobs_of(version: str) -> dict:
    """A small release: its files' bytes depend on the version."""
    return {"main.py": f"import node  # {version}\n".encode(), "lib/node.mpy": b"M\x06" + version.encode() * 40}


def add_release(store, version: str) -> dict:
    blobs = blobs_of(version)
    store.add_release(version, blobs, rel.manifest(blobs), T)
    return rel.manifest(blobs)


class Clock:
    def __init__(self, t: float = T):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Counting:
    """The port, counting what is published through it."""

    def __init__(self, port):
        self.port, self.published = port, 0

    def publish_config(self, *a):
        self.published += 1
        return self.port.publish_config(*a)

    def publish_files(self, *a):
        self.published += 1
        return self.port.publish_files(*a)

    def __getattr__(self, name):
        return getattr(self.port, name)


@pytest.fixture
def fleet5(platform_factory):
    p = platform_factory({n: (site, "forest") for n, site in NODES.items()})
    prov = Provisioner(p.settings)
    keys = {}
    for n in NODES:
        prov.credentials(n)
        keys[n] = prov.update_key(n)
    yield p, prov, keys
    store = FirmwareStore.in_state_dir(p.settings.state_path)
    shas = sorted({sha for _v, files, _c in store.releases() for sha in files.values()})
    store.close()
    clear_retained(p.settings, [f"rimba/v2/fw/{sha}" for sha in shas])


def engine(p, prov, clock, events, store=None):
    store = store or FirmwareStore.in_state_dir(p.settings.state_path)
    port = FirmwareBroker(p.settings, load_fleet(p.fleet_path)).start()
    return Rollouts(store, Counting(port), prov.update_key, dict(NODES), clock, events.append), store, port


def index(log, *entry):
    return log.index(entry)


def test_canary_two_of_five_then_the_rest_and_a_second_rollout_is_a_no_op(fleet5):
    p, prov, keys = fleet5
    ingest = p.ingest()
    fake = FakeNodes(p.settings, NODES, keys, {"1.1.0": "good"})
    clock, events = Clock(), []
    roll, store, port = engine(p, prov, clock, events)
    try:
        files = add_release(store, "1.1.0")
        rid = roll.start("1.1.0", list(NODES), Plan(2, 10, "0", 3600))
        wait_until(lambda: roll.step(rid) == "done", 30, "the rollout to finish")
        log = fake.log
        canary_good = max(index(log, "status", n, "1.1.0", "good", None) for n in ("smp29-01", "smp29-02"))
        assert all(index(log, "offer", n, "1.1.0") < canary_good for n in ("smp29-01", "smp29-02"))
        assert all(index(log, "offer", n, "1.1.0") > canary_good for n in ("smp29-03", "smp29-04", "smp29-05"))
        assert [t["state"] for t in store.targets(rid)] == ["good"] * 5
        assert [t["wave"] for t in store.targets(rid)] == [0, 0, 1, 1, 1]
        assert events[-1] == "rollout of 1.1.0 done: 5 nodes run it"
        # what each node was offered: the release signed with its own key, the config otherwise {"v":2,"rev":1}
        for n in NODES:
            cfg = port.config("smp29", n)
            assert cfg == {"v": 2, "rev": 1, "fw": {"version": "1.1.0", "files": files,
                                                     "sig": rel.sign(keys[n], files, "1.1.0")}}
        current, rows = status_rows(store, load_fleet(p.fleet_path), {n: s for (_, n), s in port.statuses().items()})
        assert current["state"] == "done" and {r["fw"] for r in rows} == {"1.1.0"}
        assert [r["rollout"] for r in rows] == ["canary: good"] * 2 + ["wave 1: good"] * 3
        # a second rollout of the same release: nothing published
        before = roll.port.published
        assert roll.start("1.1.0", list(NODES), Plan(2, 10, "0", 3600)) is None
        assert roll.port.published == before and "nothing to do" in events[-1]
        # the ingest stored the statuses, fw_state included (what the fleet dashboard shows)
        wait_until(lambda: len(p.influx.rows('SELECT last("fw") AS fw, last("fw_state") AS s FROM node_status '
                                             "WHERE fw = '1.1.0' GROUP BY node")) == 5, 30, "the statuses stored")
    finally:
        fake.close()
        port.close()
        store.close()
        ingest.stop()


def test_a_silent_canary_times_out_on_the_clock_and_a_wave_may_have_failures_within_the_limit(fleet5):
    p, prov, keys = fleet5
    fake = FakeNodes(p.settings, NODES, keys, {("smp29-01", "1.1.0"): "silent", "1.1.0": "good"})
    clock, events = Clock(), []
    roll, store, port = engine(p, prov, clock, events)
    try:
        add_release(store, "1.1.0")
        rid = roll.start("1.1.0", list(NODES), Plan(2, 2, "1", 600))
        wait_until(lambda: roll.step(rid) and store.targets(rid)[1]["state"] == "good", 30, "the second canary")
        assert store.targets(rid)[0]["state"] == "offered" and roll.next_deadline(rid) == T + 600
        clock.t = T + 599
        assert roll.step(rid) == "running" and store.targets(rid)[0]["state"] == "offered"
        clock.t = T + 600
        roll.step(rid)  # the canary failed within the limit of one: wave 1 is offered at once
        assert store.targets(rid)[0]["detail"] == "no report of 1.1.0 good within 600 s"
        assert store.rollout(rid)["wave"] == 1
        wait_until(lambda: roll.step(rid) == "done", 30, "the rollout to finish")
        assert [t["state"] for t in store.targets(rid)] == ["failed", "good", "good", "good", "good"]
        assert fake.offered("smp29-01") == ["1.1.0"]  # a node that failed within the limit is left as it is
    finally:
        fake.close()
        port.close()
        store.close()


def test_a_canary_that_rolls_back_halts_the_rollout_and_the_rest_get_the_previous_release(fleet5):
    p, prov, keys = fleet5
    ingest = p.ingest()
    fake = FakeNodes(p.settings, NODES, keys, {"1.0.0": "good", "1.1.0": "crash"}, running="0.9.0")
    store = FirmwareStore.in_state_dir(p.settings.state_path)
    try:
        old = add_release(store, "1.0.0")
        add_release(store, "1.1.0")
        r = _cli(p.values, "firmware", "rollout", "1.0.0", "--canary", "1", "--timeout", "60")
        assert r.returncode == 0 and "rollout of 1.0.0 done: 5 nodes run it" in r.stdout, r.stdout + r.stderr
        r = _cli(p.values, "firmware", "rollout", "1.1.0", "--canary", "2", "--timeout", "60")
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stdout + r.stderr
        assert r.stderr.startswith("rimba: rollout of 1.1.0 halted: the canary had 1 of 2 failed (smp29-01 rolled "
                                   "back)") or r.stderr.startswith("rimba: rollout of 1.1.0 halted: the canary had 2 of 2")
        assert r.stderr.endswith("; 5 nodes not updated offered the release they had before again\n"), r.stderr
        for n in ("smp29-03", "smp29-04", "smp29-05"):
            assert "1.1.0" not in fake.offered(n)
        # every node's config offers 1.0.0 again, signed for it: the previous release
        wait_until(lambda: all(fake.offered(n)[-1:] == ["1.0.0"] for n in NODES), 10, "the previous release offered")
        assert all(fake.configs[n][-1]["fw"] == {"version": "1.0.0", "files": old,
                                                 "sig": rel.sign(keys[n], old, "1.0.0")} for n in NODES)
        assert "1.1.0" in fake.offered("smp29-01") and fake.running["smp29-01"] == "1.0.0"
        r = _cli(p.values, "firmware", "rollout", "1.1.0", "--canary", "2")
        assert r.returncode == 2 and "halted" in r.stderr and "release a newer version" in r.stderr, r.stderr
        wait_until(lambda: p.influx.rows("SELECT fw_failed FROM node_status WHERE node = 'smp29-01' AND "
                                         "fw_failed =~ /./"), 30, "the rolled-back status stored")
        r = _cli(p.values, "firmware", "status", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["rollout"]["state"] == "halted" and out["rollout"]["version"] == "1.1.0"
        row = {x["node"]: x for x in out["nodes"]}["smp29-01"]
        assert (row["fw"], row["fw_state"], row["fw_failed"]) == ("1.0.0", "rolled-back", "1.1.0")
        assert row["rollout"] == "canary: failed (rolled back), 1.0.0 offered again"
        assert {x["node"]: x for x in out["nodes"]}["smp29-05"]["rollout"] == \
            "wave 1: pending, 1.0.0 offered again"
        r = _cli(p.values, "firmware", "status")
        line = next(x for x in r.stdout.splitlines() if x.startswith("smp29-01 "))
        assert r.stdout.startswith("rollout #2 of 1.1.0: halted (the canary had") and line.split()[2:6] == \
            ["sleeping", "1.0.0", "rolled-back", "failed"], r.stdout
    finally:
        fake.close()
        store.close()
        ingest.stop()


def test_a_rollout_killed_in_the_middle_resumes_where_it_stopped(fleet5, tmp_path):
    p, prov, keys = fleet5
    fake = FakeNodes(p.settings, NODES, keys, {"1.1.0": "hold"})
    store = FirmwareStore.in_state_dir(p.settings.state_path)
    try:
        add_release(store, "1.1.0")
        argv = [sys.executable, "-m", "rimba", "firmware", "rollout", "1.1.0", "--canary", "2", "--wave", "2",
                "--timeout", "300"]
        with open(tmp_path / "first.log", "wb") as log:
            proc = subprocess.Popen(argv, env=env_for(p.values), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            try:
                wait_until(lambda: (r := store.unfinished()) and [t["state"] for t in store.targets(r["id"])][:2]
                           == ["offered", "offered"], 30, "both canaries offered")
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
        assert [t["state"] for t in store.targets(store.unfinished()["id"])] == ["offered"] * 2 + ["pending"] * 3
        fake.release_hold()
        r = _cli(p.values, "firmware", "rollout", "1.1.0", "--canary", "2", "--wave", "2", "--timeout", "300")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("resuming the rollout of 1.1.0 (#1) at wave 0")
        assert "rollout of 1.1.0 done: 5 nodes run it" in r.stdout
        assert r.stdout.count("offered 1.1.0") == 3  # the canaries were offered once, before the kill
        assert all(fake.offered(n) == ["1.1.0"] for n in NODES)
        r = _cli(p.values, "firmware", "rollout", "1.1.0", "--canary", "2")
        assert r.returncode == 0 and "already rolled out to the 5 selected nodes: nothing to do" in r.stdout, r.stdout
        assert all(fake.offered(n) == ["1.1.0"] for n in NODES)
    finally:
        fake.close()
        store.close()


# -- the rollout as a model ----------------------------------------------------------------------------------
class Killed(Exception):
    """The rollout process dies here."""


class MemoryBroker:
    """The broker and the nodes, in memory, as strict as tests/fwnodes.py: configs and files retained; a
    node checks the signature with its own key and every file's hash, then reports at `delay` seconds
    after the offer (good or crash), or never (silent); a node whose key differs refuses every release
    (reported as rolled back at once). `kill_at`: the operation (counted over reads and publishes) after
    which the process dies; a publish has taken effect by then (the broker acknowledged it)."""

    def __init__(self, nodes, keys, behaviour, clock, configs):
        self.nodes, self.keys, self.behaviour, self.clock = nodes, keys, behaviour, clock
        self.configs = {("smp29", n): c for n, c in configs.items() if c is not None}
        self.blobs, self.history, self.reports = {}, [], {n: [] for n in nodes}
        self.handled = {n: set() for n in nodes}
        self.ops, self.kill_at = 0, None

    def _op(self):
        self.ops += 1
        if self.kill_at is not None and self.ops >= self.kill_at:
            self.kill_at = None
            raise Killed

    def config(self, site, node):
        self._op()
        return json.loads(json.dumps(self.configs.get((site, node))))

    def publish_files(self, blobs):
        for sha, data in blobs.items():
            assert hashlib.sha256(data).hexdigest() == sha
            self.blobs[sha] = data
        self._op()

    def publish_config(self, site, node, cfg):
        cfg = json.loads(json.dumps(cfg))
        assert cfg["v"] == 2 and isinstance(cfg["rev"], int)
        self.configs[(site, node)] = cfg
        fw = cfg.get("fw")
        self.history.append((self.clock(), node, fw and fw["version"], {k: v for k, v in cfg.items() if k != "fw"}))
        if fw and fw["version"] not in self.handled[node] and fw["version"] != "1.0.0":
            self.handled[node].add(fw["version"])
            kind, delay = self.behaviour[node]
            text = rel.canonical(fw["files"], fw["version"])
            ok = hmac.compare_digest(hmac.new(bytes.fromhex(self.keys[node]), text, hashlib.sha256).hexdigest(),
                                     fw["sig"]) and all(s in self.blobs for s in fw["files"].values())
            now = self.clock()
            if not ok:
                self.reports[node].append((now, {"fw": "1.0.0", "fw_state": "rolled-back", "fw_failed": fw["version"]}))
            elif kind == "good":
                self.reports[node].append((now + delay, {"fw": fw["version"], "fw_state": "good"}))
            elif kind == "crash":
                self.reports[node].append((now + delay, {"fw": "1.0.0", "fw_state": "rolled-back",
                                                         "fw_failed": fw["version"]}))
        self._op()

    def status(self, site, node):
        self._op()
        seen = [s for t, s in self.reports[node] if t <= self.clock()]
        return dict(seen[-1]) if seen else {"fw": "1.0.0", "fw_state": "good"}

    def next_arrival(self, now):
        return min((t for rs in self.reports.values() for t, _ in rs if t > now), default=float("inf"))


def simulate(order, plan, behaviour, badkey):
    """The rules, plainly: wave by wave, each node's result at the time it comes; the wave halts at the first
    moment its failures pass the limit, and the next wave is offered the moment one passes. Returns (state,
    {node: final target state}, the halted wave or None, {node: when it was offered})."""
    wave_of = [0 if i < plan.canary else 1 + (i - plan.canary) // plan.wave_size for i in range(len(order))]
    states = {n: "pending" for n in order}
    offered = {}
    now = 0.0
    for w in range(max(wave_of) + 1):
        members = [n for n, x in zip(order, wave_of) if x == w]
        results = []
        for n in members:
            kind, delay = behaviour[n]
            if n in badkey:
                results.append((now, "failed"))
            elif kind == "good" and delay <= plan.timeout_s:
                results.append((now + delay, "good"))
            elif kind == "crash":
                results.append((now + min(delay, plan.timeout_s), "failed"))
            else:
                results.append((now + plan.timeout_s, "failed"))
        for n in members:
            states[n], offered[n] = "offered", now
        limit = failure_limit(plan.max_failures, len(members))
        for at in sorted({t for t, _ in results}):
            for n, (t, outcome) in zip(members, results):
                if t == at:
                    states[n] = outcome
            if sum(states[n] == "failed" for n in members) > limit:
                return "halted", states, w, offered
        now = max(t for t, _ in results)
    return "done", states, None, offered


behaviours = st.tuples(st.sampled_from(["good", "good", "crash", "silent"]), st.sampled_from([0.0, 30.0, 200.0, 700.0]))


@pytest.mark.unit
@settings(max_examples=60)
@given(st.integers(1, 7).flatmap(lambda n: st.tuples(
    st.lists(behaviours, min_size=n, max_size=n), st.integers(1, n), st.integers(1, 3),
    st.sampled_from(["0", "1", "0.5"]), st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n), st.lists(st.integers(1, 40), max_size=4))))
def test_a_rollout_killed_anywhere_ends_as_the_rules_say(tmp_path_factory, case):
    kinds, canary, wave_size, max_failures, had_config, wrong_key, kills = case
    order = [f"n{i}" for i in range(len(kinds))]
    behaviour = dict(zip(order, kinds))
    badkey = {n for n, bad in zip(order, wrong_key) if bad}
    plan = Plan(canary, wave_size, max_failures, 600.0)
    keys = {n: hashlib.sha256(n.encode()).hexdigest() for n in order}
    node_keys = {n: (hashlib.sha256(b"other").hexdigest() if n in badkey else keys[n]) for n in order}
    path = tmp_path_factory.mktemp("fw") / "firmware.sqlite"
    store = FirmwareStore(path)
    old = add_release(store, "1.0.0")
    add_release(store, "1.1.0")
    initial = {n: {"v": 2, "rev": 4, "sample_s": 300, "fw": rel.offer(keys[n], old, "1.0.0")} if had else None
               for n, had in zip(order, had_config)}
    clock = Clock(0.0)
    broker = MemoryBroker(order, node_keys, behaviour, clock, initial)
    kills = sorted(set(kills))

    def wait(deadline):
        clock.t = max(clock.t, min(deadline, broker.next_arrival(clock.t)))

    state, runs = None, 0
    while state not in ("done", "halted"):
        runs += 1
        assert runs <= len(kills) + 1
        broker.kill_at = kills[runs - 1] + broker.ops if runs <= len(kills) else None
        roll = Rollouts(store, broker, keys.__getitem__, {n: "smp29" for n in order}, clock)
        try:
            rid = roll.start("1.1.0", order, plan)
            state = roll.run(rid, wait)
        except Killed:
            store.close()
            store = FirmwareStore(path)  # a new process: only what was committed
    expect_state, expect, halted_wave, offered = simulate(order, plan, behaviour, badkey)
    assert state == expect_state
    targets = {t["node"]: t for t in store.targets(rid)}
    assert {n: t["state"] for n, t in targets.items()} == expect
    # the history's index of the first revert (a config without the new release), if any
    halt_at = next((i for i, (_t, _n, v, _) in enumerate(broker.history) if v != "1.1.0"), len(broker.history))
    for n in order:
        sent = [h for h in broker.history if h[1] == n]
        # every config keeps the node's other keys, and rev, as they were
        base = {k: v for k, v in (initial[n] or {"v": 2, "rev": 1}).items() if k != "fw"}
        assert all(other == base for _t, _n, _v, other in sent)
        assert min((t for t, _n, v, _ in sent if v == "1.1.0"), default=None) == offered.get(n)
        final = (broker.configs.get(("smp29", n)) or {}).get("fw")
        if expect[n] == "good":
            assert final["version"] == "1.1.0"
        elif state == "halted":
            # not updated: offered what it had before (or nothing), and never the new release after the halt
            assert final == (initial[n] or {}).get("fw")
            assert not any(h[2] == "1.1.0" for h in broker.history[halt_at:])
        if expect[n] == "pending":
            assert "1.1.0" not in [v for _t, _n, v, _ in sent]
    if state == "halted":
        later = [t["node"] for t in targets.values() if t["wave"] > halted_wave]
        assert all(targets[n]["state"] == "pending" for n in later)
    # and once more: nothing to do, nothing published
    published = len(broker.history)
    roll = Rollouts(store, broker, keys.__getitem__, {n: "smp29" for n in order}, clock)
    if state == "done":
        assert roll.start("1.1.0", order, plan) is None
    else:
        with pytest.raises(ConfigError, match="halted"):
            roll.start("1.1.0", order, plan)
    assert len(broker.history) == published
    store.close()


@pytest.mark.parametrize("argv, says", [
    (["9.9.9", "--canary", "1"], "no release 9.9.9"),
    (["1.x", "--canary", "1"], "integers joined by dots"),
    (["1.1.0", "--canary", "0"], "--canary and --wave: at least 1 node"),
    (["1.1.0", "--canary", "1", "--max-failures", "1.5"], "a fraction below 1"),
    (["1.1.0", "--canary", "1", "--max-failures", "some"], "a count (0, 1, 2 ...) or a fraction"),
    (["1.1.0", "--canary", "1", "--timeout", "0"], "--timeout 0: seconds, more than 0"),
    (["1.1.0", "--canary", "1", "--site", "smp29", "--nodes", "smp29-01"], "--site or --nodes, not both"),
    (["1.1.0", "--canary", "1", "--site", "nowhere"], "--site nowhere: not in the fleet file"),
    (["1.1.0", "--canary", "1", "--nodes", "nobody"], "--nodes: nobody is not in the fleet file"),
    (["1.1.0", "--canary", "1", "--nodes", "old-01"], "--nodes: old-01 speaks contract v1"),
    (["1.1.0", "--canary", "1", "--nodes", "smp29-01"], "--nodes: smp29-01 has no update key"),
    (["1.1.0", "--canary", "1", "--site", "bansir-laut"], "no node of the selection can take a release"),
])
def test_rollout_mistakes_are_one_line_before_anything_is_published(tmp_path, argv, says):
    from rimba.dev.harness import FLEET

    (tmp_path / "fleet.toml").write_text(FLEET + '\n[nodes.smp29-01]\nsite = "smp29"\nprofile = "forest"\n'
                                         'cadence_s = 600\n\n[nodes.old-01]\nsite = "bansir-laut"\nprofile = "river"\n'
                                         "cadence_s = 600\nwire = 1\n")
    values = {"state_dir": str(tmp_path / "state"), "fleet": str(tmp_path / "fleet.toml"),
              "mqtt_url": "mqtt://127.0.0.1:1"}  # nothing listens: a mistake must be found before connecting
    store = FirmwareStore.in_state_dir(tmp_path / "state")
    add_release(store, "1.1.0")
    store.close()
    r = _cli(values, "firmware", "rollout", *argv)
    assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1 and not r.stdout, r.stderr
