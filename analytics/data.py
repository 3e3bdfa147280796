"""Data access for the analytics: InfluxDB windows into aligned NumPy cubes, and results back.

A cube is (nodes, time, metrics) on a regular grid, NaN where there is no value.
Queries are chunked by time and cover the whole fleet at once (GROUP BY node),
never one query per node. Results are written as the contract's `qc`,
`anomaly` and `index` measurements through the same line protocol the ingest
uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics import quality
from rimba import lineproto
from rimba.metrics import METRICS

CHUNK_S = 86400  # one query per day of data
TOTALS = ("rain_mm",)  # amounts since the previous reading: a step's value is their sum, not their mean


@dataclass
class Cube:
    nodes: list  # node ids, axis 0
    sites: list  # the site of each node
    times: np.ndarray  # UNIX seconds of each grid step, axis 1
    metrics: tuple  # metric names, axis 2
    values: np.ndarray  # (nodes, time, metrics), float, NaN where missing

    def metric(self, name: str) -> np.ndarray:
        return self.values[:, :, self.metrics.index(name)]


def load_cube(influx, fleet, start: int, end: int, step_s: int = 600, metrics=None) -> Cube:
    """Mean (for rain: the total) of each metric per node and grid step over [start, end)."""
    metrics = tuple(metrics or METRICS)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"{m!r} is not a metric of the measurement table")
    start -= start % step_s
    times = np.arange(start, end, step_s)
    nodes = sorted(fleet.nodes)
    row = {n: i for i, n in enumerate(nodes)}
    values = np.full((len(nodes), len(times), len(metrics)), np.nan)
    select = ", ".join(f'{"sum" if m in TOTALS else "mean"}("{m}") AS "{m}"' for m in metrics)
    for lo in range(start, end, CHUNK_S):
        hi = min(end, lo + CHUNK_S)
        q = (f"SELECT {select} FROM reading WHERE time >= {lo}s AND time < {hi}s "
             f"GROUP BY time({step_s}s), node fill(none)")
        for result in influx.query(q, epoch="s"):
            for series in result.get("series", []):
                i = row.get(series.get("tags", {}).get("node"))
                if i is None:
                    continue  # a node no longer in the fleet file
                cols = series["columns"]
                data = np.array([[np.nan if v is None else v for v in r] for r in series["values"]], dtype=float)
                if not len(data):
                    continue
                t_idx = ((data[:, 0] - start) // step_s).astype(int)
                ok = (t_idx >= 0) & (t_idx < len(times))
                for j, m in enumerate(metrics):
                    values[i, t_idx[ok], j] = data[ok, cols.index(m)]
    return Cube(nodes, [fleet.nodes[n].site for n in nodes], times, metrics, values)


def flagged(cube: Cube, flags: np.ndarray, names: dict):
    """(tags, time s, (node, step, metric) index) of each flagged value and check of the cube."""
    for bit, check in names.items():
        for i, t, j in np.argwhere(flags & bit):
            yield ({"site": cube.sites[i], "node": cube.nodes[i], "metric": cube.metrics[j], "check": check},
                   int(cube.times[t]), (i, t, j))


def qc_lines(cube: Cube, flags: np.ndarray, names: dict) -> list:
    """One `qc` point per flagged value and check: tags site, node, metric, check; fields flag, value."""
    out = []
    bit_of = {check: bit for bit, check in names.items()}
    for tags, t, (i, k, j) in flagged(cube, flags, names):
        v = cube.values[i, k, j]
        fields = {"flag": int(bit_of[tags["check"]])}
        if not np.isnan(v):
            fields["value"] = float(v)
        out.append(lineproto.line("qc", tags, fields, t * 1000))
    return out


def index_lines(cube: Cube, derived: dict, labels: dict | None = None) -> list:
    """`index` points: one per node and grid step that has any derived value.

    `labels` maps a derived field to a (name, text) string field written beside it wherever it has a
    value (the correction a corrected value went through)."""
    names = list(derived)
    labels = labels or {}
    stack = np.stack([derived[k] for k in names], axis=-1)  # (nodes, time, k)
    out = []
    for i, t in np.argwhere(~np.isnan(stack).all(axis=-1)):
        fields = {k: float(stack[i, t, j]) for j, k in enumerate(names) if not np.isnan(stack[i, t, j])}
        fields.update(labels[k] for k in names if k in labels and k in fields)
        out.append(lineproto.line("index", {"site": cube.sites[i], "node": cube.nodes[i]}, fields,
                                  int(cube.times[t]) * 1000))
    return out


def event_tags(site: str, e) -> dict:
    """The tags of an event's `anomaly` point."""
    return {"site": site, "node": e.node, "metric": e.metric, "kind": e.kind, "severity": e.severity}


