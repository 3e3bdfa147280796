"""Incremental runs: each run reads what arrived since the last one, recomputes the steps it touches, and
writes only the points that changed. The batch path (`analytics.analyze.Analyzer.run`) stays the oracle.

What a run reads (InfluxDB 1.x stores no arrival time, and late readings keep their old timestamps):

1. every node's last `analyze_reread_s` (2 hours: nodes send hourly, so their newest readings are up to
   an hour old when they arrive): first the count of readings per node over it (one integer field, one
   row per node), against the counts held; then the cells of the nodes whose count differs, in bounded,
   streamed queries (the nodes that sent since the last run, not the fleet);
2. a node whose newest reading is older than that (silent, or back from an outage and sending its
   buffer oldest first) is read from its own arrival watermark, the newest step seen from it: a backfill
   arrives in order, so everything before the watermark was already there;
3. what can still arrive behind a watermark (a lost batch resent after later ones, a dead letter
   replayed) is found by an audit every `analyze_audit_s`: the count of readings per node and day over
   the window, one integer field, against the counts held; a node's day that differs is read again.

Each cell (node, step) holds the sum and count of each metric, so a re-read changes only the cells whose
readings changed, and each run knows the earliest step that changed.

What a run computes: the detector for the series whose inputs changed (`analytics.detector.Rows`, one per
metric, each series at its own column): a series' inputs are its site's (the neighbours' median, the rain)
and, for the particulates, the city's (the regional reference), so a site's change makes its nodes' series
dirty from the site's earliest changed step, and any node's change every particulate series from that
node's; each dirty series goes back to its own hourly checkpoint before that step (or on from where it
stopped, if earlier), so a backfill recomputes the hours it touches and no more, and the series of quiet
sites are not touched. The quality checks, indices, events and fire codes of the sites whose cells
changed, over the window (they are cheap per site, and so equal the batch exactly); at a WIB midnight,
as the window moves on, those of every site; on a new step, the rolling means (the ISPU's 24 hours) of
the sites without a reading yet; the events of the nodes rescored, or open at the window's end. A site
whose node had a sensor recorded replaced (the fleet file's `pm_replaced`, read again each run; the state keeps
the replacements its flags were judged with) is judged again at once.
Each output is compared with what the last run produced, and only what differs is written: a new flag,
an index field whose value changed (the point carries only that field), a new or changed event, a
changed fire code; and what no longer stands is withdrawn (`rimba.lineproto.withdrawal`): a flag or a
derived value from `analyze.SETTLED_S` into the window on, an event the carried detector no longer finds.
A process's first run sweeps its window for what InfluxDB holds and its state does not (`_stale`: after a
rebuild, or a snapshot older than what the dead process wrote).

What a partition holds (`analytics.window.State`): its own nodes, and the city's particulate sensors of
other sites, their particulates only (the regional reference; found by the same probe, on the particulate
fields, and read from InfluxDB like the rest); the metrics read so far; arrays allocated once for the
longest window.

State (`analytics-<partition>.state` under the state directory, SQLite, `analytics.snapshot`): the
window's cells and scores, the streams and their checkpoints, the events and fire codes, the watermarks,
in parts keyed by node and hour (or series and block): every `analyze_snapshot_s` and at the end, one
transaction writes the parts that changed since the last (the quality flags and indices are not saved: a
restart recomputes them from the cells); a restart resumes from it and reads again from its watermarks.
A state of another version (or another fleet, step or window) is rebuilt from history: a cold start
reads the window in bounded stretches, with a progress bar, and runs the detector through it a day at a
time (an hour at a time over the last two days, where late data may rewind it).

The detector starts at the window's start at the cold start and is carried from there (the batch path
restarts it at each run's window start): the oracle for the scores is `anomaly.score_cube` over the
whole history since that origin. Not exact: a node first seen with neighbours or without them keeps
that choice (the batch decides it on the window), and the tide is fitted on at most the window.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time

import numpy as np

from analytics import anomaly, detector, quality
from analytics.analyze import (DAY_MEANS, FWI_DAYS, INDEX_LABELS, SETTLED_S, derive, fire_days, fire_values,
                               stale_points)
from analytics.data import (Cube, Reader, anomaly_line, event_tags, fans_written, flagged, maintenance_line,
                            maintenance_points, maintenance_tags, qc_lines, regex_of)
from analytics.snapshot import StateStore
from analytics.window import FIRE_METRICS, METRIC_LIST, State
from rimba import lineproto, wib
from rimba.errors import ConfigError
from rimba.fleet import FleetWatcher

log = logging.getLogger("rimba.analyze")
ALL_TIME = 4_102_444_800  # 2100-01-01: the end of the sweep's look at the `maintenance` points
__all__ = ["Incremental", "State", "StateStore", "owned_sites", "window_start"]
CHECK_EVERY_S = 3600  # the streams' checkpoints: late data rewinds to the hour before it
REWIND_S = 2 * 86400  # how far back late data can rewind the detector (older: recomputed from the oldest)
LAG_S = 6 * 3600  # a series whose inputs have not changed for this long is taken on through its missing values
PM = quality.PM_METRICS
PM_HELD = tuple(m for m in METRIC_LIST if m in PM)  # the particulate columns of the checks (METRIC_LIST order)
FAN_BEFORE = quality.Limits().fan_blocks * quality.Limits().fan_block  # steps of particulates FAN carries: its fall
CHUNK_NODES = 256  # the quality checks and indices are computed for this many nodes (whole sites) at a time
DETECTOR_ROWS = 512  # series advanced together (their working arrays are a few of (rows, the window))


def window_start(end: int, days: float) -> int:
    """The batch's window start for a run ending at `end`: `days` back, to a WIB midnight."""
    start = end - int(days * 86400)
    return wib.midnight_before(start)


def owned_sites(settings, fleet) -> list:
    """The sites this process owns: `analyze_sites`, or those of its `analyze_partition` K/N by a stable hash
    of the site's name (the same on every host: SHA-1, not Python's salted hash)."""
    from rimba.errors import ConfigError
    from rimba.settings import parse_partition

    named = [s for s in settings.analyze_sites.replace(",", " ").split() if s]
    if named:
        unknown = sorted(set(named) - set(fleet.sites))
        if unknown:
            raise ConfigError(f"analyze_sites: {', '.join(unknown)} not in the fleet file")
        return sorted(named)
    k, n = parse_partition(settings.analyze_partition)
    return sorted(s for s in fleet.sites if int(hashlib.sha1(s.encode()).hexdigest(), 16) % n == k - 1)


