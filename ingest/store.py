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
from array import array
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from ingest.ledger import EpochMarks, Ledger, NodeState
from ingest.pipeline import DeadLetter
from ingest.seqset import SeqSet
from rimba.contract import DEAD_LETTER_MAX_BYTES
from rimba.errors import StoreBusy, StoreError

VERSION = 2  # PRAGMA user_version; 0 or 1: the first layout (marks + latest), migrated on open
_NODE_COLUMNS = [f.name for f in fields(NodeState)]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    owner TEXT,
    lease REAL NOT NULL DEFAULT 0,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL,
    part INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, {", ".join(_NODE_COLUMNS)});
CREATE TABLE IF NOT EXISTS epochs (
    node TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    stored BLOB NOT NULL,
    done BLOB NOT NULL,
    reported_upto INTEGER NOT NULL,
    hole_since REAL,
    first_t INTEGER,
    PRIMARY KEY (node, epoch)
);
CREATE INDEX IF NOT EXISTS epochs_hole_since ON epochs (hole_since) WHERE hole_since IS NOT NULL;
CREATE TABLE IF NOT EXISTS times (
    node TEXT NOT NULL,
    day INTEGER NOT NULL,
    secs BLOB NOT NULL,
    PRIMARY KEY (node, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks (
    node TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL
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
    replayed REAL,
    length INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deadletter_digest ON deadletter (digest);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owners (owner TEXT NOT NULL PRIMARY KEY, seen REAL NOT NULL,
                                   lease REAL NOT NULL DEFAULT 60);
"""

# the part of a spool row from before the parts (or spooled by an older Rimba sharing the file): one row a
# commit, with the lines of every node in it, so of every part; claimed alone (see Store.claim)
ANY_PART = -1
BEAT_EVERY_S = 5.0  # a live writer's heartbeat is written this often at most (see Store.beat)
LEASE_S = 60.0  # a spool row's owner must beat within this, or another process takes the row (Store.claim)

BUSY_TIMEOUT_S = 10  # how long a transaction waits for another process to let go of the file, then retries
EPOCHS_KEPT = 16  # per node: older epochs are forgotten (their late resends are still caught by their times)


def lease_for(timeout_s: float) -> float:
    """The lease a process declares with its heartbeat (`Store.beat`), for an InfluxDB timeout: between two beats
    of a live writer lie at most one request (`timeout_s`), the beats' spacing (`BEAT_EVERY_S`) and, once a
    quarter of the lease passed, a wait for the processor's commit, which may itself wait `BUSY_TIMEOUT_S` for
    the other process: twice their sum, and never under LEASE_S (60 s for the default 10 s timeout)."""
    return max(LEASE_S, 2.0 * (timeout_s + BEAT_EVERY_S + BUSY_TIMEOUT_S))


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
        self._beaten: dict = {}  # owner -> when this process last wrote its heartbeat
        self._beaten_first: dict = {}  # owner -> when it first tried to
        self._migrate()

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (a connection is never shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as err:
                raise StoreError(f"cannot open the ingest store {self.path}: {err}") from err
            self._local.conn = conn
            self._all.append(conn)
        return conn

    def _migrate(self) -> None:
        """Bring the file to VERSION, in one transaction; a file from a newer Rimba is refused."""
        with self.writing:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > VERSION:
                    raise StoreError(f"the ingest store {self.path} was written by a newer Rimba (layout {version}, "
                                     f"this one knows {VERSION}); upgrade Rimba")
                old = version < VERSION and db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'marks'").fetchone() is not None
                if old and db.execute("SELECT 1 FROM pragma_table_info('deadletter') WHERE name = 'length'"
                                      ).fetchone() is None:
                    db.execute("ALTER TABLE deadletter ADD COLUMN length INTEGER NOT NULL DEFAULT 0")
                    db.execute("ALTER TABLE deadletter ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                have = {r[0] for r in db.execute("SELECT name FROM pragma_table_info('nodes')")}
                for column in _NODE_COLUMNS:  # a ledger field added since the file was made
                    if column not in have:
                        db.execute(f"ALTER TABLE nodes ADD COLUMN {column}")
                if db.execute("SELECT 1 FROM pragma_table_info('epochs') WHERE name = 'first_t'").fetchone() is None:
                    db.execute("ALTER TABLE epochs ADD COLUMN first_t INTEGER")
                if db.execute("SELECT 1 FROM pragma_table_info('spool') WHERE name = 'part'").fetchone() is None:
                    db.execute(f"ALTER TABLE spool ADD COLUMN part INTEGER NOT NULL DEFAULT {ANY_PART}")
                if old:
                    _from_first_layout(db)
                if version < VERSION:
                    db.execute("INSERT OR IGNORE INTO counters VALUES ('dead_bytes', "
                               "(SELECT COALESCE(SUM(length(payload)), 0) FROM deadletter))")
                    db.execute(f"PRAGMA user_version = {VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike) -> Store:
        return cls(Path(state_dir) / "ingest.sqlite3")

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._local = threading.local()

    def transaction(self) -> Transaction:
        return Transaction(self)

    @contextmanager
    def transaction_if_free(self, wait: bool = False):
        """A transaction, or None (nothing done) while another transaction of this process is open (the
        processor's commit): the writer does not wait for it. With `wait`, as `transaction`."""
        if not self.writing.acquire(blocking=wait):
            yield None
            return
        try:
            with Transaction(self, locked=True) as tx:
                yield tx
        finally:
            self.writing.release()

    # -- spool, for the writer -----------------------------------------------------------------
    def beat(self, owner: str, now: float, lease_s: float = LEASE_S) -> None:
        """Renew `owner`'s claim on its spool rows: no other process takes them while its heartbeat is younger
        than the lease it declares with it (`lease_for` its InfluxDB timeout; see `claim`). The service's writer
        beats at every claim-and-write cycle, InfluxDB up or down, and after every request of a cycle, so a live
        process keeps its rows however long InfluxDB is away or slow; a process that stopped (crashed, killed, its
        writer stuck) stops beating, and its rows are taken a lease after its last beat. One row an
        owner, not the rows' leases renewed: an UPDATE of a long backlog every few seconds costs its length.
        Written every `BEAT_EVERY_S` at most, when no other transaction of this process is open (the
        processor's commit); once a quarter of the lease passed without one, it waits for that transaction."""
        last = self._beaten.get(owner)
        if last is not None and 0 <= now - last < min(lease_s / 4, BEAT_EVERY_S):
            return
        since = last if last is not None else self._beaten_first.setdefault(owner, now)  # (or the first try)
        wait = not 0 <= now - since < lease_s / 4
        with self.transaction_if_free(wait) as tx:
            if tx is not None:  # else at the next cycle
                self.db.execute("INSERT INTO owners (owner, seen, lease) VALUES (?, ?, ?) ON CONFLICT (owner) "
                                "DO UPDATE SET seen = excluded.seen, lease = excluded.lease", (owner, now, lease_s))
        if tx is not None:
            self._beaten[owner] = now

    def claim(self, owner: str, max_bytes: int, lease_s: float = LEASE_S, now: float | None = None,
              skip=frozenset()) -> list:
        """The oldest spooled rows to write, about `max_bytes` of each part: ours, and others' whose lease ran
        out and whose owner has no heartbeat younger than the lease it declared (their process died: see `beat`; an
        owner that never beats, as `rimba deadletter replay` or an older Rimba, has its rows taken once their lease
        ran out), which become ours; not those in `skip` (written, not yet released). Rows of
        `ANY_PART` (from before the parts) are claimed alone: every row before one is written first, every row
        after it after it. [(id, lines, body, part)]"""
        now = time.time() if now is None else now
        if now >= self._next_takeover:
            with self.transaction_if_free() as tx:
                if tx is not None:  # else at a next claim
                    self._next_takeover = now + min(lease_s / 4, 5.0)
                    self.db.execute("UPDATE spool SET owner = ?, lease = ? WHERE owner != ? AND lease < ? AND NOT "
                                    "EXISTS (SELECT 1 FROM owners o WHERE o.owner = spool.owner "
                                    "AND o.seen + o.lease > ?)",
                                    (owner, now + lease_s, owner, now, now))
        # our own rows need no write transaction to claim: a plain read
        rows = self.db.execute("SELECT id, lines, bytes, part FROM spool WHERE owner = ? ORDER BY id LIMIT ?",
                               (owner, 200 + len(skip))).fetchall()
        picked, used, closed = [], {}, set()
        for rid, lines, size, part in rows:  # up to `max_bytes` of each part (written side by side), in order
            if rid in skip or part in closed:
                continue
            if used and (part == ANY_PART) != (ANY_PART in used):
                break  # a row of every part and rows of one part: never in flight together
            if part in used and used[part] + size > max_bytes:
                closed.add(part)  # and so every later row of the part: a part is written in its order
                continue
            picked.append((rid, lines, part))
            used[part] = used.get(part, 0) + size
        # bodies only for what was picked: a long backlog must not be read into memory
        return [(rid, lines, self.db.execute("SELECT body FROM spool WHERE id = ?", (rid,)).fetchone()[0], part)
                for rid, lines, part in picked]

    def release(self, ids, wait: bool = True) -> bool:
        """Forget spooled rows that are now in InfluxDB (one transaction). With `wait` False, only if no other
        transaction of this process is open (the processor's): returns whether they were released."""
        ids = list(ids)
        if not ids:
            return True
        with self.transaction_if_free(wait) as tx:
            if tx is None:
                return False
            self.db.execute(f"DELETE FROM spool WHERE id IN ({','.join('?' * len(ids))})", ids)
        return True

    def spool_size(self) -> tuple[int, int]:
        """(lines, bytes) waiting in the spool."""
        lines, size = self.db.execute("SELECT COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM spool").fetchone()
        return lines, size

    def disk_bytes(self) -> int:
        """What counts against the spool's disk limit: the spool and the dead letters."""
        dead = self.db.execute("SELECT value FROM counters WHERE name = 'dead_bytes'").fetchone()
        return self.spool_size()[1] + (dead[0] if dead else 0)

    def oldest_spooled(self) -> float | None:
        return self.db.execute("SELECT MIN(created) FROM spool").fetchone()[0]

    # -- acks ----------------------------------------------------------------------------------
    def acks_to_publish(self, candidates: dict | None = None) -> list:
        """[(node, site, epoch, seq, wire)] ahead of the last ack published for the node's current epoch;
        `wire` is the contract version the node speaks (its ack goes under that root).

        `candidates`: node -> (site, epoch, ack) as a transaction computed them; None: every node.
        """
        sql = ("SELECT n.node, n.site, n.epoch, a.epoch, a.seq, n.wire FROM nodes n LEFT JOIN acks a ON a.node = n.node "
               "WHERE n.epoch IS NOT NULL AND n.site IS NOT NULL")
        if candidates is None:
            rows = self.db.execute(sql).fetchall()
        else:
            nodes = list(candidates)
            rows = []
            for i in range(0, len(nodes), 500):
                part = nodes[i:i + 500]
                rows += self.db.execute(sql + f" AND n.node IN ({','.join('?' * len(part))})", part).fetchall()
        out = []
        for node, site, epoch, acked_epoch, acked_seq, wire in rows:
            if candidates is not None:
                _site, c_epoch, ack = candidates[node]
                if c_epoch != epoch:
                    continue  # another epoch became current meanwhile
            else:
                em = self._load_epoch(node, epoch)
                ack = em.ack if em else 0
            if acked_epoch != epoch or acked_seq is None or ack > acked_seq:
                out.append((node, site, epoch, ack, wire or 1))
        return out

    def wire_of(self, node: str) -> int:
        row = self.db.execute("SELECT wire FROM nodes WHERE node = ?", (node,)).fetchone()
        return (row[0] if row else None) or 1

    def current_ack(self, node: str) -> tuple | None:
        row = self.db.execute("SELECT site, epoch FROM nodes WHERE node = ? AND epoch IS NOT NULL", (node,)).fetchone()
        if row is None:
            return None
        em = self._load_epoch(node, row[1])
        return row[0], row[1], em.ack if em else 0

    def mark_published(self, acks) -> None:
        """Record [(node, epoch, seq)] as the acks now retained at the broker; an ack never moves back."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO acks (node, epoch, seq) VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET "
                "epoch = excluded.epoch, seq = excluded.seq WHERE acks.epoch != excluded.epoch OR "
                "excluded.seq > acks.seq", acks)

    def holes_due(self, before: float) -> list:
        """[(node, epoch)] of current epochs with a hole open since before `before`."""
        return self.db.execute("SELECT e.node, e.epoch FROM epochs e JOIN nodes n ON n.node = e.node AND "
                               "n.epoch = e.epoch WHERE e.hole_since IS NOT NULL AND e.hole_since <= ?",
                               (before,)).fetchall()

    def prune_epochs(self, keep: int = EPOCHS_KEPT) -> int:
        """Forget all but each node's `keep` epochs first seen last (never the current one); returns how many."""
        with self.transaction():
            cur = self.db.execute(
                "DELETE FROM epochs WHERE rowid IN (SELECT e.rowid FROM (SELECT rowid, node, epoch, ROW_NUMBER() OVER "
                "(PARTITION BY node ORDER BY first_seen DESC) AS k FROM epochs) e LEFT JOIN nodes n ON n.node = e.node "
                "AND n.epoch = e.epoch WHERE e.k > ? AND n.node IS NULL)", (keep,))
            return cur.rowcount

    def _load_node(self, node: str) -> NodeState | None:
        row = self.db.execute(f"SELECT {', '.join(_NODE_COLUMNS)} FROM nodes WHERE node = ?", (node,)).fetchone()
        return NodeState(*row) if row else None

    def _load_epoch(self, node: str, epoch: int) -> EpochMarks | None:
        row = self.db.execute("SELECT first_seen, stored, done, reported_upto, hole_since, first_t FROM epochs "
                              "WHERE node = ? AND epoch = ?", (node, epoch)).fetchone()
        if row is None:
            return None
        return EpochMarks(row[0], SeqSet.load(row[1]), SeqSet.load(row[2]), row[3], row[4], row[5])

    def _load_day(self, node: str, day: int) -> array | None:
        row = self.db.execute("SELECT secs FROM times WHERE node = ? AND day = ?", (node, day)).fetchone()
        if row is None:
            return None
        arr = array("I")
        arr.frombytes(row[0])
        return arr

    # -- dead letters --------------------------------------------------------------------------
    def deadletters(self, include_replayed: bool = False, ids=None, code: str | None = None,
                    node: str | None = None, limit: int = 1000) -> list:
        where, args = _matching(ids, code, node)
        if not include_replayed:
            where += " AND replayed IS NULL"
        return self.db.execute("SELECT id, received, topic, payload, code, reason, node, kind, replayed, length, sha256 "
                               f"FROM deadletter WHERE {where} ORDER BY id LIMIT ?", [*args, limit]).fetchall()

    def purge_deadletters(self, ids=None, code: str | None = None, node: str | None = None) -> tuple[int, int]:
        """Drop dead letters (all, or those matching); returns (count, payload bytes), freed from the disk limit
        and from each node's share of kept payloads."""
        where, args = _matching(ids, code, node)
        with self.transaction():
            per_node = self.db.execute(f"SELECT node, COUNT(*), COALESCE(SUM(length(payload)), 0) FROM deadletter "
                                       f"WHERE {where} GROUP BY node", args).fetchall()
            self.db.execute(f"DELETE FROM deadletter WHERE {where}", args)
            total = sum(size for _n, _c, size in per_node)
            self.db.execute("UPDATE counters SET value = MAX(0, value - ?) WHERE name = 'dead_bytes'", (total,))
            for name, _c, size in per_node:
                self.db.execute("UPDATE nodes SET dead_bytes = MAX(0, dead_bytes - ?) WHERE node = ?",
                                (size, name if name is not None else "?"))
        return sum(c for _n, c, _s in per_node), total

    def deadletter_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM deadletter").fetchone()[0]


def _matching(ids, code, node) -> tuple[str, list]:
    """The WHERE clause (and its arguments) choosing dead letters by id, code and node."""
    where, args = "1=1", []
    if ids:
        where += f" AND id IN ({','.join('?' * len(ids))})"
        args += list(ids)
    if code:
        where += " AND code = ?"
        args.append(code)
    if node:
        where += " AND node = ?"
        args.append(node)
    return where, args


def _row(ns: NodeState) -> tuple:
    return tuple(getattr(ns, c) for c in _NODE_COLUMNS)


def _busy(err: sqlite3.OperationalError) -> bool:
    """Another process holds the file (it is frozen, or slow): wait and try again, it is not broken."""
    return "locked" in str(err) or "busy" in str(err)


def _from_first_layout(db: sqlite3.Connection) -> None:
    """The first layout kept `stored` and `held` runs per epoch and the newest epoch per node."""
    for node, epoch, stored, held, hole_since in db.execute(
            "SELECT node, epoch, stored, held, hole_since FROM marks").fetchall():
        st = SeqSet.of_runs(json.loads(stored))
        done = st.copy()
        for lo, hi in json.loads(held):
            done.add(lo, hi)
        db.execute("INSERT OR REPLACE INTO epochs (node, epoch, first_seen, stored, done, reported_upto, hole_since) "
                   "VALUES (?, ?, 0, ?, ?, 0, ?)",
                   (node, epoch, st.dump(), done.dump(), hole_since))
    for node, site, epoch, acked_epoch, acked_seq in db.execute(
            "SELECT node, site, epoch, acked_epoch, acked_seq FROM latest").fetchall():
        ns = NodeState(site=site, epoch=epoch, epoch_seen=1.0)
        db.execute(f"INSERT OR REPLACE INTO nodes VALUES (?, {', '.join('?' * len(_NODE_COLUMNS))})",
                   (node, *_row(ns)))
        db.execute("UPDATE epochs SET first_seen = 1 WHERE node = ? AND epoch = ?", (node, epoch))
        if acked_epoch is not None and acked_seq is not None:
            db.execute("INSERT OR REPLACE INTO acks VALUES (?, ?, ?)", (node, acked_epoch, acked_seq))
    db.execute("DROP TABLE marks")
    db.execute("DROP TABLE latest")


class Transaction(Ledger):
    """BEGIN IMMEDIATE … COMMIT. The ledger's objects are loaded on first use and written back at commit."""

    def __init__(self, store: Store, locked: bool = False):
        super().__init__()
        self.store = store
        self._locked = locked  # the caller holds `store.writing` already
        self.db = store.db
        self.acks: dict = {}  # after commit: node -> (epoch, ack) for the current epochs this transaction saw
        self._dead_bytes = 0

    def __enter__(self) -> Transaction:
        if not self._locked:
            self.store.writing.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            if not self._locked:
                self.store.writing.release()
            if isinstance(err, sqlite3.OperationalError) and _busy(err):
                raise StoreBusy(f"ingest store {self.store.path}: {err}") from err
            raise StoreError(f"ingest store {self.store.path}: {err}") from err
        return self

    def __exit__(self, kind, value, tb) -> None:
        try:
            self._finish(kind)
        finally:
            if not self._locked:
                self.store.writing.release()

    def _load_node(self, node):
        return self.store._load_node(node)

    def _load_epoch(self, node, epoch):
        return self.store._load_epoch(node, epoch)

    def _load_day(self, node, day):
        return self.store._load_day(node, day)

    def _finish(self, kind) -> None:
        if kind is not None:
            self.db.execute("ROLLBACK")
            return
        try:
            db = self.db
            marks = ", ".join("?" * len(_NODE_COLUMNS))
            db.executemany(f"INSERT OR REPLACE INTO nodes (node, {', '.join(_NODE_COLUMNS)}) VALUES (?, {marks})",
                           [(name, *_row(ns)) for name, ns in self.nodes.items()])
            rows = []
            for (node, epoch), em in self.epochs.items():
                ns = self.nodes.get(node)
                if ns is not None and ns.epoch == epoch:
                    self.acks[node] = (epoch, em.ack)
                rows.append((node, epoch, em.first_seen, em.stored.dump(), em.done.dump(),
                             em.reported_upto, em.hole_since, em.first_t))
            db.executemany("INSERT OR REPLACE INTO epochs (node, epoch, first_seen, stored, done, reported_upto, "
                           "hole_since, first_t) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT OR REPLACE INTO times VALUES (?, ?, ?)",
                           [(node, day, arr.tobytes()) for (node, day), arr in self.days.items()])
            if self._dead_bytes:
                db.execute("UPDATE counters SET value = value + ? WHERE name = 'dead_bytes'", (self._dead_bytes,))
            db.execute("COMMIT")
        except Exception as err:  # whatever it is, the transaction must not stay open
            self.db.execute("ROLLBACK")
            if isinstance(err, sqlite3.OperationalError) and _busy(err):
                raise StoreBusy(f"ingest store {self.store.path}: {err}") from err
            raise StoreError(f"ingest store {self.store.path}: commit failed: {err!r}") from err

    # writes
    def spool(self, lines: list, owner: str, now: float, lease_s: float = LEASE_S, part: int = 0) -> None:
        """Queue lines for InfluxDB; another process may take them once the lease runs out. `part`: the
        writer's part they belong to (ingest.writer.part_of their node)."""
        if not lines:
            return
        body = "\n".join([*lines, ""]).encode()  # (the last line's newline without a copy of the whole)
        self.db.execute("INSERT INTO spool (created, owner, lease, lines, bytes, body, part) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (now, owner, now + lease_s, len(lines), len(body), body, part))

    def deadletter(self, d: DeadLetter, received: float) -> bool:
        """Keep a dead letter (its first 16 KiB, its length and SHA-256); False if the very same one is
        already kept (a resend)."""
        payload = bytes(d.payload)
        digest = hashlib.sha256(d.topic.encode() + b"\0" + payload + b"\0" + d.code.encode()).hexdigest()
        if self.db.execute("SELECT 1 FROM deadletter WHERE digest = ? AND replayed IS NULL", (digest,)).fetchone():
            return False
        kept = payload[:DEAD_LETTER_MAX_BYTES] if d.keep_payload else b""
        self.db.execute(
            "INSERT INTO deadletter (received, topic, payload, code, reason, node, kind, digest, length, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (received, d.topic, kept, d.code, d.reason, d.node, d.kind, digest, len(payload),
             hashlib.sha256(payload).hexdigest()))
        self._dead_bytes += len(kept)
        return True

    def mark_replayed(self, dead_id: int, now: float) -> None:
        self.db.execute("UPDATE deadletter SET replayed = ? WHERE id = ?", (now, dead_id))
