"""The pure ingest core: dedup, acks, gaps, epochs, dead letters. Also the seq range sets,
checked against a plain Python set on seeded random data."""

import json
import random

from ingest.ledger import Ledger
from ingest.pipeline import Outcome, handle, sweep_holes
from ingest.seqset import SeqSet
from tests.support import VECTOR_FLEET, VECTORS

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
        assert SeqSet.load(json.loads(json.dumps(rs.dump()))) == rs


def _runs(members: set) -> list:
    out = []
    for s in sorted(members):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
