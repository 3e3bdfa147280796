"""The pure core of ingest: one received message → lines to store, dead letters, an updated
ledger. No MQTT, no database, no clock: `received` is passed in.

The storage rules are wire-v2's, for v1 batches too:
- Exactly once: a reading is a duplicate when its (node, epoch, seq) is in `stored`. A reading
  whose storage second is already another recorded reading's of the node is not stored
  (`time-collision`, kept as a dead letter; its seq is accounted for).
- The ack of an epoch is the longest run 1..n of `done` (stored, or accounted for: reported
  `lost` by the node, dead-lettered, written off by an epoch reset). It never moves over a
  hole the node did not report: a hole open too long is recorded as a `missing` gap, for the
  technicians, and stays open until the node's resend fills it.
- Epochs by first sight: a node's current epoch is the one the ingest saw first last. A
  message of another epoch is recorded under its own, and changes nothing of the current one.
- Re-basing: an untrusted time moves by the smallest `received − now` since the node's boot
  changed, so a message that waited at the broker is not moved by its wait.
- Bounded: an epoch with more than `HOLES_MAX` open holes takes no more batches
  (`too-fragmented`); statuses and dead letters have a budget per node.

Each message is handled in isolation (`Ledger.begin/keep/undo`): whatever it raises, the
caller turns it into an `internal` dead letter and the ledger is as before.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from dataclasses import dataclass, field

from rimba import lineproto
from ingest.ledger import EpochMarks, Ledger, NodeState
from rimba import contract
from rimba.contract import Rejected
from rimba.names import is_name

DAY_S = 86400
# budgets per node (token buckets): a node sends a status or two per wake, and a dead letter only by mistake
STATUS_BURST, STATUS_PER_S = 60, 1 / 60
DEAD_BURST, DEAD_PER_S = 100, 1 / 60
NO_NODE = "?"  # the ledger's name for messages on topics without a valid node name
DEAD_NODE_MAX_BYTES = 4 * 1024 * 1024  # payload bytes kept of one node's dead letters; past it, evidence only
# How fast a node's clock may run slow, in seconds per second: the smallest received − now may rise so fast
# and still be the clock, not a wait. The ESP32's RTC in deep sleep runs on its internal 150 kHz RC
# oscillator, whose frequency "is affected by temperature" (ESP-IDF Programming Guide, System Time, "RTC
# timer clock sources"); boards lose 20 min in 15 h on it (espressif/arduino-esp32 issue 7084: 2.2 %).
MAX_DRIFT = 0.03
# A message waits at the broker at most as long as the ingest's session lives (rimba.adapters.mqtt):
# a node whose received − now grew by more than that had its clock reset, not a wait.
MAX_WAIT_S = 7 * 86400


@dataclass
class DeadLetter:
    topic: str
    payload: bytes
    code: str
    reason: str
    node: str | None
    kind: str = "message"  # message: replayable; partial: stored without some readings or values; point: db refused
    keep_payload: bool = True  # False: the node's share of kept payloads is spent; length and SHA-256 only

    def __post_init__(self):
        self.topic = contract.printable(self.topic)
        self.reason = contract.printable(self.reason)


@dataclass
class Outcome:
    lines: list = field(default_factory=list)
    dead: list = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    gaps: int = 0
    collisions: int = 0
    rate_limited: int = 0  # statuses and dead letters over their node's budget
    skipped: int = 0  # retained statuses already recorded
    internal: int = 0  # messages whose handling raised
    # node -> (site, epoch) whose current ack may have moved
    touched: dict = field(default_factory=dict)
    # nodes whose batch was all duplicates (their retained ack should be re-sent)
    resent: set = field(default_factory=set)

    def merge(self, o: Outcome) -> None:
        self.lines += o.lines
        self.dead += o.dead
        self.stored += o.stored
        self.duplicates += o.duplicates
        self.gaps += o.gaps
        self.collisions += o.collisions
        self.rate_limited += o.rate_limited
        self.skipped += o.skipped
        self.internal += o.internal
        self.touched.update(o.touched)
        self.resent |= o.resent


def gap_line(site: str, node: str, first: int, last: int, reason: str, time_ms: int) -> str:
    return lineproto.line("gap", {"site": site, "node": node},
                          {"first_seq": first, "last_seq": last, "reason": reason}, time_ms)


def _gap(out: Outcome, ns: NodeState, site: str, node: str, first: int, last: int, reason: str, now: float) -> None:
    ms = max(int(now * 1000), ns.gap_ms + 1)  # one point per gap, however many in a millisecond
    ns.gap_ms = ms
    out.lines.append(gap_line(site, node, first, last, reason, ms))
    out.gaps += 1


def _account(out: Outcome, ns: NodeState, em: EpochMarks, site: str, node: str, first: int, last: int,
             reason: str, now: float) -> None:
    """Account for first..last without readings: a gap point for what was not accounted yet."""
    for lo, hi in em.done.missing(first, last):
        _gap(out, ns, site, node, lo, hi, reason, now)
    em.done.add(first, last)


def _epoch(led: Ledger, out: Outcome, ns: NodeState, site: str, node: str, epoch: int,
           received: float, newest_t: int | None = None) -> EpochMarks:
    """The node's marks for `epoch`; a new epoch seen later than the current one becomes current, and
    what the old one never delivered is written off (`epoch-reset`). `newest_t`: the newest trusted time
    of the message's readings; a new epoch whose readings are all older than the current epoch's
    oldest trusted one is an old epoch seen late (a redelivery, a replay), whenever it arrives."""
    em = led.epoch(node, epoch)
    if em is not None:
        return em
    em = led.new_epoch(node, epoch, received)
    old = led.epoch(node, ns.epoch) if ns.epoch is not None else None
    older = newest_t is not None and old is not None and old.first_t is not None and newest_t < old.first_t
    if ns.epoch is None or (received >= ns.epoch_seen and not older):
        if old is not None and old.done.top() > old.ack:
            _account(out, ns, old, site, node, old.ack + 1, old.done.top(), "epoch-reset", received)
            old.hole_since = None
        ns.epoch, ns.epoch_seen = epoch, received
    return em


def _allow(ns: NodeState, kind: str, received: float, limit: bool) -> bool:
    """Take one from the node's budget for `kind` ("status" or "dead"); False when it is spent."""
    if not limit:
        return True
    burst, rate = (STATUS_BURST, STATUS_PER_S) if kind == "status" else (DEAD_BURST, DEAD_PER_S)
    tokens, at = getattr(ns, f"{kind}_tokens"), getattr(ns, f"{kind}_at")
    tokens = burst if tokens < 0 else min(burst, tokens + max(0.0, received - at) * rate)
    ok = tokens >= 1
    setattr(ns, f"{kind}_tokens", tokens - 1 if ok else tokens)
    setattr(ns, f"{kind}_at", max(at, received))
    return ok


