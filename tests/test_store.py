"""The ingest's SQLite store on its own: the ledger on disk, replay in one transaction, dead letters as
evidence counted against the disk limit, the first layout migrated."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import replay
from ingest.service import transact
from ingest.store import VERSION, Store
from rimba.errors import StoreError
from rimba.fleet import parse_fleet
from rimba.dev.harness import VECTOR_FLEET, VECTORS

pytestmark = pytest.mark.unit  # no stack, no process

RECEIVED = VECTORS["received"]
UP = "rimba/v1/smp29/smp29-03/up"


def up(seqs, epoch=7, **values) -> bytes:
    return json.dumps({"v": 1, "node": "smp29-03", "epoch": epoch, "now": RECEIVED, "tq": "ntp",
                       "r": [{"seq": s, "t": RECEIVED - 300 + s, "air_temp_c": 27.5, **values} for s in seqs]}).encode()


def commit(store, *payloads, fleet=VECTOR_FLEET, topic=UP):
    return transact(store, fleet, [(topic, p, RECEIVED + i, i, 1, False) for i, p in enumerate(payloads)], "t")


def spooled(store) -> list:
    return [line for (body,) in store.db.execute("SELECT body FROM spool ORDER BY id")
            for line in bytes(body).decode().splitlines()]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ingest.sqlite3")
    yield s
    s.close()


def test_the_ledger_survives_a_reopen(tmp_path):
    s = Store(tmp_path / "i.sqlite3")
    commit(s, up([1, 2, 3]), up([5]))
    s.close()
    s = Store(tmp_path / "i.sqlite3")
    out, _tx, _ = commit(s, up([1, 2, 3, 4]))
    assert (out.stored, out.duplicates) == (1, 3)
    assert s.current_ack("smp29-03") == ("smp29", 7, 5)
    s.close()


def test_replay_of_an_unknown_nodes_batch_with_a_value_out_of_range_stores_its_readings(store):
    """The bug: the replay recorded the seqs as stored and spooled nothing."""
    fleet = parse_fleet({"sites": VECTORS["fleet"]["sites"], "nodes": {}})
    commit(store, up([1, 2], air_rh_pct=140.0), fleet=fleet)
    assert [r[4] for r in store.deadletters()] == ["unknown-node"]
    result = replay.into_spool(store, VECTOR_FLEET)
    assert (result.replayed, result.stored) == (1, 2)
    assert len([x for x in spooled(store) if x.startswith("reading,")]) == 2
    assert store.current_ack("smp29-03") == ("smp29", 7, 2)
    (row,) = store.deadletters(include_replayed=True)
    assert row[8] is not None and row[4] == "out-of-range"  # replayed, with its new reason


def test_a_replay_still_refused_keeps_nothing_but_its_new_reason(store):
    fleet = parse_fleet({"sites": VECTORS["fleet"]["sites"], "nodes": {}})
    commit(store, up([1, 2], bogus=1), fleet=fleet)
    result = replay.into_spool(store, VECTOR_FLEET)
    assert (result.replayed, result.refused) == (0, 1)
    assert [r[4] for r in store.deadletters()] == ["unknown-key"]
    assert not spooled(store)


def test_a_big_payload_is_kept_as_evidence_and_counts_against_the_disk_limit(store):
    huge = b'{"v":1,' + b" " * 1_000_000 + b"}"
    before = store.disk_bytes()
    commit(store, huge)
    (row,) = store.deadletters()
    assert row[4] == "too-large" and len(row[3]) == 16 * 1024 and row[9] == len(huge)
    import hashlib

    assert row[10] == hashlib.sha256(huge).hexdigest()
    assert store.disk_bytes() - before == 16 * 1024


def test_the_first_layout_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE marks (node TEXT, epoch INTEGER, stored TEXT, held TEXT, hole_since REAL,
                            PRIMARY KEY (node, epoch));
        CREATE TABLE latest (node TEXT PRIMARY KEY, site TEXT, epoch INTEGER, acked_epoch INTEGER, acked_seq INTEGER);
        CREATE TABLE deadletter (id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL, topic TEXT NOT NULL,
            payload BLOB NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, node TEXT, kind TEXT NOT NULL,
            digest TEXT NOT NULL, replayed REAL);
        INSERT INTO marks VALUES ('smp29-03', 7, '[[1, 3]]', '[[4, 5], [9, 9]]', 1.0);
        INSERT INTO marks VALUES ('smp29-03', 6, '[[1, 40]]', '[]', NULL);
        INSERT INTO latest VALUES ('smp29-03', 'smp29', 7, 7, 5);
        INSERT INTO deadletter (received, topic, payload, code, reason, node, kind, digest)
            VALUES (1, 't', x'7b7d', 'bad-json', 'bad-json: x', NULL, 'message', 'd');
    """)
    db.commit()
    db.close()
    s = Store(path)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    assert s.current_ack("smp29-03") == ("smp29", 7, 5)
    out, _tx, _ = commit(s, up([2, 6]))
    assert (out.stored, out.duplicates) == (1, 1)  # 2 was stored before; 6 is new
    assert s.current_ack("smp29-03") == ("smp29", 7, 6)
    assert s.disk_bytes() == 2 + sum(len(x) + 1 for x in spooled(s))
    s.close()


