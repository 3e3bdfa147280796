"""The ingest service's own logic, with its parts substituted (ingest/service.py's composition root): a broker
and a database we own, as strict as the real ones where the service relies on them (a PUBACK only for a
message received, a publish only while connected, a write that fails as InfluxDB fails), an injected clock and
pause, and the real SQLite store. No stack, no process: what the integration tests cover end to end, here one
rule at a time: acknowledged only once durable, nothing acknowledged while the spool is full, the ack published
once it moved and again after the broker was away, the writer backing off while InfluxDB is down and never
dying of an error."""

from __future__ import annotations

import json
import threading

import pytest

from ingest.service import Ingest
from rimba import settings as settings_mod
from rimba.errors import InfluxUnavailable, StoreBusy
from rimba.dev.harness import ROOT, fleet_text

pytestmark = pytest.mark.unit
T = 1_780_000_000.0


class Clock:
    def __init__(self):
        self.t = T

    def __call__(self) -> float:
        return self.t


class Broker:
    """The service's MQTT client, played: what it acknowledged and published; connected or not."""

    def __init__(self, handler):
        self.handler = handler
        self.acked: list = []
        self.published: list = []
        self.connected = threading.Event()
        self.connected.set()
        self.received: set = set()
        self.mid = 0

    def deliver(self, topic: str, body: dict) -> int:
        self.mid += 1
        self.received.add(self.mid)
        self.handler(topic, json.dumps(body).encode(), self.mid, 1, False)
        return self.mid

    def ack(self, mid, qos):
        assert mid in self.received and mid not in self.acked, mid  # a PUBACK only for a message received, once
        self.acked.append(mid)

    def publish(self, topic, payload, qos=1, retain=False, track=True):
        assert self.connected.is_set(), "published while disconnected"
        self.mid += 1
        self.published.append((topic, json.loads(payload), retain))
        return self.mid

    def wait_published(self, mids, timeout):
        return list(mids)

    def start(self, wait_s=0):
        return self

    def stop(self):
        pass


class Database:
    """InfluxDB's write, played: it takes lines, or fails as an unreachable InfluxDB does."""

    def __init__(self):
        self.lines: list = []
        self.down = False

    def write(self, lines):
        if self.down:
            raise InfluxUnavailable("connection refused")
        text = lines.decode() if isinstance(lines, bytes) else lines
        self.lines.extend(text if isinstance(text, list) else text.splitlines())

    def close(self):
        pass