def _keep(out: Outcome, ns: NodeState, d: DeadLetter, received: float, limit: bool) -> bool:
    """Keep a dead letter if the node's budget allows; past its share of payload bytes, as evidence only."""
    if not _allow(ns, "dead", received, limit):
        out.rate_limited += 1
        return False
    size = min(len(d.payload), contract.DEAD_LETTER_MAX_BYTES)
    if limit and ns.dead_bytes + size > DEAD_NODE_MAX_BYTES:
        d.keep_payload = False
    else:
        ns.dead_bytes += size
    out.dead.append(d)
    return True


def _offset(ns: NodeState, boot, own: int, received: float) -> float:
    """The smallest received − now from the node since its boot changed, this message's included, the
    older ones allowed to have risen since by a slow clock's drift (`MAX_DRIFT`)."""
    if boot != ns.offset_boot or ns.min_offset is None or own - ns.min_offset > MAX_WAIT_S:
        return own
    return min(ns.min_offset + MAX_DRIFT * max(0.0, received - ns.offset_at), own)


def _time_index(led: Ledger, node: str):
    """claim(t): record storage second `t` for the node; False if it already holds a reading there.
    A bounded index (per node and UTC day), not a scan; a time after the day's last is an append.
    claim.run(times, rising): claim rising `times` of one day, all after the day's last, at once; False
    (and nothing claimed) when they are not. `rising`: the times are known to rise (a v2 batch's do)."""
    cache: dict = {}

    def day_of(t: int):
        day = t // DAY_S
        arr = cache.get(day)
        if arr is None:
            arr = cache[day] = led.day(node, day)
        return day, arr

    def claim(t: int) -> bool:
        day, arr = day_of(t)
        s = t - day * DAY_S
        if not arr or s > arr[-1]:
            arr.append(s)
            return True
        i = bisect_left(arr, s)
        if i < len(arr) and arr[i] == s:
            return False
        arr.insert(i, s)
        return True

    def run(times: list, rising: bool = False) -> bool:
        if not times:
            return True
        day, arr = day_of(times[0])
        base = day * DAY_S
        if times[-1] - base >= DAY_S or (arr and times[0] - base <= arr[-1]):
            return False
        if not rising and len(times) > 1 and not all(a < b for a, b in zip(times, times[1:])):
            return False
        arr.extend(t - base for t in times)
        return True

    claim.run = run
    return claim


