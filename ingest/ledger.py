"""What the ingest knows of each node between messages: its epochs' seq marks, its clock, its
last status, its storage times, its rate budgets. Pure and in memory; `ingest.store` keeps it
on disk, as a subclass that loads on first use and writes back at commit.

Per message, the pipeline works inside `begin()` ... `keep()` or `undo()`: every object it
touches is copied on first touch, so a message that raises half-way leaves no trace.

    NodeState    per node: current epoch (by first sight), clock offset, status, budgets
    EpochMarks   per (node, epoch): `stored` seqs, `done` seqs (stored, or accounted for:
                 reported lost, dead-lettered, written off), holes reported missing
    times        per (node, UTC day): the sorted storage seconds already recorded
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from ingest.seqset import SeqSet


@dataclass
class NodeState:
    site: str | None = None
    epoch: int | None = None  # the current epoch: the one first seen last
    epoch_seen: float = 0.0  # when the current epoch was first seen
    boot: int | None = None  # the boot counter of the node's last status (v1) or batch (v2)
    offset_boot: int | None = None  # the boot `min_offset` belongs to ("none" for v1 without status)
    min_offset: float | None = None  # the smallest received - now since the boot changed (drift allowed)
    offset_at: float = 0.0  # when min_offset was last worked out
    status_sha: str | None = None  # the last status stored, to store a retained copy only once
    status_state: str | None = None
    status_t: int | None = None  # the `t` of the newest status recorded
    status_ms: int = 0  # the last status point's time: two statuses never share a point
    gap_ms: int = 0  # the last gap point's time: every gap point has its own
    status_tokens: float = -1.0  # rate budgets (token buckets); -1: full
    status_at: float = 0.0
    dead_tokens: float = -1.0
    dead_at: float = 0.0
    wire: int = 1  # the contract version the node last spoke: its acks go under that root
    dead_bytes: int = 0  # payload bytes of its dead letters kept

    def copy(self) -> NodeState:
        """A shallow copy (every field is immutable), without `copy.copy`'s generic protocol."""
        new = NodeState.__new__(NodeState)
        new.__dict__.update(self.__dict__)
        return new


@dataclass
class EpochMarks:
    first_seen: float
    stored: SeqSet = field(default_factory=SeqSet)
    done: SeqSet = field(default_factory=SeqSet)
    reported_upto: int = 0  # holes at or below this seq were recorded as `missing` gaps
    hole_since: float | None = None  # since when a hole above reported_upto is open
    first_t: int | None = None  # the oldest trusted (synchronised) time of its readings

    @property
    def ack(self) -> int:
        return self.done.prefix_end()

    def note_holes(self, now: float) -> None:
        if self.done.has_hole_above(self.reported_upto):
            if self.hole_since is None:
                self.hole_since = now
        else:
            self.hole_since = None

    def copy(self) -> EpochMarks:
        return EpochMarks(self.first_seen, self.stored.copy(), self.done.copy(), self.reported_upto, self.hole_since,
                          self.first_t)


_ABSENT = object()


class Ledger:
    """The in-memory ledger. Subclasses override the `_load_*` methods to read from storage."""

    def __init__(self):
        self.nodes: dict = {}
        self.epochs: dict = {}
        self.days: dict = {}
        self._undo: dict | None = None

    # loading (overridden by the store)
    def _load_node(self, node: str) -> NodeState | None:
        return None

    def _load_epoch(self, node: str, epoch: int) -> EpochMarks | None:
        return None

    def _load_day(self, node: str, day: int) -> array | None:
        return None

    # per-message atomicity
    def begin(self) -> None:
        self._undo = {}

    def keep(self) -> None:
        self._undo = None

    def undo(self) -> None:
        for (kind, key), old in (self._undo or {}).items():
            table = getattr(self, kind)
            if old is _ABSENT:
                table.pop(key, None)
            else:
                table[key] = old
        self._undo = None

    def undo_all(self) -> None:
        """Forget every change since the ledger was made (a transaction keeps nothing of it)."""
        self.nodes.clear()
        self.epochs.clear()
        self.days.clear()
        self._undo = None

    def _touch(self, kind: str, key, value, copier):
        if self._undo is not None and (kind, key) not in self._undo:
            self._undo[(kind, key)] = _ABSENT if value is None else copier(value)

    # access
    def node(self, name: str) -> NodeState:
        ns = self.nodes.get(name)
        if ns is None:
            ns = self._load_node(name)
        self._touch("nodes", name, ns, NodeState.copy)
        if ns is None:
            ns = NodeState()
        self.nodes[name] = ns
        return ns

    def epoch(self, node: str, epoch: int) -> EpochMarks | None:
        key = (node, epoch)
        em = self.epochs.get(key, _ABSENT)
        if em is _ABSENT:
            em = self._load_epoch(node, epoch)
            if em is None:
                return None
        self._touch("epochs", key, em, EpochMarks.copy)
        self.epochs[key] = em
        return em

    def new_epoch(self, node: str, epoch: int, first_seen: float) -> EpochMarks:
        key = (node, epoch)
        self._touch("epochs", key, None, None)
        em = self.epochs[key] = EpochMarks(first_seen)
        return em

    def day(self, node: str, day: int) -> array:
        """The sorted storage seconds (from the day's start) recorded for the node on that UTC day."""
        key = (node, day)
        arr = self.days.get(key)
        if arr is None:
            arr = self._load_day(node, day)
        self._touch("days", key, arr, array.__copy__)
        if arr is None:
            arr = array("I")
        self.days[key] = arr
        return arr
