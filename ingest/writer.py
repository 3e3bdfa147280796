"""Spooled lines into InfluxDB: requests of at most `batch_lines` lines; a refused write is split
down to the refused line, which is dead-lettered and never retried (the rest is written again,
idempotently). Used by the ingest's writer thread and by `rimba deadletter replay`.

A spool row belongs to one of `PARTS` parts, chosen by node (`part_of`): every line of a node, so every
line of a series, is in the rows of one part. The parts of what a claim holds are written side by side,
each in its own order, on its own connection: InfluxDB parses and stores two requests at once on two
cores (measured: 200,000 points in 0.44 s against 0.67 s one request at a time), and no point can be
written out of its order, since a point's series is in one part only."""

from __future__ import annotations

import logging
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

from ingest.pipeline import DeadLetter
from rimba.errors import InfluxRejected

log = logging.getLogger("rimba.ingest")

UNRELEASED_MAX = 64  # spool rows written and not yet released, at most: then the writer waits for the store
PARTS = 2  # InfluxDB requests in flight at once, at most


def part_of(node: str | None) -> int:
    """The spool part of a node's lines (stable across processes: a row taken over keeps its part);
    lines of no node (the ingest's own statistics) are part 0."""
    return zlib.crc32(node.encode()) % PARTS if node else 0


class SpoolWriter:
    """`influx`: a connection, or one a part (written side by side); one connection writes the parts in turn."""

    def __init__(self, influx, store, batch_lines: int, clock, alive=lambda: None):
        self.influxes = list(influx) if isinstance(influx, (list, tuple)) else [influx]
        self.store = store
        self.batch_lines = batch_lines
        self.clock = clock
        self.alive = alive  # called after every request InfluxDB answered (from any part's thread): a sign of life
        self.written = 0  # lines InfluxDB accepted
        self.refused = 0  # lines dead-lettered
        self.unreleased: list = []  # ids of spool rows written, not yet released (see write_rows)
        self._count = threading.Lock()
        self._pool = ThreadPoolExecutor(len(self.influxes) - 1, "influx-part") if len(self.influxes) > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def write_rows(self, rows, wait: bool = True) -> list:
        """Write claimed spool rows [(id, lines, body, part)], each part in order, the parts side by side when
        there are connections for them; return the ids written. What was written is released from the
        spool: at once, or with `wait` False as soon as no other transaction of this process is open (the
        service's writer must not wait for the processor's commit: InfluxDB would idle meanwhile). Until
        then its ids are in `unreleased`, which a claim skips. InfluxUnavailable and the like propagate (what
        was written, in any part, is released as well)."""
        parts: dict = {}
        for row in rows:  # (rows of store.ANY_PART, from before the parts, come alone in their claim)
            parts.setdefault(row[3] % len(self.influxes), []).append(row)
        done: list = []
        keys = sorted(parts)
        try:
            futures = [self._pool.submit(self._write_part, k, parts[k], done) for k in keys[1:]]
            try:
                if keys:
                    self._write_part(keys[0], parts[keys[0]], done)
            finally:
                for f in futures:
                    f.exception()  # wait for every part, whatever happened to the others
            for f in futures:
                f.result()  # then raise the first error
        finally:
            done.sort()
            self.unreleased += done
            self.release_written(wait)
        return done

    def _write_part(self, k: int, rows, done: list) -> None:
        influx = self.influxes[k]
        for rid, _lines, body, _part in rows:
            self.write_body(bytes(body), influx)
            done.append(rid)

    def release_written(self, wait: bool = True) -> bool:
        """Release the rows written; without `wait`, only if the store is free (or too many are held back).
        Returns whether none is left unreleased."""
        if self.unreleased and self.store.release(self.unreleased, wait=wait or len(self.unreleased) >= UNRELEASED_MAX):
            self.unreleased = []
        return not self.unreleased

    def write_body(self, body: bytes, influx) -> None:
        step = self.batch_lines
        if body.count(b"\n") <= step:
            self._write_chunk(body, influx)
            return
        lines = body.splitlines(keepends=True)
        for i in range(0, len(lines), step):
            self._write_chunk(b"".join(lines[i:i + step]), influx)

    def _write_chunk(self, chunk: bytes, influx) -> None:
        try:
            influx.write(chunk)
            with self._count:
                self.written += chunk.count(b"\n")
        except InfluxRejected as err:
            self.alive()
            lines = chunk.splitlines(keepends=True)
            if len(lines) == 1:
                log.error("InfluxDB refused a point, dead-lettered: %s", err)
                with self.store.transaction() as tx:
                    tx.deadletter(DeadLetter("", chunk.rstrip(b"\n"), "db-refused", f"db-refused: {err}"[:500],
                                             None, kind="point"), self.clock())
                with self._count:
                    self.refused += 1
                return
            half = len(lines) // 2
            self._write_chunk(b"".join(lines[:half]), influx)
            self._write_chunk(b"".join(lines[half:]), influx)
            return
        self.alive()
