"""A model of nodes and of the transport, run against the real pipeline and SQLite store (Jepsen's
method in small: a model, a history, a checker).

The nodes keep readings until an ack frees them, resend everything above their ack, report `lost`
what overflows their buffer, get wiped (a new epoch), step their clocks (a reboot to the 2000
epoch), and send now and then a batch with a value out of range or one the contract refuses. One
node starts outside the fleet file and is registered later, and its dead letters replayed. The
transport duplicates, reorders and holds messages back; the ingest is killed between any two
steps (after its commit, before the broker got the PUBACK: the message comes again) and reopened.

Checked after every step:
- every reading a node freed is stored exactly once, or was reported lost by that node, or is in
  the dead-letter store;
- the ack never passes a seq that is neither stored, reported lost, nor dead-lettered;
- no two readings share a point (node and time).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ingest import replay
from ingest.service import sweep, transact
from ingest.store import Store
from rimba.fleet import parse_fleet

pytestmark = pytest.mark.unit  # no stack, no process

START = 1_780_000_000  # 2026-05-28, a fixed time
Y2000 = 946_684_800
SITES = {"smp29": {"name": "SMP 29", "lat": -0.0263, "lon": 109.3425}}
NODES = ("m-01", "m-02", "m-03")
LATE_NODE = "m-03"  # not in the fleet file until `register`
CAPACITY = 12
_READING = re.compile(r"^reading,node=([a-z0-9-]+),site=[a-z0-9-]+ (\S+) (\d+)$")


def fleet(nodes) -> object:
    return parse_fleet({"sites": SITES, "nodes": {n: {"site": "smp29", "profile": "forest", "cadence_s": 600}
                                                  for n in nodes}})


class Node:
    def __init__(self, name: str, epoch: int, clock: int):
        self.name = name
        self.epoch = epoch
        self.next_seq = 1
        self.buffer: dict = {}  # seq -> (t by its clock, identity)
        self.lost: list = []  # [first, last] ranges dropped and not yet acknowledged
        self.ack = 0
        self.offset = clock  # its clock minus the true time
        self.tq = "ntp" if clock == 0 else "rtc"
        self.boot = 1


class IngestModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.path = f"{self.dir.name}/ingest.sqlite3"
        self.store = Store(self.path)
        self.now = START
        self.fleet_nodes = [n for n in NODES if n != LATE_NODE]
        self.nodes = {n: Node(n, 100 + i, 0 if i != 1 else -3600) for i, n in enumerate(NODES)}
        self.next_id = 1
        self.identity: dict = {}  # light_lux value -> (node, epoch, seq): every reading is told apart
        self.freed: set = set()
        self.reported_lost: set = set()  # (node, epoch, seq)
        self.transport: list = []  # (topic, payload, retain) in flight at the broker
        self.retained_ack: dict = {}
        self.mid = 0

    def teardown(self):
        self.store.close()
        self.dir.cleanup()

    # One rule draws what happens next, weighted as the field weighs it: sampling, sending, delivering
    # and reading acks are most of it; wipes, reboots and kills are rare.
    @rule(event=st.sampled_from(["sample"] * 5 + ["send"] * 6 + ["deliver"] * 3 + ["read_ack"] * 3
                                + ["status", "duplicate", "wipe", "reboot_to_2000", "register", "sweep",
                                   "same_second"]),
          node=st.sampled_from(NODES), n=st.integers(1, 4), flaw=st.sampled_from([None] * 6 + ["out-of-range", "refused"]),
          picks=st.lists(st.integers(0, 50), min_size=1, max_size=3), killed=st.integers(0, 5),
          wait=st.sampled_from([0, 0, 0, 30, 1200, 7200]))
    def step(self, event, node, n, flaw, picks, killed, wait):
        if event == "sample":
            self.sample(node, min(n, 3))
        elif event == "send":
            self.send(node, n, flaw)
        elif event == "deliver":
            self.deliver(picks, killed == 0, wait)
        elif event == "duplicate":
            self.duplicate(picks[0])
        elif event == "register":
            self.register()
        elif event == "sweep":
            sweep(self.store, self.now, 1800, "model")
            self._publish_acks(None)
        else:
            getattr(self, event)(node)

    # -- the nodes --------------------------------------------------------------------------------
    def same_second(self, node):
        """A reading taken in the same second as the one before it (a burst, or a clock stepped back)."""
        self.sample(node, 1, advance=0)

    def sample(self, node, steps, advance=600):
        n = self.nodes[node]
        for _ in range(steps):
            self.now += advance
            ident = self.next_id
            self.next_id += 1
            self.identity[ident] = (node, n.epoch, n.next_seq)
            n.buffer[n.next_seq] = (self.now + n.offset, ident, n.tq)
            n.next_seq += 1
            if len(n.buffer) > CAPACITY:  # the oldest is dropped and reported lost
                oldest = min(n.buffer)
                del n.buffer[oldest]
                self.reported_lost.add((node, n.epoch, oldest))
                if n.lost and n.lost[-1][1] == oldest - 1:
                    n.lost[-1][1] = oldest
                else:
                    n.lost.append([oldest, oldest])

    def send(self, node, size, flaw):
        """At its wake the node sends every unacknowledged reading, oldest first, in batches of `size`
        (and its `lost` with the first)."""
        n = self.nodes[node]
        seqs = sorted(s for s in n.buffer if s > n.ack)
        # a batch holds readings of one clock: those stamped while synchronised travel as `ntp`
        chunks = []
        for s in seqs:
            if chunks and len(chunks[-1]) < size and n.buffer[chunks[-1][-1]][2] == n.buffer[s][2]:
                chunks[-1].append(s)
            else:
                chunks.append([s])
        chunks = chunks or ([[]] if n.lost else [])
        for i, chunk in enumerate(chunks):
            readings = []
            for s in chunk:
                t, ident, _tq = n.buffer[s]
                readings.append({"seq": s, "t": t, "air_temp_c": 27.5, "light_lux": float(ident)})
            tq = n.buffer[chunk[0]][2] if chunk else n.tq
            if flaw == "out-of-range" and readings and i == 0:
                readings[0]["air_rh_pct"] = 140.0
            if flaw == "refused" and readings and i == len(chunks) - 1:
                readings[-1]["bogus"] = 1
            body = {"v": 1, "node": node, "epoch": n.epoch, "now": self.now + n.offset, "tq": tq, "r": readings}
            if n.lost and i == 0:
                body["lost"] = n.lost
            self._publish(f"rimba/v1/smp29/{node}/up", json.dumps(body).encode())

    def status(self, node):
        n = self.nodes[node]
        body = {"v": 1, "state": "sleeping", "t": self.now + n.offset, "boot": n.boot}
        self._publish(f"rimba/v1/smp29/{node}/status", json.dumps(body).encode(), retain=True)

    def read_ack(self, node):
        """At its wake the node reads its retained ack and frees what it covers."""
        n = self.nodes[node]
        got = self.retained_ack.get(node)
        if got is None or got[0] != n.epoch or got[1] <= n.ack:
            return
        n.ack = got[1]
        for s in [s for s in n.buffer if s <= n.ack]:
            self.freed.add(n.buffer.pop(s)[1])
        n.lost = [r for r in ([max(lo, n.ack + 1), hi] for lo, hi in n.lost) if r[0] <= r[1]]

    def wipe(self, node):
        """The flash is erased: a new epoch, seq from 1; what was not freed is gone with it."""
        n = self.nodes[node]
        n.epoch += 1000
        n.next_seq, n.buffer, n.lost, n.ack = 1, {}, [], 0
        n.boot += 1

    def reboot_to_2000(self, node):
        """A brown-out resets the RTC to 2000; the node says so in its next status (a new boot). (A clock
        that was never synchronised and resets again leaves readings no contract can place: not modelled.)"""
        n = self.nodes[node]
        if n.tq != "ntp":
            return
        n.boot += 1
        n.tq = "rtc"
        n.offset = Y2000 - self.now + 10
        self.status(node)

    # -- the transport and the ingest ------------------------------------------------------------
    def _publish(self, topic, payload, retain=False):
        self.transport.append((topic, payload, retain))

    def duplicate(self, i):
        if self.transport:
            self.transport.append(self.transport[i % len(self.transport)])

    def deliver(self, picks, killed, wait):
        """The ingest takes some messages in flight, in any order (the rest are held back), and commits
        them. Killed before the PUBACKs, the broker delivers them again."""
        if not self.transport:
            return
        chosen = []
        for p in picks:
            k = p % len(self.transport)
            if k not in chosen:
                chosen.append(k)
        received = self.now + wait
        batch = []
        for k in chosen:
            topic, payload, retain = self.transport[k]
            self.mid += 1
            batch.append((topic, payload, received, self.mid, 1, retain))
        out, tx, _kept = transact(self.store, fleet(self.fleet_nodes), batch, "model", clock=lambda: received)
        assert out.internal == 0
        if killed:
            self.store.close()
            self.store = Store(self.path)
            self._publish_acks(None)
            return
        for k in sorted(chosen, reverse=True):
            del self.transport[k]
        cands = {n: (site, *tx.acks[n]) for n, (site, _e) in out.touched.items() if n in tx.acks}
        self._publish_acks(cands)

    def _publish_acks(self, candidates):
        todo = self.store.acks_to_publish(candidates)
        for node, _site, epoch, seq, _wire in todo:
            self.retained_ack[node] = (epoch, seq)
        self.store.mark_published([(node, epoch, seq) for node, _site, epoch, seq, _wire in todo])

    def register(self):
        """The late node is added to the fleet file; its dead letters are replayed."""
        if LATE_NODE in self.fleet_nodes:
            return
        self.fleet_nodes.append(LATE_NODE)
        replay.into_spool(self.store, fleet(self.fleet_nodes), node=LATE_NODE, clock=lambda: self.now)
        self._publish_acks(None)

    # -- the checker ----------------------------------------------------------------------------
    def _stored(self) -> list:
        out = []
        for (body,) in self.store.db.execute("SELECT body FROM spool ORDER BY id"):
            for line in bytes(body).decode().splitlines():
                m = _READING.match(line)
                if m:
                    fields = dict(kv.split("=", 1) for kv in m.group(2).split(","))
                    out.append((m.group(1), int(m.group(3)), int(float(fields["light_lux"]))))
        return out

    def _dead_identities(self) -> set:
        idents = set()
        for row in self.store.deadletters(include_replayed=True, limit=100_000):
            try:
                body = json.loads(bytes(row[3]))
                idents |= {int(r["light_lux"]) for r in body.get("r", []) if isinstance(r, dict) and "light_lux" in r}
            except (ValueError, TypeError, KeyError):
                pass
        return idents

    @invariant()
    def nothing_lost_nothing_twice_no_shared_point(self):
        stored = self._stored()
        idents = [ident for _n, _t, ident in stored]
        assert len(idents) == len(set(idents)), "a reading stored twice"
        points = {}
        for node, t, ident in stored:
            assert points.setdefault((node, t), ident) == ident, f"two readings share the point {node} {t}"
        dead = self._dead_identities()
        kept = set(idents) | dead
        codes = {row[4] for row in self.store.deadletters(include_replayed=True, limit=100_000)}
        # only what the nodes were made to get wrong; never a well-behaved batch
        assert codes <= {"out-of-range", "unknown-key", "unknown-node", "time-collision"}, codes
        for ident in self.freed:
            node, epoch, seq = self.identity[ident]
            assert ident in kept or (node, epoch, seq) in self.reported_lost, f"freed and lost: {node} {epoch} {seq}"

    @invariant()
    def the_ack_never_passes_an_unrecorded_seq(self):
        stored = {self.identity[i] for _n, _t, i in self._stored()}
        dead = {self.identity[i] for i in self._dead_identities()}
        for node, (epoch, ack) in self.retained_ack.items():
            for seq in range(1, ack + 1):
                key = (node, epoch, seq)
                assert key in stored or key in dead or key in self.reported_lost, f"the ack passed {key}"


TestIngestModel = IngestModel.TestCase
TestIngestModel.settings = settings(max_examples=80, stateful_step_count=60, deadline=None)


def test_a_nodes_state_holds_only_immutable_values_so_its_shallow_copy_undoes_a_message():
    import dataclasses

    from ingest.ledger import NodeState

    ns = NodeState()
    for f in dataclasses.fields(NodeState):  # NodeState.copy is shallow: a list or dict here would be shared
        assert f.type in ("str | None", "int | None", "float | None", "float", "int", "str"), (f.name, f.type)
    assert vars(ns.copy()) == vars(ns) and ns.copy() is not ns