@pytest.fixture
def service(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(fleet_text({"smp29-01": ("smp29", "forest")}))
    made = {}

    def make(**values):
        s = settings_mod.build(overrides={"state_dir": str(tmp_path / "state"), "fleet": str(fleet), **values},
                               env={})
        clock, pauses, db = Clock(), [], Database()
        ingest = Ingest(s, clock, influx=db, mqtt=lambda handler: made.setdefault("broker", Broker(handler)),
                        pause=pauses.append)
        ingest.wrote.set()  # a full spool's wait for the writer returns at once: the test is the writer
        made.update(ingest=ingest, clock=clock, pauses=pauses, db=db)
        return ingest, made["broker"], db, clock, pauses

    yield make
    if "ingest" in made:
        made["ingest"].store.close()


def batch(seqs, epoch=7, t0=int(T) - 7200) -> dict:
    """A v1 batch of readings a minute apart, all in the past of the clock."""
    return {"v": 1, "node": "smp29-01", "epoch": epoch, "now": int(T), "tq": "ntp", "fw": "1.0.0",
            "r": [{"seq": s, "t": t0 + 60 * s, "air_temp_c": 27.5} for s in seqs]}


UP = "rimba/v1/smp29/smp29-01/up"
ACK = "rimba/v1/smp29/smp29-01/ack"


def test_a_message_is_acknowledged_once_durable_and_its_ack_published_when_it_moves(service):
    ingest, broker, _db, clock, _pauses = service()
    mid = broker.deliver(UP, batch([1, 2, 3]))
    assert broker.acked == []  # received, not yet durable
    ingest._process_once()
    assert broker.acked == [mid]  # committed to the store, then the PUBACK
    clock.t += 1
    ingest._periodic(clock())
    assert (ACK, {"v": 1, "epoch": 7, "seq": 3}, True) in broker.published
    published = len(broker.published)
    clock.t += 1
    ingest._periodic(clock())
    assert len(broker.published) == published  # an ack that did not move is not published again


def test_nothing_is_acknowledged_while_the_spool_is_full_and_all_of_it_once_there_is_room(service):
    ingest, broker, db, _clock, _pauses = service()
    ingest.spool_max = ingest.store.disk_bytes() + 1000  # room for about one batch more than the store has
    first = broker.deliver(UP, batch(range(1, 30)))
    ingest._process_once()
    assert broker.acked == [first]  # the spool had room for this one
    waiting = broker.deliver(UP, batch(range(30, 60)))
    ingest._process_once()
    assert broker.acked == [first]  # full: not acknowledged, so the broker keeps it
    assert ingest._spool_full
    ingest._write_once(0.1)  # the writer drains the spool into the database
    ingest._process_once()
    assert broker.acked == [first, waiting] and db.lines


def test_an_ack_not_published_while_the_broker_was_away_is_published_when_it_is_back(service):
    ingest, broker, _db, clock, _pauses = service()
    broker.deliver(UP, batch([1, 2]))
    broker.connected.clear()
    ingest._process_once()
    clock.t += 1
    ingest._periodic(clock())
    assert not broker.published  # nothing published to a broker that is not there
    broker.connected.set()
    clock.t += 1
    ingest._periodic(clock())
    assert (ACK, {"v": 1, "epoch": 7, "seq": 2}, True) in broker.published


def test_the_writer_backs_off_while_influxdb_is_down_keeps_the_lines_and_drains_when_it_is_back(service):
    ingest, broker, db, _clock, pauses = service()
    broker.deliver(UP, batch([1, 2, 3]))
    ingest._process_once()
    db.down = True
    backoff = 0.1
    for _ in range(8):
        backoff = ingest._write_once(backoff)
    assert backoff == 10.0 and ingest.counters.write_retries == 8  # doubling, at most 10 s
    assert all(0 < p <= 10.0 for p in pauses) and pauses[-1] > pauses[0]  # each retry waited, longer and longer
    assert not db.lines and ingest.store.spool_size()[0] > 0  # kept on disk meanwhile
    db.down = False
    assert ingest._write_once(backoff) == 0.1  # back: the next backoff starts small again
    assert len([line for line in db.lines if line.startswith("reading,")]) == 3


def test_the_writer_thread_survives_an_error_nobody_foresaw(service):
    ingest, broker, db, _clock, pauses = service()
    calls = []

    def broken(lines):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug in a writer nobody foresaw")
        Database.write(db, lines)  # the next attempts go through
        if any(line.startswith("reading,") for line in db.lines):
            ingest.stop()  # then the test ends the thread

    db.write = broken
    broker.deliver(UP, batch([1]))
    ingest._process_once()
    ingest._writer()  # returns only once stopped
    assert ingest.counters.writer_errors == 1 and len(calls) >= 2 and pauses  # logged, counted, retried after a pause
    assert any(line.startswith("reading,") for line in db.lines)


def test_a_store_held_by_another_process_acknowledges_nothing_and_the_messages_wait_in_order(service):
    ingest, broker, _db, _clock, pauses = service()
    real = ingest._transact
    calls = []

    def held_once(items):
        calls.append([item[3] for item in items])
        if len(calls) == 1:
            raise StoreBusy("database is locked")
        return real(items)

    ingest._transact = held_once
    mids = [broker.deliver(UP, batch([1, 2])), broker.deliver(UP, batch([3, 4]))]
    ingest._process_once()
    assert broker.acked == [] and pauses == [1.0]  # not durable: no PUBACK; waited before trying again
    ingest._process_once()
    assert calls == [mids, mids] and broker.acked == mids  # the same messages, in their order, then acknowledged


def test_a_burst_of_full_batches_is_committed_in_parts_bounded_by_readings(service, monkeypatch):
    import ingest.service as svc

    monkeypatch.setattr(svc, "MAX_READINGS_PER_COMMIT", 250)
    ingest, broker, db, _clock, _pauses = service()
    mids = [broker.deliver(UP, batch(range(1 + 100 * i, 101 + 100 * i), t0=int(T) - 60 * 700)) for i in range(6)]  # 600
    ingest._process_once()
    assert broker.acked == mids[:3]  # 300 readings: the part ends with the batch that passed 250
    ingest._process_once()
    assert broker.acked == mids
    ingest._write_once(0.1)
    assert sum(line.startswith("reading,") for line in db.lines) == 600


def test_the_readings_of_a_message_are_estimated_from_its_bytes_before_it_is_decoded():
    from ingest.service import readings_in
    from rimba.dev.harness import VECTORS

    for v in VECTORS["up_valid"]:
        if "body" not in v:
            continue
        body = v["body"]
        n = len(body["r"]) if "r" in body else len(body["x"])
        estimate = readings_in(json.dumps(body).encode())
        assert max(n, 1) <= estimate <= n + 3 + len(body.get("lost", [])), v["name"]
    for pair in json.loads((ROOT / "tests" / "vectors" / "contract-v2.json").read_text())["pairs"]:
        body = pair["v2"]["body"]
        n = len(body.get("x", []))
        assert max(n, 1) <= readings_in(json.dumps(body).encode()) <= n + 3 + len(body.get("lost", [])), pair["name"]


def test_a_message_of_brackets_cannot_count_for_more_readings_than_a_batch_holds():
    from ingest.service import readings_in
    from rimba import contract

    body = {"v": 2, "node": "smp29-01", "epoch": 1, "boot": 1, "now": int(T), "tq": "ntp", "fw": "[" * 15000,
            "seq": 1, "t": int(T) - 60, "dt": 60, "m": ["air_temp_c"], "x": [[2750]]}
    assert readings_in(json.dumps(body).encode()) == contract.UP_MAX_READINGS


def test_the_writer_does_not_wait_for_the_processors_commit_and_releases_what_it_wrote_after(service, monkeypatch):
    """InfluxDB is not kept idle while a commit is open: the writer writes the next rows and releases the ones
    it wrote once the store is free. It waited for the commit to release each row first (a burst's writes
    stopped for a commit's length each time: 1.28 s for 200,000 readings, 1.12 s without)."""
    import ingest.service as svc

    monkeypatch.setattr(svc, "MAX_READINGS_PER_COMMIT", 3)
    monkeypatch.setattr(svc, "WRITE_CHUNK_BYTES", 1)  # a row a claim
    ingest, broker, db, _clock, _pauses = service()
    for i in range(3):
        broker.deliver(UP, batch(range(1 + 3 * i, 4 + 3 * i)))
        ingest._process_once()
    rows = ingest.store.db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
    lines = ingest.store.spool_size()[0]
    done = []
    with ingest.store.transaction():  # the processor's commit, open
        def write_all():  # a claim-and-write cycle at a time, while there is something left to write
            for _ in range(rows):
                if len(ingest.spool_writer.unreleased) < rows:
                    done.append(ingest._write_once(0.1))

        writer = threading.Thread(target=write_all)
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "the writer waited for the open commit"
        assert sum(line.startswith("reading,") for line in db.lines) == 9  # each row written once, none again
        # kept until the store is free
        assert len(ingest.spool_writer.unreleased) == rows and ingest.store.spool_size()[0] == lines
    ingest._write_once(0.1)  # nothing left to write: released now
    assert not ingest.spool_writer.unreleased and ingest.store.spool_size()[0] == 0
    assert sum(line.startswith("reading,") for line in db.lines) == 9


def test_a_commits_worth_of_readings_is_not_kept_waiting_for_more_messages(service, monkeypatch):
    """Under GATHER messages the processor lets a burst gather for a flush interval; a commit's worth of readings
    (full batches) is taken at once. It waited (50 ms between the parts of a burst of full batches)."""
    import ingest.service as svc

    monkeypatch.setattr(svc, "MAX_READINGS_PER_COMMIT", 250)
    ingest, broker, _db, _clock, _pauses = service(flush_ms=60_000)
    mids = [broker.deliver(UP, batch(range(1 + 100 * i, 101 + 100 * i), t0=int(T) - 60 * 400)) for i in range(3)]
    taker = threading.Thread(target=ingest._process_once)
    taker.start()
    taker.join(timeout=30)
    assert not taker.is_alive(), "waited a flush interval with a commit's worth queued"
    assert broker.acked == mids and ingest.queued_readings == 0


def test_the_spool_parts_are_written_side_by_side_each_in_its_order(service):
    """The writer writes a claim's parts at once, one request each (InfluxDB stores them on two cores); within a
    part, rows and lines go in their order. The ingest's statistics are part 0, smp29-01's lines part 1: the
    first two requests must be in flight together (one at a time, the first would wait here for ever)."""
    from ingest.writer import part_of

    assert part_of(None) != part_of("smp29-01")
    ingest, broker, db, _clock, _pauses = service()
    together = threading.Barrier(2, timeout=20)
    calls = []

    def write(lines):
        calls.append(1)
        if len(calls) <= 2:
            together.wait()  # raises BrokenBarrierError if the other request never comes
        Database.write(db, lines)

    db.write = write
    for i in range(3):
        broker.deliver(UP, batch(range(1 + 3 * i, 4 + 3 * i)))
        ingest._process_once()
    while ingest.store.spool_size()[0]:
        ingest._write_once(0.1)
    seqs = [int(line.split("seq=")[1].split("i")[0]) for line in db.lines if line.startswith("reading,")]
    assert seqs == list(range(1, 10)) and any(line.startswith("ingest,") for line in db.lines)


def test_the_spool_a_message_takes_is_estimated_from_above_for_both_versions(tmp_path):
    """The spool's budget is charged before decoding: the estimate holds the lines of every golden pair (v1 and v2
    batches of the same readings) and of a full v2 batch, whose lines are several times their JSON (charged
    twice their JSON, as v1's are, a commit could pass the limit by up to four times what was left)."""
    from ingest.service import spool_bytes_of, transact
    from ingest.store import Store
    from rimba.dev.harness import VECTOR_FLEET

    pairs = json.loads((ROOT / "tests" / "vectors" / "contract-v2.json").read_text())["pairs"]
    received = json.loads((ROOT / "tests" / "vectors" / "contract-v1.json").read_text())["received"]
    full = {"v": 2, "node": "smp29-03", "epoch": 9, "boot": 1, "now": received, "tq": "ntp", "seq": 1,
            "t": received - 200 * 600, "dt": 600, "m": ["air_temp_c", "air_rh_pct"],
            "x": [[2750 + k % 7, 803 + k % 5] for k in range(200)]}
    messages = [(m["topic"], m["body"]) for p in pairs for m in (p["v1"], p["v2"])]
    messages.append(("rimba/v2/smp29/smp29-03/up", full))
    for i, (topic, body) in enumerate(messages):
        store = Store(tmp_path / f"s{i}.sqlite3")
        payload = json.dumps(body, separators=(",", ":")).encode()
        out, _tx, _ = transact(store, VECTOR_FLEET, [(topic, payload, float(received), 1, 1, False)], "t")
        store.close()
        lines = sum(len(line) + 1 for line in out.lines)
        assert lines <= spool_bytes_of(topic, payload), (topic, lines, len(payload))
    assert sum(len(line) + 1 for line in out.lines) > 2 * len(payload)  # the full v2 batch: more than twice


def test_rows_written_before_the_credentials_were_refused_are_released_when_the_writer_stops(service, monkeypatch):
    """The bug: refused credentials stop the writer (and the service); the rows it wrote while a commit was open,
    not yet released, stayed spooled and were written again at the next start. It releases them as on any stop."""
    import ingest.service as svc
    from rimba.errors import InfluxAuthError

    monkeypatch.setattr(svc, "WRITE_CHUNK_BYTES", 1)  # a row a claim
    ingest, broker, db, _clock, _pauses = service()
    for i in range(2):
        broker.deliver(UP, batch(range(1 + 3 * i, 4 + 3 * i)))
        ingest._process_once()
    rows = ingest.store.db.execute("SELECT id, body FROM spool ORDER BY id").fetchall()
    first, second = [rid for rid, body in rows if bytes(body).startswith(b"reading,")]

    def write(lines):
        if lines.startswith(b"reading,") and any(line.startswith("reading,") for line in db.lines):
            raise InfluxAuthError("401: the token was revoked")  # the second row's readings
        Database.write(db, lines)

    db.write = write
    writer = threading.Thread(target=ingest._writer)
    with ingest.store.transaction():  # the processor's commit, open while the writer writes and is refused
        writer.start()
        assert ingest.stopping.wait(timeout=20) and ingest.fatal  # refused: the service stops
        assert first in ingest.spool_writer.unreleased  # written, not released: the store was held
    writer.join(timeout=20)
    assert not writer.is_alive()
    assert [r[0] for r in ingest.store.db.execute("SELECT id FROM spool ORDER BY id")] == [second]



def test_a_failed_commit_retried_one_by_one_keeps_the_messages_in_order_when_the_store_is_held(service):
    """A commit that fails is retried message by message; if the store is then held by another process, the
    message and the ones behind it wait at the head of the queue in their order. They were put back one by one
    at the head, so reversed (acknowledged 3, 2, 1), and later messages were committed before earlier ones."""
    ingest, broker, _db, _clock, pauses = service()
    real = ingest._transact
    calls = []

    def failing(items):
        calls.append([item[3] for item in items])
        if len(items) > 1:
            raise ValueError("a commit that fails as a whole")
        if len(calls) == 3:
            raise StoreBusy("database is locked")  # the second message, alone, finds the store held
        return real(items)

    ingest._transact = failing
    mids = [broker.deliver(UP, batch([k])) for k in (1, 2, 3)]
    ingest._process_once()
    assert broker.acked == mids[:1] and pauses == [1.0]  # the first alone, then the store was held
    ingest._transact = real
    ingest._process_once()
    assert broker.acked == mids  # the other two in their order
    assert [item[3] for item in ingest.queue] == [] and ingest.queued_readings == 0


def test_another_process_s_rows_are_taken_over_when_the_injected_clock_passes_their_lease(service):
    """The writer's claim goes by the service's clock, as the processor's leases do: it went by the machine's time,
    so under a clock of another day (a test's, or a machine whose clock moved) a live process's rows looked dead at
    once, or a dead one's never did."""
    ingest, broker, db, clock, _pauses = service()
    broker.deliver(UP, batch([1, 2, 3]))
    ingest._process_once()
    ingest.store.db.execute("UPDATE spool SET owner = 'another'")  # as if another ingest process had spooled them
    ingest._write_once(0.1)
    assert not db.lines  # its lease (60 s from the clock) has not run out: not ours to write
    clock.t += 61
    ingest._write_once(0.1)
    assert sorted(int(line.split("seq=")[1].split("i")[0]) for line in db.lines if "seq=" in line) == [1, 2, 3]


def two_processes(tmp_path, clock, databases, pauses) -> list:
    """Two ingest services, ingest-a and ingest-b, sharing one store and clock: [(service, its database)]."""
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(fleet_text({"smp29-01": ("smp29", "forest")}))
    made = []
    for owner, db, pause in zip(("ingest-a", "ingest-b"), databases, pauses, strict=True):
        s = settings_mod.build(overrides={"state_dir": str(tmp_path / "state"), "fleet": str(fleet),
                                          "mqtt_client_id": owner}, env={})
        ingest = Ingest(s, clock, influx=db, mqtt=lambda handler: Broker(handler), pause=pause)
        ingest.wrote.set()
        made.append((ingest, db))
    return made


def test_a_live_process_keeps_its_rows_while_influxdb_is_down_and_a_stopped_one_s_are_taken_after_the_lease(tmp_path):
    """Two processes sharing the store, InfluxDB down for three leases, each writer retrying: neither takes the
    other's rows. They did: a row's lease was set when it was spooled and never renewed, so after 60 s each live
    process's backlog looked dead to the other, and both wrote each other's. Once one stops (its writer no longer
    runs), the other takes its rows a lease after its last claim-and-write cycle, and writes them."""
    clock = Clock()
    pauses_a, pauses_b = [], []
    (a, db_a), (b, db_b) = two_processes(tmp_path, clock, (Database(), Database()), (pauses_a.append, pauses_b.append))

    def owners() -> dict:
        rows = a.store.db.execute("SELECT owner, body FROM spool").fetchall()
        return {int(line.split("seq=")[1].split("i")[0]): owner for owner, body in rows
                for line in bytes(body).decode().splitlines() if "seq=" in line}

    try:
        a.mqtt.deliver(UP, batch([1, 2, 3]))  # (the broker splits a node's batches among the processes)
        a._process_once()
        b.mqtt.deliver(UP, batch([4, 5, 6]))
        b._process_once()
        spooled = {**dict.fromkeys([1, 2, 3], "ingest-a"), **dict.fromkeys([4, 5, 6], "ingest-b")}
        assert owners() == spooled
        db_a.down = db_b.down = True
        for _ in range(18):  # three minutes, both writers retrying (their pauses are the test's: ten seconds)
            clock.t += 10
            a._write_once(0.1)
            b._write_once(0.1)
            assert owners() == spooled, clock.t - T
        assert len(pauses_a) == len(pauses_b) == 18 and not db_a.lines and not db_b.lines
        # the first process stops: its writer runs no more
        clock.t += 50
        b._write_once(0.1)
        assert owners() == spooled  # its last cycle was 50 s ago: it may yet be alive
        clock.t += 11
        b._write_once(0.1)
        assert owners() == dict.fromkeys(range(1, 7), "ingest-b")  # a lease since its last cycle: dead, its rows taken
        db_b.down = False
        for _ in range(3):
            clock.t += 1
            b._write_once(0.1)
        assert sorted(int(line.split("seq=")[1].split("i")[0]) for line in db_b.lines if "seq=" in line) == \
            [1, 2, 3, 4, 5, 6] and owners() == {}
    finally:
        a.store.close()
        b.store.close()


class SlowDatabase(Database):
    """InfluxDB up, each request answered after `per_request_s` of the clock (well under any timeout)."""

    def __init__(self, clock, per_request_s, during=None):
        super().__init__()
        self.clock, self.per_request_s, self.during = clock, per_request_s, during

    def write(self, lines):
        self.clock.t += self.per_request_s
        if self.during:
            self.during()
        super().write(lines)


def test_a_live_process_s_rows_are_not_taken_while_its_cycle_writes_a_backlog_to_a_slow_influxdb(tmp_path):
    """After an outage, a backlog of 30 rows written in one cycle to an InfluxDB that answers every request in 5 s:
    150 s without a heartbeat when it beat once a cycle, and the other process took the rows being written and
    wrote them too. It beats after every answered request now. (From an independent review.)"""
    clock = Clock()
    (a, db_a), (b, db_b) = two_processes(tmp_path, clock, (SlowDatabase(clock, 5.0), Database()),
                                         (lambda s: None, lambda s: None))
    try:
        for i in range(30):  # a backlog of 30 commits (one spool row each)
            a.mqtt.deliver(UP, batch([i + 1]))
            a._process_once()
        db_a.during = lambda: (b.spooled.set(), b._write_once(0.1))  # the other writer cycles meanwhile (no idle wait)
        a._write_once(0.1)
        assert not db_b.lines, f"b wrote {len(db_b.lines)} lines of a's while a was alive and writing them"
        assert len(db_a.lines) > 0 and not a._writer_stuck()
    finally:
        a.store.close()
        b.store.close()


def test_a_second_process_with_the_same_client_id_is_refused_naming_the_key(tmp_path):
    """Two ingest processes with one client id on one state directory (the default `rimba-ingest` twice): the
    broker hands the session to one and cuts the other off in turn, and both claim the same spool rows. The
    second is refused at start; one with its own client id, or the same once the first has stopped, is not."""
    from ingest.service import _one_process
    from rimba.errors import ConfigError

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(fleet_text({"smp29-01": ("smp29", "forest")}))
    s = settings_mod.build(overrides={"state_dir": str(tmp_path / "state"), "fleet": str(fleet)}, env={})
    second = Ingest(s, Clock(), influx=Database(), mqtt=lambda handler: Broker(handler), pause=lambda s: None)
    with _one_process(s.state_path, s.mqtt_client_id):  # the first, running
        with pytest.raises(ConfigError, match="^mqtt_client_id: another ingest process with the client id"):
            second.run()
        with _one_process(s.state_path, "rimba-ingest-2"):
            pass
    with _one_process(s.state_path, s.mqtt_client_id):
        pass
    second.store.close()
