"""Sets of sequence numbers kept as sorted, disjoint, non-adjacent [first, last] ranges."""

from __future__ import annotations


def add(ranges: list, first: int, last: int) -> list:
    """Return `ranges` with first..last added (merged with overlapping or adjacent ones)."""
    out = []
    placed = False
    for lo, hi in ranges:
        if hi < first - 1:
            out.append([lo, hi])
        elif lo > last + 1:
            if not placed:
                out.append([first, last])
                placed = True
            out.append([lo, hi])
        else:
            first, last = min(first, lo), max(last, hi)
    if not placed:
        out.append([first, last])
    return out


def add_many(ranges: list, seqs) -> list:
    """Add sorted integers `seqs` (runs are added as one range)."""
    run_lo = run_hi = None
    for s in seqs:
        if run_hi is not None and s == run_hi + 1:
            run_hi = s
            continue
        if run_lo is not None:
            ranges = add(ranges, run_lo, run_hi)
        run_lo = run_hi = s
    if run_lo is not None:
        ranges = add(ranges, run_lo, run_hi)
    return ranges


def contains(ranges: list, seq: int) -> bool:
    for lo, hi in ranges:
        if seq < lo:
            return False
        if seq <= hi:
            return True
    return False


def union(a: list, b: list) -> list:
    for lo, hi in b:
        a = add(a, lo, hi)
    return a


def prefix_end(ranges: list) -> int:
    """The largest n such that 1..n are all in the set (0 if 1 is missing)."""
    if ranges and ranges[0][0] <= 1:
        return ranges[0][1]
    return 0


def first_hole(ranges: list):
    """(first, last) of the lowest missing run that has members above it, or None."""
    end = prefix_end(ranges)
    above = [r for r in ranges if r[0] > end + 1]
    if not above:
        return None
    return end + 1, above[0][0] - 1


def remove(ranges: list, first: int, last: int) -> list:
    out = []
    for lo, hi in ranges:
        if hi < first or lo > last:
            out.append([lo, hi])
            continue
        if lo < first:
            out.append([lo, first - 1])
        if hi > last:
            out.append([last + 1, hi])
    return out