def anomaly_line(site: str, e) -> str:
    """An event's `anomaly` point: tags site, node, metric, kind, severity; fields score, value, end, message;
    time its start."""
    fields = {"score": float(e.peak), "value": float(e.value), "end": int(e.end), "message": e.message}
    return lineproto.line("anomaly", event_tags(site, e), fields, int(e.start) * 1000)


def anomaly_lines(cube: Cube, events) -> list:
    site_of = dict(zip(cube.nodes, cube.sites, strict=True))
    return [anomaly_line(site_of[e.node], e) for e in events]


def _live(influx, measurement: str, columns: tuple, start: int, end: int, nodes, where: str = ""):
    """(tags, time, *columns) of each live `qc` or `anomaly` point of `nodes` in [start, end) (and `where`)."""
    cond = f" AND {where}" if where else ""
    group = ", ".join(f'"{k}"' for k in lineproto.POINT_TAGS[measurement])
    q = (f'SELECT {", ".join(columns)} FROM "{measurement}" WHERE {lineproto.LIVE[measurement]} AND '
         f'time >= {int(start)}s AND time < {int(end)}s{cond} GROUP BY {group}')
    nodes = set(nodes)
    for series in influx.query_stream(q, epoch="s"):
        tags = series.get("tags") or {}
        if tags.get("node") in nodes:
            for t, *values in series["values"]:
                yield tags, int(t), *values


def withdrawn(influx, measurement: str, start: int, end: int, standing: set, nodes, grid: tuple,
              where: str = "") -> tuple:
    """(withdrawals, live keys): the withdrawals (`rimba.lineproto.withdrawal`) of the live `measurement` points of
    `nodes` in [start, end) (and `where`, InfluxQL) on the `grid` (origin, step) whose `point_key` is not in
    `standing` (what an analysis of that window no longer stands by; a point off its grid is not one it could
    have found), and the keys of the live ones it saw there."""
    out, live = [], set()
    for tags, t, _ in _live(influx, measurement, (f'"{lineproto.LIVE_FIELD[measurement]}"',), start, end, nodes, where):
        if (t - grid[0]) % grid[1]:
            continue
        key = lineproto.point_key(measurement, tags, t)
        live.add(key)
        if key not in standing:
            out.append(lineproto.withdrawal(measurement, tags, t))
    return out, live


def superseded(influx, start: int, end: int, events, site_of: dict, nodes, where: str = "") -> tuple:
    """(withdrawals, live keys): the withdrawals of the live `anomaly` points of `nodes` in [start, end) that `events`
    (an analysis of that window) finds again differently: of a node and metric it has an event for, overlapping
    one in time, and not one of them (another start, kind or severity); and the keys of the live ones seen. An
    incident it does not find at all stays: a detector started at the window's start lacks the context of one
    carried from further back (its records, a week view), so not finding one is no evidence against it."""
    spans: dict = {}
    for e in events:
        spans.setdefault((e.node, e.metric), []).append((e.start, e.end))
    standing = {lineproto.point_key("anomaly", event_tags(site_of[e.node], e), e.start) for e in events}
    out, live = [], set()
    for tags, t, _score, until in _live(influx, "anomaly", ('"score"', '"end"'), start, end, nodes, where):
        until = int(until if until is not None else t)
        key = lineproto.point_key("anomaly", tags, t)
        live.add(key)
        found = spans.get((tags.get("node"), tags.get("metric"))) or []
        if key not in standing and any(a <= until and t <= b for a, b in found):
            out.append(lineproto.withdrawal("anomaly", tags, t))
    return out, live


