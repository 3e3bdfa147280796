"""`rimba deadletter list | replay`.

Replay runs a dead letter through the same pipeline again, with today's fleet
file and the time it was first received (so re-basing and `late` come out as
they would have). Each replay is one transaction: its lines go to the spool and
its seq marks move together, or neither does. What passes is written to InfluxDB
at once; what is still refused stays, with its new reason. A replay that stores
readings but drops a value out of range counts as replayed (the readings are
stored, the value was never valid), and the dead letter keeps the new reason.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass

from ingest import pipeline
from ingest.pipeline import Outcome
from ingest.writer import SpoolWriter, part_of
from rimba.fleet import load_fleet
from rimba.adapters.influx import Influx

OWNER = "replay"


@dataclass
class Result:
    replayed: int = 0
    refused: int = 0
    stored: int = 0


def as_dict(row) -> dict:
    rid, received, topic, payload, code, reason, node, kind, replayed, length, sha256 = row
    try:
        text, enc = bytes(payload).decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, enc = base64.b64encode(bytes(payload)).decode(), "base64"
    return {"id": rid, "received": received, "topic": topic, "node": node, "code": code, "reason": reason,
            "kind": kind, "replayed": replayed, "length": length or len(payload), "sha256": sha256,
            "payload": text, "encoding": enc}


def as_line(row) -> str:
    rid, received, topic, payload, code, reason, node, kind, replayed, length, _sha = row
    when = dt.datetime.fromtimestamp(received, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    mark = " (replayed)" if replayed else ""
    size = f"{len(payload)} bytes" if not length or length == len(payload) else f"{length} bytes, first {len(payload)} kept"
    return f"#{rid} {when} {topic or '-'} [{kind}] {reason}{mark} ({size})"


def replay(settings, store, ids=None, code=None, node=None, clock=time.time) -> Result:
    result = into_spool(store, load_fleet(settings.fleet), ids, code, node, clock)
    _drain(settings, store, clock)
    return result


def into_spool(store, fleet, ids=None, code=None, node=None, clock=time.time) -> Result:
    """Replay the chosen dead letters into the spool, each in its own transaction."""
    result = Result()
    for row in store.deadletters(ids=ids, code=code, node=node, limit=100000):
        rid, received, topic, payload, _code, _reason, _node, kind, _replayed, length, _sha = row
        if kind != "message" or (length and length > len(payload)):
            continue  # partial ones were stored already; refused points need a fix in the data; a cut one is evidence
        out = Outcome()
        with store.transaction() as tx:
            pipeline.handle(tx, topic, bytes(payload), received, fleet, out, limit=False)
            refused = [d for d in out.dead if d.kind == "message"]
            if refused:
                tx.undo_all()  # nothing of a refused replay is kept but its new reason
                tx.db.execute("UPDATE deadletter SET code = ?, reason = ? WHERE id = ?",
                              (refused[0].code, refused[0].reason, rid))
                result.refused += 1
                continue
            tx.spool(out.lines, OWNER, clock(), lease_s=0, part=part_of(pipeline.topic_node(topic)))
            tx.mark_replayed(rid, clock())
            for d in out.dead:  # a partial outcome (values out of range, time collisions): its new reason
                tx.db.execute("UPDATE deadletter SET code = ?, reason = ? WHERE id = ?", (d.code, d.reason, rid))
        result.replayed += 1
        result.stored += out.stored
    return result


def _drain(settings, store, clock=time.time) -> None:
    """Write the replayed lines now; a running ingest would pick them up too."""
    influx = Influx.from_settings(settings)
    writer = SpoolWriter(influx, store, settings.batch_lines, clock)
    try:
        while rows := store.claim(OWNER, max_bytes=8 * 1024 * 1024, now=clock()):  # by its clock, as the writer's
            writer.write_rows(rows)
    finally:
        influx.close()
