"""The alert engine's store: incidents, notifications held through quiet hours, and the outbox of alert
messages, in SQLite (`alerts.sqlite` in the state dir)."""

from __future__ import annotations

import contextlib
import json
import sqlite3

from rimba.errors import ConfigError


class AlertStore:
    """Incidents and held notifications in SQLite (`alerts.sqlite` in the state dir)."""

    def __init__(self, path):
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # one evaluation is one transaction; see Engine.evaluate
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS incident (id TEXT PRIMARY KEY, key TEXT NOT NULL, state TEXT NOT NULL,
                                                 site TEXT NOT NULL, start INTEGER, body TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS incident_open ON incident (state, key);
            CREATE TABLE IF NOT EXISTS held (n INTEGER PRIMARY KEY, site TEXT, what TEXT, body TEXT);
            CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL);
        """)

    @contextlib.contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def save(self, inc: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO incident VALUES (?, ?, ?, ?, ?, ?)",
                        (inc["id"], inc["key"], inc["state"], inc["site"], inc["start"], json.dumps(inc)))

    def open_incidents(self) -> list:
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM incident WHERE state = 'firing'")]

    def incidents(self, state: str | None = None, limit: int = 200) -> list:
        q = "SELECT body FROM incident" + (" WHERE state = ?" if state else "") + " ORDER BY start DESC LIMIT ?"
        return [json.loads(b) for (b,) in self.db.execute(q, (state, limit) if state else (limit,))]

    def ack(self, incident_id: str, by: str, now: int) -> dict:
        row = self.db.execute("SELECT body FROM incident WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no alert with id {incident_id!r}; `rimba alerts list` shows them")
        inc = json.loads(row[0])
        inc["acked_by"], inc["acked_at"] = by, now
        self.save(inc)
        return inc

    def hold(self, site: str, what: str, inc: dict) -> None:
        self.db.execute("INSERT INTO held (site, what, body) VALUES (?, ?, ?)", (site, what, json.dumps(inc)))

    def take_held(self) -> list:
        with self.transaction():
            rows = self.db.execute("SELECT n, site, what, body FROM held ORDER BY n").fetchall()
            self.db.execute("DELETE FROM held")
        return [(site, what, json.loads(body)) for _n, site, what, body in rows]

    def put_outbox(self, messages: list) -> None:
        """Alert messages [(topic, payload)] to send once the transaction they belong to has committed."""
        self.db.executemany("INSERT INTO outbox (topic, payload) VALUES (?, ?)", messages)

    def outbox(self) -> list:
        return self.db.execute("SELECT n, topic, payload FROM outbox ORDER BY n").fetchall()

    def outbox_done(self, n: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE n = ?", (n,))

    def close(self) -> None:
        self.db.close()
