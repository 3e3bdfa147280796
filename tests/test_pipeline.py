"""The pure ingest core: dedup, acks, gaps, epochs, dead letters. Also the seq range sets,
checked against a plain Python set on seeded random data."""

import json
import random

import pytest

from ingest.ledger import Ledger
from ingest.pipeline import Outcome, handle, sweep_holes
from ingest.seqset import SeqSet
from rimba.dev.harness import VECTOR_FLEET, VECTORS

pytestmark = pytest.mark.unit  # no stack, no process

RECEIVED = VECTORS["received"]
UP = "rimba/v1/smp29/smp29-03/up"


def marks(led, epoch=7, node="smp29-03"):
    return led.epoch(node, epoch)


def up(seqs, epoch=7, lost=None, t=RECEIVED - 300, tq="ntp", now=RECEIVED, extra=None):
    """A batch whose reading `seq` was taken at t + seq (each its own second)."""
    body = {"v": 1, "node": "smp29-03", "epoch": epoch, "now": now, "tq": tq,
            "r": [dict({"seq": s, "t": t + s, "air_temp_c": 27.5}, **(extra or {})) for s in seqs]}
    if lost:
        body["lost"] = lost
    return json.dumps(body).encode()


def run(led, *payloads, received=RECEIVED):
    out = Outcome()
    for p in payloads:
        handle(led, UP, p, received, VECTOR_FLEET, out)
    return out


def test_resends_are_duplicates_and_ack_is_cumulative():
    led = Ledger()
    out = run(led, up([1, 2, 3]), up([1, 2, 3]), up([4, 5]))
    assert (out.stored, out.duplicates) == (5, 3)
    assert len([x for x in out.lines if x.startswith("reading,")]) == 5
    assert marks(led).ack == 5


def test_out_of_order_batches_hold_the_ack_until_the_hole_fills():
    led = Ledger()
    run(led, up([4, 5, 6]))
    m = marks(led)
    assert m.ack == 0 and m.done.first_hole() == (1, 3) and m.hole_since == RECEIVED
    run(led, up([1, 2, 3]))
    assert m.ack == 6 and m.done.first_hole() is None and m.hole_since is None


def test_rebased_resend_is_still_a_duplicate():
    # an rtc clock: the re-based time depends on receipt, so only the seq marks catch the resend
    led = Ledger()
    a = run(led, up([1], tq="rtc", t=100, now=200), received=RECEIVED)
    b = run(led, up([1], tq="rtc", t=100, now=200), received=RECEIVED + 40)
    assert (a.stored, b.stored, b.duplicates) == (1, 0, 1)
    assert "clock_offset_s=" in a.lines[0]


def test_lost_ranges_are_gaps_once_and_move_the_ack():
    led = Ledger()
    out = run(led, up([6, 7], lost=[[1, 5]]), up([6, 7], lost=[[1, 5]]))
    gaps = [x for x in out.lines if x.startswith("gap,")]
    assert len(gaps) == 1 and "first_seq=1i,last_seq=5i" in gaps[0] and 'reason="lost"' in gaps[0]
    assert marks(led).ack == 7


def test_bad_batch_moves_the_ack_and_can_still_be_replayed():
    led = Ledger()
    out = run(led, up([1, 2]), up([3, 4], extra={"bogus": 1}), up([5]))
    assert [d.code for d in out.dead] == ["unknown-key"]
    m = marks(led)
    assert m.ack == 5
    # the dead-lettered seqs are held, not stored: a fixed replay is stored, not a duplicate
    again = run(led, up([3, 4]))
    assert again.stored == 2 and again.duplicates == 0


def test_out_of_range_value_stores_the_reading_and_keeps_the_batch():
    led = Ledger()
    out = run(led, up([1], extra={"air_rh_pct": 140}))
    assert out.stored == 1 and "air_rh_pct" not in out.lines[0]
    assert [(d.code, d.kind) for d in out.dead] == [("out-of-range", "partial")]


