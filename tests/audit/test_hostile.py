"""AUDIT repros in process, against the real `ingest.service.transact` and `ingest.store.Store`.

Each test states what a hostile node (its own password, its own topics) or a real fault does, and
FAILS on the audited tree. Fixed times only (the contract vectors' `received`).
"""

from __future__ import annotations

import json

import pytest

from ingest import pipeline
from ingest.ledger import Ledger
from ingest.pipeline import Outcome
from ingest.service import sweep, transact
from ingest.store import Store
from tests.audit.helpers import status, up
from rimba.dev.harness import VECTOR_FLEET, VECTORS

R = VECTORS["received"]  # 2025-11-28
NODE, OTHER = "smp29-03", "bansir-laut-01"
UP = f"rimba/v1/smp29/{NODE}/up"
UP_OTHER = f"rimba/v1/bansir-laut/{OTHER}/up"
STATUS = f"rimba/v1/smp29/{NODE}/status"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ingest.sqlite3")
    yield s
    s.close()


def commit(store, msgs, received=R):
    """msgs: [(topic, payload)] in one transaction, the i-th received at received + i / 1000."""
    return transact(store, VECTOR_FLEET, [(t, p, received + i / 1000, i, 1, False) for i, (t, p) in enumerate(msgs)],
                    "audit", clock=lambda: received)


def spooled(store) -> list:
    return [x for (body,) in store.db.execute("SELECT body FROM spool ORDER BY id") for x in bytes(body).decode().splitlines()]


