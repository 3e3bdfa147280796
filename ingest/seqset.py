"""A set of sequence numbers kept as sorted, disjoint, non-adjacent runs, searched with `bisect`.

Two parallel lists, `lo` and `hi`: run i is lo[i]..hi[i], and hi[i] + 1 < lo[i + 1]. Membership,
the prefix 1..n and the first hole cost O(log runs); adding a run costs O(log runs) to find its
place plus a slice replacement (a memmove), never a rebuild of the whole set. That keeps the
ingest's cost per message flat however fragmented a node's seqs are (contract v2, "Bounded
bookkeeping").

>>> s = SeqSet()
>>> s.add(1, 3), s.add(7, 9), s.add(4, 4)
(1, 1, 0)
>>> s.runs(), s.prefix_end(), s.first_hole(), s.holes()
([(1, 4), (7, 9)], 4, (5, 6), 1)
>>> s.missing(3, 8)
[(5, 6)]
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right


class SeqSet:
    __slots__ = ("hi", "lo")

    def __init__(self, lo=None, hi=None):
        self.lo: list = lo if lo is not None else []
        self.hi: list = hi if hi is not None else []

    @classmethod
    def of_runs(cls, runs) -> SeqSet:
        s = cls()
        for first, last in runs:
            s.add(first, last)
        return s

    def copy(self) -> SeqSet:
        return SeqSet(self.lo[:], self.hi[:])

    def runs(self) -> list:
        return list(zip(self.lo, self.hi))

    def __len__(self) -> int:
        """The number of runs (not of members)."""
        return len(self.lo)

    def __eq__(self, other) -> bool:
        return isinstance(other, SeqSet) and self.lo == other.lo and self.hi == other.hi

    def __repr__(self) -> str:
        return f"SeqSet({self.runs()!r})"

    def __contains__(self, seq: int) -> bool:
        i = bisect_right(self.lo, seq) - 1
        return i >= 0 and seq <= self.hi[i]

    def _span(self, first: int, last: int) -> tuple[int, int]:
        """Indexes [i, j) of the runs that overlap or touch first..last."""
        return bisect_left(self.hi, first - 1), bisect_right(self.lo, last + 1)

    def add(self, first: int, last: int) -> int:
        """Add first..last; return the change in the number of runs (1, 0 or negative)."""
        i, j = self._span(first, last)
        if i < j:
            first = min(first, self.lo[i])
            last = max(last, self.hi[j - 1])
        self.lo[i:j] = [first]
        self.hi[i:j] = [last]
        return 1 - (j - i)

    def adds_run(self, first: int, last: int) -> bool:
        """Would adding first..last make a new run (rather than grow or join existing ones)?"""
        i, j = self._span(first, last)
        return i == j

    def add_sorted(self, seqs) -> None:
        """Add rising integers `seqs`, one run at a time."""
        run_lo = run_hi = None
        for s in seqs:
            if run_hi is not None and s == run_hi + 1:
                run_hi = s
                continue
            if run_lo is not None:
                self.add(run_lo, run_hi)
            run_lo = run_hi = s
        if run_lo is not None:
            self.add(run_lo, run_hi)

    def missing(self, first: int, last: int) -> list:
        """The sub-runs of first..last that are not in the set: [(lo, hi)]."""
        out = []
        i = max(bisect_right(self.lo, first) - 1, 0)
        at = first
        n = len(self.lo)
        while at <= last and i < n:
            lo, hi = self.lo[i], self.hi[i]
            if hi < at:
                i += 1
                continue
            if lo > last:
                break
            if lo > at:
                out.append((at, lo - 1))
            at = hi + 1
            i += 1
        if at <= last:
            out.append((at, last))
        return out

    def prefix_end(self) -> int:
        """The largest n such that 1..n are all in the set (0 if 1 is missing)."""
        return self.hi[0] if self.lo and self.lo[0] <= 1 else 0

    def top(self) -> int:
        return self.hi[-1] if self.hi else 0

    def first_hole(self):
        """(first, last) of the lowest missing run below the top, or None."""
        if not self.lo:
            return None
        if self.lo[0] > 1:
            return 1, self.lo[0] - 1
        if len(self.lo) > 1:
            return self.hi[0] + 1, self.lo[1] - 1
        return None

    def holes(self) -> int:
        """How many missing runs lie below the top."""
        if not self.lo:
            return 0
        return len(self.lo) - (1 if self.lo[0] <= 1 else 0)

    def has_hole_above(self, x: int) -> bool:
        """Is some seq s with x < s < top missing?"""
        if x + 1 >= self.top():
            return False
        i = bisect_right(self.lo, x + 1) - 1
        if i < 0 or x + 1 > self.hi[i]:
            return True  # x + 1 itself is missing
        return i < len(self.lo) - 1

    def holes_above(self, x: int, limit: int) -> list:
        """Up to `limit` missing runs above x and below the top, lowest first: [(lo, hi)]."""
        out = []
        i = max(bisect_right(self.lo, x + 1) - 1, 0)
        prev = x
        for k in range(i, len(self.lo)):
            lo, hi = self.lo[k], self.hi[k]
            if hi <= prev:
                continue
            if lo > prev + 1:
                out.append((prev + 1, lo - 1))
                if len(out) >= limit:
                    break
            prev = hi
        return out

    # storage: the two lists as 64-bit integers, lo then hi
    def dump(self) -> bytes:
        return array("q", self.lo + self.hi).tobytes()

    @classmethod
    def load(cls, data: bytes) -> SeqSet:
        """The inverse of `dump`."""
        values = array("q")
        values.frombytes(data)
        n = len(values) // 2
        return cls(values[:n].tolist(), values[n:].tolist())
