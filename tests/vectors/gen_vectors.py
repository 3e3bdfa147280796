"""Writes tests/vectors/up.json, the wire contract's golden vectors.

Run it after changing a vector here; the committed JSON is what both the
ingest tests (CPython) and the firmware tests (MicroPython) read, and
test_vectors_are_current fails when the two drift apart.
"""

import json
import sys
from pathlib import Path

RECEIVED = 1764301805  # the ingest's clock for every vector
NOW = 1764301800
FLEET = {
    "sites": {"smp29": {"name": "SMP 29", "lat": -0.0263, "lon": 109.3425},
              "bansir-laut": {"name": "Bansir Laut", "lat": -0.04, "lon": 109.35}},
    "nodes": {"smp29-03": {"site": "smp29", "profile": "forest", "cadence_s": 300},
              "bansir-laut-01": {"site": "bansir-laut", "profile": "river", "cadence_s": 600}},
}
UP = "rimba/v1/smp29/smp29-03/up"
STATUS = "rimba/v1/smp29/smp29-03/status"


def batch(**over):
    b = {"v": 1, "node": "smp29-03", "epoch": 2841937411, "now": NOW, "tq": "ntp", "fw": "1.0.0",
         "r": [{"seq": 1041, "t": 1764300000, "air_temp_c": 28.31, "air_rh_pct": 84.2, "soil_vwc_pct": 31.5},
               {"seq": 1042, "t": 1764300300, "air_temp_c": 28.40, "air_rh_pct": 83.9, "soil_vwc_pct": None}]}
    b.update(over)
    return {k: v for k, v in b.items() if v is not DROP}


def reading(**over):
    r = {"seq": 7, "t": 1764300000, "air_temp_c": 28.0}
    r.update(over)
    return {k: v for k, v in r.items() if v is not DROP}


DROP = object()

