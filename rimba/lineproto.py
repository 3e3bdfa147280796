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
    tail = f"seq={seq}i,late={'true' if late else 'false'}"
    if offset is not None:
        tail += f",clock_offset_s={float(offset)!r}"
    return f"reading,node={node},site={site} {values + ',' if values else ''}{tail} {time_s * 1000}"
