"""Contract v2 on the platform: a v2 batch stores the points its v1 twin stores; acks go back under the
node's own root. (The golden vector pairs in `tests/vectors/contract-v2.json` are checked in
`tests/test_vectors_v2.py`; here, every valid v1 vector converted.)"""

from __future__ import annotations

import json
import threading

import pytest

from ingest.ledger import Ledger
from ingest.pipeline import Outcome, handle
from rimba.fleet import load_fleet
from rimba.metrics import METRICS
from rimba.adapters.mqtt import Mqtt
from rimba.dev.simulate import Publisher, Simulation
from rimba.dev.wire2 import to_v2
from rimba.dev.harness import VECTOR_FLEET, VECTORS, wait_until

RECEIVED = VECTORS["received"]


def points(lines) -> dict:
    """line protocol -> {(series, time): {field: value}}: what InfluxDB would hold."""
    out = {}
    for line in lines:
        series, fields, t = line.rsplit(" ", 2)
        out.setdefault((series, t), {}).update(kv.split("=", 1) for kv in fields.split(","))
    return out


def store(topic, payloads) -> Outcome:
    out = Outcome()
    led = Ledger()
    for p in payloads:
        handle(led, topic, p, RECEIVED, VECTOR_FLEET, out)
    return out


@pytest.mark.parametrize("vector", [v for v in VECTORS["up_valid"] if "body" in v], ids=lambda v: v["name"])
def test_a_v2_batch_stores_the_points_of_its_v1_twin(vector):
    body = vector["body"]
    v1 = store(vector["topic"], [json.dumps(body).encode()])
    twins = [json.dumps(b).encode() for b in to_v2(body, boot=17)]
    v2 = store(vector["topic"].replace("rimba/v1/", "rimba/v2/"), twins)
    assert points(v2.lines) == points(v1.lines)
    assert (v2.stored, len(v2.dead)) == (v1.stored, len(v1.dead))


def _at_resolution(value: float, metric: str) -> float:
    """A value as v2 carries it: an integer in steps of 10 ** -dec, rounded as `rimba.dev.wire2` rounds."""
    scale = 10 ** METRICS[metric].dec
    return round(value * scale) / scale


def test_two_hundred_rows_decode_without_a_reading_object():
    from rimba import contract

    body = {"v": 2, "node": "smp29-03", "epoch": 1, "boot": 2, "now": RECEIVED, "tq": "ntp", "seq": 1,
            "t": RECEIVED - 200 * 600, "dt": 600, "m": ["air_temp_c", "air_rh_pct"],
            "x": [[2800 + i, 800 + i % 200] for i in range(200)]}
    batch = contract.decode_up("rimba/v2/smp29/smp29-03/up", json.dumps(body).encode(), VECTOR_FLEET)
    assert batch.readings == [] and len(batch.fields) == 200 and batch.seqs[-1] == 200
    assert batch.fields[199] == "air_temp_c=29.99,air_rh_pct=99.9"


def test_v1_and_v2_nodes_over_mqtt_each_get_their_ack_under_their_own_root(platform_factory):
    p = platform_factory({"w1-01": ("smp29", "forest"), "w2-01": ("smp29", "forest")})
    p.ingest()
    acks: dict = {}
    lock = threading.Lock()

    def on(topic, payload, *_):
        if payload:
            with lock:
                acks[topic] = json.loads(payload)

    sub = Mqtt(p.settings.broker, "w-acks", v5=False, subscriptions=("rimba/+/+/+/ack",), on_message=on).start()
    t0 = 1_780_000_000
    v1 = {"v": 1, "node": "w1-01", "epoch": 9, "now": t0 + 3600, "tq": "ntp",
          "r": [{"seq": s, "t": t0 + 600 * s, "air_temp_c": 27.5 + s / 10} for s in (1, 2, 3)]}
    v2 = to_v2(dict(v1, node="w2-01"), boot=1)[0]
    pub = Publisher(p.settings, client_id="w-pub")
    pub.publish("rimba/v1/smp29/w1-01/up", json.dumps(v1).encode())
    pub.publish("rimba/v2/smp29/w2-01/up", json.dumps(v2).encode())
    pub.close()
    wait_until(lambda: len(acks) >= 2, 30, "both acks")
    assert acks == {"rimba/v1/smp29/w1-01/ack": {"v": 1, "epoch": 9, "seq": 3},
                    "rimba/v2/smp29/w2-01/ack": {"v": 2, "epoch": 9, "seq": 3}}
    rows = p.influx.rows("SELECT air_temp_c, seq FROM reading GROUP BY node")
    by_node = {}
    for r in rows:
        by_node.setdefault(r["node"], []).append((r["time"], r["air_temp_c"], r["seq"]))
    assert by_node["w1-01"] == by_node["w2-01"] and len(by_node["w1-01"]) == 3
    sub.stop()