def maintenance_points(influx, replaced: dict, site_of: dict, start: int, end: int, where: str = "") -> list:
    """The `maintenance` points that make InfluxDB's in [start, end) the fleet file's records (`replaced`: node ->
    times its PM sensor was replaced) of the nodes of `site_of`: each record, and the withdrawal of a live point no
    record stands for (one taken back)."""
    standing = {lineproto.point_key("maintenance", maintenance_tags(site_of[n], n), t)
                for n, ts in replaced.items() if n in site_of for t in ts if start <= t < end}
    gone, _live_keys = withdrawn(influx, "maintenance", start, end, standing, site_of, (0, 1), where)
    return gone + [maintenance_line(site, node, t) for (site, node, _part), t in sorted(standing)]


def maintenance_tags(site: str, node: str) -> dict:
    return {"site": site, "node": node, "part": "pm"}


def maintenance_line(site: str, node: str, t: int) -> str:
    """The `maintenance` point of a node's PM sensor replaced at `t` (UNIX seconds)."""
    return lineproto.line("maintenance", maintenance_tags(site, node), {"replaced": 1}, int(t) * 1000)


def fans_written(influx, start: int, step: int, where: str = "") -> set:
    """(node, metric) of the particulate sensors held dead where a window begins, by the live FAN flags written in its
    first block of samples (a block median's worth: `quality.Limits.fan_block`): an analysis of the window alone
    cannot see a fall older than it, and would take a dead fan's PM for clean air."""
    cond = f" AND {where}" if where else ""
    first = int(start) + quality.Limits().fan_block * int(step)
    q = (f'SELECT "flag" FROM "qc" WHERE {lineproto.LIVE["qc"]} AND "check" = \'{quality.FLAG_NAMES[quality.FAN]}\''
         f'{cond} AND time >= {int(start)}s AND time < {first}s GROUP BY "node", "metric"')
    return {(s["tags"]["node"], s["tags"]["metric"]) for s in influx.query_stream(q, epoch="s")
            if s.get("tags") and s["values"]}


def fan_seed(held: set, nodes, metrics) -> tuple:
    """`quality.check`'s fan_before for a window with no context before it: the sensors `held` (fans_written) hold
    at a level not known (+inf: the first block median's, plus the fall a finding needs)."""
    pm = [m for m in metrics if m in quality.PM_METRICS]
    level = np.full((len(nodes), len(pm)), np.nan)
    for i, n in enumerate(nodes):
        for j, m in enumerate(pm):
            if (n, m) in held:
                level[i, j] = np.inf
    return np.zeros((len(nodes), 0, len(pm))), np.zeros((0, len(pm))), level


