"""The ingest's durable local store: one SQLite file under the state directory.

One transaction per flush holds, atomically, the lines on their way to InfluxDB
(the write-ahead spool), the seq marks that make resends duplicates, and the
dead letters. It commits with `synchronous=FULL` (fsync) before any MQTT
message is acknowledged, so an acknowledged reading survives a crash of the
ingest, the database or the machine. Several ingest processes on one machine
share the file; SQLite serialises their transactions.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from ingest.pipeline import DeadLetter, Marks, MarkSource
from rimba.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    owner TEXT,
    lease REAL NOT NULL DEFAULT 0,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (
    node TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    stored TEXT NOT NULL,
    held TEXT NOT NULL,
    hole_since REAL,
    PRIMARY KEY (node, epoch)
);
CREATE TABLE IF NOT EXISTS latest (
    node TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    acked_epoch INTEGER,
    acked_seq INTEGER
);
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    node TEXT,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    replayed REAL
);
CREATE INDEX IF NOT EXISTS deadletter_digest ON deadletter (digest);
"""


class Store:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list = []
        # one write transaction at a time within this process: threads queue on a lock and wake
        # at once, instead of SQLite's busy handler sleeping and retrying
        self.writing = threading.Lock()
        self._next_takeover = 0.0
        self.db.executescript(_SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (a connection is never shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as err:
                raise StoreError(f"cannot open the ingest store {self.path}: {err}") from err
            self._local.conn = conn
            self._all.append(conn)
        return conn

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike) -> "Store":
        return cls(Path(state_dir) / "ingest.sqlite3")

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._local = threading.local()

    def transaction(self) -> "Transaction":
        return Transaction(self)

    # -- spool, for the writer -----------------------------------------------------------------
    def claim(self, owner: str, max_bytes: int, lease_s: float = 60.0, now: float | None = None) -> list:
        """The oldest spooled rows to write: ours, and others' whose lease ran out (their process
        died), which become ours. [(id, lines, body)]"""
        now = time.time() if now is None else now
        if now >= self._next_takeover:
            self._next_takeover = now + min(lease_s / 4, 5.0)
            with self.transaction():
                self.db.execute("UPDATE spool SET owner = ?, lease = ? WHERE owner != ? AND lease < ?",
                                (owner, now + lease_s, owner, now))
        # our own rows need no write transaction to claim: a plain read
        rows = self.db.execute("SELECT id, lines, bytes FROM spool WHERE owner = ? ORDER BY id LIMIT 200",
                               (owner,)).fetchall()
        picked, total = [], 0
        for rid, lines, size in rows:
            if picked and total + size > max_bytes:
                break
            picked.append((rid, lines))
            total += size
        # bodies only for what was picked: a long backlog must not be read into memory
        return [(rid, lines, self.db.execute("SELECT body FROM spool WHERE id = ?", (rid,)).fetchone()[0])
                for rid, lines in picked]

    def release(self, ids) -> None:
        """Forget spooled rows that are now in InfluxDB (one transaction)."""
        ids = list(ids)
        if ids:
            with self.transaction():
                self.db.execute(f"DELETE FROM spool WHERE id IN ({','.join('?' * len(ids))})", ids)

    def spool_size(self) -> tuple[int, int]:
        """(lines, bytes) waiting in the spool."""
        lines, size = self.db.execute("SELECT COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM spool").fetchone()
        return lines, size

    def oldest_spooled(self) -> float | None:
        return self.db.execute("SELECT MIN(created) FROM spool").fetchone()[0]

    # -- acks ----------------------------------------------------------------------------------
    def acks_to_publish(self, candidates: dict | None = None) -> list:
        """[(node, site, epoch, seq)] ahead of the last ack published for the node's newest epoch.

        `candidates`: node -> (site, epoch, ack) as a transaction computed them; None: every node.
        """
        if candidates is None:
            rows = self.db.execute("SELECT node, epoch, acked_epoch, acked_seq, site FROM latest").fetchall()
        else:
            nodes = list(candidates)
            rows = []
            for i in range(0, len(nodes), 500):
                part = nodes[i:i + 500]
                rows += self.db.execute("SELECT node, epoch, acked_epoch, acked_seq, site FROM latest WHERE node IN "
                                        f"({','.join('?' * len(part))})", part).fetchall()
        out = []
        for node, epoch, acked_epoch, acked_seq, site in rows:
            if candidates is not None:
                c_site, c_epoch, ack = candidates[node]
                if c_epoch != epoch:
                    continue  # another epoch became the newest meanwhile
            else:
                ack = self._load_marks(node, epoch).ack
            if acked_epoch != epoch or acked_seq is None or ack > acked_seq:
                out.append((node, site, epoch, ack))
        return out

    def current_ack(self, node: str) -> tuple | None:
        row = self.db.execute("SELECT site, epoch FROM latest WHERE node = ?", (node,)).fetchone()
        if row is None:
            return None
        return row[0], row[1], self._load_marks(node, row[1]).ack

    def mark_published(self, acks) -> None:
        """Record [(node, epoch, seq)] as the acks now retained at the broker."""
        with self.transaction():
            self.db.executemany("UPDATE latest SET acked_epoch = ?, acked_seq = ? WHERE node = ? AND epoch = ?",
                                [(epoch, seq, node, epoch) for node, epoch, seq in acks])

    def latest(self) -> list:
        return self.db.execute("SELECT node, site, epoch FROM latest").fetchall()

    def _load_marks(self, node: str, epoch: int) -> Marks:
        row = self.db.execute("SELECT stored, held, hole_since FROM marks WHERE node = ? AND epoch = ?",
                              (node, epoch)).fetchone()
        if row is None:
            return Marks()
        return Marks(json.loads(row[0]), json.loads(row[1]), row[2])

    # -- dead letters --------------------------------------------------------------------------
    def deadletters(self, include_replayed: bool = False, ids=None, code: str | None = None,
                    node: str | None = None, limit: int = 1000) -> list:
        sql = "SELECT id, received, topic, payload, code, reason, node, kind, replayed FROM deadletter WHERE 1=1"
        args: list = []
        if not include_replayed:
            sql += " AND replayed IS NULL"
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += list(ids)
        if code:
            sql += " AND code = ?"
            args.append(code)
        if node:
            sql += " AND node = ?"
            args.append(node)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return self.db.execute(sql, args).fetchall()

    def deadletter_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM deadletter").fetchone()[0]


class Transaction(MarkSource):
    """BEGIN IMMEDIATE … COMMIT; marks are cached and written back at commit."""

    def __init__(self, store: Store):
        self.store = store
        self.db = store.db
        self._marks: dict = {}
        self._latest: dict = {}
        self.acks: dict = {}  # after commit: node -> (epoch, ack) for the newest epochs this transaction saw

    def __enter__(self) -> "Transaction":
        self.store.writing.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            self.store.writing.release()
            raise StoreError(f"ingest store {self.store.path}: {err}") from err
        return self

    def __exit__(self, kind, value, tb) -> None:
        try:
            self._finish(kind)
        finally:
            self.store.writing.release()

    def _finish(self, kind) -> None:
        if kind is not None:
            self.db.execute("ROLLBACK")
            return
        try:
            for (node, epoch), m in self._marks.items():
                if self.latest_epoch(node) == epoch:
                    self.acks[node] = (epoch, m.ack)
                if m.dirty:
                    self.db.execute(
                        "INSERT OR REPLACE INTO marks (node, epoch, stored, held, hole_since) VALUES (?, ?, ?, ?, ?)",
                        (node, epoch, json.dumps(m.stored), json.dumps(m.held), m.hole_since))
            self.db.execute("COMMIT")
        except sqlite3.Error as err:
            self.db.execute("ROLLBACK")
            raise StoreError(f"ingest store {self.store.path}: commit failed: {err}") from err

    # MarkSource
    def marks(self, node: str, epoch: int) -> Marks:
        key = (node, epoch)
        m = self._marks.get(key)
        if m is None:
            m = self._marks[key] = self.store._load_marks(node, epoch)
        return m

    def latest_epoch(self, node: str) -> int | None:
        if node in self._latest:
            return self._latest[node]
        row = self.db.execute("SELECT epoch FROM latest WHERE node = ?", (node,)).fetchone()
        self._latest[node] = row[0] if row else None
        return self._latest[node]

    def set_latest_epoch(self, node: str, site: str, epoch: int) -> None:
        self._latest[node] = epoch
        self.db.execute(
            "INSERT INTO latest (node, site, epoch) VALUES (?, ?, ?) "
            "ON CONFLICT (node) DO UPDATE SET site = excluded.site, epoch = excluded.epoch",
            (node, site, epoch))

    # writes
    def spool(self, lines: list, owner: str, now: float, lease_s: float = 60.0) -> None:
        """Queue lines for InfluxDB; another process may take them once the lease runs out."""
        if not lines:
            return
        body = ("\n".join(lines) + "\n").encode()
        self.db.execute("INSERT INTO spool (created, owner, lease, lines, bytes, body) VALUES (?, ?, ?, ?, ?, ?)",
                        (now, owner, now + lease_s, len(lines), len(body), body))

    def deadletter(self, d: DeadLetter, received: float) -> bool:
        """Keep a dead letter; False if the very same one is already kept (a resend)."""
        digest = hashlib.sha256(d.topic.encode() + b"\0" + d.payload + b"\0" + d.code.encode()).hexdigest()
        if self.db.execute("SELECT 1 FROM deadletter WHERE digest = ? AND replayed IS NULL", (digest,)).fetchone():
            return False
        self.db.execute(
            "INSERT INTO deadletter (received, topic, payload, code, reason, node, kind, digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (received, d.topic, d.payload, d.code, d.reason, d.node, d.kind, digest))
        return True

    def mark_replayed(self, dead_id: int, now: float) -> None:
        self.db.execute("UPDATE deadletter SET replayed = ? WHERE id = ?", (now, dead_id))