def test_rimba_simulate_speaks_v2_and_stores_what_v1_stores(platform_factory):
    """`rimba simulate --wire 2`: the same fixed-seed backfill as v1 batches and as v2 batches, in two databases,
    gives the same points."""
    import subprocess
    import sys

    from rimba.dev.harness import ROOT, env_for

    nodes = {"sw-01": ("smp29", "forest"), "sw-02": ("bansir-laut", "river")}
    counts = {}
    for wire in (1, 2):
        p = platform_factory(nodes)
        values = dict(p.values, state_dir=str(p.tmp / f"state-v{wire}"))  # a ledger of its own
        p.ingest(state_dir=values["state_dir"])
        r = subprocess.run([sys.executable, "-m", "rimba", "simulate", "--backfill-hours", "3", "--until",
                            "1780000000", "--wire", str(wire), "--seed", "4"], env=env_for(values),
                           capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        sim = Simulation(load_fleet(p.fleet_path), seed=4)  # what the command sent: the readings to expect
        sim.history(1_780_000_000 - 3 * 3600, 1_780_000_000 - 60)
        expected = sim.expected()
        wait_until(lambda p=p, n=expected: p.count() == n, 30, f"the {expected} readings")
        rows = p.influx.rows("SELECT * FROM reading GROUP BY node")
        counts[wire] = sorted((r["node"], r["time"], r["seq"], *(None if r.get(m) is None else _at_resolution(r[m], m)
                                                                 for m in ("air_temp_c", "water_level_cm", "batt_v")))
                              for r in rows)
    # the simulator's v1 carries more digits than v2's resolution: the same points, at that resolution
    assert counts[1] == counts[2] and len(counts[1]) > 20


# -- the decoder's cached field text and the columnar placement, against their plain definitions ------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from rimba import contract  # noqa: E402

_NAMES = sorted(contract.SCALE)
_CELL = st.one_of(st.none(), st.integers(-10 ** 7, 10 ** 7), st.integers(-2 ** 70, 2 ** 70),
                  st.sampled_from([0, 1, 1000, 100000]))


def _reference(names: list, rows: list, first: int) -> tuple:
    """The field text and the faults of v2 rows, computed value by value with no cache."""
    fields, faults = [], []
    for i, row in enumerate(rows):
        parts = []
        for name, x in zip(names, row, strict=True):
            if x is None:
                continue
            low, high = METRICS[name].low, METRICS[name].high
            value = x / contract.SCALE[name] if abs(x) <= contract.TIME_MAX else float("inf")
            if low <= value <= high:
                parts.append(f"{name}={value!r}")
            else:
                faults.append(f"{name}={value} at seq {first + i} outside {low:g}..{high:g}")
        fields.append(",".join(parts))
    return fields, faults


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4, unique=True).flatmap(
    lambda names: st.tuples(st.just(names), st.lists(st.lists(_CELL, min_size=len(names), max_size=len(names)),
                                                     min_size=1, max_size=30))),
       st.integers(1, 6), st.integers(0, 3))
def test_v2_rows_decode_to_the_text_of_each_value_however_often_values_repeat(case, repeat, small_table):
    names, rows = case
    rows = [row for row in rows for _ in range(repeat)]
    body = {"v": 2, "node": "smp29-03", "epoch": 1, "boot": 2, "now": RECEIVED, "tq": "ntp", "seq": 5,
            "t": RECEIVED - len(rows) * 60, "dt": 60, "m": names, "x": rows}
    payload = json.dumps(body).encode()
    if len(payload) > contract.UP_MAX_BYTES:
        return
    old = contract.CELLS_MAX
    contract.CELLS_MAX = old if not small_table else small_table  # a table that keeps starting again
    try:
        for _ in range(2):  # the second time every text comes from the table
            batch = contract.decode_up("rimba/v2/smp29/smp29-03/up", payload, VECTOR_FLEET)
            assert (batch.fields, batch.faults) == _reference(names, rows, 5)
    finally:
        contract.CELLS_MAX = old


@pytest.mark.parametrize("bad", [True, 28.0, "28", [1], {"a": 1}])
def test_a_v2_value_that_is_not_an_integer_is_refused_even_when_its_number_is_known(bad):
    good = {"v": 2, "node": "smp29-03", "epoch": 1, "boot": 2, "now": RECEIVED, "tq": "ntp", "seq": 1,
            "t": RECEIVED - 60, "dt": 60, "m": ["air_temp_c"], "x": [[1], [28]]}
    contract.decode_up("rimba/v2/smp29/smp29-03/up", json.dumps(good).encode(), VECTOR_FLEET)  # 1 and 28 known
    body = dict(good, x=[[bad]])
    with pytest.raises(contract.Rejected) as err:
        contract.decode_up("rimba/v2/smp29/smp29-03/up", json.dumps(body).encode(), VECTOR_FLEET)
    assert err.value.code == "bad-value"


def _place_one_by_one(batch, received: int, offset):
    own = received - batch.now
    offset = own if offset is None or offset > own else offset
    waited = own - offset
    out = []
    for when in batch.times:
        trusted = batch.tq == "ntp" and contract.TRUSTED_AFTER <= when <= received + contract.FUTURE_TOLERANCE_S
        t = when if trusted else when + offset
        if not trusted and not contract.TRUSTED_AFTER <= t <= received + contract.FUTURE_TOLERANCE_S:
            return "time-impossible"
        late = received - t > contract.LATE_AFTER_S or waited > contract.LATE_AFTER_S
        out.append((t, late, None if trusted else offset))
    return out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(-3 * 3600, 600), min_size=0, max_size=12), st.sampled_from(["ntp", "rtc"]),
       st.integers(-2000, 2000), st.one_of(st.none(), st.integers(-4000, 4000)),
       st.sampled_from([0, RECEIVED - contract.TRUSTED_AFTER + 100]))
def test_columnar_placement_is_the_rule_applied_reading_by_reading(ages, tq, now_shift, offset, before_2024):
    times = [RECEIVED + a - before_2024 for a in ages]
    batch = contract.UpBatch("smp29", "smp29-03", 1, RECEIVED + now_shift, tq, list(range(1, len(times) + 1)),
                             times, [""] * len(times), [])
    want = _place_one_by_one(batch, RECEIVED, offset)
    try:
        got = [(p.time, p.late, p.offset) for p in contract.place(batch, RECEIVED, offset)]
    except contract.Rejected as err:
        got = err.code
    assert got == want
