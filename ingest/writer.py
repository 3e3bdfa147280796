"""Spooled lines into InfluxDB: requests of at most `batch_lines` lines; a refused write is split
down to the refused line, which is dead-lettered and never retried (the rest is written again,
idempotently). Used by the ingest's writer thread and by `rimba deadletter replay`."""

from __future__ import annotations

import logging

from ingest.pipeline import DeadLetter
from rimba.errors import InfluxRejected

log = logging.getLogger("rimba.ingest")

UNRELEASED_MAX = 64  # spool rows written and not yet released, at most: then the writer waits for the store


class SpoolWriter:
    def __init__(self, influx, store, batch_lines: int, clock):
        self.influx = influx
        self.store = store
        self.batch_lines = batch_lines
        self.clock = clock
        self.written = 0  # lines InfluxDB accepted
        self.refused = 0  # lines dead-lettered
        self.unreleased: list = []  # ids of spool rows written, not yet released (see write_rows)

    def write_rows(self, rows, wait: bool = True) -> list:
        """Write claimed spool rows [(id, lines, body)] in order; return their ids. What was written is released
        from the spool: at once, or with `wait` False as soon as no other transaction of this process is open
        (the service's writer must not wait for the processor's commit: InfluxDB would idle meanwhile). Until
        then its ids are in `unreleased`, which a claim skips. InfluxUnavailable and the like propagate (what
        was written is released as well)."""
        done = []
        try:
            for rid, _lines, body in rows:
                self.write_body(bytes(body))
                done.append(rid)
        finally:
            self.unreleased += done
            self.release_written(wait)
        return done

    def release_written(self, wait: bool = True) -> bool:
        """Release the rows written; without `wait`, only if the store is free (or too many are held back).
        Returns whether none is left unreleased."""
        if self.unreleased and self.store.release(self.unreleased, wait=wait or len(self.unreleased) >= UNRELEASED_MAX):
            self.unreleased = []
        return not self.unreleased

    def write_body(self, body: bytes) -> None:
        step = self.batch_lines
        if body.count(b"\n") <= step:
            self._write_chunk(body)
            return
        lines = body.splitlines(keepends=True)
        for i in range(0, len(lines), step):
            self._write_chunk(b"".join(lines[i:i + step]))

    def _write_chunk(self, chunk: bytes) -> None:
        try:
            self.influx.write(chunk)
            self.written += chunk.count(b"\n")
        except InfluxRejected as err:
            lines = chunk.splitlines(keepends=True)
            if len(lines) == 1:
                log.error("InfluxDB refused a point, dead-lettered: %s", err)
                with self.store.transaction() as tx:
                    tx.deadletter(DeadLetter("", chunk.rstrip(b"\n"), "db-refused", f"db-refused: {err}"[:500],
                                             None, kind="point"), self.clock())
                self.refused += 1
                return
            half = len(lines) // 2
            self._write_chunk(b"".join(lines[:half]))
            self._write_chunk(b"".join(lines[half:]))