def handle_up(led: Ledger, topic: str, payload: bytes, received: float, fleet, out: Outcome,
              limit: bool = True) -> None:
    """Decode one `up` message and fold it into `out` and the ledger."""
    try:
        batch = contract.decode_up(topic, payload, fleet)
    except Rejected as err:
        _refuse(led, topic, payload, err, received, out, limit)
        return
    site, node = batch.site, batch.node
    ns = led.node(node)
    ns.site = site
    seqs = batch.seqs
    own = int(received) - batch.now
    ns.wire = batch.version
    boot = batch.boot if batch.version >= 2 else ns.boot  # v1 batches carry none: the last status's
    offset = _offset(ns, boot, own, received)
    try:
        times, lates, offsets = contract.placement(batch, int(received), round(offset))
    except Rejected as err:
        _refuse(led, topic, payload, err, received, out, limit, (batch.epoch, seqs, batch.lost))
        return
    n, n_trusted = len(times), offsets.count(None)
    trusted = times if n_trusted == n else [t for t, o in zip(times, offsets) if o is None]
    em = _epoch(led, out, ns, site, node, batch.epoch, received, max(trusted) if trusted else None)
    if em.done.holes() > contract.HOLES_MAX or len(em.stored) > contract.HOLES_MAX + 1:
        err = Rejected("too-fragmented", f"epoch {batch.epoch} has {max(em.done.holes(), len(em.stored) - 1)} "
                       f"holes, more than {contract.HOLES_MAX}; a node sending oldest first cannot get there")
        _refuse(led, topic, payload, err, received, out, limit, (batch.epoch, seqs, batch.lost))
        return
    ns.offset_boot, ns.min_offset, ns.offset_at = boot, offset, received
    if trusted and (em.first_t is None or min(trusted) < em.first_t):
        em.first_t = min(trusted)

    for lo, hi in batch.lost:
        _account(out, ns, em, site, node, lo, hi, "lost", received)
    claim = _time_index(led, node)
    stored = em.stored
    fresh = not seqs or seqs[0] > stored.top()  # all above what was stored: none can be a resend
    collided = []
    rising = batch.version >= 2 and n_trusted in (0, n)  # v2 times rise, and so do they moved as one
    if fresh and claim.run(times, rising):  # the usual batch: new readings at new, rising times of one day
        new = seqs
        out.lines += lineproto.readings(site, node, batch.fields, seqs, lates, offsets, times)
    else:
        new = []
        keep = []
        for i, seq in enumerate(seqs):
            if not fresh and seq in stored:
                out.duplicates += 1
                continue
            if not claim(times[i]):
                collided.append(seq)
                continue
            keep.append(i)
            new.append(seq)
        out.lines += lineproto.readings(site, node, *([col[i] for i in keep] for col in
                                                      (batch.fields, seqs, lates, offsets, times)))
    if new:
        stored.add_sorted(new)
        em.done.add_sorted(new)
        out.stored += len(new)
    elif seqs and not collided:
        out.resent.add(node)
    if collided:
        seqs_text = ", ".join(map(str, collided[:20])) + (" ..." if len(collided) > 20 else "")
        d = DeadLetter(topic, payload, "time-collision", f"time-collision: seq {seqs_text} at a second another "
                       f"reading of {node} already has; not stored", node, kind="partial")
        if _keep(out, ns, d, received, limit):  # kept: accounted for; over budget the node sends them again
            em.done.add_sorted(collided)
            out.collisions += len(collided)
    if batch.faults:
        _keep(out, ns, DeadLetter(topic, payload, "out-of-range", "out-of-range: " + "; ".join(batch.faults)[:500],
                                  node, kind="partial"), received, limit)
    em.note_holes(received)
    if ns.epoch == batch.epoch:
        out.touched[node] = (site, batch.epoch)