def test_new_epoch_closes_the_old_one_with_a_gap():
    led = Ledger()
    run(led, up([1, 2, 5], epoch=7))
    out = run(led, up([1], epoch=8))
    gaps = [x for x in out.lines if x.startswith("gap,")]
    assert len(gaps) == 1 and "first_seq=3i,last_seq=4i" in gaps[0] and "epoch-reset" in gaps[0]
    assert led.node("smp29-03").epoch == 8


def test_hole_is_recorded_missing_after_the_timeout_and_the_ack_waits_for_the_resend():
    led = Ledger()
    run(led, up([1, 2, 9]))
    m = marks(led)
    assert m.hole_since == RECEIVED
    late = Outcome()
    sweep_holes(led, [("smp29-03", 7)], RECEIVED + 60, late)
    assert len(late.lines) == 1 and "first_seq=3i,last_seq=8i" in late.lines[0] and "missing" in late.lines[0]
    assert m.ack == 2 and m.hole_since is None  # wire-v2: the record does not move the ack
    again = Outcome()
    sweep_holes(led, [("smp29-03", 7)], RECEIVED + 120, again)
    assert not again.lines  # recorded once
    run(led, up([3, 4, 5, 6, 7, 8, 9]))  # the node resends everything above its ack
    assert m.ack == 9


def test_unknown_node_does_not_touch_marks():
    led = Ledger()
    out = Outcome()
    body = json.loads(up([1]))
    body["node"] = "smp29-99"
    handle(led, "rimba/v1/smp29/smp29-99/up", json.dumps(body).encode(), RECEIVED, VECTOR_FLEET, out)
    assert [d.code for d in out.dead] == ["unknown-node"] and not led.epochs


def test_seqset_matches_a_plain_set():
    rng = random.Random(42)
    for _ in range(300):
        rs, plain = SeqSet(), set()
        for _ in range(rng.randrange(1, 30)):
            lo = rng.randrange(1, 60)
            hi = lo + rng.randrange(0, 6)
            before = len(rs)
            assert rs.missing(lo, hi) == _runs(set(range(lo, hi + 1)) - plain)
            grows = rs.adds_run(lo, hi)
            assert rs.add(lo, hi) == len(rs) - before and grows == (len(rs) > before)
            plain |= set(range(lo, hi + 1))
        assert {s for lo, hi in rs.runs() for s in range(lo, hi + 1)} == plain
        assert all(a[1] + 1 < b[0] for a, b in zip(rs.runs(), rs.runs()[1:]))  # disjoint, not adjacent, sorted
        n = 0
        while n + 1 in plain:
            n += 1
        assert rs.prefix_end() == n
        assert all((s in rs) == (s in plain) for s in range(70))
        holes = _runs(set(range(1, max(plain))) - plain)
        assert rs.holes() == len(holes) and rs.first_hole() == (holes[0] if holes else None)
        x = rng.randrange(0, 70)
        above = _runs({s for s in range(x + 1, max(plain)) if s not in plain})
        assert rs.holes_above(x, 100) == above and rs.has_hole_above(x) == bool(above)
        assert SeqSet.load(rs.dump()) == rs


def _runs(members: set) -> list:
    out = []
    for s in sorted(members):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


# -- the storage rules wire-v2 settles, for v1 batches too --------------------------------------------

def test_a_message_of_an_older_epoch_changes_nothing_of_the_current_one():
    led = Ledger()
    run(led, up([1, 2, 3], epoch=7))
    run(led, up([1, 2, 4], epoch=8, t=RECEIVED - 100), received=RECEIVED + 10)  # wiped: epoch 8 is current
    late = run(led, up([4, 5], epoch=7), received=RECEIVED + 20)  # a batch of epoch 7 that waited
    assert led.node("smp29-03").epoch == 8
    assert marks(led, 8).ack == 2 and marks(led, 8).done.first_hole() == (3, 3)  # no epoch-reset of 8's hole
    assert late.stored == 2 and not late.touched  # stored under epoch 7; no ack for it
    assert not [x for x in late.lines if x.startswith("gap,")]