def reading_times(lines, node=NODE):
    return [int(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(f"reading,node={node},")]


# -- F2: partial dead letters are not counted against the node's dead-letter budget -----------------------------

def padded_out_of_range(k: int) -> bytes:
    """~16 KB: 150 readings, one value out of range; distinct per k (distinct seqs and times)."""
    nulls = {m: None for m in ("air_rh_pct", "air_pressure_hpa", "soil_temp_c")}
    seqs = list(range(k * 150 + 1, k * 150 + 151))
    body = json.loads(up(NODE, seqs, epoch=1, now=R, t0=R - 100_000))
    for r in body["r"]:
        r.update(nulls)
    body["r"][0]["air_temp_c"] = 999.0  # outside -40..85: a `partial` out-of-range dead letter
    return json.dumps(body, separators=(",", ":")).encode()


def test_a_node_cannot_keep_more_dead_letters_than_its_budget(store):
    """A node may keep DEAD_BURST dead letters at once (then one a minute). `out-of-range` and
    `time-collision` dead letters are appended without `_allow`, so one node keeps as many 16 KiB
    dead letters as it sends: they count against spool_max_mb, and a full spool stops the ingest
    acknowledging EVERY node (see test_e2e_flood.py)."""
    n = 300
    msgs = [(UP, padded_out_of_range(k)) for k in range(n)]
    assert max(len(p) for _t, p in msgs) <= 16 * 1024
    for i in range(0, n, 50):
        commit(store, msgs[i:i + 50], received=R + i)  # 300 messages in 5 minutes
    kept = store.db.execute("SELECT COUNT(*), SUM(length(payload)) FROM deadletter WHERE node = ?",
                            (NODE,)).fetchone()
    print(f"dead letters kept for one node: {kept[0]}, {kept[1]} bytes, disk_bytes={store.disk_bytes()}")
    budget = pipeline.DEAD_BURST + 300 * pipeline.DEAD_PER_S + 1
    assert kept[0] <= budget, f"{kept[0]} dead letters ({kept[1] / 1e6:.1f} MB) from one node in 5 minutes"


def test_time_collision_dead_letters_are_budgeted_too(store):
    n = 300
    msgs = []
    for k in range(n):  # 2 readings on one second: the second one is a time-collision dead letter
        seqs = [2 * k + 1, 2 * k + 2]
        msgs.append((UP, up(NODE, seqs, epoch=1, now=R, times=[R - 100_000 + k, R - 100_000 + k])))
    commit(store, msgs)
    kept = store.db.execute("SELECT COUNT(*) FROM deadletter WHERE node = ? AND code = 'time-collision'",
                            (NODE,)).fetchone()[0]
    assert kept <= pipeline.DEAD_BURST + 1, f"{kept} time-collision dead letters from one node in one second"


# -- F3: the `stored` seq set of an epoch is unbounded: `too-fragmented` counts only `done`'s holes ----------------

def fragmenting(k: int, epoch: int = 1) -> bytes:
    """200 readings at odd seqs, the even seqs between reported `lost`: `done` stays one run, `stored` gains 200."""
    base = k * 400
    seqs = [base + 2 * i + 1 for i in range(200)]
    lost = [[base + 2 * i + 2, base + 2 * i + 2] for i in range(200)]
    return up(NODE, seqs, epoch=epoch, now=R, times=[R - 3_000_000 + s for s in seqs], lost=lost)


def test_one_epochs_stored_runs_are_bounded(store):
    """Measured (one run, /tmp/a3.py in the report): at 0.5 M runs a hostile message costs 5 ms, at 2 M runs
    43 ms (quadratic: the per-message undo copy and the commit's dump of the whole blob), and every commit
    holding one of its messages takes 0.6-0.8 s; the 40 MB blob is rewritten at each commit."""
    for c in range(5):
        commit(store, [(UP, fragmenting(c * 100 + i)) for i in range(100)])
    em = store._load_epoch(NODE, 1)
    print(f"runs in stored: {len(em.stored)}, in done: {len(em.done)}, ack {em.ack}")
    assert len(em.stored) <= 1000 + 200, f"{len(em.stored)} runs in one epoch's stored set ({len(em.stored) * 16} bytes)"


# -- F4: ledger rows per node are unbounded: a new epoch per message, kept forever ---------------------------------

def test_a_node_cannot_grow_the_epochs_table_without_bound(store):
    """Each batch with a new epoch adds a row (here 200 odd seqs: 6.4 KB of blobs), never pruned and not counted
    against spool_max_mb; about 1 byte of ledger per byte sent, forever."""
    n = 1000
    for c in range(n // 100):
        msgs = []
        for i in range(100):
            e = c * 100 + i + 1
            seqs = [2 * j + 1 for j in range(200)]
            msgs.append((UP, up(NODE, seqs, epoch=e, now=R, times=[R - 3_000_000 + e * 400 + s for s in seqs])))
        commit(store, msgs, received=R + c)
    sweep(store, R + 60, 3600, "a")  # what the ingest does every minute
    rows, size = store.db.execute("SELECT COUNT(*), SUM(length(stored) + length(done)) FROM epochs WHERE node = ?",
                                  (NODE,)).fetchone()
    print(f"epochs rows for one node: {rows}, {size} bytes of blobs")
    from ingest.store import EPOCHS_KEPT

    assert rows <= EPOCHS_KEPT, f"{rows} epoch rows ({size / 1e6:.1f} MB) kept for one node from {n} messages"


# -- F7: storage seconds were forgotten after 62 days, so two readings could land on one point ---------------------

def test_two_readings_of_a_node_never_share_a_point_even_for_old_times(store):
    """An `ntp` time is trusted back to 2024-01-01, but the collision index forgets days older than 62 days at
    every sweep. Reading seq 1 at T (100 days ago), a sweep, reading seq 2 at T: both spooled at T, one
    InfluxDB point (the second overwrites the first's fields)."""
    old = R - 100 * 86400
    commit(store, [(UP, up(NODE, [1], now=R, times=[old]))])
    sweep(store, R + 60, 3600, "audit")  # what the ingest does every minute
    out, _tx, _k = commit(store, [(UP, up(NODE, [2], now=R, times=[old], values={"air_temp_c": 31.0}))], received=R + 61)
    times = reading_times(spooled(store))
    assert len(times) == len(set(times)), f"two readings of {NODE} at {old} (seq 1 and 2): one InfluxDB point"


# -- F6: node_status points: two different statuses of a node on one point -----------------------------------------

def test_two_statuses_of_a_node_never_share_a_point():
    led = Ledger()
    out = Outcome()
    pipeline.handle(led, STATUS, status(NODE, "online", t=R - 5, boot=3), R, VECTOR_FLEET, out)
    pipeline.handle(led, STATUS, status(NODE, "sleeping", t=R - 5, boot=3, batt_v=3.9), R + 1, VECTOR_FLEET, out)
    stamps = [x.rsplit(" ", 1)[1] for x in out.lines if x.startswith("node_status,")]
    assert len(stamps) == 2 and len(set(stamps)) == 2, f"online and sleeping both at {stamps[0]}: one point, merged"


# -- F7: an older epoch first seen late becomes current and strands the node's real current epoch ------------------

def test_an_epoch_first_seen_late_does_not_take_over(store):
    """Two ingest processes share the subscription. Process A received the last batch of epoch 4 and was killed
    before committing; the node wiped and sends epoch 5 through process B. When A comes back, the broker
    redelivers the epoch-4 batch: it is the ingest's first sight of epoch 4, later than epoch 5's, so epoch 4
    becomes current, epoch 5's open hole is written off as `epoch-reset`, and epoch 5 can never be current
    again: its ack is never published, the node's buffer is never freed."""
    commit(store, [(UP, up(NODE, [1, 2, 4], epoch=5, now=R, t0=R - 1000))])  # seq 3 in flight
    commit(store, [(UP, up(NODE, [7, 8], epoch=4, now=R - 300, t0=R - 3000))], received=R + 120)  # redelivered
    out, tx, _k = commit(store, [(UP, up(NODE, [3, 5], epoch=5, now=R + 600, t0=R - 1000))], received=R + 600)
    site, epoch, ack = store.current_ack(NODE)
    gaps = [x for x in spooled(store) if x.startswith("gap,") and "epoch-reset" in x]
    assert (epoch, ack) == (5, 5), f"current epoch {epoch}, ack {ack}; epoch-reset gaps written: {gaps}"


# -- F9 (real fault): a slow RTC's drift accumulates into every reading's time -----------------------------------

def test_a_drifting_rtc_is_not_re_based_by_a_stale_offset(store):
    """An `rtc` node's internal RC clock drifts in deep sleep (Espressif, ESP-IDF "System Time": the internal
    150 kHz RC oscillator's frequency varies with temperature, so time drifts in sleep). A node whose clock
    runs 1 % slow sends a batch every 10 min without waiting at any broker. `received − now` grows by 6 s
    per batch; the ingest keeps the smallest since the boot for 7 days, so after one day every reading
    is placed 14 min early (after 7 days: 100 min), and never flagged late. Before, each batch's own
    offset placed it within a batch of its true time."""
    node_clock0 = 1_000_000  # rtc seconds since its boot
    worst = 0
    for k in range(145):  # one day, a batch every 600 s of true time
        true = R + 600 * k
        clock = node_clock0 + int(600 * k * 0.99)  # 1 % slow
        body = up(NODE, [k + 1], epoch=1, now=clock, tq="rtc", times=[clock - 30])
        out, _tx, _k = commit(store, [(UP, body)], received=true)
        (placed,) = reading_times(out.lines)
        worst = max(worst, abs(placed // 1000 - (true - 30)))
    assert worst <= 60, f"a reading of a 1 %-slow rtc node placed {worst} s from its true time after a day"


# -- F11: replaying an old status dead letter rewinds the node's boot, status and re-basing --------------------------

def test_replaying_an_old_status_does_not_rewind_the_node(store):
    """A status from before the node was in the fleet file (unknown-node, boot 3) is replayed after the node
    rebooted (boot 4) and sent live. Replay sets NodeState.boot back to 3, so the next rtc batch's boot differs
    from the offset's, `min_offset` is dropped, and a batch that waited an hour at the broker is re-based by
    its wait: the bug issue 11 fixed, back through replay."""
    from ingest import replay
    from rimba.fleet import parse_fleet

    empty = parse_fleet({"sites": VECTORS["fleet"]["sites"], "nodes": {}})
    transact(store, empty, [(STATUS, status(NODE, "online", t=R - 86400, boot=3), R - 86400, 0, 1, False)], "a")
    assert [r[4] for r in store.deadletters()] == ["unknown-node"]
    commit(store, [(STATUS, status(NODE, "online", t=R, boot=4))])
    clock = 5_000_000  # the rtc clock: 5e6 s since its boot; received - now = R - clock
    commit(store, [(UP, up(NODE, [1], now=clock, tq="rtc", times=[clock - 10]))], received=R + 1)
    replay.into_spool(store, VECTOR_FLEET)
    # seq 2 was sent at node clock + 600 (true R + 601), waited an hour at the broker
    out, _tx, _k = commit(store, [(UP, up(NODE, [2], now=clock + 600, tq="rtc", times=[clock + 590]))],
                          received=R + 601 + 3600)
    (placed,) = reading_times(out.lines)
    # at most the drift a slow clock could have had since the live batch (pipeline.MAX_DRIFT), not the hour
    assert abs(placed // 1000 - (R + 591)) <= pipeline.MAX_DRIFT * 4200 + 1, \
        f"placed {placed // 1000 - (R + 591):+d} s from its true time"
