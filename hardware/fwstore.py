"""The firmware store: releases and rollouts, durable, in `<state_dir>/firmware.sqlite`.

Tables:
    release   version, its files ({path: sha256}, JSON), when it was recorded
    blob      sha256 -> the file's bytes (kept, so a release can be published again at any time)
    rollout   one rollout of a release: its plan (canary, wave size, failure limit, timeout), its state
              (`running` -> `done`, or `running` -> `halting` -> `halted`), the wave it is at, why it ended
    target    one node of a rollout: its wave, the `fw` its config carried before (offered again on a
              halt), its state (`pending` -> `offered` -> `good` | `failed`, or `skipped`), and on a
              halt whether the previous release is offered to it again (`revert`: `due` -> `done`)
    seen      each node's newest firmware report (fw, fw_state, fw_failed), from its status

Every change is one transaction, so a rollout killed anywhere resumes from its last committed step
(hardware/rollout.py says why each step may be repeated). The write-ahead log keeps readers (`rimba
firmware status`) from blocking a running rollout.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from rimba.errors import ConfigError, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS release (version TEXT PRIMARY KEY, files TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS blob (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rollout (
    id INTEGER PRIMARY KEY, version TEXT NOT NULL REFERENCES release(version),
    state TEXT NOT NULL CHECK (state IN ('running', 'halting', 'halted', 'done')),
    canary INTEGER NOT NULL, wave_size INTEGER NOT NULL, max_failures TEXT NOT NULL, timeout_s REAL NOT NULL,
    wave INTEGER NOT NULL DEFAULT 0, started REAL NOT NULL, ended REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS target (
    rollout INTEGER NOT NULL REFERENCES rollout(id), node TEXT NOT NULL, site TEXT NOT NULL,
    wave INTEGER NOT NULL, position INTEGER NOT NULL, previous TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'offered', 'good', 'failed', 'skipped')),
    offered_at REAL, settled_at REAL, detail TEXT, revert TEXT CHECK (revert IN ('due', 'done')),
    PRIMARY KEY (rollout, node));
CREATE TABLE IF NOT EXISTS seen (node TEXT PRIMARY KEY, fw TEXT, fw_state TEXT, fw_failed TEXT, t INTEGER,
    seen_at REAL NOT NULL);
"""


class FirmwareStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut too
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as err:
            raise StoreError(f"firmware store {self.path}: {err}") from err

    @classmethod
    def in_state_dir(cls, state: Path) -> FirmwareStore:
        return cls(Path(state) / "firmware.sqlite")

    def close(self) -> None:
        self.db.close()

    def tx(self):
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on an exception)."""
        return _Tx(self.db)

    # -- releases ------------------------------------------------------------------------------------
    def release(self, version: str) -> dict | None:
        row = self.db.execute("SELECT files FROM release WHERE version = ?", (version,)).fetchone()
        return json.loads(row["files"]) if row else None

    def releases(self) -> list:
        return [(r["version"], json.loads(r["files"]), r["created"])
                for r in self.db.execute("SELECT * FROM release ORDER BY created, version")]

    def check_release(self, version: str, files: dict) -> bool:
        """True when `version` is new, False when it was recorded with these `files`; a ConfigError when it
        was recorded with other files, or is an earlier version written otherwise (1.02 and 1.2)."""
        from hardware.release import version_key

        known = self.release(version)
        if known is not None:
            if known != files:
                raise ConfigError(f"release {version} was recorded with other files; bump the version "
                                  "(--version, or FW in firmware/lib/node.py)")
            return False
        for other, _files, _created in self.releases():
            if version_key(other) == version_key(version):
                raise ConfigError(f"version {version} is {other}, released before; bump the version")
        return True

    def add_release(self, version: str, blobs: dict, files: dict, now: float) -> bool:
        """Record a release; False when it was already recorded with these files (see check_release)."""
        with self.tx():
            if not self.check_release(version, files):
                return False
            for path, data in blobs.items():
                self.db.execute("INSERT OR IGNORE INTO blob VALUES (?, ?)", (files[path], data))
            self.db.execute("INSERT INTO release VALUES (?, ?, ?)",
                            (version, json.dumps(files, sort_keys=True), now))
            return True

    def blob(self, sha256: str) -> bytes | None:
        row = self.db.execute("SELECT data FROM blob WHERE sha256 = ?", (sha256,)).fetchone()
        return bytes(row["data"]) if row else None

    # -- rollouts ------------------------------------------------------------------------------------
    def rollout(self, rid: int) -> sqlite3.Row:
        return self.db.execute("SELECT * FROM rollout WHERE id = ?", (rid,)).fetchone()

    def rollouts(self, version: str | None = None) -> list:
        if version is None:
            return self.db.execute("SELECT * FROM rollout ORDER BY id").fetchall()
        return self.db.execute("SELECT * FROM rollout WHERE version = ? ORDER BY id", (version,)).fetchall()

    def unfinished(self) -> sqlite3.Row | None:
        """The rollout that has not ended (at most one: a new one starts only when none is unfinished)."""
        return self.db.execute("SELECT * FROM rollout WHERE state IN ('running', 'halting') ORDER BY id").fetchone()

    def latest(self) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM rollout ORDER BY id DESC LIMIT 1").fetchone()

    def create_rollout(self, version: str, plan: dict, targets: list, now: float) -> int:
        """One transaction: the rollout and every target ((node, site, wave, previous fw or None))."""
        with self.tx():
            if self.unfinished() is not None:
                raise ConfigError("another rollout is unfinished; resume it first")
            cur = self.db.execute(
                "INSERT INTO rollout (version, state, canary, wave_size, max_failures, timeout_s, started) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (version, plan["canary"], plan["wave_size"], plan["max_failures"], plan["timeout_s"], now))
            rid = cur.lastrowid
            for i, (node, site, wave, previous) in enumerate(targets):
                self.db.execute("INSERT INTO target (rollout, node, site, wave, position, previous, state) "
                                "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                                (rid, node, site, wave, i, None if previous is None else json.dumps(previous)))
            return rid

    def targets(self, rid: int, wave: int | None = None) -> list:
        if wave is None:
            return self.db.execute("SELECT * FROM target WHERE rollout = ? ORDER BY position", (rid,)).fetchall()
        return self.db.execute("SELECT * FROM target WHERE rollout = ? AND wave = ? ORDER BY position",
                               (rid, wave)).fetchall()

    def set_target(self, rid: int, node: str, **values) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.tx():
            self.db.execute(f"UPDATE target SET {cols} WHERE rollout = ? AND node = ?", (*values.values(), rid, node))

    def set_rollout(self, rid: int, revert_all_but_good: bool = False, **values) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.tx():
            self.db.execute(f"UPDATE rollout SET {cols} WHERE id = ?", (*values.values(), rid))
            if revert_all_but_good:
                self.db.execute("UPDATE target SET revert = 'due' WHERE rollout = ? AND state NOT IN ('good', "
                                "'skipped')", (rid,))

    def rolled_out(self, version: str) -> set:
        """Nodes a finished rollout of `version` took to the end: each took it, or rolled it back (a node does
        not try a version again), or is offered it still (it takes it at its next wake)."""
        return {r["node"] for r in self.db.execute(
            "SELECT t.node FROM target t JOIN rollout r ON r.id = t.rollout WHERE r.version = ? AND r.state = 'done'",
            (version,))}

    # -- what the nodes said ---------------------------------------------------------------------------
    def record_seen(self, node: str, fw, fw_state, fw_failed, t, now: float) -> None:
        with self.tx():
            self.db.execute("INSERT INTO seen VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node) DO UPDATE SET "
                            "fw = excluded.fw, fw_state = excluded.fw_state, fw_failed = excluded.fw_failed, "
                            "t = excluded.t, seen_at = excluded.seen_at", (node, fw, fw_state, fw_failed, t, now))

    def seen(self) -> dict:
        return {r["node"]: dict(r) for r in self.db.execute("SELECT * FROM seen")}


class _Tx:
    def __init__(self, db):
        self.db = db
        self.outer = False

    def __enter__(self):
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb):
        if self.outer:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False


