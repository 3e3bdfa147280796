"""The spool and its writer against a model (ingest/store.py, ingest/writer.py): the real SQLite store and
SpoolWriter, two ingest processes sharing the file, and an InfluxDB of our own that stores, fails, refuses
and keeps two connections' requests in flight together.

Hypothesis drives commits (each commit's lines in its nodes' parts, as `transact` spools them), claim-and-write
cycles as the service's writer runs them (`Ingest._write_once`: the heartbeat, a claim that skips the rows written
and not released, a write that does not wait for the store), the processor's commit held open (a release, a
takeover or a heartbeat that must not wait fails), InfluxDB away (from any request on, on one connection; a
request that timed out after it was stored), refused points, crashes (the writer and what it held in memory lost,
the store reopened), minutes passing with the live processes' writers cycling as the service's do (InfluxDB down,
or not), and the death of the second process (its rows taken over after their lease). A spool from before the
parts may start it.

The fake InfluxDB holds each connection's requests of one write cycle in flight and stores them at its end in an
order Hypothesis picks (each connection's in its order): requests on two connections at once may be stored in
any interleaving, requests of one in theirs.

Checked after every step: no point InfluxDB holds is one never spooled, or a refused one; a row gone from the
spool had every line stored (or dead-lettered); no row of a live process was taken by the other. At the end, with
InfluxDB back and the spool drained: every point holds the value of its last line spooled (a later line never
overwritten by an earlier one), every refused point is a dead letter once."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from ingest import writer as writer_mod
from ingest.store import Store
from ingest.writer import SpoolWriter, part_of
from rimba.errors import InfluxRejected, InfluxUnavailable

pytestmark = pytest.mark.unit  # no stack, no process

T = 1_780_000_000.0
LEASE_S = 60.0
OWNERS = ("a", "b")


def _names(part: int, n: int) -> list:
    return list(itertools.islice((f"n-{i:02d}" for i in range(1000) if part_of(f"n-{i:02d}") == part), n))


# each process receives a node of each part (a node's messages come to one process while it lives)
NODES = {"a": _names(0, 2)[:1] + _names(1, 2)[:1], "b": _names(0, 2)[1:] + _names(1, 2)[1:]}


class BusyLock:
    """`Store.writing`, with the processor's commit open or not: while `busy`, an attempt that does not wait
    fails; one that waits gets the lock (the commit ends)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.busy = False

    def acquire(self, blocking=True, timeout=-1):
        if not blocking and self.busy:
            return False
        return self.lock.acquire(blocking, timeout)

    def release(self):
        self.lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Influx:
    """InfluxDB: points by key (the line up to its fields, and its time), the last value stored wins."""

    def __init__(self):
        self.points: dict = {}
        self.pending: dict = {}  # connection -> [lines of a request], in flight until `settle`
        self.fail_at: dict = {}  # connection -> requests it still takes this cycle before it fails
        self.stored_then_failed = False  # the failing request was stored first (a timeout after the write)

    def settle(self, order) -> None:
        """Store the requests in flight: `order` says which connection's next request goes next."""
        queues = {k: list(v) for k, v in self.pending.items()}
        self.pending = {}
        turns = itertools.chain(order, itertools.cycle(sorted(queues)))
        while any(queues.values()):
            k = next(turns)
            if queues.get(k):
                for line in queues[k].pop(0):
                    series, value, time_ = line.split(" ")
                    self.points[(series, time_)] = value


class Connection:
    def __init__(self, influx: Influx, k: int):
        self.influx, self.k = influx, k

    def write(self, body: bytes) -> None:
        lines = body.decode().splitlines()
        db = self.influx
        left = db.fail_at.get(self.k)
        if left is not None:
            if left == 0:
                if db.stored_then_failed:
                    db.pending.setdefault(self.k, []).append([x for x in lines if "bad=" not in x])
                raise InfluxUnavailable("timed out")
            db.fail_at[self.k] = left - 1
        good = [x for x in lines if "bad=" not in x]
        db.pending.setdefault(self.k, []).append(good)  # InfluxDB 1.x stores the good points of a partial write
        if len(good) < len(lines):
            raise InfluxRejected("partial write: field type conflict")

    def close(self) -> None:
        pass


