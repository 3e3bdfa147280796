"""The node's side of contract v2 (firmware/lib/wire.py, store.py, node.py) in the real MicroPython interpreter:
the golden pairs rebuilt by the firmware's own store and encoder, a buffer written by firmware 0.2 sent after
the update, columns that change, holes and clock steps that split batches, a full batch of 200 within the
96 KiB heap."""

from __future__ import annotations

import json
import os
import subprocess
from binascii import crc32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rimba.dev.hostnode import FAKES, micropython
from rimba.dev.harness import ROOT

V2 = json.loads((ROOT / "tests" / "vectors" / "contract-v2.json").read_text(encoding="utf-8"))
LIB = ROOT / "firmware" / "lib"


def run_mpy(tmp_path, script: str, heap: str = "192k", lib=LIB, fakes=FAKES, **env) -> str:
    """The script in MicroPython; on sources the heap also compiles them (the 96 KiB budget is held by the tests
    that pass the compiled firmware, its fakes and its heap)."""
    world = tmp_path / "world.json"
    if not world.exists():
        world.write_text(json.dumps({"true": 1764301800, "rtc": [1764301800, 1764301800]}))
    path = tmp_path / "script.py"
    path.write_text(script)
    full = {**os.environ, "MICROPYPATH": f"{fakes}:{lib}", "RIMBA_WORLD": str(world), **env}
    r = subprocess.run([micropython(), "-X", f"heapsize={heap}", str(path)], env=full, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_the_firmware_builds_the_v2_golden_pairs(tmp_path):
    """Each pair's readings appended to a real buffer and sent by the node's batch builder: the v2 payload is the
    vector's v2 body (as JSON), and with `wire` 1 the v1 payload is its v1 body (nulls left out, as v1 allows)."""
    buf = tmp_path / "buf"
    buf.mkdir()
    env = {**os.environ, "MICROPYPATH": f"{FAKES}:{LIB}", "RIMBA_WORLD": str(tmp_path / "world.json"),
           "RIMBA_VECTORS": str(ROOT / "tests" / "vectors" / "contract-v2.json"), "RIMBA_BUF": str(buf)}
    (tmp_path / "world.json").write_text(json.dumps({"true": 1764301800, "rtc": [1764301800, 1764301800]}))
    # a larger heap: the whole vector file is loaded at once here, which a node never does
    r = subprocess.run([micropython(), "-X", "heapsize=8m", str(ROOT / "tests" / "firmware" / "vectors_fw_v2.py")],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    built = {b["name"]: b for b in json.loads(r.stdout.strip().splitlines()[-1])}
    assert sorted(built) == sorted(p["name"] for p in V2["pairs"])
    for pair in V2["pairs"]:
        b = built[pair["name"]]
        assert json.loads(b["v2"]) == pair["v2"]["body"], pair["name"]
        v1 = pair["v1"]["body"]
        v1 = dict(v1, r=[{k: v for k, v in r.items() if v is not None} for r in v1["r"]])
        assert json.loads(b["v1"]) == v1, pair["name"]
    full = built["200 rows (a full batch)"]["v2"]
    assert len(full) / 200 < 12  # two metrics a row


def test_the_firmware_tables_are_the_contracts():
    """wire.DEC is contract v2's table (as the vector generator transcribed it); every profile's columns are the
    metrics its hardware profile lists, at most 16."""
    import importlib.util
    import sys
    import tomllib

    sys.path.insert(0, str(ROOT / "tests" / "vectors"))
    from gen_vectors_v2 import DEC

    spec = importlib.util.spec_from_file_location("fw_wire", LIB / "wire.py")
    wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wire)
    assert wire.DEC == DEC
    source = (LIB / "sensors.py").read_text()
    for profile in ("forest", "river", "air"):
        toml = tomllib.loads((ROOT / "hardware" / "profiles" / f"{profile}.toml").read_text())
        metrics = [m for s in toml["sensors"] for m in s["metrics"]]
        assert sorted(metrics) == sorted(json.loads(run_columns(profile, source))), profile


def run_columns(profile: str, source: str) -> str:
    """sensors.COLUMNS[profile] read from the source (sensors.py imports machine: not importable in CPython)."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "COLUMNS":
            return json.dumps(list(ast.literal_eval(node.value)[profile]))
    raise AssertionError("no COLUMNS in sensors.py")


FLOATS = st.floats(min_value=-1000, max_value=50000, allow_nan=False).map(lambda v: round(v, 3))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["air_temp_c", "air_rh_pct", "rain_mm", "water_level_cm", "co2_ppm",
                                           "batt_v"]), st.one_of(st.none(), FLOATS, st.integers(-1000, 50000))),
                min_size=1, max_size=6, unique_by=lambda kv: kv[0]))
def test_a_row_is_the_value_at_its_resolution_and_v1_writes_it_back_exactly(tmp_path_factory, items):
    """Any reading: its stored row holds round(value * 10 ** dec) (a failed sensor's None is null), and the
    v1 decimal written from that integer parses to the integer over its power of ten, in MicroPython."""
    tmp = tmp_path_factory.mktemp("row")
    names = [k for k, _v in items]
    values = dict(items)
    script = ("import json, wire\n"
              f"names = {names!r}\nvalues = json.loads({json.dumps(json.dumps(values))})\n"
              "row = wire.row(values, names)\n"
              "print(json.dumps({'row': row, 'v1': wire.v1_reading(1, 1764300000, names, row)}))\n")
    out = json.loads(run_mpy(tmp, script))
    dec = {"air_temp_c": 2, "air_rh_pct": 1, "rain_mm": 3, "water_level_cm": 1, "co2_ppm": 0, "batt_v": 3}
    row = json.loads(out["row"])
    v1 = json.loads(out["v1"])
    for name, x in zip(names, row):
        v = values[name]
        assert x == (None if v is None else round(v * 10 ** dec[name])), (name, v, x)
        if x is None:
            assert name not in v1
        else:
            assert v1[name] == x / 10 ** dec[name], (name, x, v1[name])


# a node around a store `s` for a script: its batch builder is called as node.Node._batch_text(n, ...)
NODE = """class Stub:
    pass
n = Stub()
n.store = s
n.cfg = {"node": "smp29-03", "wire": 2}
n.fw = {"version": node.FW}
n.st = {"syncs": [], "synced": %r, "boot": %d}
"""


def record(text: str) -> str:
    return f"{crc32(text.encode()) & 0xFFFFFFFF:08x} {text}\n"


def test_a_buffer_of_firmware_0_2_is_kept_and_sent_after_the_update(tmp_path):
    """On flash: firmware 0.2's state (epoch, next seq, ack, lost) and two segments of v1 JSON readings, one
    ending torn. The new firmware keeps the epoch and the seq, reads the old readings as rows (sorted columns),
    appends new readings to a new segment, and sends the old and the new, oldest first, in separate batches
    (the columns differ), none lost and none twice."""
    buf = tmp_path / "data" / "buf"
    buf.mkdir(parents=True)
    (buf / "state.json").write_text(json.dumps({"epoch": 123456789, "next": 41, "acked": 40, "lost": [[3, 9]]}))
    old = [{"seq": s, "t": 1764290000 + 600 * s, "air_temp_c": 27.5 + s / 100, "air_rh_pct": 80.1,
            "soil_vwc_pct": None} for s in range(41, 47)]
    (buf / "s41.log").write_text("".join(record(json.dumps(r, separators=(",", ":"))) for r in old[:4]))
    (buf / "s45.log").write_text("".join(record(json.dumps(r, separators=(",", ":"))) for r in old[4:])
                                 + record('{"seq":47,"t":1764318200,"air_te')[:-20])  # torn by a power loss
    script = ("""import json, store, wire, node
s = store.Store(%r)
names = ["air_temp_c", "air_rh_pct", "soil_vwc_pct", "soil_temp_c", "rain_mm"]
for i in range(3):
    s.append(1764318800 + 600 * i, wire.head(names), wire.row({"air_temp_c": 28.0, "rain_mm": 0.2794}, names))
""" + NODE % (True, 3) + """out = []
after = 0
while True:
    recs = s.pending_raw(200, after=after)
    if not recs:
        break
    pieces, k = node.Node._batch_text(n, recs, now=1764320000)
    out.append("".join(pieces))
    after = recs[k - 1][0]
print(json.dumps({"epoch": s.epoch, "next": s.next, "batches": out}))
""") % str(buf)
    got = json.loads(run_mpy(tmp_path, script))
    assert got["epoch"] == 123456789 and got["next"] == 50  # the torn 47 was never taken: its seq is used again
    first, second = (json.loads(b) for b in got["batches"])
    assert (first["seq"], first["t"], first["dt"], first["m"]) == (41, old[0]["t"], 600,
                                                                    ["air_rh_pct", "air_temp_c", "soil_vwc_pct"])
    assert first["x"] == [[801, round((27.5 + s / 100) * 100), None] for s in range(41, 47)]
    assert first["lost"] == [[3, 9]] and first["epoch"] == 123456789 and first["boot"] == 3
    assert (second["seq"], second["dt"], second["x"]) == (47, 600, [[2800, None, None, None, 279]] * 3)


def test_a_column_change_a_hole_and_a_clock_step_each_start_a_new_batch(tmp_path):
    """One run per batch: the columns change at seq 4 (a sensor added by a new profile), the clock steps back at
    seq 6 (a power-on: the RTC starts again from 2000), seqs 8-9 are missing from the buffer (a hole); every
    batch is strictly consecutive, with rising times."""
    script = ("""import json, store, wire, node
s = store.Store(%r)
a = ["air_temp_c"]
b = ["air_temp_c", "air_rh_pct"]
t = 1764300000
for i, (names, when) in enumerate([(a, t), (a, t + 600), (a, t + 1200), (b, t + 1800), (b, t + 2400),
                                   (b, 1000), (b, 1600)]):
    s.append(when, wire.head(names), wire.row({"air_temp_c": 27 + i, "air_rh_pct": 80}, names))
recs = s.pending_raw(200)
recs = recs + [(10, 2200, "[2900,800]", recs[-1][3])]  # after a hole: seq 10, read from a later segment
""" + NODE % (False, 4) + """out = []
while recs:
    pieces, k = node.Node._batch_text(n, recs, now=2000)
    out.append(json.loads("".join(pieces)))
    recs = recs[k:]
print(json.dumps(out))
""") % str(tmp_path / "buf")
    batches = json.loads(run_mpy(tmp_path, script))
    assert [(b["seq"], len(b["x"]), b["dt"]) for b in batches] == [(1, 3, 600), (4, 2, 600), (6, 2, 600),
                                                                   (10, 1, [])]
    assert [b["m"] for b in batches] == [["air_temp_c"]] + [["air_temp_c", "air_rh_pct"]] * 3


def test_a_full_batch_of_200_readings_goes_out_in_one_message_within_the_heap(tmp_path, compiled, heap):
    """A node back from an outage with 230 forest readings buffered: the compiled firmware (mpy-cross, as
    flashed) in a 96 KiB heap (plus the compiled fakes' own, which on the board are C) reads and sends the
    first 200 in one v2 batch, piece by piece; under 30 bytes a reading on the air."""
    lib, fakes = compiled, compiled.parent / "fakes"
    fill = """import store, wire, sensors
s = store.Store(%r)
names = sensors.COLUMNS["forest"]
head = wire.head(names)
for i in range(230):
    s.append(1764200000 + 600 * i, head, wire.row({"air_temp_c": 26.5 + i %% 50 / 10, "air_rh_pct": 88.3,
             "soil_vwc_pct": 31.5, "soil_temp_c": 26.25, "rain_mm": 0.2794 * (i %% 3)}, names))
print(s.next)
""" % str(tmp_path / "buf")
    assert run_mpy(tmp_path, fill, lib=lib, fakes=fakes, heap=heap) == "231"
    send = """import gc, json, node, store
gc.collect()
s = store.Store(%r)
class Stub:
    pass
n = Stub()
n.store = s
n.cfg = {"node": "smp29-03", "wire": 2, "batch": 200}
n.fw = {"version": node.FW}
n.st = {"syncs": [[1764300000, 1764299990, 1764300000]], "synced": True, "boot": 9}
gc.collect()
recs = s.pending_raw(200)
pieces, k = node.Node._batch_text(n, recs, now=1764340000)
size = 0
top = m = prev = None
for p in pieces:  # as mqtt.publish goes over them: counting, then sending
    size += len(p)
    top = top or p
    if prev == ',"m":':
        m = p
    prev = p
total = size
for p in pieces:
    size -= len(p)
print(json.dumps({"k": k, "size": total, "again": size, "top": top, "m": m, "free": gc.mem_free()}))
""" % str(tmp_path / "buf")
    got = json.loads(run_mpy(tmp_path, send, lib=lib, fakes=fakes, heap=heap))
    assert got["k"] == 200 and got["again"] == 0  # the same pieces each time
    assert got["size"] / 200 < 30, got["size"] / 200
    assert got["top"].startswith('{"') and json.loads(got["top"] + "}")["seq"] == 1
    assert got["m"] == '["air_temp_c","air_rh_pct","soil_vwc_pct","soil_temp_c","rain_mm"]' 


@pytest.mark.parametrize("wire", [1, 2])
def test_the_node_speaks_one_version_on_every_topic(tmp_path, wire):
    """Topics, the Last Will, `v` in the batch and the status, and the config mailbox's version, by `wire`."""
    script = """import json, node, config
class Stub:
    pass
n = Stub()
n.cfg = dict(config.DEFAULTS, node="smp29-03", site="smp29", wire=%d)
print(json.dumps({"up": node.Node.topic(n, "up"), "status": node.Node.topic(n, "status"), "ack": node.Node.topic(n, "ack"),
                  "config": node.Node.topic(n, "config"), "default": config.DEFAULTS["wire"],
                  "ok": config.check({"v": %d, "rev": 2}, %d) == {"rev": 2},
                  "other": config.check({"v": %d, "rev": 2}, %d)}))
""" % (wire, wire, wire, 3 - wire, wire)
    got = json.loads(run_mpy(tmp_path, script))
    assert got["up"] == f"rimba/v{wire}/smp29/smp29-03/up" and got["ack"] == f"rimba/v{wire}/smp29/smp29-03/ack"
    assert got["status"].startswith(f"rimba/v{wire}/") and got["config"].startswith(f"rimba/v{wire}/")
    assert got["default"] == 2 and got["ok"] and got["other"] == f"not a version {wire} config"


def test_an_invalid_wire_setting_keeps_the_default_and_is_named(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "node.json").write_text(json.dumps({"node": "n-01", "wire": 3}))
    script = "import config\nnotes = []\ncfg = config.load(%r, notes)\nprint(cfg['wire'], notes)\n" % str(root)
    assert run_mpy(tmp_path, script) == "2 ['config: wire must be one of (1, 2), kept 2']"
