"""The incremental analytics' state on disk: SQLite under the state directory, saved in parts keyed by what
they hold, so that a snapshot writes what changed since the last one, not the whole state.

Table `meta` (name -> bytes): the version, and the state's small parts (its key, the window's bounds, the
nodes and metrics held, watermarks, contacts, the streams' headers, what is still unwritten). Table `part`
(kind, item, block) -> bytes, one row per:

    w    an owned node's cells and scores over one hour of the window (`BLOCK_S`; blocks counted in the
         detector's columns from its origin, so they stay put as the window moves on)
    c    a city node's cells (the particulate sensors of other partitions), likewise
    h    an owned node's hourly cells (the fire codes) over one day (UNIX hours // 24)
    t    an owned node's tidal values before the window (saved as the window moves on)
    x    what the dying-fan check carries from before the window (saved as the window moves on)
    e, f an owned node's events; its fire codes
    r:M  a detector series' carried values (metric M; item: its row), "rt:M" and "rf:M" its context's blocks,
         "rc:M" its checkpoints (block: the column), from `analytics.detector.Rows.changes`

A save is one transaction: it all lands, or the previous snapshot stays whole. A node's blocks are
written from the first step that changed since the last save (cells read, scores recomputed), blocks
that left the window are deleted. So a steady-state snapshot writes about the nodes that sent in the
meantime, an hour or two of each, and the series that moved. The quality flags and indices are not saved
(a restart recomputes them from the cells). Another version, or a state of another key, loads as None.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import sqlite3

import numpy as np

from analytics import anomaly, detector
from analytics.window import FIRE_METRICS, State

log = logging.getLogger("rimba.analyze")
VERSION = 4  # of this layout; the detector's series carry their own (detector.STATE_VERSION)
BLOCK_S = 3600  # the window's cells and scores are saved by the hour
META = ("key", "origin", "start", "step", "cap", "h_cap", "nodes", "sites", "n_own", "steps", "h_start", "h_steps",
        "metrics", "watermark", "contact", "wake", "rows", "unwritten", "pending", "audited", "saved", "events_end")


def _cell_dtype(st: State, e: int, owned: bool) -> np.dtype:
    m, a = len(st.metrics), len(st.a_metrics)
    fields = [("sums", "<f8", (e, m)), ("counts", "<i4", (e, m)), ("readings", "<i4", (e,))]
    if owned:
        fields += [("score", "<f8", (e, a)), ("baseline", "<f8", (e, a)), ("z", "<f8", (e, a)), ("kind", "i1", (e, a))]
    return np.dtype(fields)


_HOUR_DTYPE = np.dtype([("sums", "<f8", (24, len(FIRE_METRICS))), ("counts", "<i4", (24, len(FIRE_METRICS)))])


def _cell_arrays(st: State, owned: bool) -> dict:
    out = {"sums": st._sums, "counts": st._counts, "readings": st._readings}
    if owned:
        out.update(score=st._score[0], baseline=st._score[1], z=st._score[2], kind=st._kind)
    return out


class StateStore:
    """The state in SQLite, in parts (module docstring)."""

    def __init__(self, path):
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA page_size = 16384")  # parts of 1-2 KB: 4 KB pages held them in a third more space
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, data BLOB NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS part (kind TEXT NOT NULL, item TEXT NOT NULL, b INTEGER NOT NULL, "
                        "data BLOB NOT NULL, PRIMARY KEY (kind, item, b))")  # not WITHOUT ROWID: 3.6 times the space
        self.last = {}  # what the last save wrote: parts, bytes

    # --- saving ----------------------------------------------------------------------------------------------

    def save(self, st: State) -> None:
        """What changed since the last save (everything when `st.whole`), in one transaction."""
        e = max(1, BLOCK_S // st.step)
        off = (st.start - st.origin) // st.step
        written = {"parts": 0, "bytes": 0}

        def counted(parts):
            for part in parts:
                written["parts"] += 1
                written["bytes"] += len(part[3])
                yield part

        deletes, checks_from = [], {}
        if st.whole:
            for store in st.streams.values():
                store.touch_all()

        def detector_parts():  # a metric at a time: the parts of one are in memory at once, not all
            for m, store in st.streams.items():
                ch = store.changes()
                checks_from[m] = ch["checks_from"]
                yield from ((f"r:{m}", str(r), -1, b) for r, b in ch["rows"].items())
                for kind in ("tail", "floors"):
                    yield from ((f"r{kind[0]}:{m}", str(r), blk, b) for (r, blk), b in ch[kind].items())
                yield from ((f"rc:{m}", str(r), col, b) for (r, col), b in ch["checks"].items())
                deletes.extend((f"rt:{m}", str(r), lo_t) for r, (lo_t, _) in ch["drop"].items())
                deletes.extend((f"rf:{m}", str(r), lo_f) for r, (_, lo_f) in ch["drop"].items())

        meta = {k: getattr(st, k) for k in META}
        meta["referenced"] = st.referenced
        meta["replaced"] = st.replaced
        meta["tide"] = None if st.tide_x is None else st.tide_x.shape[1:]
        meta["rows_headers"] = {m: s.header() for m, s in st.streams.items()}
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if st.whole:
                db.execute("DELETE FROM part")
                db.execute("DELETE FROM meta")
            else:  # what left the window, the context and checkpoints no series needs any more
                db.execute("DELETE FROM part WHERE kind IN ('w', 'c') AND b < ?", (off // e,))
                db.execute("DELETE FROM part WHERE kind = 'h' AND b < ?", (st.h_start // 3600 // 24,))
            if st.whole or st.dirty_tide:
                db.execute("DELETE FROM part WHERE kind = 't'")
            if st.whole or st.dirty_fan:
                db.execute("DELETE FROM part WHERE kind = 'x'")
            db.executemany("INSERT OR REPLACE INTO part VALUES (?, ?, ?, ?)",
                           counted(itertools.chain(self._cells(st, e, off), self._hours(st), self._nodes(st),
                                                   detector_parts())))
            if not st.whole:
                db.executemany("DELETE FROM part WHERE kind = ? AND item = ? AND b < ?", deletes)
            for m, frm in checks_from.items():
                db.execute("DELETE FROM part WHERE kind = ? AND b < ?", (f"rc:{m}", frm if frm is not None else 2**62))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(VERSION).encode(),))
            body = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (body,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # else the log keeps a second copy of the change
        self.last = {"parts": written["parts"], "bytes": written["bytes"] + len(body), "whole": st.whole}
        for store in st.streams.values():
            store.saved()
        st.dirty.clear()
        st.dirty_h.clear()
        st.dirty_nodes.clear()
        st.dirty_tide = st.dirty_fan = st.whole = False

    def _cells(self, st: State, e: int, off: int):
        """The 'w' and 'c' blocks of the nodes that changed (of every node when st.whole)."""
        last = (off + st.steps - 1) // e
        if st.whole:
            firsts = dict.fromkeys(range(len(st.nodes)), off)
        else:
            firsts = {i: max(c, off) for i, c in st.dirty.items()}
        groups: dict = {}
        for i, c in firsts.items():
            groups.setdefault((i < st.n_own, c // e), []).append(i)
        for (owned, b0), idx in groups.items():
            if b0 > last:
                continue
            dtype = _cell_dtype(st, e, owned)
            arrays = _cell_arrays(st, owned)
            for lo in range(0, len(idx), 256):
                sel = np.array(idx[lo:lo + 256])
                rec = np.zeros((len(sel), last - b0 + 1), dtype)
                for name in ("score", "baseline", "z"):
                    if name in arrays:
                        rec[name] = np.nan
                ks = (np.arange(b0 * e, (last + 1) * e) - off).reshape(-1, e)  # window steps of each block
                ok = (ks >= 0) & (ks < st.steps)
                kc = np.clip(ks, 0, st.cap - 1)[None]
                for name, a in arrays.items():
                    got = a[sel[:, None, None], kc]  # (nodes, blocks, e, ...)
                    keep = ok.reshape((1,) + ok.shape + (1,) * (got.ndim - 3))
                    rec[name] = np.where(keep, got, rec[name])
                kind = "w" if owned else "c"
                for k, i in enumerate(sel.tolist()):
                    for j in range(rec.shape[1]):
                        yield kind, st.nodes[i], b0 + j, rec[k, j].tobytes()

    def _hours(self, st: State):
        h0 = st.h_start // 3600
        last = (h0 + st.h_steps - 1) // 24
        firsts = dict.fromkeys(range(st.n_own), h0) if st.whole else {i: max(h, h0) for i, h in st.dirty_h.items()}
        for i, h in firsts.items():
            b0 = h // 24
            if b0 > last:
                continue
            rec = np.zeros(last - b0 + 1, _HOUR_DTYPE)
            ks = np.arange(b0 * 24, (last + 1) * 24).reshape(-1, 24) - h0
            ok = (ks >= 0) & (ks < st.h_steps)
            kc = np.clip(ks, 0, st.h_cap - 1)
            rec["sums"] = np.where(ok[:, :, None], st._h_sums[i][kc], 0.0)
            rec["counts"] = np.where(ok[:, :, None], st._h_counts[i][kc], 0)
            for j in range(len(rec)):
                yield "h", st.nodes[i], b0 + j, rec[j].tobytes()

    def _nodes(self, st: State) -> list:
        """Events, fire codes and tidal values of the owned nodes whose ones changed."""
        which = set(range(st.n_own)) if st.whole else {i for i in st.dirty_nodes if i < st.n_own}
        names = {st.nodes[i] for i in which}
        events: dict = {n: [] for n in names}
        for e in st.events.values():
            if e.node in events:
                events[e.node].append(e)
        fire: dict = {n: {} for n in names}
        for (node, t), v in st.fire.items():
            if node in fire:
                fire[node][t] = v
        out = [("e", n, 0, pickle.dumps(events[n])) for n in sorted(names)]
        out += [("f", n, 0, pickle.dumps(fire[n])) for n in sorted(names)]
        if st.tide_x is not None and (st.whole or st.dirty_tide):
            for i in range(st.n_own):
                if not np.isnan(st.tide_x[i]).all():
                    out.append(("t", st.nodes[i], 0, st.tide_x[i].tobytes()))
        if st.fan_x is not None and (st.whole or st.dirty_fan):  # changed at a midnight (or a cold start) only
            out.append(("x", "fan", 0, pickle.dumps((st.fan_x, st.fan_ref_x, st.fan_level, st.fan_found))))
        return out

    # --- loading -----------------------------------------------------------------------------------------------

    def load(self, key: str) -> State | None:
        """The saved state, or None when there is none, or it is of another version or key."""
        parts = dict(self.db.execute("SELECT name, data FROM meta"))
        if parts.get("version") != str(VERSION).encode():
            return None
        try:
            meta = pickle.loads(parts["state"])
            if meta["key"] != key:
                return None
            return self._assemble(meta)
        except (detector.StateVersionError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
            log.warning("analytics state not usable (%s): rebuilding from history", err)
            return None

    def _assemble(self, meta: dict) -> State:
        st = State(**{k: meta[k] for k in ("key", "origin", "start", "step", "cap", "h_cap", "nodes", "sites", "n_own")})
        st.hold_metrics(meta["metrics"])
        for k in META:
            if k not in ("nodes", "sites", "metrics"):
                setattr(st, k, meta[k])
        st.referenced = meta["referenced"]
        st.replaced = meta.get("replaced", {})  # a snapshot from before replacements were recorded: none
        row = {n: i for i, n in enumerate(st.nodes)}
        e = max(1, BLOCK_S // st.step)
        off = (st.start - st.origin) // st.step
        for kind, owned in (("w", True), ("c", False)):
            dtype = _cell_dtype(st, e, owned)
            for got in self._batches(kind):
                rec = np.frombuffer(b"".join(g[2] for g in got), dtype)
                nodes = np.array([row[g[0]] for g in got])
                ks = np.array([g[1] for g in got])[:, None] * e + np.arange(e) - off  # (records, e) window steps
                ok = (ks >= 0) & (ks < st.steps)
                ii = np.broadcast_to(nodes[:, None], ks.shape)
                for name, a in _cell_arrays(st, owned).items():
                    a[ii[ok], ks[ok]] = rec[name][ok]
        for got in self._batches("h"):
            rec = np.frombuffer(b"".join(g[2] for g in got), _HOUR_DTYPE)
            ks = np.array([g[1] for g in got])[:, None] * 24 + np.arange(24) - st.h_start // 3600
            ok = (ks >= 0) & (ks < st.h_steps)
            ii = np.broadcast_to(np.array([row[g[0]] for g in got])[:, None], ks.shape)
            st._h_sums[ii[ok], ks[ok]] = rec["sums"][ok]
            st._h_counts[ii[ok], ks[ok]] = rec["counts"][ok]
        if meta["tide"] is not None:
            st.tide_x = np.full((st.n_own,) + tuple(meta["tide"]), np.nan)
            for item, data in self.db.execute("SELECT item, data FROM part WHERE kind = 't'"):
                st.tide_x[row[item]] = np.frombuffer(data).reshape(meta["tide"])
        for _item, data in self.db.execute("SELECT item, data FROM part WHERE kind = 'x'"):
            parts = pickle.loads(data)
            st.fan_x, st.fan_ref_x, st.fan_level = parts[:3]
            # before the falls' times were kept (no sensor was recorded replaced then): found before the window
            st.fan_found = parts[3] if len(parts) > 3 else np.full(st.fan_level.shape, st.start, np.int64)
        for item, data in self.db.execute("SELECT item, data FROM part WHERE kind = 'e'"):
            st.events.update({(ev.node, ev.metric, ev.start): ev for ev in pickle.loads(data)})
        for item, data in self.db.execute("SELECT item, data FROM part WHERE kind = 'f'"):
            st.fire.update({(item, t): v for t, v in pickle.loads(data).items()})
        for m, header in meta["rows_headers"].items():
            parts: dict = {"rows": {}, "tail": {}, "floors": {}, "checks": {}}
            for kind, name in (("r", "rows"), ("rt", "tail"), ("rf", "floors"), ("rc", "checks")):
                for item, b, data in self.db.execute("SELECT item, b, data FROM part WHERE kind = ?", (f"{kind}:{m}",)):
                    parts[name][int(item) if name == "rows" else (int(item), b)] = data
            st.streams[m] = detector.Rows.from_parts(header, parts["rows"], parts["tail"], parts["floors"],
                                                     parts["checks"], anomaly.PRODUCT)
        st.whole = False
        return st

    def _batches(self, kind: str, size: int = 20_000):
        """The parts of a kind, (item, block, data), a batch at a time."""
        cur = self.db.execute("SELECT item, b, data FROM part WHERE kind = ?", (kind,))
        while got := cur.fetchmany(size):
            yield got

    def close(self) -> None:
        self.db.close()
