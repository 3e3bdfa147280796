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

from ingest import lineproto
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


def qc_lines(cube: Cube, flags: np.ndarray, names: dict) -> list:
    """One `qc` point per flagged value and check: tags site, node, metric, check; fields flag, value."""
    out = []
    for bit, check in names.items():
        hit = np.argwhere(flags & bit)
        for i, t, j in hit:
            v = cube.values[i, t, j]
            fields = {"flag": int(bit)}
            if not np.isnan(v):
                fields["value"] = float(v)
            out.append(lineproto.line("qc", {"site": cube.sites[i], "node": cube.nodes[i],
                                             "metric": cube.metrics[j], "check": check},
                                      fields, int(cube.times[t]) * 1000))
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


def anomaly_lines(cube: Cube, events) -> list:
    """`anomaly` points: tags site, node, metric, kind, severity; fields score, value, end, message; time start."""
    site_of = dict(zip(cube.nodes, cube.sites, strict=True))
    return [lineproto.line("anomaly", {"site": site_of[e.node], "node": e.node, "metric": e.metric, "kind": e.kind,
                                       "severity": e.severity},
                           {"score": float(e.peak), "value": float(e.value), "end": int(e.end), "message": e.message},
                           int(e.start) * 1000)
            for e in events]


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
