"""InfluxDB line protocol for the contract's measurements, at millisecond precision.

Tags are site and node names already validated by `rimba.names` (nothing to
escape); string fields are escaped as the protocol requires.
"""

from __future__ import annotations


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def tag(value: str) -> str:
    """Escape a tag value that is not a contract name (e.g. an ingest instance id)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return _str(value)


def line(measurement: str, tags: dict, fields: dict, time_ms: int) -> str:
    tag_part = "".join(f",{k}={tags[k]}" for k in sorted(tags))
    field_part = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
    return f"{measurement}{tag_part} {field_part} {time_ms}"


READING_FIELDS = ("seq", "late", "clock_offset_s")  # a `reading` point's fields beside its metrics


def reading(site: str, node: str, values: str, seq: int, late: bool, offset, time_s: int) -> str:
    """A `reading` point; `values` is the row's field text as `rimba.contract` decoded it (floats), then
    READING_FIELDS: its seq, whether it came late, and its clock offset when re-based."""
    return readings(site, node, (values,), (seq,), (late,), (offset,), (time_s,))[0]


def readings(site: str, node: str, values, seqs, lates, offsets, times) -> list:
    """The `reading` points of a node's rows, given as columns (`reading` for each, in one pass)."""
    head = f"reading,node={node},site={site} "
    return [f"{head}{v}{',' if v else ''}seq={s}i,late={'true' if late else 'false'}"
            f"{'' if o is None else f',clock_offset_s={float(o)!r}'} {t * 1000}"
            for v, s, late, o, t in zip(values, seqs, lates, offsets, times, strict=True)]


# Withdrawn points. The analytics computes a window again when late readings arrive or its state is rebuilt
# (new constants), and a flag or an event it wrote may then no longer stand: an event's start or kind moves,
# a step flag is filled in. Such a point cannot be deleted portably (InfluxDB 2 and 3 serve no InfluxQL DELETE
# through the v1 API), so it is withdrawn: written again at its own tags and time with `flag` 0 (`qc`) or
# `score` 0 (`anomaly`), which no live point has (a flag is a check's bit, a score at least the event
# threshold). Every reader keeps `LIVE[measurement]`. Rimba's own `maintenance` (a sensor a technician recorded
# replaced, written by the analytics from the fleet file: tags site, node, part; field `replaced` 1) is withdrawn
# the same way when the record is taken back.
LIVE_FIELD = {"qc": "flag", "anomaly": "score", "maintenance": "replaced"}
LIVE = {m: f'"{f}" > 0' for m, f in LIVE_FIELD.items()}
POINT_TAGS = {"qc": ("site", "node", "metric", "check"), "anomaly": ("site", "node", "metric", "kind", "severity"),
              "maintenance": ("site", "node", "part")}
_WITHDRAWN = {"qc": {"flag": 0}, "anomaly": {"score": 0.0}, "maintenance": {"replaced": 0}}


def point_key(measurement: str, tags: dict, time_s: int) -> tuple:
    """What identifies a `qc` or `anomaly` point in InfluxDB: its tag values and its time."""
    return tuple(tags.get(k, "") for k in POINT_TAGS[measurement]), int(time_s)


def withdrawal(measurement: str, tags: dict, time_s: int) -> str:
    """The point that withdraws the `qc` or `anomaly` point of these tags at this time. The tags are as InfluxDB
    returned them, so they are escaped: a point another writer left with a space in a tag must not make the
    whole write fail (and the run with it, every minute)."""
    return line(measurement, {k: tag(v) for k, v in tags.items() if v}, _WITHDRAWN[measurement], int(time_s) * 1000)


# An `index` value that no longer stands (an input later found unfit: a spike, a dying fan) cannot be unset
# either: it is written again as WITHDRAWN_VALUE, far below every derived value (temperatures, concentrations
# and indices), and a reader of a derived field keeps `live_value(field)`.
WITHDRAWN_VALUE = -9999.0


def live_value(field: str) -> str:
    """The InfluxQL condition that keeps the `index` values of `field` that stand."""
    return f'"{field}" > {WITHDRAWN_VALUE:g}'
