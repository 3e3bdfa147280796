"""The pure core of ingest: one received message → lines to store, dead letters,
updated seq marks. No MQTT, no database, no clock: `received` is passed in.

Seq marks per (node, epoch) are two range sets:
- `stored`: readings written to the spool (and so, in time, to InfluxDB);
- `held`: seqs that will never be stored but are accounted for: reported `lost`,
  dead-lettered whole, or declared a gap.
The ack is the longest run 1..n in `stored ∪ held`. A reading is a duplicate
only when its seq is in `stored`, so a dead-lettered batch can still be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest import lineproto, ranges
from rimba import contract
from rimba.contract import Rejected
from rimba.names import is_name


@dataclass
class Marks:
    stored: list = field(default_factory=list)
    held: list = field(default_factory=list)
    hole_since: float | None = None
    dirty: bool = False

    @property
    def ack(self) -> int:
        return ranges.prefix_end(ranges.union(self.stored, self.held))

    def hole(self):
        return ranges.first_hole(ranges.union(self.stored, self.held))

    def top(self) -> int:
        both = ranges.union(self.stored, self.held)
        return both[-1][1] if both else 0

    def hold(self, first: int, last: int) -> list:
        """Mark first..last held; return the sub-ranges that were not accounted for yet."""
        known = ranges.union(self.stored, self.held)
        new = [[first, last]]
        for lo, hi in known:
            new = ranges.remove(new, lo, hi)
        if new:
            self.held = ranges.add(self.held, first, last)
            self.dirty = True
        return new

    def note_holes(self, now: float) -> None:
        if self.hole() is None:
            if self.hole_since is not None:
                self.hole_since, self.dirty = None, True
        elif self.hole_since is None:
            self.hole_since, self.dirty = now, True


@dataclass
class DeadLetter:
    topic: str
    payload: bytes
    code: str
    reason: str
    node: str | None
    kind: str = "message"  # message: replayable; partial: stored without some values; point: refused by the db


@dataclass
class Outcome:
    lines: list = field(default_factory=list)
    dead: list = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    gaps: int = 0
    # node -> (site, epoch) whose ack may have moved
    touched: dict = field(default_factory=dict)
    # nodes whose batch was all duplicates (their retained ack should be re-sent)
    resent: set = field(default_factory=set)


class MarkSource:
    """What the pipeline needs from the store (implemented by `store.Transaction`)."""

    def marks(self, node: str, epoch: int) -> Marks: ...
    def latest_epoch(self, node: str) -> int | None: ...
    def set_latest_epoch(self, node: str, site: str, epoch: int) -> None: ...


def gap_line(site: str, node: str, first: int, last: int, reason: str, time_ms: int) -> str:
    return lineproto.line("gap", {"site": site, "node": node},
                          {"first_seq": first, "last_seq": last, "reason": reason}, time_ms)


def _hold(out: Outcome, m: Marks, site: str, node: str, first: int, last: int, reason: str, received: float):
    for lo, hi in m.hold(first, last):
        out.lines.append(gap_line(site, node, lo, hi, reason, int(received * 1000) + out.gaps))
        out.gaps += 1


def _switch_epoch(src: MarkSource, out: Outcome, site: str, node: str, epoch: int, received: float) -> None:
    """A node's newest epoch changed: whatever the old epoch never delivered is a gap."""
    old = src.latest_epoch(node)
    if old == epoch:
        return
    if old is not None:
        m = src.marks(node, old)
        top = m.top()
        if top > m.ack:
            _hold(out, m, site, node, m.ack + 1, top, "epoch-reset", received)
    src.set_latest_epoch(node, site, epoch)


def handle_up(src: MarkSource, topic: str, payload: bytes, received: float, fleet, out: Outcome) -> None:
    """Decode one `up` message and fold it into `out` and the marks."""
    try:
        batch = contract.decode_up(topic, payload, fleet)
        try:
            placed = contract.place(batch, int(received))
        except Rejected as err:
            err.salvage = (batch.epoch, [r.seq for r in batch.readings], batch.lost)
            raise
    except Rejected as err:
        node = _topic_node(topic)
        out.dead.append(DeadLetter(topic, payload, err.code, err.reason, node))
        salvage = err.salvage
        if salvage is not None:
            epoch, seqs, lost = salvage
            site = topic.split("/")[2]
            _switch_epoch(src, out, site, node, epoch, received)
            m = src.marks(node, epoch)
            for lo, hi in lost:
                _hold(out, m, site, node, lo, hi, "lost", received)
            for s in seqs:
                m.hold(s, s)
            m.note_holes(received)
            out.touched[node] = (site, epoch)
        return

    site, node, epoch = batch.site, batch.node, batch.epoch
    _switch_epoch(src, out, site, node, epoch, received)
    m = src.marks(node, epoch)
    for lo, hi in batch.lost:
        _hold(out, m, site, node, lo, hi, "lost", received)
    new = []
    for r, p in zip(batch.readings, placed):
        if ranges.contains(m.stored, r.seq):
            out.duplicates += 1
            continue
        out.lines.append(lineproto.reading(site, node, r.values, r.seq, p.late, p.offset, p.time))
        new.append(r.seq)
    if new:
        m.stored = ranges.add_many(m.stored, new)
        m.dirty = True
        out.stored += len(new)
    elif batch.readings:
        out.resent.add(node)
    if batch.faults:
        out.dead.append(DeadLetter(topic, payload, "out-of-range", "out-of-range: " + "; ".join(batch.faults)[:500],
                                   node, kind="partial"))
    m.note_holes(received)
    out.touched[node] = (site, epoch)


def handle_status(topic: str, payload: bytes, received: float, fleet, out: Outcome) -> None:
    try:
        st = contract.decode_status(topic, payload, fleet)
    except Rejected as err:
        out.dead.append(DeadLetter(topic, payload, err.code, err.reason, _topic_node(topic)))
        return
    fields = {"state": st.state, **st.fields}
    out.lines.append(lineproto.line("node_status", {"site": st.site, "node": st.node}, fields,
                                    contract.status_time_ms(st, received)))


def handle(src: MarkSource, topic: str, payload: bytes, received: float, fleet, out: Outcome) -> None:
    if topic.endswith("/status"):
        handle_status(topic, payload, received, fleet, out)
    else:
        handle_up(src, topic, payload, received, fleet, out)


def sweep_holes(src: MarkSource, latest: list, now: float, timeout_s: float, out: Outcome) -> None:
    """Declare gaps for holes open longer than `timeout_s`. `latest`: [(node, site, epoch)]."""
    for node, site, epoch in latest:
        m = src.marks(node, epoch)
        if m.hole_since is None or now - m.hole_since < timeout_s:
            continue
        lo, hi = m.hole()
        _hold(out, m, site, node, lo, hi, "missing", now)
        m.hole_since = None
        m.note_holes(now)  # a further hole starts its own clock now
        out.touched[node] = (site, epoch)


def _topic_node(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[3] if len(parts) == 5 and is_name(parts[3]) else None
