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

    text = fleet_text({"smp29-01": ("smp29", "air"), "smp29-02": ("smp29", "air"), "smp29-03": ("smp29", "forest")})
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
    with pytest.raises(ConfigError, match=r"smp29-03 \(forest\) has no pm sensor; check the node id"):
        p.replaced("smp29-03", "pm", NOW)
    # a record made by mistake is taken back; the last one taken back leaves the file as it was
    with pytest.raises(ConfigError, match=r"no replacement recorded at 2026-11-29T07:53:21\+07:00; recorded: "
                                          r"2026-11-25T07:53:20\+07:00, 2026-11-29T07:53:20\+07:00"):
        p.replaced("smp29-01", "pm", NOW - 86400 + 1, undo=True)
    assert p.replaced("smp29-01", "pm", NOW - 5 * 86400, undo=True) == (NOW - 86400,)
    assert p.replaced("smp29-01", "pm", NOW - 86400, undo=True) == ()
    assert (tmp_path / "fleet.toml").read_text() == text


def test_the_cli_takes_wib_or_an_offset_and_says_in_one_line_what_it_cannot_take(tmp_path):
    (tmp_path / "fleet.toml").write_text(fleet_text({"smp29-01": ("smp29", "air")}))
    r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", "--at", "2026-11-20T10:00")
    assert r.returncode == 0 and "2026-11-20 10:00 WIB" in r.stdout, r.stderr
    r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", "--at", "2026-11-21T03:00Z")
    assert r.returncode == 0 and "2026-11-21 10:00 WIB" in r.stdout, r.stderr
    for args in (["--at", "2026-11-22T09:00"], ["--at", "2026-11-22T09:00", "--undo"]):  # a mistake, taken back
        r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", *args)
        assert r.returncode == 0, r.stderr
    assert "taken back" in r.stdout and "2 replacements of it left" in r.stdout, r.stdout
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
    r = rimba(tmp_path, "node", "replaced", "smp29-01", "pm", "--undo")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--undo takes back one record" in r.stderr, r.stderr
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
    """Whatever a technician writes under `pm_replaced`, the fleet file is read with its times (offset date-times,
    one or a list of them) or refused naming the key: never another error, never a time read from a value without
    its offset. Another `*_replaced` key is an extra key, as any other (a file that had one still reads)."""
    data = tomllib.loads(fleet_text({"smp29-01": ("smp29", "forest")}))
    node = data["nodes"]["smp29-01"]
    node[key] = value
    try:
        fleet = parse_fleet(data)
    except ConfigError as err:
        assert f"nodes.smp29-01.{key}" in str(err)
        return
    if key != "pm_replaced":
        assert fleet.nodes["smp29-01"].replaced("pm") == () and fleet.nodes["smp29-01"].extra[key] == value
        return
    got = node[key] if isinstance(node[key], list) else [node[key]]
    assert all(isinstance(t, dt.datetime) and t.tzinfo for t in got)
    assert fleet.nodes["smp29-01"].replaced("pm") == tuple(sorted(int(t.timestamp()) for t in got))