def reconciled_values(influx, derived: dict, origin: int, step: int, nodes, sites, start: int, end: int,
                      where: str = "", labels: dict | None = None, reassert: bool = False) -> list:
    """The `index` points that make InfluxDB's values of `derived`'s fields in [start, end) (and `where`) those of
    `derived` (field -> (nodes, steps) on the grid from `origin`, NaN where there is none): a stored value that
    stands where derived has none is withdrawn (`rimba.lineproto.WITHDRAWN_VALUE`); with `reassert`, a value of
    derived that InfluxDB does not hold live, or holds otherwise, is written again (with its `labels` field)."""
    fields = list(derived)
    if not fields:
        return []
    cond = f" AND {where}" if where else ""
    columns = ", ".join(f'"{f}"' for f in fields)
    q = (f'SELECT {columns} FROM "index" WHERE time >= {int(start)}s AND time < {int(end)}s{cond} '
         'GROUP BY "site", "node"')
    row_of = {n: i for i, n in enumerate(nodes)}
    shape = next(iter(derived.values())).shape
    lo = max(0, -(-(int(start) - int(origin)) // step))
    stored = {f: np.full(shape, np.nan) for f in fields}  # NaN: none; WITHDRAWN_VALUE: withdrawn
    for series in influx.query_stream(q, epoch="s"):
        i = row_of.get((series.get("tags") or {}).get("node"))
        if i is None:
            continue
        names = series["columns"][1:]
        for t, *values in series["values"]:
            k, off = divmod(int(t) - int(origin), step)
            if off or not 0 <= k < shape[1]:
                continue  # not the analytics' point
            for f, v in zip(names, values, strict=True):
                if v is not None:
                    stored[f][i, k] = v
    labels = labels or {}
    fix: dict = {}
    for f in fields:
        want, have = derived[f][:, lo:], stored[f][:, lo:]
        live = ~np.isnan(have) & (have > lineproto.WITHDRAWN_VALUE)
        for i, k in np.argwhere(np.isnan(want) & live):
            fix.setdefault((i, k), {})[f] = lineproto.WITHDRAWN_VALUE
        if reassert:
            with np.errstate(invalid="ignore"):
                other = ~live | (np.abs(have - want) > 1e-9 * np.abs(want))
            for i, k in np.argwhere(~np.isnan(want) & other):
                point = fix.setdefault((i, k), {})
                point[f] = float(want[i, k])
                if f in labels:
                    name, text = labels[f]
                    point[name] = text
    return [lineproto.line("index", {"site": sites[i], "node": nodes[i]}, fields_, (origin + (lo + k) * step) * 1000)
            for (i, k), fields_ in sorted(fix.items())]


def last_contact(influx, start: int, end: int) -> tuple:
    """When each node was last heard from in [start, end], and the wake time it last announced.

    Heard from: its newest reading, or its newest status other than the Last Will (`lost`), which
    the broker sends for a node, not the node itself. Returns ({node: t}, {node: wake}).
    """
    contact: dict = {}
    wake: dict = {}
    window = f"time >= {int(start)}s AND time <= {int(end)}s"
    queries = (f'SELECT last("seq") FROM reading WHERE {window} GROUP BY node',
               f"SELECT last(\"state\") FROM node_status WHERE {window} AND \"state\" <> 'lost' GROUP BY node",
               f'SELECT last("wake") FROM node_status WHERE {window} GROUP BY node')
    for n, q in enumerate(queries):
        for result in influx.query(q, epoch="s"):
            for series in result.get("series", []):
                node = series.get("tags", {}).get("node")
                t, value = series["values"][0][:2]
                if n < 2:
                    contact[node] = max(contact.get(node, 0), int(t))
                elif value is not None:
                    wake[node] = int(value)
    return contact, wake


@dataclass
class Cells:
    """Readings per node and grid step, as read: the sum and count of each metric and the readings' count."""

    node: str
    times: np.ndarray  # (k,) UNIX seconds of each step
    sums: np.ndarray  # (k, metrics): for TOTALS the total, else the sum (mean = sum / count)
    counts: np.ndarray  # (k, metrics)
    readings: np.ndarray  # (k,) readings in the step (count of `seq`)


class Reader:
    """Reads the `reading` measurement in bounded queries: each covers a stretch of time sized so that it
    returns at most about `max_rows` rows (nodes x steps; one reading a step), streamed in chunks
    (`Influx.query_stream`), and sums and counts them per node and step (`Cells`). A query
    that fails to answer (a timeout, a 5xx) is logged, counted in `failures`, and retried on half the
    stretch, down to one step, `attempts` times at that size; then the error is raised and the caller's
    run ends with what it has merged so far (the next run reads again from there)."""

    def __init__(self, influx, metrics=METRICS, max_rows: int = 20_000, attempts: int = 3, sleep=None, log=None,
                 readings: bool = True):
        import logging
        import time

        self.influx, self.metrics, self.max_rows, self.attempts = influx, tuple(metrics), max_rows, attempts
        self.readings = readings  # False: no count of readings (`seq`), so only the series with these metrics answer
        self.sleep = time.sleep if sleep is None else sleep
        self.log = log or logging.getLogger("rimba.analyze")
        self.failures = 0
        self.queries = 0

    def cells(self, lo: int, hi: int, step: int, nodes: int, where: str = ""):
        """Yield Cells for [lo, hi) on the step grid (lo and hi multiples of step), `nodes` the number of nodes
        the `where` clause (InfluxQL, without AND) can match, for sizing the stretches."""
        from rimba.errors import InfluxUnavailable

        span = max(1, self.max_rows // max(1, nodes)) * step
        t = lo
        while t < hi:
            size, tries = min(span, hi - t), 0
            while True:
                try:
                    got = list(self._query(t, min(hi, t + size), step, where))
                    break
                except InfluxUnavailable as err:
                    self.failures += 1
                    tries = tries + 1 if size <= step else 0
                    self.log.warning("reading %d s of readings from %d failed (%s); retrying on %d s", size, t, err,
                                     max(step, size // 2))
                    if tries >= self.attempts:
                        raise
                    size = max(step, (size // 2) // step * step)
                    self.sleep(min(5.0, 0.2 * 2 ** tries))
            yield from got
            t += size

    def _query(self, lo: int, hi: int, step: int, where: str):
        """The readings of [lo, hi) as they are stored, summed and counted per node and step here: InfluxDB 1.6
        spends about thirteen times the CPU on a `sum` and a `count` of each metric per step (GROUP BY time) as on
        the values themselves (measured at 300 nodes over 8 days: 25 s against 1.9 s). A node's series may come
        in several chunks; its cells are made when the query has answered."""
        fields = list(self.metrics) + (["seq"] if self.readings else [])
        sel = ", ".join(f'"{f}"' for f in fields)
        cond = f" AND {where}" if where else ""
        q = f"SELECT {sel} FROM reading WHERE time >= {lo}s AND time < {hi}s{cond} GROUP BY node"
        self.queries += 1
        pieces: dict = {}
        for series in self.influx.query_stream(q, epoch="s"):
            cols = series["columns"]
            at = [0] + [cols.index(f) for f in fields]
            rows = [[np.nan if r[k] is None else r[k] for k in at] for r in series["values"]]
            if rows:
                pieces.setdefault(series.get("tags", {}).get("node"), []).append(np.array(rows, dtype=float))
        m = len(self.metrics)
        for node, parts in pieces.items():
            data = np.concatenate(parts)
            t = data[:, 0].astype(np.int64)
            steps, inv = np.unique(t - t % step, return_inverse=True)
            vals = data[:, 1:1 + m]
            has = ~np.isnan(vals)
            k = len(steps)
            sums = np.stack([np.bincount(inv, np.where(has[:, j], vals[:, j], 0.0), k) for j in range(m)], axis=1)
            counts = np.stack([np.bincount(inv, has[:, j], k) for j in range(m)], axis=1)
            n = np.bincount(inv, ~np.isnan(data[:, -1]), k) if self.readings else np.zeros(k)
            keep = counts.any(axis=1) | (n > 0)  # a step with values of other fields only: none here (as fill(none))
            yield Cells(node, steps[keep], np.where(counts > 0, sums, np.nan)[keep], counts[keep], n[keep])


def regex_of(names) -> str:
    """An InfluxQL regular expression matching exactly these tag values."""
    import re

    return "/^(" + "|".join(re.escape(n).replace("/", r"\/") for n in sorted(names)) + ")$/"
