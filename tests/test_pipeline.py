"""The pure ingest core: dedup, acks, gaps, epochs, dead letters. Also the seq range sets,
checked against a plain Python set on seeded random data."""

import json
import random

from ingest import ranges
from ingest.pipeline import Marks, Outcome, handle, sweep_holes
from tests.support import VECTOR_FLEET, VECTORS

RECEIVED = VECTORS["received"]
UP = "rimba/v1/smp29/smp29-03/up"


class MemMarks:
    """A dict-backed MarkSource: what the SQLite transaction provides, in memory."""

    def __init__(self):
        self.m = {}
        self.latest = {}

    def marks(self, node, epoch):
        return self.m.setdefault((node, epoch), Marks())

    def latest_epoch(self, node):
        return self.latest.get(node, (None, None))[1]

    def set_latest_epoch(self, node, site, epoch):
        self.latest[node] = (site, epoch)


def up(seqs, epoch=7, lost=None, t=RECEIVED - 30, tq="ntp", now=RECEIVED, extra=None):
    body = {"v": 1, "node": "smp29-03", "epoch": epoch, "now": now, "tq": tq,
            "r": [dict({"seq": s, "t": t, "air_temp_c": 27.5}, **(extra or {})) for s in seqs]}
    if lost:
        body["lost"] = lost
    return json.dumps(body).encode()


def run(src, *payloads, received=RECEIVED):
    out = Outcome()
    for p in payloads:
        handle(src, UP, p, received, VECTOR_FLEET, out)
    return out


def test_resends_are_duplicates_and_ack_is_cumulative():
    src = MemMarks()
    out = run(src, up([1, 2, 3]), up([1, 2, 3]), up([4, 5]))
    assert (out.stored, out.duplicates) == (5, 3)
    assert len([x for x in out.lines if x.startswith("reading,")]) == 5
    assert src.marks("smp29-03", 7).ack == 5


def test_out_of_order_batches_hold_the_ack_until_the_hole_fills():
    src = MemMarks()
    run(src, up([4, 5, 6]))
    m = src.marks("smp29-03", 7)
    assert m.ack == 0 and m.hole() == (1, 3) and m.hole_since == RECEIVED
    run(src, up([1, 2, 3]))
    assert m.ack == 6 and m.hole() is None and m.hole_since is None


def test_rebased_resend_is_still_a_duplicate():
    # an rtc clock: the re-based time depends on receipt, so only the seq marks catch the resend
    src = MemMarks()
    a = run(src, up([1], tq="rtc", t=100, now=200), received=RECEIVED)
    b = run(src, up([1], tq="rtc", t=100, now=200), received=RECEIVED + 40)
    assert (a.stored, b.stored, b.duplicates) == (1, 0, 1)
    assert "clock_offset_s=" in a.lines[0]


def test_lost_ranges_are_gaps_once_and_move_the_ack():
    src = MemMarks()
    out = run(src, up([6, 7], lost=[[1, 5]]), up([6, 7], lost=[[1, 5]]))
    gaps = [x for x in out.lines if x.startswith("gap,")]
    assert len(gaps) == 1 and "first_seq=1i,last_seq=5i" in gaps[0] and 'reason="lost"' in gaps[0]
    assert src.marks("smp29-03", 7).ack == 7


def test_bad_batch_moves_the_ack_and_can_still_be_replayed():
    src = MemMarks()
    out = run(src, up([1, 2]), up([3, 4], extra={"bogus": 1}), up([5]))
    assert [d.code for d in out.dead] == ["unknown-key"]
    m = src.marks("smp29-03", 7)
    assert m.ack == 5
    # the dead-lettered seqs are held, not stored: a fixed replay is stored, not a duplicate
    again = run(src, up([3, 4]))
    assert again.stored == 2 and again.duplicates == 0


def test_out_of_range_value_stores_the_reading_and_keeps_the_batch():
    src = MemMarks()
    out = run(src, up([1], extra={"air_rh_pct": 140}))
    assert out.stored == 1 and "air_rh_pct" not in out.lines[0]
    assert [(d.code, d.kind) for d in out.dead] == [("out-of-range", "partial")]


def test_new_epoch_closes_the_old_one_with_a_gap():
    src = MemMarks()
    run(src, up([1, 2, 5], epoch=7))
    out = run(src, up([1], epoch=8))
    gaps = [x for x in out.lines if x.startswith("gap,")]
    assert len(gaps) == 1 and "first_seq=3i,last_seq=4i" in gaps[0] and "epoch-reset" in gaps[0]
    assert src.latest_epoch("smp29-03") == 8


def test_hole_becomes_a_gap_after_the_timeout():
    src = MemMarks()
    run(src, up([1, 2, 9]))
    latest = [("smp29-03", "smp29", 7)]
    early = Outcome()
    sweep_holes(src, latest, RECEIVED + 59, 60, early)
    assert not early.lines
    late = Outcome()
    sweep_holes(src, latest, RECEIVED + 60, 60, late)
    assert len(late.lines) == 1 and "first_seq=3i,last_seq=8i" in late.lines[0] and "missing" in late.lines[0]
    assert src.marks("smp29-03", 7).ack == 9


def test_unknown_node_does_not_touch_marks():
    src = MemMarks()
    out = Outcome()
    body = json.loads(up([1]))
    body["node"] = "smp29-99"
    handle(src, "rimba/v1/smp29/smp29-99/up", json.dumps(body).encode(), RECEIVED, VECTOR_FLEET, out)
    assert [d.code for d in out.dead] == ["unknown-node"] and not src.m


def test_ranges_match_a_plain_set():
    rng = random.Random(42)
    for _ in range(300):
        rs, plain = [], set()
        for _ in range(rng.randrange(1, 30)):
            lo = rng.randrange(1, 60)
            hi = lo + rng.randrange(0, 6)
            if rng.random() < 0.8:
                rs = ranges.add(rs, lo, hi)
                plain |= set(range(lo, hi + 1))
            else:
                rs = ranges.remove(rs, lo, hi)
                plain -= set(range(lo, hi + 1))
        expanded = {s for lo, hi in rs for s in range(lo, hi + 1)}
        assert expanded == plain
        assert all(a[1] + 1 < b[0] for a, b in zip(rs, rs[1:]))  # disjoint, not adjacent, sorted
        n = 0
        while n + 1 in plain:
            n += 1
        assert ranges.prefix_end(rs) == n
        assert all(ranges.contains(rs, s) == (s in plain) for s in range(70))
