"""Days to an empty battery, from the voltage the nodes report in their statuses (analytics.analyze.battery_lines),
against the real InfluxDB."""

from __future__ import annotations

import pytest

from analytics.analyze import BATTERY_DAYS_MAX, BATTERY_EMPTY_V, battery_lines
from rimba import lineproto

END = 1764547200 + 1800  # 2025-12-01 07:30 WIB, half past an hour


def status(node: str, t: int, volts: float) -> str:
    return lineproto.line("node_status", {"site": "smp29", "node": node}, {"state": "sleeping", "batt_v": volts},
                          t * 1000)


def parse(line: str) -> tuple:
    """(node, (days left, time ms)) of an `index` line."""
    key, fields, t = line.split(" ")
    tags = dict(kv.split("=") for kv in key.split(",")[1:])
    assert key.startswith("index,") and tags["site"] == "smp29" and fields.startswith("batt_days_left=")
    return tags["node"], (float(fields.split("=")[1]), int(t))


@pytest.fixture
def p(platform_factory):
    return platform_factory({n: ("smp29", "forest") for n in ("drain-01", "sun-02", "once-03", "other-04")})


def test_a_draining_node_has_its_days_left_and_a_charging_one_the_cap(p):
    hours = range(END - 3 * 86400 + 3600, END, 3600)  # three days of hourly statuses up to this hour
    lines = [status("drain-01", t, 3.90 - 0.012 * (t - (END - 3 * 86400)) / 86400) for t in hours]
    lines += [status("sun-02", t, 3.80 + 0.004 * (t - (END - 3 * 86400)) / 86400) for t in hours]
    lines += [status("once-03", END - 600, 3.70), status("other-04", END - 600, 3.70)]
    p.influx.write(("\n".join(lines) + "\n").encode())
    out = battery_lines(p.influx, {"drain-01": "smp29", "sun-02": "smp29", "once-03": "smp29"}, END)
    points = dict(parse(line) for line in out)
    assert set(points) == {"drain-01", "sun-02"}  # once-03: a single status is no trend; other-04 not asked for
    newest = 3.90 - 0.012 * (END - 3600 - (END - 3 * 86400)) / 86400  # the newest status, an hour ago
    assert points["drain-01"][0] == pytest.approx((newest - BATTERY_EMPTY_V) / 0.012, rel=0.02)
    assert points["sun-02"][0] == BATTERY_DAYS_MAX
    assert points["drain-01"][1] == (END - 3600) // 3600 * 3600 * 1000  # at the hour of the newest status


def test_the_same_within_an_hour(p):
    hours = range(END - 3 * 86400 + 3600, END, 3600)
    p.influx.write(("\n".join(status("drain-01", t, 3.9 - 0.01 * i / 24) for i, t in enumerate(hours)) + "\n")
                   .encode())
    nodes = {"drain-01": "smp29"}
    assert battery_lines(p.influx, nodes, END) == battery_lines(p.influx, nodes, END + 1799)