def test_a_store_from_a_newer_rimba_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer Rimba"):
        Store(path)


def test_purge_frees_the_disk_limit_and_the_nodes_share(store):
    commit(store, up([1], bogus=1), up([2], bogus=2), up([3], bogus=3))
    before = store.disk_bytes()
    assert store._load_node("smp29-03").dead_bytes > 0
    count, size = store.purge_deadletters(node="smp29-03")
    assert count == 3 and size > 0 and store.disk_bytes() == before - size
    assert store._load_node("smp29-03").dead_bytes == 0 and store.deadletter_count() == 0


RIVER_UP = "rimba/v1/bansir-laut/bansir-laut-01/up"


def river_up(seqs) -> bytes:
    return json.dumps({"v": 1, "node": "bansir-laut-01", "epoch": 2, "now": RECEIVED, "tq": "ntp",
                       "r": [{"seq": s, "t": RECEIVED - 300 + s, "water_level_cm": 120.0} for s in seqs]}).encode()


def test_a_nodes_lines_are_spooled_in_its_part_and_only_there(store):
    """Every line of a node goes to one spool part (so a series is written in its order even with the parts
    side by side); the vector fleet's two nodes are in different parts."""
    from ingest.writer import part_of

    assert part_of("smp29-03") != part_of("bansir-laut-01")
    transact(store, VECTOR_FLEET, [(UP, up([1, 2]), RECEIVED, 1, 1, False),
                                   (RIVER_UP, river_up([1]), RECEIVED, 2, 1, False),
                                   (UP, up([3]), RECEIVED, 3, 1, False)], "t")
    rows = store.db.execute("SELECT part, body FROM spool ORDER BY id").fetchall()
    assert sorted(p for p, _ in rows) == sorted({part_of("smp29-03"), part_of("bansir-laut-01")})
    for part, body in rows:
        nodes = {line.split(",node=")[1].split(",")[0] for line in bytes(body).decode().splitlines()}
        assert {part_of(n) for n in nodes} == {part} and len(nodes) == 1
    smp = [line for part, body in rows if part == part_of("smp29-03") for line in bytes(body).decode().splitlines()]
    assert [int(line.split("seq=")[1].split("i")[0]) for line in smp] == [1, 2, 3]  # in the order received


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(1, 50)), min_size=1, max_size=30),
       st.sets(st.integers(1, 30)), st.integers(1, 120))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_claim_takes_each_parts_oldest_rows_never_one_before_another(tmp_path_factory, rows, skip, budget):
    """Whatever the rows' parts and sizes and the rows written but not released: a claim of each part takes
    the oldest rows not skipped, in order, up to the budget (at least one), never a row past one it left."""
    s = Store(tmp_path_factory.mktemp("claim") / "ingest.sqlite3")
    try:
        with s.transaction() as tx:
            for part, size in rows:
                tx.spool(["x" * (size - 1)], "me", RECEIVED, part=part)
        claimed = s.claim("me", max_bytes=budget, now=RECEIVED, skip=skip)
        for part in (0, 1):
            waiting = [(i + 1, size) for i, (p, size) in enumerate(rows) if p == part and i + 1 not in skip]
            got = [rid for rid, _lines, _body, p in claimed if p == part]
            assert got == [rid for rid, _ in waiting[:len(got)]]  # a prefix of the part's rows, in order
            taken = sum(size for _, size in waiting[:len(got)])
            assert (not waiting) or got  # a part with rows waiting gets one at least
            assert taken <= budget or len(got) == 1
            if len(got) < len(waiting):
                assert taken + waiting[len(got)][1] > budget  # it stopped at the budget, not before
    finally:
        s.close()