class Incremental:
    """One partition's incremental analytics: `run(now)` once a minute."""

    def __init__(self, settings, fleet, influx, sites=None, progress=None):
        self.s, self.fleet, self.influx = settings, fleet, influx
        self.sites = sorted(sites if sites is not None else owned_sites(settings, fleet))
        self.step = settings.analyze_step_s
        self.progress = progress if progress is not None else sys.stderr.isatty()
        self.reader = Reader(influx)
        self.pm_reader = Reader(influx, PM, readings=False)  # the city's particulates: their values only
        settings.state_path.mkdir(parents=True, exist_ok=True)
        _, n = (1, 1) if settings.analyze_sites.strip() else _partition(settings)
        name = "analytics.state" if n == 1 and not settings.analyze_sites.strip() else \
            f"analytics-{hashlib.sha1(' '.join(self.sites).encode()).hexdigest()[:8]}.state"
        self.store = StateStore(settings.state_path / name)
        self.key = hashlib.sha1(repr((sorted((i, n.site) for i, n in fleet.nodes.items()), self.sites, self.step,
                                      settings.analyze_days)).encode()).hexdigest()
        self.st: State | None = self.store.load(self.key)
        # A state built from history, or loaded from a snapshot, does not know all that was written before it: a
        # process's first run sweeps its window for what it does not stand by (`_stale`)
        self.swept = False
        self._watch = None  # the fleet file, read again each run for the sensors replaced (`_replacements`)
        self._refit: set = set()  # nodes whose sensor replacements changed since their flags were judged
        if self.st is not None:
            self.st.audited = 0  # the dead process may have audited readings its snapshot does not hold: first audit
            self._outputs_from_cells()
        self.stats = {"runs": 0, "read_failures": 0, "queries": 0}

    def _site_chunks(self, nodes) -> list:
        """Node indices in groups of whole sites, about CHUNK_NODES each (the checks look within a site)."""
        st = self.st
        by_site: dict = {}
        for i in nodes:
            by_site.setdefault(st.sites[i], []).append(int(i))
        out, cur = [], []
        for site in sorted(by_site):
            cur += by_site[site]
            if len(cur) >= CHUNK_NODES:
                out.append(np.array(cur))
                cur = []
        return out + ([np.array(cur)] if cur else [])

    def _cube(self, nodes, lo: int = 0) -> Cube:
        st = self.st
        return Cube([st.nodes[i] for i in nodes], [st.sites[i] for i in nodes],
                    st.start + np.arange(lo, st.steps) * st.step, METRIC_LIST, st.values(nodes, lo))

    def _fan_reference(self):
        """The city's particulate reference of the FAN check (quality.pm_reference) over every PM sensor held,
        the owned ones and the city's, as the batch computes it over the whole fleet: the checks of a few
        sites would otherwise judge a fan against too few sensors. None when no particulate is held."""
        st = self.st
        pm = tuple(m for m in METRIC_LIST if m in quality.PM_METRICS)
        cols = [st.metrics.index(m) for m in pm if m in st.metrics]
        if not cols:
            return None
        sensors = np.flatnonzero(st.counts[:, :, cols].any(axis=(1, 2)))
        lim = quality.Limits()
        fresh = quality.fresh_mask(self._replaced(sensors), len(sensors), 0, st.steps, lim.fan_day)
        return quality.pm_reference(st.in_range(sensors, 0, pm), lim, fresh)

    def _replaced(self, nodes, start: int | None = None) -> list:
        """Per node index, the columns of the window (from `start`, by default its own) from which a replaced PM
        sensor reads, by the replacements its flags are judged with (`quality.check`'s ``replaced``)."""
        st = self.st
        return quality.replaced_columns([st.start if start is None else start], st.step,
                                        [st.replaced.get(st.nodes[i], ()) for i in nodes])

    def _fan_judged(self, nodes, replaced, before) -> dict:
        """Index in `nodes` -> the window's column from which FAN is judged on the window and the day before it alone
        (its flags no longer raised withdrawn from there, in the window's first day too): from a replacement in the
        window or less than a day before it (`quality.replaced_since`), and from the start for a node whose carried
        hold a replacement ended (`quality.carried_hold`: a record made long after it)."""
        out = quality.replaced_since(replaced, self.st.steps, quality.Limits().fan_day)
        if before is not None:
            released = ~np.isnan(self.st.fan_level[nodes]) & np.isnan(before[2])
            out.update((int(i), 0) for i in np.flatnonzero(released.any(axis=-1)))
        return out

    def _records(self, old: dict, new: dict) -> list:
        """The `maintenance` points of the owned nodes' replacement records (what the dashboards annotate): those
        recorded since `old`, and the withdrawals of those taken back."""
        row, st = self._row(), self.st
        out = []
        for node in sorted(set(old) | set(new)):
            i = row.get(node)
            if i is None or i >= st.n_own:
                continue
            was, now = set(old.get(node, ())), set(new.get(node, ()))
            out += [maintenance_line(st.sites[i], node, t) for t in sorted(now - was)]
            out += [lineproto.withdrawal("maintenance", maintenance_tags(st.sites[i], node), t)
                    for t in sorted(was - now)]
        return out

    def _replacements(self) -> dict:
        """node -> the times its PM sensor was replaced, by the fleet file as it is now (`rimba node replaced` writes
        it while the service runs; the rest of the file is read at start), or by the fleet the service began with
        while the file cannot be read."""
        fleet = self.fleet
        if self._watch is None and getattr(self.s, "fleet", None):
            try:
                self._watch = FleetWatcher(self.s.fleet)
            except ConfigError as err:  # said once: the file the service began with is gone, or another fleet
                log.warning("sensor replacements from the fleet the service began with: %s", err)
                self._watch = False
        if self._watch:
            fleet = self._watch.current()  # a file made invalid keeps its last good reading (and says so)
        return {n: r for n in self.st.nodes if n in fleet.nodes and (r := fleet.nodes[n].replaced("pm"))}

    def _outputs_from_cells(self) -> None:
        """The quality flags and the indices of a loaded state (not saved: they follow from its cells)."""
        st = self.st
        self._pm_ref = self._fan_reference()
        for nodes in self._site_chunks(np.flatnonzero(st.owned)):
            cube = self._cube(nodes)
            st.flags[nodes] = quality.check(cube.values, cube.metrics, cube.sites, pm_reference=self._pm_ref,
                                            fan_before=self._fan_before(nodes), replaced=self._replaced(nodes))
            for k, v in derive(cube, st.step, st.flags[nodes]).items():
                st.derived_of(k)[nodes] = v

    def _fan_before(self, nodes) -> tuple | None:
        """What FAN carries from before the window for these owned nodes (quality.check's fan_before), or None when
        no particulate is held."""
        st = self.st
        if getattr(self, "_pm_ref", None) is None:
            return None
        self._fan_arrays()
        found = (st.fan_found[nodes] - st.start) // st.step  # the falls' columns, as the window's
        level = quality.carried_hold(st.fan_level[nodes], found, self._replaced(nodes), quality.Limits().fan_day)
        return st.fan_x[nodes].astype(float), st.fan_ref_x.astype(float), level

    def _fan_arrays(self) -> None:
        st = self.st
        if st.fan_x is None:
            st.dirty_fan = True
            st.fan_x = np.full((st.n_own, FAN_BEFORE, len(PM_HELD)), np.nan, np.float32)
            st.fan_ref_x = np.full((FAN_BEFORE, len(PM_HELD)), np.nan, np.float32)
            st.fan_level = np.full((st.n_own, len(PM_HELD)), np.nan, np.float32)
        if st.fan_found is None:
            st.fan_found = np.full((st.n_own, len(PM_HELD)), st.start, np.int64)

    def _fans_written(self) -> None:
        """At a cold start, the fans held dead where the window begins, from the FAN flags written there by the state
        this one replaces, which carried their falls (`data.fans_written`): a state rebuilt from history (new
        constants, a new node in the fleet file) cannot see a fall older than its window."""
        st = self.st
        row = self._row()
        for node, metric in fans_written(self.influx, st.start, st.step, self._where_owned()):
            i = row.get(node)
            if i is not None and i < st.n_own and metric in PM_HELD:
                self._fan_arrays()
                st.fan_level[i, PM_HELD.index(metric)] = np.inf
                st.fan_found[i, PM_HELD.index(metric)] = st.start  # found before it: any replacement since ends it
                st.dirty_fan = True

    def _carry_fan(self, drop: int) -> None:
        """The window moves on `drop` steps: what FAN carries from before it moves on too (the day before the new
        start, and the hold carried into it, as a check over the old window and what it carried computed it)."""
        st = self.st
        ref = getattr(self, "_pm_ref", None)
        if ref is None or len(ref) != st.steps:
            ref = self._pm_ref = self._fan_reference()
        if ref is None:  # no particulate held
            return
        own = np.arange(st.n_own)
        self._fan_arrays()
        x_before, ref_before = st.fan_x.astype(float), st.fan_ref_x.astype(float)
        pm = [METRIC_LIST.index(m) for m in PM_HELD]
        held = min(drop, st.steps)  # the steps that leave the window; past its end (an outage longer than it), none
        width = min(drop, held + FAN_BEFORE)  # a longer gap carries the same: the hold goes on through it
        x = np.full((len(own), width, len(PM_HELD)), np.nan)
        x[:, :held] = np.where(st.flags[:, :held][:, :, pm] & quality.RANGE, np.nan,
                               st.values(own, 0, PM_HELD, hi=held))
        r = np.full((width, len(PM_HELD)), np.nan)
        r[:held] = ref[:held]
        xs, refs = np.concatenate([x_before, x], axis=1), np.concatenate([ref_before, r], axis=0)
        # the hold as if no sensor were replaced, with where its fall was found: the replacements are taken out
        # where it is used (`_fan_before`), so a record added, moved or taken back later judges it right
        t0 = st.start - FAN_BEFORE * st.step  # xs' first column
        level, found = quality.fan_hold(xs, reference=refs, level0=st.fan_level, hold_from=FAN_BEFORE,
                                        found0=(st.fan_found - t0) // st.step)
        st.fan_level = level.astype(np.float32)
        st.fan_found = np.where(found >= 0, t0 + found * st.step, st.start).astype(np.int64)
        st.fan_x, st.fan_ref_x = xs[:, -FAN_BEFORE:].astype(np.float32), refs[-FAN_BEFORE:].astype(np.float32)
        st.dirty_fan = True

    def close(self) -> None:
        if self.st is not None:
            self.store.save(self.st)
        self.store.close()

    # --- reading -------------------------------------------------------------------------------------------

    def _where_owned(self) -> str:
        return "" if set(self.sites) == set(self.fleet.sites) else f'"site" =~ {regex_of(self.sites)}'

    def _where_city(self) -> str:
        return f'"site" !~ {regex_of(self.sites)}'

    def _merge(self, cells, changed: dict, pm_only: bool = False) -> None:
        """Cells into the state; changed[node index] = the earliest window step whose cell changed. `pm_only`:
        the city's particulate sensors of other sites (held from the first time one has a value)."""
        st = self.st
        cells = [c for c in cells if c.node in self.fleet.nodes]  # a node no longer in the fleet file: not read
        if not cells:
            return
        names = PM if pm_only else METRIC_LIST
        seen = np.any([c.counts.any(axis=0) for c in cells], axis=0)
        st.hold_metrics([m for m, s in zip(names, seen, strict=True) if s])
        row = self._row()
        if pm_only:
            new = sorted({c.node for c in cells if c.node not in row and c.counts.any()})
            if new:
                st.hold_nodes(new, [self.fleet.nodes[n].site for n in new])
                row = self._row()
        src = [k for k, m in enumerate(names) if m in st.metrics]
        cols = np.array([st.metrics.index(names[k]) for k in src], dtype=np.int64)
        for c in cells:
            i = row.get(c.node)
            if i is None:
                continue  # a city node without particulates
            t = (c.times - st.start) // st.step
            ok = (t >= 0) & (t < st.steps)
            if not ok.any():
                continue
            t = t[ok]
            sums, counts = np.nan_to_num(c.sums[ok][:, src]), c.counts[ok][:, src].astype(np.int32)
            old_s, old_c = st.sums[i, t][:, cols], st.counts[i, t][:, cols]
            diff = (old_c != counts).any(axis=1) | (np.abs(old_s - sums) > 1e-9 * (1 + np.abs(sums))).any(axis=1)
            if not pm_only:
                diff |= st.readings[i, t] != c.readings[ok]
            if diff.any():
                tt = t[diff]
                st.sums[i, tt[:, None], cols[None, :]] = sums[diff]  # a city node's: its particulates only
                st.counts[i, tt[:, None], cols[None, :]] = counts[diff]
                if not pm_only:
                    st.readings[i, tt] = c.readings[ok][diff]
                changed[i] = min(changed.get(i, st.steps), int(tt.min()))
                st.touch(i, int(tt.min()))
            newest = int(st.start + t.max() * st.step)
            st.watermark[c.node] = max(st.watermark.get(c.node, 0), newest)
            if not pm_only:
                st.contact[c.node] = max(st.contact.get(c.node, 0), int(c.times[ok].max()))

    def _read(self, lo: int, hi: int, changed: dict, nodes=None, city=None) -> None:
        """[lo, hi) of the owned nodes and the city's particulates (`nodes`, `city`: only those)."""
        if nodes is None and city is None:
            where = self._where_owned()
            self._merge(self.reader.cells(lo, hi, self.step, self.st.n_own, where), changed)
            if where:  # the city's PM sensors, for the regional reference: sized by those that answered so far
                city = len(self.st.nodes) - self.st.n_own or len(self.fleet.nodes) - self.st.n_own
                self._merge(self.pm_reader.cells(lo, hi, self.step, max(1, city), self._where_city()), changed,
                            pm_only=True)
            return
        if nodes:
            self._merge(self.reader.cells(lo, hi, self.step, len(nodes), f'"node" =~ {regex_of(nodes)}'), changed)
        if city:
            self._merge(self.pm_reader.cells(lo, hi, self.step, len(city), f'"node" =~ {regex_of(city)}'), changed,
                        pm_only=True)

    def _pm_held(self, i: int, lo: int, hi: int | None = None) -> np.ndarray:
        """A node's count of each particulate metric held over window steps [lo, hi)."""
        st = self.st
        out = np.zeros(len(PM))
        for k, m in enumerate(PM):
            if m in st.metrics:
                out[k] = st.counts[i, lo:hi, st.metrics.index(m)].sum()
        return out

    def _read_recent(self, lo: int, hi: int, changed: dict) -> None:
        """The last `analyze_reread_s`: the count of readings per node (one integer field, far cheaper to scan
        than every metric) against the cells', then the cells of the nodes whose count differs. For the city's
        particulate sensors of other sites, the counts of the particulate fields (the only ones scanned)."""
        st = self.st
        row = self._row()
        k0 = (lo - st.start) // st.step
        held = st.readings[:, k0:].sum(axis=1)
        window = f"time >= {int(lo)}s AND time < {int(hi)}s"
        owned = self._where_owned()
        q = f'SELECT count("seq") FROM reading WHERE {window}{f" AND {owned}" if owned else ""} GROUP BY node'
        stale = []
        for series in self.influx.query_stream(q, epoch="s"):
            node = series.get("tags", {}).get("node")
            i = row.get(node)
            if i is not None and i < st.n_own and series["values"][0][1] != held[i]:
                stale.append(node)
        self.stats["probed"] = self.stats.get("probed", 0) + 1
        if stale:
            self._merge(self.reader.cells(lo, hi, st.step, len(stale), f'"node" =~ {regex_of(stale)}'), changed)
        if owned:
            counts = ", ".join(f'count("{m}") AS "c{k}"' for k, m in enumerate(PM))
            q = f"SELECT {counts} FROM reading WHERE {window} AND {self._where_city()} GROUP BY node"
            stale = []
            for series in self.influx.query_stream(q, epoch="s"):
                node = series.get("tags", {}).get("node")
                got = np.array([v or 0 for v in series["values"][0][1:]], dtype=float)
                i = row.get(node)
                if (i is None and got.any() and node in self.fleet.nodes) or \
                        (i is not None and (got != self._pm_held(i, k0)).any()):
                    stale.append(node)
            if stale:
                self._merge(self.pm_reader.cells(lo, hi, st.step, len(stale), f'"node" =~ {regex_of(stale)}'),
                            changed, pm_only=True)

    def _statuses(self, lo: int, hi: int) -> None:
        window = f"time >= {int(lo)}s AND time <= {int(hi)}s"
        owned = self._where_owned()
        cond = f" AND {owned}" if owned else ""
        for q, into in ((f"SELECT last(\"state\") FROM node_status WHERE {window} AND \"state\" <> 'lost'{cond} "
                         "GROUP BY node", "contact"),
                        (f'SELECT last("wake") FROM node_status WHERE {window}{cond} GROUP BY node', "wake")):
            for series in self.influx.query_stream(q, epoch="s"):
                node = series.get("tags", {}).get("node")
                t, value = series["values"][0][:2]
                if into == "contact":
                    self.st.contact[node] = max(self.st.contact.get(node, 0), int(t))
                elif value is not None:
                    self.st.wake[node] = int(value)

    # --- the state's window --------------------------------------------------------------------------------

    def _new_state(self, end: int) -> State:
        nodes = sorted(n for n, node in self.fleet.nodes.items() if node.site in self.sites)
        sites = [self.fleet.nodes[n].site for n in nodes]
        start = window_start(end, self.s.analyze_days)
        cap = int((self.s.analyze_days + 1) * 86400) // self.step + 2  # the longest window: days and a WIB day
        h_start = window_start(end, FWI_DAYS)
        st = State(self.key, start, start, self.step, cap, (FWI_DAYS + 1) * 24 + 2, nodes, sites, len(nodes),
                   h_start=h_start)
        st.slide(start, end)
        st.slide_hours(h_start, end)
        return st

    def _slide(self, end: int) -> None:
        """Grow the window to `end`; at a new WIB midnight its start moves on by whole days."""
        st = self.st
        start = max(st.start, window_start(end, self.s.analyze_days))
        drop = (start - st.start) // st.step
        if drop:
            self._carry_fan(drop)
            st.pending = {i: max(0, v - drop) for i, v in st.pending.items()}
            # the tide is fitted on up to TIDE_DAYS: keep the tidal metric's values past the window
            keep = anomaly.TIDE_DAYS * 86400 // st.step
            tidal = st.values(np.arange(st.n_own), 0, anomaly.TIDAL, hi=drop)
            old = st.tide_x if st.tide_x is not None else np.zeros(tidal.shape[:1] + (0,) + tidal.shape[2:])
            st.tide_x = np.concatenate([old, tidal], axis=1)[:, -keep:]
            st.dirty_tide = True
        self._moved = st.slide(start, end)
        st.slide_hours(max(st.h_start, window_start(end, FWI_DAYS)), end)

    def _hourly_from_cells(self, changed: dict) -> None:
        """The fire codes' hourly cells from the window's cells, for the hours whose cells changed."""
        st = self.st
        per_hour = 3600 // st.step
        cols = [st.metrics.index(m) if m in st.metrics else -1 for m in FIRE_METRICS]
        off = (st.start - st.h_start) // 3600  # the window's first hour in the hourly cells
        n_h = (st.steps + per_hour - 1) // per_hour
        for i, first in changed.items():
            if i >= st.n_own:
                continue  # a city node: no fire codes here
            h0 = first // per_hour
            s = np.zeros((n_h * per_hour, 3))
            c = np.zeros((n_h * per_hour, 3), np.int32)
            for k, col in enumerate(cols):
                if col >= 0:
                    s[:st.steps, k], c[:st.steps, k] = st.sums[i, :, col], st.counts[i, :, col]
            hs = s.reshape(n_h, per_hour, 3).sum(axis=1)
            hc = c.reshape(n_h, per_hour, 3).sum(axis=1)
            lo, hi = off + h0, min(st.h_steps, off + n_h)
            st.h_sums[i, lo:hi], st.h_counts[i, lo:hi] = hs[h0:h0 + hi - lo], hc[h0:h0 + hi - lo]
            st.touch_hours(i, lo)

    # --- a run -----------------------------------------------------------------------------------------------

    def run(self, now: int) -> dict:
        """Read what arrived, recompute what it touches, write what changed. Returns counters."""
        began = time.process_time()
        step = self.step
        cold = self.st is None
        if cold:
            self.st = self._new_state(now)
        replaced = self._replacements()
        self._refit |= {n for n in set(replaced) | set(self.st.replaced)
                        if replaced.get(n, ()) != self.st.replaced.get(n, ())}
        # the records' points, kept with what is not written yet (a run that fails before its write loses none)
        self.st.unwritten = self.st.unwritten + self._records(self.st.replaced, replaced)
        self.st.replaced = replaced  # a site with a sensor replaced since its flags were judged is judged again
        if not cold:
            self._slide(now)  # (the steps of `pending` move with the window)
        changed = self.st.pending  # what a run that failed part-way merged is computed by the next one
        if cold:
            self._cold_read(now, changed)
            self._fans_written()
        else:
            st = self.st
            lo = max(st.start, (now - self.s.analyze_reread_s) // step * step)
            self._read_recent(lo, now, changed)
            silent = [n for k, n in enumerate(st.nodes) if st.watermark.get(n, st.start) < lo]
            if silent:
                since = max(st.start, min(st.watermark.get(n, st.start) for n in silent))
                row = self._row()
                self._read(since, lo, changed, nodes=[n for n in silent if row[n] < st.n_own],
                           city=[n for n in silent if row[n] >= st.n_own])
            if now - st.audited >= self.s.analyze_audit_s:
                self._audit(now, changed)
            self._statuses(now - self.s.analyze_reread_s, now)
        self._hourly_from_cells(changed)
        lines = self.st.unwritten + self._compute(changed, now, cold)
        n_changed = len(changed)
        self.st.pending, self.st.unwritten = {}, lines
        self._write(lines)
        stale = []
        if not self.swept:  # this process's first run, once what it computed is written: what InfluxDB holds
            stale = self._stale()  # otherwise than this state does (a failed sweep is tried again next run)
            self.st.unwritten = stale
            self._write(stale)
            lines = lines + stale
            self.swept = True
        if cold or (self.s.analyze_snapshot_s and now - self.st.saved >= self.s.analyze_snapshot_s):
            self.st.saved = now
            self.store.save(self.st)
        self.stats["runs"] += 1
        self.stats["read_failures"] = self.reader.failures + self.pm_reader.failures
        self.stats["queries"] = self.reader.queries + self.pm_reader.queries
        out = {"lines": len(lines), "changed_nodes": n_changed, "cpu_s": time.process_time() - began,
               "cold": cold, "swept": len(stale), **self.stats}
        log.info("analyzed %d nodes x %d steps incrementally: %d with new readings, %d points written (%.2f s CPU)",
                 self.st.n_own, self.st.steps, n_changed, len(lines), out["cpu_s"])
        return out

    def _write(self, lines: list) -> None:
        """Write `lines` (the state's `unwritten`), 5,000 at a time, keeping what is not written yet."""
        for i in range(0, len(lines), 5000):
            self.influx.write(("\n".join(lines[i:i + 5000]) + "\n").encode())
            self.st.unwritten = lines[i + 5000:]

    def _cold_read(self, now: int, changed: dict) -> None:
        """The window (and the fire codes' 30 days of hours) from history, in bounded stretches."""
        st = self.st
        span = max(st.step, 86400 // 4)
        stretches = list(range(st.start, now, span))
        for k, lo in enumerate(stretches):
            self._read(lo, min(now, lo + span), changed)
            self._bar("reading the window", k + 1, len(stretches))
        hourly = Reader(self.influx, FIRE_METRICS)
        where = self._where_owned()
        row = self._row()
        for c in hourly.cells(st.h_start, st.start, 3600, st.n_own, where):
            i = row.get(c.node)
            if i is not None and i < st.n_own:
                h = (c.times - st.h_start) // 3600
                st.h_sums[i, h], st.h_counts[i, h] = np.nan_to_num(c.sums), c.counts
        self._statuses(now - 30 * 86400, now)
        st.audited = now

    def _audit(self, now: int, changed: dict) -> None:
        """Readings that arrived behind a watermark: the count per node and day (one integer field; for the city's
        particulate sensors, the particulate fields) against the cells'; a node's day whose count differs is read
        again (the merge finds the steps that changed)."""
        st = self.st
        row = self._row()
        pm_cols = [st.metrics.index(m) for m in PM if m in st.metrics]
        owned = self._where_owned()
        parts = [(False, owned, 'count("seq")', st.readings, st.n_own)]
        if owned:  # the city's particulate sensors
            parts.append((True, self._where_city(), ", ".join(f'count("{m}") AS "c{k}"' for k, m in enumerate(PM)),
                          st.counts[:, :, pm_cols].sum(axis=2), max(1, len(st.nodes) - st.n_own)))
        stale: list = []
        for city, where, what, per_step, count in parts:
            cum = np.concatenate([np.zeros((len(st.nodes), 1)), np.cumsum(per_step, axis=1, dtype=float)], axis=1)
            cond = f" AND {where}" if where else ""
            span = max(1, 20_000 // max(1, count)) * 86400
            for lo in range(st.start, now, span):
                hi = min(now, lo + span)
                q = (f"SELECT {what} FROM reading WHERE time >= {lo}s AND time < {hi}s{cond} "
                     "GROUP BY time(86400s), node fill(none)")
                for series in self.influx.query_stream(q, epoch="s"):
                    node = series.get("tags", {}).get("node")
                    i = row.get(node)
                    if node not in self.fleet.nodes or (i is not None and (i >= st.n_own) != city):
                        continue
                    for day, *counts in series["values"]:
                        a, b = max(lo, int(day)), min(hi, int(day) + 86400)  # the day's part inside the query
                        ta, tb = (a - st.start) // st.step, min(st.steps, -(-(b - st.start) // st.step))
                        n = sum(v or 0 for v in counts)
                        if (cum[i, tb] - cum[i, ta] if i is not None else 0) != n:
                            stale.append((node, city, a, b))
        for node, city, a, b in stale:
            lo = a - (a - st.start) % st.step
            self._read(lo, b, changed, nodes=[] if city else [node], city=[node] if city else [])
        st.audited = now

    def _stale(self) -> list:
        """What makes InfluxDB's points of the owned nodes in the window what this state stands by
        (`analyze.stale_points`, re-asserting): withdrawn what was written before a state of other constants was
        rebuilt from history, or after the snapshot a state was loaded from, and has since changed; written again
        what another writer (a batch over a shorter window) withdrew or overwrote."""
        st = self.st
        own = np.flatnonzero(st.owned)
        derived = {k: st.derived_of(k)[own] for k in st.derived}
        replaced = self._replaced(own)
        # the owned nodes' `maintenance` points, of any time, made the fleet file's records (a record taken back
        # while no service ran, or one a state holds from before the points were written)
        site_of = {st.nodes[i]: st.sites[i] for i in own}
        records = maintenance_points(self.influx, {n: st.replaced.get(n, ()) for n in site_of}, site_of, 0, ALL_TIME,
                                     self._where_owned())
        return records + stale_points(self.influx, self._cube(own), st.flags[own], list(st.events.values()), derived,
                                      st.start, st.step, self._where_owned(), reassert=True, replaced=replaced,
                                      fan_judged=self._fan_judged(own, replaced, self._fan_before(own)))

    def _bar(self, what: str, k: int, n: int) -> None:
        done = int(30 * k / max(1, n))
        if self.progress and (k == n or done != getattr(self, "_last_bar", None)):
            self._last_bar = done
            sys.stderr.write(f"\r{what}: [{'#' * done}{'.' * (30 - done)}] {k}/{n}")
            if k == n:
                sys.stderr.write("\n")
            sys.stderr.flush()

    # --- computing -------------------------------------------------------------------------------------------

    def _compute(self, changed: dict, now: int, cold: bool) -> list:
        st = self.st
        lines: list = []
        sites = np.asarray(st.sites)
        drop, grow = getattr(self, "_moved", (0, 0))
        self._moved = (0, 0)
        # a site whose cells changed is recomputed over the window; at a WIB midnight, as the window moves on, all
        row = self._row()
        refit = [row[n] for n in self._refit if n in row]
        dirty_sites = sorted(self.sites if drop else {st.sites[i] for i in [*changed, *refit] if st.owned[i]})
        dirty = np.isin(sites, dirty_sites) & st.owned
        nodes = np.flatnonzero(dirty)
        # the FAN check's city reference, new when a particulate sensor's cells changed (a site's fan flags
        # follow it when the site is next recomputed: its nodes send hourly)
        pm_cols = [st.metrics.index(m) for m in quality.PM_METRICS if m in st.metrics]
        pm_changed = bool(pm_cols) and any(st.counts[i, :, pm_cols].any() for i in changed)
        ref = getattr(self, "_pm_ref", None)
        if pm_changed or refit or drop or cold or ref is None or len(ref) != st.steps:  # new cells, or a step on
            self._pm_ref = self._fan_reference()
        self._refit = set()
        for part in self._site_chunks(nodes):  # a few hundred nodes at a time: the cube of all is big
            cube = self._cube(part)
            lines += self._quality(cube, part)
            lines += self._indices(cube, part)
            lines += self._fire(part)
        clean = np.flatnonzero(st.owned & ~dirty)
        if grow and len(clean):  # new steps without a reading yet: the rolling means go on (the ISPU's day)
            lo = max(0, st.steps - grow - max(1, 86400 // st.step))
            for part in self._site_chunks(clean):
                lines += self._indices(self._cube(part, lo), part, lo, st.steps - grow - lo)
        scored = self._detector(changed, cold)
        end = st.start + st.steps * st.step
        if st.events_end and end != st.events_end:  # the window grew or moved on: open events run to its end
            row = self._row()
            scored |= {row[e.node] for e in st.events.values() if e.end >= st.events_end or e.start < st.start}
        st.events_end = end
        lines += self._events(scored)
        return lines

    def _row(self) -> dict:
        if getattr(self, "_rows_of", (None, 0))[:2] != (self.st, len(self.st.nodes)):  # city nodes are added
            self._rows_of = (self.st, len(self.st.nodes), {n: i for i, n in enumerate(self.st.nodes)})
        return self._rows_of[2]

    def _quality(self, cube, nodes) -> list:
        st = self.st
        replaced = self._replaced(nodes)
        before = self._fan_before(nodes)
        flags = quality.check(cube.values, cube.metrics, cube.sites, pm_reference=getattr(self, "_pm_ref", None),
                              fan_before=before, replaced=replaced)
        old = st.flags[nodes]
        st.flags[nodes] = flags
        # flags no longer raised, from SETTLED_S on (before, the window lacks the evidence); FAN's too, judged with
        # what the state carries from before the window (a sweep, which has no such carry, leaves them: UNSETTLED),
        # and from a replaced sensor's first step on (it is judged by its own readings from there)
        gone = old & ~flags
        fan_gone = gone & np.uint16(quality.FAN)
        gone[:, :SETTLED_S // st.step] = 0
        for i, c in self._fan_judged(nodes, replaced, before).items():
            gone[i, c:] |= fan_gone[i, c:]
        withdrawn = [lineproto.withdrawal("qc", tags, t) for tags, t, _ in flagged(cube, gone, quality.FLAG_NAMES)]
        return qc_lines(cube, flags & ~old, quality.FLAG_NAMES) + withdrawn  # the flags raised and those withdrawn

    def _indices(self, cube, nodes, lo: int = 0, keep: int = 0) -> list:
        """The indices of `nodes` from the cube (the window's steps from lo on), compared and kept from the
        cube's step `keep` on (the steps before it are the rolling means' context)."""
        st = self.st
        derived = {k: v[:, keep:] for k, v in derive(cube, st.step, st.flags[nodes][:, lo:]).items()}
        out = []
        names = list(derived)
        changed, gone = {}, {}
        settled = max(0, SETTLED_S // st.step - lo - keep)  # the first column computed as from all history
        for k in names:
            new = derived[k]
            old = st.derived_of(k)
            prev = old[nodes, lo + keep:]
            changed[k] = ~np.isnan(new) & ~((np.abs(new - prev) <= 1e-12 * np.abs(new)) & ~np.isnan(prev))
            if k in DAY_MEANS:  # before `settled`, a day's mean from part of its day: what was written stays
                changed[k][:, :settled] &= np.isnan(prev[:, :settled])
            gone[k] = np.isnan(new) & ~np.isnan(prev)  # a value written before, no longer there: withdrawn
            gone[k][:, :settled] = False
            old[nodes, lo + keep:] = new
        any_changed = np.any([changed[k] | gone[k] for k in names], axis=0) if names else np.zeros((0, 0), bool)
        for i, t in np.argwhere(any_changed):
            fields = {k: float(derived[k][i, t]) for k in names if changed[k][i, t]}
            fields.update(INDEX_LABELS[k] for k in names if k in INDEX_LABELS and k in fields)
            fields.update((k, lineproto.WITHDRAWN_VALUE) for k in names if gone[k][i, t])
            out.append(lineproto.line("index", {"site": cube.sites[i], "node": cube.nodes[i]}, fields,
                                      int(cube.times[keep + t]) * 1000))
        return out

    def _detector(self, changed: dict, cold: bool) -> set:
        """Advance the series whose inputs changed, each from its checkpoint before its earliest changed step
        (or from where it stopped, if that is earlier), to the newest step; returns the node indices whose
        scores were recomputed.

        A series' inputs are its site's (the neighbours' median, the rain) and, for the particulates, the
        city's (the regional reference): a change at a site makes its nodes' series dirty from the site's
        earliest changed step, and a change of any node makes every particulate series dirty from that
        node's. A series whose inputs did not change stays where it stopped: it has no value since (else its
        site would have changed), and is taken on from there when its site next changes, or after LAG_S."""
        st = self.st
        step = st.step
        offset = (st.start - st.origin) // step  # the window's first step, as a detector column
        every = max(1, CHECK_EVERY_S // step)
        rewind = REWIND_S // step + every
        end = offset + st.steps
        site_first: dict = {}
        for i, t in changed.items():
            if st.owned[i]:
                site_first[st.sites[i]] = min(site_first.get(st.sites[i], t), t)
        city_first = min(changed.values(), default=None)
        times = st.start + np.arange(st.steps) * step
        sites = np.asarray(st.sites)
        scored: set = set()
        warned = False
        for j, m in enumerate(st.a_metrics):
            rows = st.rows.setdefault(m, [])
            known = set(rows)
            k_m = st.metrics.index(m)
            firsts = {}  # node index -> the window step from which its series' inputs changed
            for i in np.flatnonzero(st.owned):
                t = site_first.get(st.sites[i])
                if m in anomaly.REGIONAL and city_first is not None:
                    t = city_first if t is None else min(t, city_first)
                if t is not None:
                    firsts[int(i)] = t
            new = [i for i in sorted(changed) if st.owned[i] and i not in known and st.counts[i, :, k_m].any()]
            store = st.streams.get(m)
            if store is None:
                if not new:
                    continue
                store = st.streams[m] = detector.Rows(step, anomaly.PRODUCT, rewind=rewind)
            if new:  # a new series starts, without a value before, at the hour before its first change
                at = [offset + max(0, firsts.get(i, 0) - anomaly.RAIN_AHEAD) for i in new]
                at = np.array([d - (d - offset) % every for d in at])
                for d in np.unique(at):
                    store.add(int((at == d).sum()), anomaly.scale_floor(m), int(d))
                    rows.extend(i for i, c in zip(new, at, strict=True) if c == d)
            behind = np.flatnonzero(store.n < offset)
            if len(behind):  # left behind the window's start (the service was down): on without values to it
                log.warning("%s: %d series behind the window's start: taken on to it without values", m, len(behind))
                for n in np.unique(store.n[behind]):
                    sel = behind[store.n[behind] == n]
                    s = store.take(sel)
                    s.advance(np.full((len(sel), offset - int(n)), np.nan))
                    store.put(sel, s)
            lag_col = end - LAG_S // step
            starts: dict = {}  # start column -> the store's rows that start there
            for r, i in enumerate(rows):
                n = int(store.n[r])
                t = firsts.get(i)
                if t is None:
                    if n >= lag_col or n >= end:
                        continue
                    start = n  # left behind too long: taken on through its missing values
                else:
                    d = offset + max(0, t - anomaly.RAIN_AHEAD)
                    if d >= n:
                        start = n
                    else:
                        marks = [c for c in store.checks if c <= d]
                        if marks:
                            start = max(marks)
                        else:
                            start = min(store.checks, default=n)
                            if not warned:
                                log.warning("late readings from before the oldest checkpoint: the detector "
                                            "recomputed from there")
                                warned = True
                        start = min(start, n)
                if start < end:
                    starts.setdefault(max(start, offset), []).append(r)
            for start, group in sorted(starts.items()):
                group = sorted(group, key=lambda r: rows[r])  # in node order, as the inputs come
                back = [r for r in group if store.n[r] > start]
                if back:
                    try:
                        store.back_to(back, start)
                    except (KeyError, ValueError) as err:
                        log.warning("%s: %s; recomputed from the oldest context kept", m, err)
                        continue
                for lo in range(0, len(group), DETECTOR_ROWS):  # a bounded batch of series at a time
                    part = group[lo:lo + DETECTOR_ROWS]
                    g_nodes = np.array([rows[r] for r in part])
                    scored.update(int(i) for i in g_nodes)
                    self._advance(store, part, g_nodes, j, m, start - offset, offset, every, rewind, times, sites,
                                  cold)
            store.forget(end - rewind)
        return scored

    def _advance(self, store, group, g_nodes, j, m, a, offset, every, rewind, times, sites, cold) -> None:
        """The series `group` of the store (nodes g_nodes, at window step a) on to the newest step, an hour at
        a time with a checkpoint at each hour's start; their scores into the state."""
        st = self.st
        step = st.step
        if m in anomaly.REGIONAL:
            nodes_in = np.arange(len(st.nodes))  # the city's median: every node's
        else:
            nodes_in = np.flatnonzero(np.isin(sites, sorted({st.sites[i] for i in g_nodes})))
        has = np.isin(nodes_in, g_nodes)
        lo = max(0, a - anomaly.SOIL_WET_S // step - 2)  # the inputs' context before a
        if m in anomaly.TIDAL:
            lo = 0  # the fits look back up to TIDE_DAYS, before the window too
        r0 = max(0, lo - anomaly.SOIL_WET_S // step - 1)  # the rain context's own context
        rain = st.values(nodes_in, r0, ("rain_mm",))[:, :, 0]
        wet = anomaly.rain_context(rain, sites[nodes_in], step)
        wet = None if wet is None else tuple(w[:, lo - r0:] for w in wet)
        x = st.in_range(nodes_in, lo, (m,))[:, :, 0]
        tm = times[lo:]
        if m in anomaly.TIDAL and st.tide_x is not None and st.tide_x.shape[1]:
            pre = st.tide_x.shape[1]
            x = np.concatenate([st.tide_x[nodes_in, :, anomaly.TIDAL.index(m)], x], axis=1)
            tm = np.concatenate([st.start + np.arange(-pre, 0) * step, tm])
            wet = None if wet is None else tuple(np.concatenate([np.zeros((len(nodes_in), pre), w.dtype), w], axis=1)
                                                 for w in wet)
            lo = -pre
        xr, ref, why, referenced = anomaly.detector_inputs(x, tm, m, step, sites[nodes_in], wet, has,
                                                           tide_from=a - lo, offset=offset + lo)
        stream = store.take(group)
        results = []
        c0 = a
        while c0 < st.steps:
            phase = (offset + c0) % every
            if phase == 0:
                store.mark(group, stream)
            c1 = min(st.steps, c0 + every - phase)
            horizon = st.steps - rewind  # before it, no checkpoint can be needed: a day at a time
            if c1 < horizon:
                c1 = max(c1, min(horizon - horizon % every, c0 + 144 * every))
            sl = slice(c0 - lo, c1 - lo)
            results.append(stream.advance(xr[:, sl], None if why is None else why[:, sl],
                                          None if ref is None else ref[:, sl]))
            if cold:
                self._bar(f"detector {m}", c1, st.steps)
            c0 = c1
        store.put(group, stream)
        if not results:
            return
        res = detector.Result(*(np.concatenate([getattr(r, f) for r in results], axis=-1)
                                for f in ("score", "views", "baseline", "kind", "surprise")))
        k0 = a - lo
        sc, base, kind, z = anomaly.detector_outputs(m, xr[:, k0:], None if ref is None else ref[:, k0:], res)
        at = (g_nodes[:, None], np.arange(a, st.steps)[None, :], j)
        scores = st.scores
        scores.score[at], scores.baseline[at], scores.kind[at], scores.z[at] = sc, base, kind, z
        scores.referenced[g_nodes, j] = referenced[has]
        for i in g_nodes.tolist():
            st.touch(i, a)

    def _events(self, scored: set) -> list:
        st = self.st
        if not scored:
            return []
        idx = np.array(sorted(scored))
        x = st.in_range(idx, 0, st.a_metrics)
        sc = st.scores
        sub = anomaly.Scores(sc.score[idx], sc.baseline[idx], sc.kind[idx], sc.referenced[idx], sc.z[idx])
        times = st.start + np.arange(st.steps) * st.step
        nodes = [st.nodes[i] for i in idx]
        evs = anomaly.events(sub, x, times, nodes, st.a_metrics)
        mine = set(nodes)
        old = {k: e for k, e in st.events.items() if k[0] in mine}
        new = {(e.node, e.metric, e.start): e for e in evs}
        for k in old:
            st.events.pop(k)
        st.events.update(new)
        row = self._row()
        st.dirty_nodes.update(row[k[0]] for k in set(old) ^ set(new) | {k for k in new if old.get(k) != new[k]})
        site_of = dict(zip(st.nodes, st.sites, strict=True))
        # an event that no longer stands (or stands with another kind or severity: another point) is withdrawn;
        # one that began before the window is history, not computed again
        gone = [e for k, e in old.items() if e.start >= st.start and
                (k not in new or (new[k].kind, new[k].severity) != (e.kind, e.severity))]
        return ([anomaly_line(site_of[e.node], e) for k, e in new.items() if old.get(k) != e]
                + [lineproto.withdrawal("anomaly", event_tags(site_of[e.node], e), e.start) for e in gone])

    def _fire(self, nodes) -> list:
        st = self.st
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = st.h_sums[nodes] / st.h_counts[nodes]
        mean[:, :, 2] = st.h_sums[nodes][:, :, 2]
        mean = np.where(st.h_counts[nodes] > 0, mean, np.nan)
        hourly = Cube([st.nodes[i] for i in nodes], [st.sites[i] for i in nodes],
                      st.h_start + np.arange(mean.shape[1]) * 3600, FIRE_METRICS, mean)
        fire = fire_days(hourly, {k: v.lat for k, v in self.fleet.sites.items()}, self.s.fire_wind_kmh)
        out = []
        for site, node, t, vals in fire_values(hourly, fire):
            if st.fire.get((node, t)) != vals:
                st.fire[(node, t)] = vals
                st.dirty_nodes.add(self._row()[node])
                out.append(lineproto.line("index", {"site": site, "node": node}, vals, t * 1000))
        return out


def _partition(settings) -> tuple:
    from rimba.settings import parse_partition

    return parse_partition(settings.analyze_partition)
