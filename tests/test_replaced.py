"""A technician's record that a node's sensor was replaced: `rimba node replaced` writes it into the fleet file,
the fleet file's reader takes it or names the key it cannot take, and the analytics reads it
(tests/test_quality.py, tests/test_incremental.py)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tomllib

import pytest
from hypothesis import given, settings, strategies as st

from rimba.dev.harness import ROOT, env_for, fleet_text
from rimba.errors import ConfigError
from rimba.fleet import load_fleet, parse_fleet

NOW = 1_796_000_000  # 2026-11-30 (a fixed time: the CLI's "in the future" is judged against it)


def rimba(tmp_path, *args):
    values = {"fleet": str(tmp_path / "fleet.toml"), "state_dir": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "rimba", *args], env=env_for(values), capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)


def test_node_replaced_records_each_replacement_in_wib_beside_the_ones_before(tmp_path):
    from hardware.provision import Provisioner
    from rimba import settings as settings_mod

    text = fleet_text({"smp29-01": ("smp29", "forest"), "smp29-02": ("smp29", "forest")})
    (tmp_path / "fleet.toml").write_text(text)
    s = settings_mod.build(overrides={"fleet": str(tmp_path / "fleet.toml"), "state_dir": str(tmp_path / "s")}, env={})
    p = Provisioner(s)
    assert p.replaced("smp29-01", "pm", NOW - 86400) == (NOW - 86400,)
    assert p.replaced("smp29-01", "pm", NOW - 5 * 86400) == (NOW - 5 * 86400, NOW - 86400)
    fleet = load_fleet(tmp_path / "fleet.toml")
    assert fleet.nodes["smp29-01"].replaced("pm") == (NOW - 5 * 86400, NOW - 86400)
    assert fleet.nodes["smp29-02"].replaced("pm") == ()
    written = (tmp_path / "fleet.toml").read_text()
    assert "pm_replaced = [2026-11-25T07:53:20+07:00, 2026-11-29T07:53:20+07:00]" in written  # WIB, as people read
    assert written.replace(written.split("\n")[written.split("\n").index("[nodes.smp29-01]") + 1] + "\n", "") == text
    with pytest.raises(ConfigError, match="smp29-09 is not in the fleet file"):
        p.replaced("smp29-09", "pm", NOW)


def test_the_cli_takes_wib_or_an_offset_and_says_in_one_line_what_it_cannot_take(tmp_path):
    (tmp_path / "fleet.toml").write_text(fleet_text({"smp29-01": ("smp29", "forest")}))
    r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", "--at", "2026-11-20T10:00")
    assert r.returncode == 0 and "2026-11-20 10:00 WIB" in r.stdout, r.stderr
    r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", "--at", "2026-11-21T03:00Z")
    assert r.returncode == 0 and "2026-11-21 10:00 WIB" in r.stdout, r.stderr
    times = load_fleet(tmp_path / "fleet.toml").nodes["smp29-01"].replaced("pm")
    assert times == (int(dt.datetime(2026, 11, 20, 3, tzinfo=dt.UTC).timestamp()),
                     int(dt.datetime(2026, 11, 21, 3, tzinfo=dt.UTC).timestamp()))
    for args, says in ((["--at", "last tuesday"], "--at last tuesday: give a date and time"),
                       (["--at", "2999-01-01T00:00"], "in the future"),
                       (["--at", "2026-11-20T10:00", "--id-typo"], None)):
        r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", *args)
        assert r.returncode == 2, r
        if says:
            assert r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    r = rimba(tmp_path, "node", "replaced", "smp29-07", "pm")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "rimba node list" in r.stderr, r.stderr
    assert load_fleet(tmp_path / "fleet.toml").nodes["smp29-01"].replaced("pm") == times  # nothing else written


# what tomllib gives for a value: offset and local date-times, dates, times, strings, numbers, arrays, tables
ZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=7)), dt.timezone(dt.timedelta(hours=-3.5))])
SCALARS = st.one_of(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=ZONES),
                    st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)),
                    st.dates(), st.times(), st.text(max_size=8), st.integers(), st.floats(allow_nan=False),
                    st.booleans())
TOML_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4),
                        st.dictionaries(st.text(max_size=3), SCALARS, max_size=2))


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["pm_replaced", "fan_replaced", "air_replaced", "_replaced"]), value=TOML_VALUES)
def test_a_replacement_key_in_the_fleet_file_is_taken_or_refused_naming_it(key, value):
    """Whatever a technician writes under a `*_replaced` key, the fleet file is read with its times (offset date-times,
    one or a list of them, of a sensor that can be recorded replaced) or refused naming the key: never another
    error, never a time read from a value without its offset."""
    data = tomllib.loads(fleet_text({"smp29-01": ("smp29", "forest")}))
    node = data["nodes"]["smp29-01"]
    node[key] = value
    try:
        fleet = parse_fleet(data)
    except ConfigError as err:
        assert f"nodes.smp29-01.{key}" in str(err)
        return
    assert key == "pm_replaced"
    got = node[key] if isinstance(node[key], list) else [node[key]]
    assert all(isinstance(t, dt.datetime) and t.tzinfo for t in got)
    assert fleet.nodes["smp29-01"].replaced("pm") == tuple(sorted(int(t.timestamp()) for t in got))