def _refuse(led: Ledger, topic: str, payload: bytes, err: Rejected, received: float, out: Outcome,
            limit: bool, salvage=None) -> None:
    """A refused batch: kept as a dead letter, and, when it came from the registered node on its own
    topic with readable seqs, accounted for so the ack moves over it (one bad batch never blocks a
    node). Over the node's budget it is neither kept nor accounted for: the node keeps it and resends."""
    node = topic_node(topic)
    salvage = salvage or err.salvage
    ns = led.node(node or NO_NODE)  # a topic without a node name shares one budget
    if not _keep(out, ns, DeadLetter(topic, payload, err.code, err.reason, node), received, limit):
        return
    if salvage is None or node is None:
        return
    epoch, seqs, lost = salvage
    site = topic.split("/")[2]
    ns.site = site
    em = _epoch(led, out, ns, site, node, epoch, received)
    fragmented = err.code == "too-fragmented"
    for lo, hi in lost:
        if not (fragmented and em.done.adds_run(lo, hi)):
            _account(out, ns, em, site, node, lo, hi, "lost", received)
    for s in seqs:
        if not (fragmented and em.done.adds_run(s, s)):  # bounded: a fragmented epoch gets no new runs
            em.done.add(s, s)
    em.note_holes(received)
    if ns.epoch == epoch:
        out.touched[node] = (site, epoch)


def handle_status(led: Ledger, topic: str, payload: bytes, received: float, fleet, out: Outcome,
                  retained: bool = False, limit: bool = True) -> None:
    try:
        st = contract.decode_status(topic, payload, fleet)
    except Rejected as err:
        _refuse(led, topic, payload, err, received, out, limit)
        return
    ns = led.node(st.node)
    sha = hashlib.sha256(payload).hexdigest()
    if sha == ns.status_sha or (st.t is None and st.state == ns.status_state):
        out.skipped += 1  # a retained copy or a redelivery, or a Last Will of the state already recorded
        return
    if not _allow(ns, "status", received, limit):
        out.rate_limited += 1
        return
    ns.site, ns.wire = st.site, st.version
    ms = contract.status_time_ms(st, received)
    if ns.status_ms - 1000 < ms <= ns.status_ms:  # another status of the node in that second: its own point
        ms = ns.status_ms + 1
    ns.status_ms = max(ns.status_ms, ms)
    if st.t is None or ns.status_t is None or st.t >= ns.status_t:  # an older status (a replay) is history only
        ns.status_sha, ns.status_state = sha, st.state
        ns.status_t = st.t if st.t is not None else ns.status_t
        if "boot" in st.fields:
            ns.boot = st.fields["boot"]
    fields = {"state": st.state, **st.fields}
    out.lines.append(lineproto.line("node_status", {"site": st.site, "node": st.node}, fields, ms))


def handle(led: Ledger, topic: str, payload: bytes, received: float, fleet, out: Outcome,
           retained: bool = False, limit: bool = True) -> None:
    """One message, atomically: the ledger changes only if it returns."""
    led.begin()
    try:
        if topic.endswith("/status"):
            handle_status(led, topic, payload, received, fleet, out, retained, limit)
        else:
            handle_up(led, topic, payload, received, fleet, out, limit)
    except BaseException:
        led.undo()
        raise
    led.keep()


def sweep_holes(led: Ledger, due: list, now: float, out: Outcome, limit: int = 10_000) -> None:
    """Record as `missing` gaps the holes open since before the timeout. `due`: [(node, epoch)] whose
    `hole_since` is old enough. The ack does not move: the node's resend fills a hole."""
    for node, epoch in due:
        ns = led.node(node)
        em = led.epoch(node, epoch)
        if em is None or ns.site is None or ns.epoch != epoch or em.hole_since is None:
            continue
        for lo, hi in em.done.holes_above(em.reported_upto, limit):
            _gap(out, ns, ns.site, node, lo, hi, "missing", now)
        em.reported_upto = em.done.top()
        em.hole_since = None


def topic_node(topic: str) -> str | None:
    """The node name in a node topic, if it is a valid one."""
    parts = topic.split("/")
    return parts[3] if len(parts) == 5 and is_name(parts[3]) else None
