"""One partition's window in memory: the cells it reads and what it computes from them (`analytics.incremental`).

Rows (axis 0 of every array) are the nodes held: the partition's own nodes first, in order, then the
particulate sensors of the city's other sites as they are first read (the regional reference of a site
with too few of its own needs their particulate values, nothing else of them). Only the owned nodes have
outputs (flags, indices, scores, the fire codes' hourly cells).

The cells' third axis is the metrics held: those read so far, in the measurement table's order (a forest
node has five of the table's fifteen); a metric read for the first time widens it. The scores' is the
anomaly metrics held. Each array is allocated once for the longest window (`days` and one WIB day), its
first `steps` columns in use: a new step costs nothing, and at a WIB midnight the window moves on in place.

Per owned node and step, with the six metrics and four anomaly metrics of the benchmark's fleet: the
cells 76 bytes (sums float64, counts and readings int32), flags 30, indices 56, scores 100; per city node,
its cells. Changes since the last snapshot are kept per node (`dirty`, `dirty_h`), from the first step
that changed, for `analytics.snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics import anomaly
from analytics.analyze import ANOMALY_METRICS
from analytics.data import TOTALS
from rimba.metrics import METRICS

METRIC_LIST = tuple(METRICS)
FIRE_METRICS = ("air_temp_c", "air_rh_pct", "rain_mm")


@dataclass(eq=False)
class State:
    """Everything a run carries (see the module docstring); arrays are (nodes, steps[, metrics])."""

    key: str  # fleet, sites, step, window: another key means a rebuild
    origin: int  # the detector's column 0
    start: int  # the window's first step
    step: int
    cap: int  # the longest window, in steps
    h_cap: int  # the fire codes' hourly cells: the longest window, in hours
    nodes: list  # owned first, then the city's particulate sensors
    sites: list
    n_own: int
    steps: int = 0
    h_start: int = 0
    h_steps: int = 0
    metrics: tuple = ()  # the metrics held, in METRIC_LIST order
    watermark: dict = field(default_factory=dict)  # node -> newest step seen
    contact: dict = field(default_factory=dict)
    wake: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)  # metric -> node indices of the stream's rows
    streams: dict = field(default_factory=dict)  # metric -> detector.Rows, each row at its own column
    events: dict = field(default_factory=dict)  # (node, metric, start) -> Event
    fire: dict = field(default_factory=dict)  # (node, noon) -> codes
    unwritten: list = field(default_factory=list)  # points computed by a run whose write failed
    pending: dict = field(default_factory=dict)  # node index -> earliest changed step not yet computed and written
    tide_x: np.ndarray = None  # (owned, steps, TIDAL) the tidal metric's values of the TIDE_DAYS before the window
    audited: int = 0
    saved: int = 0
    events_end: int = 0  # the window's end when the events were last computed (an open event runs to it)
    # what FAN carries from before the window (quality.check's fan_before), per owned node and particulate metric of
    # METRIC_LIST: the values of the day before it, the city's reference there, the hold carried into the window
    fan_x: np.ndarray = None  # (owned, FAN_BEFORE, particulates), float32, NaN where none
    fan_ref_x: np.ndarray = None  # (FAN_BEFORE, particulates)
    fan_level: np.ndarray = None  # (owned, particulates), NaN where none holds, as if no sensor were replaced
    fan_found: np.ndarray = None  # (owned, particulates) int64: when the fall that set each hold was found
    replaced: dict = field(default_factory=dict)  # node -> its PM sensor's replacement times the flags were judged with
    # changed since the last snapshot: node index -> first changed step (detector column) or hour (UNIX hours)
    dirty: dict = field(default_factory=dict)
    dirty_h: dict = field(default_factory=dict)
    dirty_nodes: set = field(default_factory=set)  # owned nodes whose events or fire codes changed
    dirty_tide: bool = False
    dirty_fan: bool = False  # fan_x, fan_ref_x or fan_level changed
    whole: bool = True  # the next snapshot saves everything (a new state, or the metrics held changed)

    def __post_init__(self):
        held, own = len(self.nodes), self.n_own
        self._sums = np.zeros((held, self.cap, 0))
        self._counts = np.zeros((held, self.cap, 0), np.int32)
        self._readings = np.zeros((held, self.cap), np.int32)
        self._flags = np.zeros((own, self.cap, len(METRIC_LIST)), np.uint16)
        self._derived: dict = {}
        self._score = [np.zeros((own, self.cap, 0)) for _ in range(3)]  # score, baseline, z
        self._kind = np.zeros((own, self.cap, 0), np.int8)
        self.referenced = np.zeros((own, 0), bool)
        self._h_sums = np.zeros((own, self.h_cap, len(FIRE_METRICS)))
        self._h_counts = np.zeros((own, self.h_cap, len(FIRE_METRICS)), np.int32)
        for a in self._score:
            a.fill(np.nan)

    # --- views of the window -----------------------------------------------------------------------------------

    @property
    def owned(self) -> np.ndarray:
        return np.arange(len(self.nodes)) < self.n_own

    @property
    def a_metrics(self) -> tuple:
        """The anomaly metrics held: the scores' third axis."""
        return tuple(m for m in ANOMALY_METRICS if m in self.metrics)

    @property
    def sums(self) -> np.ndarray:
        return self._sums[:, :self.steps]

    @property
    def counts(self) -> np.ndarray:
        return self._counts[:, :self.steps]

    @property
    def readings(self) -> np.ndarray:
        return self._readings[:, :self.steps]

    @property
    def flags(self) -> np.ndarray:
        return self._flags[:, :self.steps]

    @property
    def derived(self) -> dict:
        return {k: v[:, :self.steps] for k, v in self._derived.items()}

    def derived_of(self, name: str) -> np.ndarray:
        """An index's values (owned, steps), NaN where none was computed yet."""
        if name not in self._derived:
            self._derived[name] = np.full((self.n_own, self.cap), np.nan)
        return self._derived[name][:, :self.steps]

    @property
    def scores(self) -> anomaly.Scores:
        """The scores (owned, steps, a_metrics), views of the state's arrays."""
        s, b, z = (a[:, :self.steps] for a in self._score)
        return anomaly.Scores(s, b, self._kind[:, :self.steps], self.referenced, z)

    @property
    def h_sums(self) -> np.ndarray:
        return self._h_sums[:, :self.h_steps]

    @property
    def h_counts(self) -> np.ndarray:
        return self._h_counts[:, :self.h_steps]

    def values(self, nodes=None, lo: int = 0, metrics=METRIC_LIST, hi: int | None = None) -> np.ndarray:
        """The cube's values (nodes, steps lo..hi, metrics): each metric's mean per step (for TOTALS the total),
        NaN without a reading (or for a metric not held); `nodes` node indices (default all)."""
        rows = np.arange(len(self.nodes)) if nodes is None else np.asarray(nodes, dtype=np.int64)
        steps = np.arange(self.steps)[lo:hi]
        out = np.full((len(rows), len(steps), len(metrics)), np.nan)
        pos = [k for k, m in enumerate(metrics) if m in self.metrics]
        if not pos or not len(rows) or not len(steps):
            return out
        cols = [self.metrics.index(metrics[k]) for k in pos]
        at = np.ix_(rows, steps, cols)  # one copy
        sums, counts = self._sums[at], self._counts[at]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
        tot = [k for k, p in enumerate(pos) if metrics[p] in TOTALS]
        mean[:, :, tot] = sums[:, :, tot]
        out[:, :, pos] = np.where(counts > 0, mean, np.nan)
        return out

    def in_range(self, nodes=None, lo: int = 0, metrics=METRIC_LIST) -> np.ndarray:
        """`values` without those out of the measurement table's range (the RANGE flag's)."""
        x = self.values(nodes, lo, metrics)
        low = np.array([METRICS[m].low for m in metrics])
        high = np.array([METRICS[m].high for m in metrics])
        with np.errstate(invalid="ignore"):
            return np.where((x < low) | (x > high), np.nan, x)

    # --- changes of shape --------------------------------------------------------------------------------------

    def hold_metrics(self, names) -> None:
        """Widen the cells (and the scores) to hold these metrics too."""
        new = tuple(m for m in METRIC_LIST if m in self.metrics or m in names)
        if new == self.metrics:
            return
        keep = [new.index(m) for m in self.metrics]
        a_new = tuple(m for m in ANOMALY_METRICS if m in new)
        a_keep = [a_new.index(m) for m in self.a_metrics]

        def widen(a, width, fill, cols):
            out = np.full(a.shape[:2] + (width,), fill, a.dtype)
            out[:, :, cols] = a
            return out

        self._sums, self._counts = widen(self._sums, len(new), 0.0, keep), widen(self._counts, len(new), 0, keep)
        self._score = [widen(a, len(a_new), np.nan, a_keep) for a in self._score]
        self._kind = widen(self._kind, len(a_new), 0, a_keep)
        ref = np.zeros((self.n_own, len(a_new)), bool)
        ref[:, a_keep] = self.referenced
        self.referenced = ref
        self.metrics = new
        self.whole = True

    def hold_nodes(self, nodes, sites) -> list:
        """City nodes held from now on (their cells only); returns their indices."""
        first = len(self.nodes)
        self.nodes, self.sites = self.nodes + list(nodes), self.sites + list(sites)
        k = len(nodes)
        self._sums = np.concatenate([self._sums, np.zeros((k,) + self._sums.shape[1:])])
        self._counts = np.concatenate([self._counts, np.zeros((k,) + self._counts.shape[1:], np.int32)])
        self._readings = np.concatenate([self._readings, np.zeros((k, self.cap), np.int32)])
        return list(range(first, first + k))

    def slide(self, start: int, end: int) -> tuple:
        """The window from `start` (on or after the current one, by whole steps) to `end`: the steps before
        `start` dropped, in place. Returns (dropped, new steps)."""
        drop = (start - self.start) // self.step
        steps = (end - 1 - start) // self.step + 1
        if steps > self.cap:
            raise ValueError(f"a window of {steps} steps is longer than the {self.cap} allocated")
        grow = max(0, steps - (self.steps - drop))
        if drop:
            old = self.steps
            arrays = [(self._sums, 0), (self._counts, 0), (self._readings, 0), (self._flags, 0), (self._kind, 0)]
            arrays += [(a, np.nan) for a in self._score] + [(a, np.nan) for a in self._derived.values()]
            keep = max(0, old - drop)
            for a, fill in arrays:
                for r in range(0, len(a), 256):  # a block of rows at a time: no copy of the whole array
                    a[r:r + 256, :keep] = a[r:r + 256, drop:drop + keep]  # (NumPy buffers the overlap)
                a[:, keep:old] = fill
            self.start = start
        self.steps = max(0, self.steps - drop) + grow
        return drop, grow

    def slide_hours(self, h_start: int, end: int) -> None:
        """The fire codes' hourly cells likewise."""
        drop = (h_start - self.h_start) // 3600
        hours = (end - 1 - h_start) // 3600 + 1
        if hours > self.h_cap:
            raise ValueError(f"{hours} hours are more than the {self.h_cap} allocated")
        if drop:
            keep = max(0, self.h_steps - drop)
            for a in (self._h_sums, self._h_counts):
                a[:, :keep] = a[:, drop:drop + keep].copy()
                a[:, keep:self.h_steps] = 0
            self.h_start = h_start
            self.h_steps = keep
        self.h_steps = max(self.h_steps, hours)

    def touch(self, i: int, step: int) -> None:
        """Node i changed from window step `step` on (for the next snapshot)."""
        col = (self.start - self.origin) // self.step + int(step)
        self.dirty[i] = min(self.dirty.get(i, col), col)

    def touch_hours(self, i: int, hour: int) -> None:
        """Node i's hourly cells changed from hour index `hour` (of the hourly cells) on."""
        h = self.h_start // 3600 + int(hour)
        self.dirty_h[i] = min(self.dirty_h.get(i, h), h)