BASE = fleet_text({"smp29-01": ("smp29", "air"), "smp29-02": ("smp29", "air")})
HEAD = "[nodes.smp29-01]\n"
EDITS = {  # a fleet file as people write it -> whether the record can be put in place
    "an indented key": (BASE.replace(HEAD, HEAD + "  pm_replaced = [2026-11-01T10:00:00+07:00]\n"), True),
    "a quoted key": (BASE.replace(HEAD, HEAD + '"pm_replaced" = [2026-11-01T10:00:00+07:00]\n'), True),
    "an array of arrays before it": (BASE.replace(HEAD, HEAD + "calib = [\n  [1.0, 0.0],\n]\n"
                                                  "pm_replaced = [2026-11-01T10:00:00+07:00]  # batch 4\n"), True),
    "CRLF line endings": (BASE.replace("\n", "\r\n"), True),
    "comments": (BASE.replace(HEAD, "# the forest\n[nodes.smp29-01]   # by the pond\n"), True),
    "no newline at the end": (BASE.rstrip("\n").replace(HEAD, "[nodes.smp29-00]\nsite = 'smp29'\nprofile = 'forest'\n"
                                                        "cadence_s = 600\n\n" + HEAD), True),
    "a value over several lines": (BASE.replace(HEAD, HEAD + "pm_replaced = [\n  2026-11-01T10:00:00+07:00,\n]\n"),
                                   False),
    "an inline table": (BASE.replace(HEAD + 'site = "smp29"\nprofile = "air"\ncadence_s = 600\n',
                                     '[nodes]\nsmp29-01 = { site = "smp29", profile = "air", cadence_s = 600 }\n'),
                        False),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_the_record_is_put_in_place_or_refused_and_the_file_left_as_it_was(tmp_path, case):
    """`rimba node replaced` edits the fleet file that ingest and the analytics are reading: the record goes in and
    nothing else changes (comments, line endings, the other nodes, the file's mode), or it is refused with the line
    to write by hand and the file is byte for byte what it was; never a file that no longer reads."""
    import os

    from hardware.provision import Provisioner
    from rimba import settings as settings_mod

    text, fits = EDITS[case]
    path = tmp_path / "fleet.toml"
    path.write_bytes(text.encode())
    os.chmod(path, 0o640)
    inode = os.stat(path).st_ino  # compose mounts the file itself: a new file would not be the one mounted
    before = load_fleet(path)
    s = settings_mod.build(overrides={"fleet": str(path), "state_dir": str(tmp_path / "s")}, env={})
    had = before.nodes["smp29-01"].replaced("pm")
    if not fits:
        with pytest.raises(ConfigError, match="set it by hand: pm_replaced = "):
            Provisioner(s).replaced("smp29-01", "pm", NOW)
        assert path.read_bytes() == text.encode()
        return
    assert Provisioner(s).replaced("smp29-01", "pm", NOW) == tuple(sorted({*had, NOW}))
    after = path.read_bytes().decode()
    fleet = load_fleet(path)
    assert fleet.nodes["smp29-01"].replaced("pm") == tuple(sorted({*had, NOW}))
    assert {n: (v.site, v.profile, v.cadence_s) for n, v in fleet.nodes.items()} == \
        {n: (v.site, v.profile, v.cadence_s) for n, v in before.nodes.items()}
    assert ("\r\n" in after) == ("\r\n" in text) and after.count("#") == text.count("#") - ("batch 4" in text)
    assert [ln for ln in after.splitlines() if "pm_replaced" not in ln] == \
        [ln for ln in text.splitlines() if "pm_replaced" not in ln]
    assert os.stat(path).st_mode & 0o777 == 0o640 and os.stat(path).st_ino == inode


def test_a_fleet_file_made_unreadable_then_fixed_is_read_again_and_said_once(tmp_path, monkeypatch, caplog):
    """A fleet file the services cannot read (its owner or mode changed: the tests run as root, so the refusal is
    made here) keeps the last good fleet, said once, not read again at every commit; fixed by a chmod, which
    changes neither its time nor its size (its ctime, which the watcher looks at too), it is read again."""
    import os

    from rimba import fleet as fleet_mod

    path = tmp_path / "fleet.toml"
    path.write_text(fleet_text({"smp29-01": ("smp29", "air")}))
    w = fleet_mod.FleetWatcher(path)
    path.write_text(fleet_text({"smp29-01": ("smp29", "air"), "smp29-02": ("smp29", "air")}))
    real = fleet_mod.load_fleet

    def denied(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(fleet_mod, "load_fleet", denied)
    for _ in range(3):
        assert set(w.current().nodes) == {"smp29-01"}
    assert sum("keeping the last good fleet" in r.message for r in caplog.records) == 1
    monkeypatch.setattr(fleet_mod, "load_fleet", real)
    assert set(w.current().nodes) == {"smp29-01"}  # not read again until it changes
    os.chmod(path, 0o644)
    assert set(w.current().nodes) == {"smp29-01", "smp29-02"}


def test_a_full_disk_changes_nothing_in_the_fleet_file(tmp_path, monkeypatch):
    """The record is written in place (compose mounts the file itself), so a write that fails part-way would leave
    half a file; the space is taken first, and a full disk fails before a byte changes."""
    import errno
    import os

    from hardware.provision import Provisioner
    from rimba import settings as settings_mod

    path = tmp_path / "fleet.toml"
    text = fleet_text({"smp29-01": ("smp29", "air")})
    path.write_text(text)
    s = settings_mod.build(overrides={"fleet": str(path), "state_dir": str(tmp_path / "s")}, env={})

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left"):
        Provisioner(s).replaced("smp29-01", "pm", NOW)
    assert path.read_text() == text