def _store_before_the_parts(path, bodies) -> None:
    """A store as the Rimba before the parts left it: a spool without `part`, one row a commit."""
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE spool; CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT "
                     "NULL, owner TEXT, lease REAL NOT NULL DEFAULT 0, lines INTEGER NOT NULL, bytes INTEGER NOT "
                     "NULL, body BLOB NOT NULL);")
    for body in bodies:
        db.execute("INSERT INTO spool (created, owner, lease, lines, bytes, body) VALUES (1, 'me', 0, ?, ?, ?)",
                   (body.count(b"\n"), len(body), body))
    db.commit()
    db.close()


def test_a_spool_from_before_the_parts_is_given_them(tmp_path):
    """A store written before the spool had parts: its rows are of any part (a commit's row holds every node
    of the commit), and written as before."""
    from ingest.store import ANY_PART

    path = tmp_path / "ingest.sqlite3"
    _store_before_the_parts(path, [b"a\n"])
    s = Store(path)
    assert s.claim("me", max_bytes=100, now=RECEIVED) == [(1, 1, b"a\n", ANY_PART)]
    s.close()


def test_a_row_from_before_the_parts_is_never_in_flight_beside_a_row_of_a_part(tmp_path):
    """The bug: a row spooled before the parts holds every node of its commit, and was made part 0; a newer row
    of a part-1 node was claimed with it and written beside it, on the other connection, so the newer line
    could be stored first and overwritten by the older one (a series in two parts). It is claimed alone now:
    what is before it is written before it, what is after it after it, and so is a row an older Rimba sharing
    the file spools."""
    from ingest.writer import SpoolWriter, part_of

    a, b = "bansir-laut-01", "smp29-03"
    assert (part_of(a), part_of(b)) == (0, 1)
    path = tmp_path / "ingest.sqlite3"
    old = f"reading,node={a} v=1i 1000\nreading,node={b} v=1i 1000\n".encode()
    _store_before_the_parts(path, [old])
    s = Store(path)
    try:
        with s.transaction() as tx:
            tx.spool([f"reading,node={a} v=2i 1000"], "me", RECEIVED, part=0)
            tx.spool([f"reading,node={b} v=2i 1000"], "me", RECEIVED, part=1)
        for value, part in ((3, ""), (4, ", part")):  # a row an older Rimba spooled (no part), then one of ours
            body = f"reading,node={b} v={value}i 1000\n".encode()
            s.db.execute(f"INSERT INTO spool (created, owner, lease, lines, bytes, body{part}) VALUES (?, 'me', ?, 1, "
                         f"?, ?{', 1' if part else ''})", (RECEIVED, RECEIVED + 60, len(body), body))

        class Connection:  # InfluxDB, one connection: the requests it was sent
            def __init__(self, log):
                self.log = log

            def write(self, body):
                self.log.append((self, bytes(body).decode()))

        log: list = []
        w = SpoolWriter([Connection(log), Connection(log)], s, 100, lambda: RECEIVED)
        claims = []
        try:
            while rows := s.claim("me", max_bytes=10_000, now=RECEIVED):
                claims.append([rid for rid, *_ in rows])
                w.write_rows(rows)
        finally:
            w.close()
        assert claims == [[1], [2, 3], [4], [5]]  # the rows of any part alone, in their place
        points: dict = {}
        for _conn, body in log:  # requests of two claims are never in flight together
            for line in body.splitlines():
                series, value, t = line.split(" ")
                points[(series, t)] = value
        assert points == {(f"reading,node={a}", "1000"): "v=2i", (f"reading,node={b}", "1000"): "v=4i"}
    finally:
        s.close()