def test_an_epoch_first_seen_before_the_current_one_does_not_become_current():
    """A replayed dead letter of an old epoch, never seen before, carries its first receipt time."""
    led = Ledger()
    run(led, up([1, 2], epoch=8), received=RECEIVED)
    out = run(led, up([1, 2], epoch=6, t=RECEIVED - 5000), received=RECEIVED - 4000)
    assert led.node("smp29-03").epoch == 8 and out.stored == 2 and not out.touched


def test_two_readings_in_one_second_are_never_one_point():
    led = Ledger()
    first = Outcome()
    handle(led, UP, up([1, 2]), RECEIVED, VECTOR_FLEET, first)
    body = json.loads(up([3, 4]))
    body["r"][0]["t"] = RECEIVED - 300 + 2  # seq 3 at seq 2's second
    out = run(led, json.dumps(body).encode())
    assert out.stored == 1 and out.collisions == 1
    assert [(d.code, d.kind) for d in out.dead] == [("time-collision", "partial")]
    assert marks(led).ack == 4  # the ack moves over it: it is kept in the dead-letter store
    assert len({x.rsplit(" ", 1)[1] for x in first.lines + out.lines}) == 3  # three points, three times


def test_a_resend_is_a_duplicate_not_a_collision():
    led = Ledger()
    run(led, up([1, 2]))
    again = run(led, up([1, 2]))
    assert (again.duplicates, again.collisions, again.dead) == (2, 0, [])


def test_an_rtc_batch_that_waited_at_the_broker_is_not_moved_by_the_wait():
    from ingest.pipeline import MAX_DRIFT

    led = Ledger()
    # the node's clock is 1000 s behind; a live batch tells the ingest so
    run(led, up([1], tq="rtc", t=RECEIVED - 1000 - 60, now=RECEIVED - 1000), received=RECEIVED)
    # a batch sent twenty minutes later waited an hour at the broker while the ingest was away
    sent = RECEIVED + 1200
    out = run(led, up([2], tq="rtc", t=sent - 1000 - 60, now=sent - 1000), received=sent + 3600)
    reading = next(x for x in out.lines if x.startswith("reading,"))
    placed = int(reading.rsplit(" ", 1)[1]) // 1000
    true = sent - 60 + 2
    # moved at most by the drift a slow clock could have had since the live batch, not by the hour it waited
    assert 0 <= placed - true <= MAX_DRIFT * (sent + 3600 - RECEIVED) < 3600 / 20
    assert "late=true" in reading


def test_a_drifting_clock_is_followed_not_frozen():
    """A clock 1 % slow: each live batch's received − now grows by 6 s; a week-old minimum would place
    readings 100 minutes early (found by the audit)."""
    led = Ledger()
    for k in range(144):  # a day of 10-minute batches, each sent live
        true = RECEIVED + 600 * k
        clock = true - 1000 - int(0.01 * 600 * k)
        out = run(led, up([k + 1], tq="rtc", t=clock - 60 - (k + 1), now=clock), received=true)
        placed = int(out.lines[0].rsplit(" ", 1)[1]) // 1000
        assert abs(placed - (true - 60)) <= 1


def test_a_new_boot_starts_a_new_clock_offset():
    led = Ledger()
    run(led, up([1], tq="rtc", t=RECEIVED - 1000 - 60, now=RECEIVED - 1000))
    status = json.dumps({"v": 1, "state": "online", "t": RECEIVED + 5, "boot": 18}).encode()
    handle(led, "rimba/v1/smp29/smp29-03/status", status, RECEIVED + 10, VECTOR_FLEET, Outcome())
    # after the reboot the clock is 50 s ahead: the old, smaller offset no longer applies
    out = run(led, up([2], tq="rtc", t=RECEIVED + 50 + 100, now=RECEIVED + 50 + 200), received=RECEIVED + 200)
    assert "clock_offset_s=-50.0" in out.lines[0]


