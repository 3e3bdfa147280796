"""The contract v2 golden vectors (tests/vectors/contract-v2.json): current with their generator, each pair a true
pair (the v1 and the v2 body hold the same readings, contract v2's float rule on every value), the v1 half
and the v2 half stored as `expect` says by the platform's decoder, every invalid vector refused with its code."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

from rimba import contract
from rimba.fleet import parse_fleet
from rimba.dev.harness import ROOT, payload_of

V2 = json.loads((ROOT / "tests" / "vectors" / "contract-v2.json").read_text(encoding="utf-8"))
FLEET = parse_fleet(V2["fleet"])
RECEIVED = V2["received"]
sys.path.insert(0, str(ROOT / "tests" / "vectors"))
from gen_vectors_v2 import DEC  # noqa: E402  (the contract's table, as the generator transcribed it)



def test_vectors_are_current():
    gen = ROOT / "tests" / "vectors" / "gen_vectors_v2.py"
    assert subprocess.run([sys.executable, gen, "--check"]).returncode == 0, "run tests/vectors/gen_vectors_v2.py"


def test_every_v2_refusal_code_has_a_vector():
    codes = {v["code"] for v in V2["invalid"]}
    assert {"bad-columns", "bad-dt", "bad-value", "bad-version", "missing", "bad-type", "too-many", "bad-seq",
            "bad-time", "bad-epoch", "bad-lost", "time-impossible", "bad-state"} <= codes
    names = [v["name"] for v in V2["invalid"]] + [p["name"] for p in V2["pairs"]]
    assert len(names) == len(set(names))


def v2_rows(body: dict) -> list:
    """(seq, t, {metric: value}) of a v2 body by contract v2 alone: row i has seq + i, times from t and dt,
    a value is the integer over 10 ** dec (nulls are no value)."""
    rows = body.get("x", [])
    dt = body.get("dt")
    steps = [dt] * (len(rows) - 1) if isinstance(dt, int) else dt or []
    t = body.get("t")
    out = []
    for i, row in enumerate(rows):
        out.append((body["seq"] + i, t, {m: x / 10 ** DEC[m] for m, x in zip(body["m"], row) if x is not None}))
        if i < len(steps):
            t += steps[i]
    return out


@pytest.mark.parametrize("pair", V2["pairs"], ids=lambda p: p["name"])
def test_a_pair_holds_the_same_readings_and_the_float_rule(pair):
    v1, v2 = pair["v1"]["body"], pair["v2"]["body"]
    text = payload_of(pair["v1"]).decode()  # as it goes on the air
    parsed = json.loads(text, parse_float=Decimal)
    ones = [(r["seq"], r["t"], {k: v for k, v in r.items() if k not in ("seq", "t") and v is not None})
            for r in v1["r"]]
    assert ones == v2_rows(v2)  # the float a v1 decimal parses to is the v2 integer over its power of ten
    for r, rd in zip(parsed["r"], v2.get("x", [])):
        for m, x in zip(v2["m"], rd):
            if x is not None:  # and the decimal written is exactly that quotient, not only its float
                assert Decimal(r[m]) == Decimal(x).scaleb(-DEC[m]), (m, r[m], x)
    assert v1.get("lost") == v2.get("lost") and (v1["epoch"], v1["now"], v1["tq"]) == (v2["epoch"], v2["now"], v2["tq"])
    assert len(v2.get("x", [])) <= 200 and len(payload_of(pair["v2"])) <= 16 * 1024


def placed(batch, fields=None) -> list:
    got = []
    values = fields if fields is not None else [r.values for r in batch.readings]
    seqs = getattr(batch, "seqs", None) or [r.seq for r in batch.readings]
    for seq, p, v in zip(seqs, contract.place(batch, RECEIVED), values, strict=True):
        got.append({"seq": seq, "time": p.time, "late": p.late, "offset": p.offset, "values": v})
    return got


@pytest.mark.parametrize("pair", V2["pairs"], ids=lambda p: p["name"])
def test_the_v1_half_is_stored_as_expected(pair):
    batch = contract.decode_up(pair["v1"]["topic"], payload_of(pair["v1"]), FLEET)
    assert placed(batch) == pair["expect"]["readings"]
    assert [list(x) for x in batch.lost] == pair["expect"].get("lost", [])
    assert len(batch.faults) == pair["expect"].get("faults", 0)


def field_values(text: str) -> dict:
    """The platform's line-protocol field text of a row (`name=value,...`) as {name: float}."""
    return {k: float(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def test_the_v2_half_is_stored_as_the_v1_half():
    for pair in V2["pairs"]:
        batch = contract.decode_up(pair["v2"]["topic"], payload_of(pair["v2"]), FLEET)
        assert placed(batch, [field_values(f) for f in batch.fields]) == pair["expect"]["readings"], pair["name"]
        assert [list(x) for x in batch.lost] == pair["expect"].get("lost", []), pair["name"]
        assert len(batch.faults) == pair["expect"].get("faults", 0), pair["name"]


def test_every_invalid_v2_vector_is_refused_with_its_code():
    wrong = []
    for v in V2["invalid"]:
        try:
            if v["topic"].endswith("/status"):
                contract.decode_status(v["topic"], payload_of(v), FLEET)
            else:
                contract.place(contract.decode_up(v["topic"], payload_of(v), FLEET), RECEIVED)
            wrong.append((v["name"], "accepted"))
        except contract.Rejected as err:
            if err.code != v["code"]:
                wrong.append((v["name"], err.code))
    assert not wrong


def test_every_valid_v2_status_is_stored_at_its_time():
    for v in V2["status_valid"]:
        st = contract.decode_status(v["topic"], payload_of(v), FLEET)
        assert (st.state, contract.status_time_ms(st, RECEIVED)) == (v["expect"]["state"], v["expect"]["time"] * 1000)


def test_the_measurement_table_has_the_contracts_dec():
    from rimba.metrics import METRICS

    assert {name: m.dec for name, m in METRICS.items()} == DEC