def test_rows_are_taken_over_only_once_their_lease_ran_out_and_their_owner_beats_no_more(tmp_path):
    """Two processes on a file from before the heartbeats (no `owners` table): a live owner's rows are never
    taken, however old their lease, while it beats; a lease after its last beat they are. An owner that never
    beats has its rows taken once their lease ran out, as before: `rimba deadletter replay`'s (lease 0) at once,
    an older Rimba's after 60 s."""
    from ingest.replay import OWNER

    path = tmp_path / "ingest.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE owners")  # as the Rimba before the heartbeats left it
    db.close()
    a, b = Store(path), Store(path)
    try:
        with a.transaction() as tx:
            tx.spool(["a"], "a", RECEIVED)
            tx.spool(["older"], "an older rimba", RECEIVED)
            tx.spool(["replayed"], OWNER, RECEIVED, lease_s=0)

        def owners() -> dict:
            return dict(a.db.execute("SELECT body, owner FROM spool"))

        a.beat("a", RECEIVED)
        assert [bytes(body) for _id, _n, body, _p in b.claim("b", 100, now=RECEIVED + 1)] == [b"replayed\n"]
        for t in range(10, 200, 10):  # the first process alive: its writer beats at every cycle
            a.beat("a", RECEIVED + t)
            b.claim("b", 100, now=RECEIVED + t)
            assert owners()[b"a\n"] == "a", t
        assert owners() == {b"a\n": "a", b"older\n": "b", b"replayed\n": "b"}
        b.claim("b", 100, now=RECEIVED + 190 + 55)  # its last beat 55 s ago: it may be alive yet
        assert owners()[b"a\n"] == "a"
        b.claim("b", 100, now=RECEIVED + 190 + 61)
        assert owners()[b"a\n"] == "b"
    finally:
        a.close()
        b.close()


def test_a_heartbeat_does_not_wait_for_a_commit_until_a_quarter_of_the_lease_passed_without_one(tmp_path):
    """The writer does not wait for the processor's commit to beat (InfluxDB would idle meanwhile), but a
    heartbeat missed for 15 s is written whatever it waits for: a busy processor cannot make a live process's
    rows look dead."""
    from tests.test_spool_writer_model import BusyLock

    s = Store(tmp_path / "ingest.sqlite3")
    s.writing = BusyLock()

    def seen():
        row = s.db.execute("SELECT seen FROM owners WHERE owner = 'me'").fetchone()
        return row and row[0] - RECEIVED

    try:
        s.writing.busy = True  # the processor's commit open at every try
        s.beat("me", RECEIVED)
        s.beat("me", RECEIVED + 14)
        assert seen() is None
        s.beat("me", RECEIVED + 15)  # a quarter of the lease from the first try: waited
        assert seen() == 15
        s.beat("me", RECEIVED + 29)
        assert seen() == 15
        s.beat("me", RECEIVED + 30)
        assert seen() == 30
        s.writing.busy = False
        s.beat("me", RECEIVED + 34)  # every 5 s at most
        assert seen() == 30
        s.beat("me", RECEIVED + 35)
        assert seen() == 35
    finally:
        s.close()


def test_a_process_declares_its_lease_with_its_beat_and_a_long_influxdb_timeout_a_long_one(tmp_path):
    """Between two beats of a live writer lies one InfluxDB request: with a 120 s timeout a 60 s lease would make
    it look dead while it waits for an answer. Each process declares the lease for its own timeout (`lease_for`),
    and the other takes its rows only once that lease has passed since its last beat."""
    from ingest.store import lease_for

    assert lease_for(10.0) == 60.0 and lease_for(30.0) == 90.0 and lease_for(120.0) == 270.0
    path = tmp_path / "ingest.sqlite3"
    a, b = Store(path), Store(path)
    try:
        with a.transaction() as tx:
            tx.spool(["a"], "a", RECEIVED)
        a.beat("a", RECEIVED, lease_for(120.0))
        b.claim("b", 100, now=RECEIVED + 200)
        assert a.db.execute("SELECT owner FROM spool").fetchone() == ("a",)  # waiting for its request, alive
        b.claim("b", 100, now=RECEIVED + 271)
        assert a.db.execute("SELECT owner FROM spool").fetchone() == ("b",)
    finally:
        a.close()
        b.close()
