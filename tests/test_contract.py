"""The wire contract in code, against the golden vectors (shared with the firmware tests)."""

import subprocess
import sys

import pytest

from rimba import contract
from rimba.contract import Rejected
from rimba.metrics import METRICS
from rimba.dev.harness import ROOT, VECTOR_FLEET, VECTORS, payload_of

RECEIVED = VECTORS["received"]


def test_vectors_are_current():
    gen = ROOT / "tests" / "vectors" / "gen_vectors.py"
    assert subprocess.run([sys.executable, gen, "--check"]).returncode == 0, "run tests/vectors/gen_vectors.py"


def test_measurement_table_is_the_contracts():
    assert list(METRICS) == ["air_temp_c", "air_rh_pct", "air_pressure_hpa", "soil_temp_c", "soil_vwc_pct",
                             "pm1_ugm3", "pm25_ugm3", "pm10_ugm3", "co2_ppm", "light_lux", "rain_mm",
                             "water_level_cm", "water_temp_c", "batt_v", "rssi_dbm"]
    assert (METRICS["air_rh_pct"].low, METRICS["air_rh_pct"].high) == (0, 100)
    assert (METRICS["water_level_cm"].low, METRICS["water_level_cm"].high) == (-1000, 5000)


@pytest.mark.parametrize("vector", VECTORS["up_valid"], ids=lambda v: v["name"])
def test_valid_up(vector):
    batch = contract.decode_up(vector["topic"], payload_of(vector), VECTOR_FLEET)
    placed = contract.place(batch, RECEIVED)
    expect = vector["expect"]
    got = [{"seq": r.seq, "time": p.time, "late": p.late, "offset": p.offset, "values": r.values}
           for r, p in zip(batch.readings, placed)]
    assert got == expect["readings"]
    if "lost" in expect:
        assert [list(x) for x in batch.lost] == expect["lost"]
    assert len(batch.faults) == expect.get("faults", 0)
    for p in placed:
        assert contract.TRUSTED_AFTER <= p.time <= RECEIVED + contract.FUTURE_TOLERANCE_S


@pytest.mark.parametrize("vector", VECTORS["status_valid"], ids=lambda v: v["name"])
def test_valid_status(vector):
    st = contract.decode_status(vector["topic"], payload_of(vector), VECTOR_FLEET)
    assert st.state == vector["expect"]["state"]
    assert contract.status_time_ms(st, RECEIVED) == vector["expect"]["time"] * 1000


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid(vector):
    payload = payload_of(vector)
    with pytest.raises(Rejected) as info:
        if vector["topic"].endswith("/status"):
            contract.decode_status(vector["topic"], payload, VECTOR_FLEET)
        else:
            contract.place(contract.decode_up(vector["topic"], payload, VECTOR_FLEET), RECEIVED)
    assert info.value.code == vector["code"], info.value.reason
    assert info.value.detail  # a reason a person can act on


def test_size_limits():
    big = {"v": 1, "node": "smp29-03", "epoch": 1, "now": RECEIVED, "tq": "ntp",
           "r": [{"seq": i + 1, "t": RECEIVED} for i in range(201)]}
    import json

    with pytest.raises(Rejected) as info:
        contract.decode_up("rimba/v1/smp29/smp29-03/up", json.dumps(big).encode(), VECTOR_FLEET)
    assert info.value.code == "too-many"
    with pytest.raises(Rejected) as info:
        contract.decode_up("rimba/v1/smp29/smp29-03/up", b" " * (16 * 1024 + 1), VECTOR_FLEET)
    assert info.value.code == "too-large"


def test_salvage_lets_the_ack_move_over_a_bad_batch():
    import json

    body = {"v": 1, "node": "smp29-03", "epoch": 9, "now": RECEIVED, "tq": "ntp",
            "r": [{"seq": 5, "t": RECEIVED, "bogus": 1}, {"seq": 6, "t": RECEIVED}], "lost": [[1, 4]]}
    with pytest.raises(Rejected) as info:
        contract.decode_up("rimba/v1/smp29/smp29-03/up", json.dumps(body).encode(), VECTOR_FLEET)
    assert info.value.code == "unknown-key"
    assert info.value.salvage == (9, [5, 6], [(1, 4)])
    # another node's topic: no salvage, the ack must not move
    body["node"] = "bansir-laut-01"
    with pytest.raises(Rejected) as info:
        contract.decode_up("rimba/v1/smp29/smp29-03/up", json.dumps(body).encode(), VECTOR_FLEET)
    assert info.value.salvage is None