class Process:
    """An ingest process: its store (its own connection to the file and its own lock) and its writer."""

    def __init__(self, path, owner: str, influx: Influx):
        self.owner = owner
        self.store = Store(path)
        self.store.writing = BusyLock()
        self.writer = SpoolWriter([Connection(influx, 0), Connection(influx, 1)], self.store, 2, lambda: T)

    def write_once(self, now: float) -> None:
        """`Ingest._write_once`, its heartbeat and claim at `now`."""
        w = self.writer
        self.store.beat(self.owner, now, lease_s=LEASE_S)
        rows = self.store.claim(self.owner, max_bytes=120, lease_s=LEASE_S, now=now, skip=frozenset(w.unreleased))
        if not rows:
            if w.unreleased:
                w.release_written()
            return
        try:
            w.write_rows(rows, wait=False)
        except InfluxUnavailable:
            pass

    def crash(self) -> None:
        self.writer.close()
        self.store.close()


class SpoolWriterModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.path = self.dir / "ingest.sqlite3"
        self.influx = Influx()
        self.clock = T
        self.value = itertools.count(1)
        self.last: dict = {}  # point key -> the value of its last good line spooled
        self.lines: dict = {}  # row id -> its lines
        self.refused: set = set()  # refused lines spooled
        self.stats = itertools.count(1)
        self.procs: dict = {}
        self.owned: dict = {}  # row id -> its owner, at the last step
        self.held_max = writer_mod.UNRELEASED_MAX
        writer_mod.UNRELEASED_MAX = 3  # small, so that the writer waits for the store now and then

    # -- the start: a spool from before the parts, or none ---------------------------------------------------
    @initialize(old=st.lists(st.lists(st.tuples(st.sampled_from(NODES["a"]), st.integers(0, 3)), min_size=1,
                                      max_size=3), max_size=3))
    def start(self, old):
        if old:  # written by the Rimba before the parts: one row a commit, every node of the commit in it
            Store(self.path).close()
            db = sqlite3.connect(self.path)
            db.executescript("DROP TABLE spool; CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, created "
                             "REAL NOT NULL, owner TEXT, lease REAL NOT NULL DEFAULT 0, lines INTEGER NOT NULL, "
                             "bytes INTEGER NOT NULL, body BLOB NOT NULL);")
            for commit in old:
                body = "".join(self._line(node, t) + "\n" for node, t in commit).encode()
                cur = db.execute("INSERT INTO spool (created, owner, lease, lines, bytes, body) VALUES "
                                 "(?, 'a', ?, ?, ?, ?)", (T, T + LEASE_S, len(commit), len(body), body))
                self.lines[cur.lastrowid] = body.decode().splitlines()
            db.commit()
            db.close()
        self.procs = {o: Process(self.path, o, self.influx) for o in OWNERS}

    def teardown(self):
        try:
            if self.procs:
                self.drain()
        finally:
            writer_mod.UNRELEASED_MAX = self.held_max
            for p in self.procs.values():
                p.crash()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _line(self, node: str, t: int, bad: bool = False) -> str:
        v = next(self.value)
        line = f"reading,node={node} {'bad' if bad else 'v'}={v}i {int(T) + t}"
        if bad:
            self.refused.add(line)
        else:
            self.last[(f"reading,node={node}", str(int(T) + t))] = f"v={v}i"
        return line

    def _nodes(self, owner: str) -> list:
        """The nodes whose messages come to `owner`: its own, and the dead one's once their rows are its."""
        if owner == "a" and "b" not in self.procs and not self._spooled_ids("b"):
            event("the dead one's nodes sent to the first")
            return NODES["a"] + NODES["b"]
        return NODES[owner]

    def _spool(self, proc: Process, parts: dict) -> None:
        with proc.store.transaction() as tx:
            for part in sorted(parts):
                tx.spool(parts[part], proc.owner, self.clock, lease_s=LEASE_S, part=part)
                rid = tx.db.execute("SELECT MAX(id) FROM spool").fetchone()[0]
                self.lines[rid] = parts[part]

    # -- the processor ---------------------------------------------------------------------------------------
    @rule(owner=st.sampled_from(OWNERS), data=st.data())
    def commit(self, owner, data):
        """A commit of messages of this process's nodes; a point may be written again with another value."""
        proc = self.procs.get(owner)
        if proc is None:
            return
        parts: dict = {}
        for node, t in data.draw(st.lists(st.tuples(st.sampled_from(self._nodes(owner)), st.integers(0, 3)),
                                          min_size=1, max_size=4)):
            parts.setdefault(part_of(node), []).append(self._line(node, t))
        self._spool(proc, parts)

    @rule(owner=st.sampled_from(OWNERS), i=st.integers(0, 3), t=st.integers(0, 3))
    def commit_refused(self, owner, i, t):
        """A point InfluxDB will refuse (a field type conflict), between two good ones of its node."""
        proc = self.procs.get(owner)
        if proc is None:
            return
        nodes = self._nodes(owner)
        node = nodes[i % len(nodes)]
        self._spool(proc, {part_of(node): [self._line(node, t), self._line(node, t, bad=True),
                                           self._line(node, t)]})

    @rule(owner=st.sampled_from(OWNERS))
    def stats(self, owner):
        """The ingest's own statistics: a line of no node, part 0."""
        proc = self.procs.get(owner)
        if proc is None:
            return
        v = next(self.value)
        line = f"ingest,instance={owner} n={v}i {int(T) * 1000 + next(self.stats)}"
        self.last[(f"ingest,instance={owner}", line.split(" ")[2])] = f"n={v}i"
        self._spool(proc, {part_of(None): [line]})

    # -- the writer ------------------------------------------------------------------------------------------
    @rule(owner=st.sampled_from(OWNERS), fail=st.none() | st.tuples(st.integers(0, 1), st.integers(0, 3)),
          stored=st.booleans(), order=st.lists(st.integers(0, 1), max_size=8), commit_open=st.booleans())
    def write(self, owner, fail, stored, order, commit_open):
        """A claim-and-write cycle; InfluxDB away from a request on, on one connection, or not; the processor's
        commit open meanwhile (a release or a takeover that does not wait cannot have the store), or not."""
        proc = self.procs.get(owner)
        if proc is None:
            return
        proc.store.writing.busy = commit_open
        self.influx.fail_at = {} if fail is None else {fail[0]: fail[1]}
        self.influx.stored_then_failed = stored
        dead_rows = "b" not in self.procs and self._spooled_ids("b")
        try:
            proc.write_once(self.clock)
        finally:
            proc.store.writing.busy = False
            self.influx.fail_at = {}
            self.influx.settle(order)
        event(f"a write: {'rows held back' if proc.writer.unreleased else 'none held back'}")
        if dead_rows and not self._spooled_ids("b"):
            event("a write: the dead one's rows taken over")

    @rule(steps=st.lists(st.integers(1, 20), min_size=1, max_size=12), busy=st.sampled_from(OWNERS) | st.none(),
          down=st.booleans())
    def time_passes(self, steps, busy, down):
        """Up to four minutes, a step at a time: at each, every live process's writer runs a cycle (the service's
        runs one every 20 s at most while InfluxDB is away: a request's 10 s timeout, then at most 10 s of
        backoff); the processor of one of them busy, its commit open at every cycle of its writer, or neither;
        InfluxDB down all along, or up."""
        for dt in steps:
            self.clock += dt
            for owner in sorted(self.procs):
                proc = self.procs[owner]
                proc.store.writing.busy = owner == busy
                self.influx.fail_at = {0: 0, 1: 0} if down else {}
                try:
                    proc.write_once(self.clock)
                finally:
                    proc.store.writing.busy = False
                    self.influx.fail_at = {}
                    self.influx.settle([])
        event(f"time passes: {sum(steps) // 60} min, InfluxDB {'down' if down else 'up'}, "
              f"{'a processor' if busy in self.procs else 'no processor'} busy")

    @rule(owner=st.sampled_from(OWNERS))
    def crash(self, owner):
        """The process dies and starts again (same client id): what its writer held in memory is gone."""
        proc = self.procs.get(owner)
        if proc is None:
            return
        proc.crash()
        self.procs[owner] = Process(self.path, owner, self.influx)

    @precondition(lambda self: "b" in self.procs)
    @rule()
    def b_dies(self):
        """The second process dies for good: once its rows' lease has run out, the first takes them over, and
        its nodes send to the first from then on. (From before then, the first would write their new lines
        before the dead one's old ones: a dead process's rows wait for their lease, by design.)"""
        self.procs.pop("b").crash()
        event(f"the second process dies: {'with' if self._spooled_ids('b') else 'without'} rows spooled")
        self.clock += LEASE_S + 1

    # -- the checks ------------------------------------------------------------------------------------------
    def _spooled_ids(self, owner: str | None = None) -> set:
        db = sqlite3.connect(self.path)
        try:
            return {r[0] for r in db.execute("SELECT id FROM spool WHERE ?1 IS NULL OR owner = ?1", (owner,))}
        finally:
            db.close()

    def _dead(self) -> list:
        db = sqlite3.connect(self.path)
        try:
            return [bytes(r[0]).decode() for r in db.execute("SELECT payload FROM deadletter ORDER BY id")]
        finally:
            db.close()

    @invariant()
    def influx_holds_only_what_was_spooled(self):
        for key, value in self.influx.points.items():
            assert key in self.last, key
            assert not value.startswith("bad="), key

    @invariant()
    def a_live_process_s_rows_are_never_taken(self):
        db = sqlite3.connect(self.path)
        try:
            owned = dict(db.execute("SELECT id, owner FROM spool"))
        finally:
            db.close()
        for rid, owner in self.owned.items():
            if owner in self.procs and rid in owned:
                assert owned[rid] == owner, f"row {rid} of {owner}, alive, taken by {owned[rid]}"
        self.owned = owned

    @invariant()
    def a_row_released_was_written_whole(self):
        if not self.procs:
            return
        stored = {f"{series} {value} {t}" for (series, t), value in self.influx.points.items()}
        dead = set(self._dead())
        waiting = self._spooled_ids()
        for rid, lines in self.lines.items():
            if rid in waiting:
                continue
            for line in lines:
                key = (line.split(" ")[0], line.split(" ")[2])
                if line in self.refused:
                    assert line in dead, f"row {rid} released, its refused point not dead-lettered: {line}"
                elif self.last[key] == line.split(" ")[1]:
                    assert line in stored, f"row {rid} released before its point was stored: {line}"

    def drain(self):
        """InfluxDB back, no commit open: the spool written to the end."""
        self.clock += 5  # a takeover is due (the dead one's leases ran out when it died)
        for _ in range(200):
            if not self._spooled_ids():
                break
            for p in self.procs.values():
                p.write_once(self.clock)
                self.influx.settle([1, 0])
        assert not self._spooled_ids(), "the spool does not drain"
        assert self.influx.points == self.last, "a point does not hold the last value spooled for it"
        dead = self._dead()
        assert sorted(dead) == sorted(self.refused) and len(set(dead)) == len(dead)


def test_the_spool_and_its_writer_keep_every_point_once_and_in_its_order():
    run_state_machine_as_test(SpoolWriterModel, settings=settings(max_examples=200, stateful_step_count=40,
                                                                  deadline=None))