valid = [
    {"name": "contract example", "topic": UP, "body": batch(lost=[[1001, 1012]]),
     "expect": {"epoch": 2841937411, "lost": [[1001, 1012]], "readings": [
         {"seq": 1041, "time": 1764300000, "late": True, "offset": None,
          "values": {"air_temp_c": 28.31, "air_rh_pct": 84.2, "soil_vwc_pct": 31.5}},
         {"seq": 1042, "time": 1764300300, "late": True, "offset": None,
          "values": {"air_temp_c": 28.40, "air_rh_pct": 83.9}}]}},
    {"name": "fresh reading, not late", "topic": UP, "body": batch(r=[reading(t=RECEIVED - 60)]),
     "expect": {"readings": [{"seq": 7, "time": RECEIVED - 60, "late": False, "offset": None,
                              "values": {"air_temp_c": 28.0}}]}},
    {"name": "integers are metric values too", "topic": UP, "body": batch(r=[reading(t=RECEIVED, air_temp_c=28)]),
     "expect": {"readings": [{"seq": 7, "time": RECEIVED, "late": False, "offset": None,
                              "values": {"air_temp_c": 28.0}}]}},
    {"name": "rtc backlog older than 15 min is late", "topic": UP,
     "body": batch(tq="rtc", now=5000, r=[reading(t=400)]),
     "expect": {"readings": [{"seq": 7, "time": 400 + RECEIVED - 5000, "late": True,
                              "offset": RECEIVED - 5000, "values": {"air_temp_c": 28.0}}]}},
    {"name": "rtc clock is re-based by received-now", "topic": UP,
     "body": batch(tq="rtc", now=1000, r=[reading(t=400)]),
     "expect": {"readings": [{"seq": 7, "time": 400 + RECEIVED - 1000, "late": False,
                              "offset": RECEIVED - 1000, "values": {"air_temp_c": 28.0}}]}},
    {"name": "ESP32 clock counting from 2000 is re-based", "topic": UP,
     "body": batch(now=NOW - 946684800, r=[reading(t=NOW - 946684800 - 10)]),
     "expect": {"readings": [{"seq": 7, "time": RECEIVED - 10, "late": False, "offset": RECEIVED - NOW + 946684800,
                              "values": {"air_temp_c": 28.0}}]}},
    {"name": "clock ahead by a day is re-based", "topic": UP,
     "body": batch(now=NOW + 86400, r=[reading(t=NOW + 86400 - 20)]),
     "expect": {"readings": [{"seq": 7, "time": RECEIVED - 20, "late": False, "offset": RECEIVED - NOW - 86400,
                              "values": {"air_temp_c": 28.0}}]}},
    {"name": "clock a little ahead (under 5 min) is kept", "topic": UP,
     "body": batch(r=[reading(t=RECEIVED + 120)]),
     "expect": {"readings": [{"seq": 7, "time": RECEIVED + 120, "late": False, "offset": None,
                              "values": {"air_temp_c": 28.0}}]}},
    {"name": "null and absent values", "topic": UP,
     "body": batch(r=[{"seq": 9, "t": RECEIVED, "air_temp_c": None}, {"seq": 10, "t": RECEIVED}]),
     "expect": {"readings": [{"seq": 9, "time": RECEIVED, "late": False, "offset": None, "values": {}},
                             {"seq": 10, "time": RECEIVED, "late": False, "offset": None, "values": {}}]}},
    {"name": "only a lost report", "topic": UP, "body": batch(r=[], lost=[[1, 5]]),
     "expect": {"lost": [[1, 5]], "readings": []}},
    {"name": "unknown batch keys are ignored", "topic": UP, "body": batch(extra={"x": 1}, fw="2.0"),
     "expect": {"readings": [{"seq": 1041, "time": 1764300000, "late": True, "offset": None,
                              "values": {"air_temp_c": 28.31, "air_rh_pct": 84.2, "soil_vwc_pct": 31.5}},
                             {"seq": 1042, "time": 1764300300, "late": True, "offset": None,
                              "values": {"air_temp_c": 28.40, "air_rh_pct": 83.9}}]}},
    {"name": "all metrics at their limits", "topic": "rimba/v1/bansir-laut/bansir-laut-01/up",
     "body": batch(node="bansir-laut-01", r=[{"seq": 1, "t": RECEIVED, "air_temp_c": -40, "air_rh_pct": 100,
                                              "air_pressure_hpa": 300, "soil_temp_c": 85, "soil_vwc_pct": 0,
                                              "pm1_ugm3": 0, "pm25_ugm3": 2000, "pm10_ugm3": 2000, "co2_ppm": 40000,
                                              "light_lux": 200000, "rain_mm": 500, "water_level_cm": -1000,
                                              "water_temp_c": 60, "batt_v": 6, "rssi_dbm": -127}]),
     "expect": {"readings": [{"seq": 1, "time": RECEIVED, "late": False, "offset": None, "values": {
         "air_temp_c": -40.0, "air_rh_pct": 100.0, "air_pressure_hpa": 300.0, "soil_temp_c": 85.0,
         "soil_vwc_pct": 0.0, "pm1_ugm3": 0.0, "pm25_ugm3": 2000.0, "pm10_ugm3": 2000.0, "co2_ppm": 40000.0,
         "light_lux": 200000.0, "rain_mm": 500.0, "water_level_cm": -1000.0, "water_temp_c": 60.0, "batt_v": 6.0,
         "rssi_dbm": -127.0}}]}},
    {"name": "out-of-range value is dropped, reading kept", "topic": UP,
     "body": batch(r=[reading(t=RECEIVED, air_rh_pct=120.5)]),
     "expect": {"faults": 1, "readings": [{"seq": 7, "time": RECEIVED, "late": False, "offset": None,
                                           "values": {"air_temp_c": 28.0}}]}},
]

ok_status = {"v": 1, "state": "sleeping", "t": 1764301801, "fw": "1.0.0", "cfg": 7, "boot": 17,
             "reset": "deepsleep", "batt_v": 3.94, "rssi_dbm": -71, "buffered": 0, "dropped": 12, "wake": 1764303600}
status_valid = [
    {"name": "contract status example", "topic": STATUS, "body": ok_status,
     "expect": {"state": "sleeping", "time": 1764301801}},
    {"name": "last will", "topic": STATUS, "body": {"v": 1, "state": "lost"},
     "expect": {"state": "lost", "time": RECEIVED}},
]