def test_a_clock_reset_to_2000_is_not_taken_for_a_wait():
    led = Ledger()
    run(led, up([1], tq="ntp"))
    boot_2000 = 946684800 + 3600
    out = run(led, up([2], tq="rtc", t=boot_2000 - 60, now=boot_2000))
    assert out.stored == 1 and f"clock_offset_s={float(RECEIVED - boot_2000)!r}" in out.lines[0]


def test_a_retained_status_is_stored_once():
    led = Ledger()
    status = json.dumps({"v": 1, "state": "sleeping", "t": RECEIVED, "boot": 3}).encode()
    topic = "rimba/v1/smp29/smp29-03/status"
    outs = [Outcome() for _ in range(3)]
    handle(led, topic, status, RECEIVED, VECTOR_FLEET, outs[0])
    handle(led, topic, status, RECEIVED + 60, VECTOR_FLEET, outs[1], retained=True)  # a new subscription
    will = json.dumps({"v": 1, "state": "lost"}).encode()
    handle(led, topic, will, RECEIVED + 70, VECTOR_FLEET, outs[2])
    handle(led, topic, will, RECEIVED + 80, VECTOR_FLEET, outs[2], retained=True)
    assert [len(o.lines) for o in outs] == [1, 0, 1] and outs[1].skipped == 1 and outs[2].skipped == 1


def test_an_epoch_with_too_many_holes_takes_no_more_batches_and_others_are_untouched():
    from rimba.contract import HOLES_MAX

    led = Ledger()
    odd = list(range(1, 2 * HOLES_MAX + 10, 2))
    for i in range(0, len(odd), 100):
        run(led, up(odd[i:i + 100]))
    m = marks(led)
    assert m.done.holes() > HOLES_MAX
    runs = len(m.done)
    out = run(led, up([10_001, 10_003], t=RECEIVED - 20_000))
    assert [d.code for d in out.dead] == ["too-fragmented"] and out.stored == 0
    assert len(m.done) == runs  # bounded: no new runs
    ok = Outcome()
    other = json.loads(up([1, 2]))
    other.update(node="bansir-laut-01")
    handle(led, "rimba/v1/bansir-laut/bansir-laut-01/up", json.dumps(other).encode(), RECEIVED, VECTOR_FLEET, ok)
    assert ok.stored == 2 and not ok.dead


def test_a_flood_of_dead_letters_is_budgeted_per_node_and_its_readings_stay_with_the_node():
    from ingest.pipeline import DEAD_BURST

    led = Ledger()
    flood = Outcome()
    for i in range(DEAD_BURST + 50):
        handle(led, UP, up([i + 1], extra={"bogus": 1}), RECEIVED, VECTOR_FLEET, flood)
    assert len(flood.dead) == DEAD_BURST and flood.rate_limited == 50
    assert marks(led).ack == DEAD_BURST  # the ack moved over the kept ones only: the node resends the rest
    other = json.loads(up([1], extra={"bogus": 1}))
    other.update(node="bansir-laut-01")
    fine = Outcome()
    handle(led, "rimba/v1/bansir-laut/bansir-laut-01/up", json.dumps(other).encode(), RECEIVED, VECTOR_FLEET, fine)
    assert len(fine.dead) == 1  # another node's budget is its own
    later = Outcome()
    handle(led, UP, up([999], extra={"bogus": 1}), RECEIVED + 3600, VECTOR_FLEET, later)
    assert len(later.dead) == 1  # the budget refills


def test_a_message_that_raises_leaves_the_ledger_as_it_was():
    led = Ledger()
    run(led, up([1, 2]))
    before = (marks(led).copy(), dict(vars(led.node("smp29-03"))))

    class Boom(Exception):
        pass

    import ingest.pipeline as pl

    real = pl.lineproto.readings
    pl.lineproto.readings = lambda *a: (_ for _ in ()).throw(Boom())
    try:
        try:
            handle(led, UP, up([3, 4], lost=[[5, 9]]), RECEIVED, VECTOR_FLEET, Outcome())
        except Boom:
            pass
    finally:
        pl.lineproto.readings = real
    assert marks(led).stored == before[0].stored and marks(led).done == before[0].done
    assert vars(led.node("smp29-03")) == before[1]