invalid = [
    # (name, topic, payload as body | raw | hex, code)
    ("not a node topic", "rimba/v1/smp29/up", {"body": batch()}, "topic"),
    ("topic with a bad node name", "rimba/v1/smp29/SMP29-03/up", {"body": batch()}, "topic"),
    ("topic of a version not served", "rimba/v3/smp29/smp29-03/up", {"body": batch()}, "topic"),
    ("a v1 batch on a v2 topic", "rimba/v2/smp29/smp29-03/up", {"body": batch()}, "bad-version"),
    ("broken JSON", UP, {"raw": '{"v":1,"node":"smp29-03",'}, "bad-json"),
    ("empty payload", UP, {"raw": ""}, "bad-json"),
    ("NaN literal", UP, {"raw": '{"v":1,"node":"smp29-03","epoch":1,"now":1764301800,"tq":"ntp","r":[{"seq":1,"t":1764301800,"air_temp_c":NaN}]}'}, "bad-json"),
    ("Infinity literal", UP, {"raw": '{"v":1,"node":"smp29-03","epoch":1,"now":1764301800,"tq":"ntp","r":[{"seq":1,"t":1764301800,"air_temp_c":Infinity}]}'}, "bad-json"),
    ("-Infinity literal", UP, {"raw": '{"v":1,"node":"smp29-03","epoch":1,"now":1764301800,"tq":"ntp","r":[{"seq":1,"t":1764301800,"air_temp_c":-Infinity}]}'}, "bad-json"),
    ("trailing garbage", UP, {"raw": '{"v":1} x'}, "bad-json"),
    ("deep nesting", UP, {"raw": "[" * 5000 + "]" * 5000}, "bad-json"),
    ("single quotes", UP, {"raw": "{'v':1}"}, "bad-json"),
    ("non-UTF-8 bytes", UP, {"hex": "7b2276223a312c226e6f6465223a22ff227d"}, "not-utf8"),
    ("Latin-1 payload", UP, {"hex": "7b2276223a312c226e6f7465223a22e9227d"}, "not-utf8"),
    ("duplicate key", UP, {"raw": '{"v":1,"node":"smp29-03","node":"smp29-04"}'}, "duplicate-key"),
    ("duplicate seq key in a reading", UP, {"raw": '{"v":1,"node":"smp29-03","epoch":1,"now":1764301800,"tq":"ntp","r":[{"seq":1,"seq":2,"t":1764301800}]}'}, "duplicate-key"),
    ("array payload", UP, {"raw": "[1,2,3]"}, "not-object"),
    ("string payload", UP, {"raw": '"hello"'}, "not-object"),
    ("number payload", UP, {"raw": "42"}, "not-object"),
    ("v missing", UP, {"body": batch(v=DROP)}, "bad-version"),
    ("v is 2", UP, {"body": batch(v=2)}, "bad-version"),
    ("v is a string", UP, {"body": batch(v="1")}, "bad-version"),
    ("v is true", UP, {"body": batch(v=True)}, "bad-version"),
    ("unknown node", "rimba/v1/smp29/smp29-99/up", {"body": batch(node="smp29-99")}, "unknown-node"),
    ("node under another site", "rimba/v1/bansir-laut/smp29-03/up", {"body": batch()}, "wrong-site"),
    ("node publishing as another node", UP, {"body": batch(node="bansir-laut-01")}, "node-mismatch"),
    ("node name injection", UP, {"body": batch(node="a,b=c")}, "node-mismatch"),
    ("node name with newline", UP, {"body": batch(node="smp29-03\nreading x=1")}, "node-mismatch"),
    ("node missing", UP, {"body": batch(node=DROP)}, "missing"),
    ("epoch missing", UP, {"body": batch(epoch=DROP)}, "missing"),
    ("now missing", UP, {"body": batch(now=DROP)}, "missing"),
    ("r missing", UP, {"body": batch(r=DROP)}, "missing"),
    ("negative epoch", UP, {"body": batch(epoch=-1)}, "bad-epoch"),
    ("epoch over 32 bits", UP, {"body": batch(epoch=2**32)}, "bad-epoch"),
    ("epoch as string", UP, {"body": batch(epoch="2841937411")}, "bad-epoch"),
    ("epoch as float", UP, {"body": batch(epoch=2841937411.5)}, "bad-epoch"),
    ("now as float", UP, {"body": batch(now=1764301800.5)}, "bad-time"),
    ("tq unknown", UP, {"body": batch(tq="gps")}, "bad-type"),
    ("r is an object", UP, {"body": batch(r={"seq": 1})}, "bad-type"),
    ("reading is a number", UP, {"body": batch(r=[5])}, "bad-type"),
    ("seq zero", UP, {"body": batch(r=[reading(seq=0)])}, "bad-seq"),
    ("seq negative", UP, {"body": batch(r=[reading(seq=-3)])}, "bad-seq"),
    ("seq as string", UP, {"body": batch(r=[reading(seq="7")])}, "bad-seq"),
    ("seq as float", UP, {"body": batch(r=[reading(seq=7.0)])}, "bad-seq"),
    ("seq as bool", UP, {"body": batch(r=[reading(seq=True)])}, "bad-seq"),
    ("seq missing", UP, {"body": batch(r=[reading(seq=DROP)])}, "bad-seq"),
    ("seq repeated in a batch", UP, {"body": batch(r=[reading(seq=7), reading(seq=7)])}, "bad-seq"),
    ("seq falling in a batch", UP, {"body": batch(r=[reading(seq=8), reading(seq=7)])}, "bad-seq"),
    ("t missing", UP, {"body": batch(r=[reading(t=DROP)])}, "bad-time"),
    ("t as string", UP, {"body": batch(r=[reading(t="2025-11-28T03:00:00Z")])}, "bad-time"),
    ("t as float", UP, {"body": batch(r=[reading(t=1764300000.25)])}, "bad-time"),
    ("unknown metric", UP, {"body": batch(r=[reading(temperature=28.0)])}, "unknown-key"),
    ("metric name injection", UP, {"body": batch(r=[reading(**{"a,b=c": 1.0})])}, "unknown-key"),
    ("metric name with spaces", UP, {"body": batch(r=[reading(**{"air temp": 1.0})])}, "unknown-key"),
    ("metric name with newline", UP, {"body": batch(r=[reading(**{"air_temp_c\nx": 1.0})])}, "unknown-key"),
    ("metric as string", UP, {"body": batch(r=[reading(air_temp_c="28.3")])}, "bad-value"),
    ("metric as bool", UP, {"body": batch(r=[reading(air_temp_c=True)])}, "bad-value"),
    ("metric as list", UP, {"body": batch(r=[reading(air_temp_c=[28.3])])}, "bad-value"),
    ("metric overflowing to infinity", UP, {"raw": '{"v":1,"node":"smp29-03","epoch":1,"now":1764301800,"tq":"ntp","r":[{"seq":1,"t":1764301800,"air_temp_c":1e999}]}'}, "bad-value"),
    ("lost not a list", UP, {"body": batch(lost="1-5")}, "bad-lost"),
    ("lost range reversed", UP, {"body": batch(lost=[[9, 5]])}, "bad-lost"),
    ("lost range of three", UP, {"body": batch(lost=[[1, 2, 3]])}, "bad-lost"),
    ("time at 1970 on an rtc clock", UP, {"body": batch(tq="rtc", now=NOW, r=[reading(t=0)])}, "time-impossible"),
    ("time in the future on an rtc clock", UP, {"body": batch(tq="rtc", now=NOW - 86400 * 365, r=[reading(t=NOW)])}, "time-impossible"),
    ("reading at 1970 with now at 1970", UP, {"body": batch(now=5, r=[reading(t=-2_000_000_000)])}, "time-impossible"),
    ("status with unknown state", STATUS, {"body": {"v": 1, "state": "asleep"}}, "bad-state"),
    ("status with t as string", STATUS, {"body": {"v": 1, "state": "online", "t": "now"}}, "bad-time"),
    ("status battery NaN-like string", STATUS, {"body": {"v": 1, "state": "online", "batt_v": "NaN"}}, "bad-value"),
    ("status fw with newline", STATUS, {"body": {"v": 1, "state": "online", "fw": "1.0\nx"}}, "bad-type"),
    ("status of an unknown node", "rimba/v1/smp29/smp29-77/status", {"body": {"v": 1, "state": "online"}}, "unknown-node"),
]


def main() -> None:
    out = {
        "comment": "Wire contract v1 golden vectors. Generated by gen_vectors.py; read by the ingest and firmware tests.",
        "received": RECEIVED,
        "fleet": FLEET,
        "up_valid": valid,
        "status_valid": status_valid,
        "invalid": [dict(name=n, topic=t, code=c, **p) for n, t, p, c in invalid],
    }
    emit(out, "contract-v1.json")


def emit(out: dict, name: str) -> None:
    """Write the vectors beside this file, or with --check exit 1 if the committed file differs."""
    text = json.dumps(out, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    target = Path(__file__).with_name(name)
    if "--check" in sys.argv:
        sys.exit(0 if target.read_text(encoding="utf-8") == text else 1)
    target.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
