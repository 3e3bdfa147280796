"""Writes tests/vectors/contract-v2.json, the golden vectors of wire contract v2.

Run it after changing a vector here; the committed JSON is what both the ingest tests (CPython) and the
firmware tests (MicroPython, through the firmware's own encoder) read, and tests/test_vectors_v2.py fails
when the two drift apart.

- `pairs`: a v1 batch and a v2 batch of the same readings (the v1 values written at v2's resolution)
  that must store identical points (`expect`, in the v1 vectors' format). Each v2 body is what the
  node's encoder builds from those readings, so the firmware test can compare them as JSON.
- `invalid`: every v2 refusal code, and the v1 codes where v2 has a variant, one rule broken each.
- `status_valid`: v2 statuses that must be stored, with the time they are stored at.

The values of a pair are defined once, as v2 integers; the v1 body carries each as the decimal
`x / 10 ** dec`, and main() checks contract v2's float rule on every one: the exact decimal text parses to
the same float as the integer divided by the power of ten.
"""

import json
import random

from gen_vectors import FLEET, NOW, RECEIVED, emit

# contract v2, "dec" (a stored value is the integer divided by 10 ** dec), and contract v1's ranges
DEC = {"air_temp_c": 2, "air_rh_pct": 1, "air_pressure_hpa": 1, "soil_temp_c": 2, "soil_vwc_pct": 1,
       "pm1_ugm3": 1, "pm25_ugm3": 1, "pm10_ugm3": 1, "co2_ppm": 0, "light_lux": 0, "rain_mm": 3,
       "water_level_cm": 1, "water_temp_c": 2, "batt_v": 3, "rssi_dbm": 0}
RANGE = {"air_temp_c": (-40, 85), "air_rh_pct": (0, 100), "air_pressure_hpa": (300, 1100),
         "soil_temp_c": (-40, 85), "soil_vwc_pct": (0, 100), "pm1_ugm3": (0, 2000), "pm25_ugm3": (0, 2000),
         "pm10_ugm3": (0, 2000), "co2_ppm": (0, 40000), "light_lux": (0, 200000), "rain_mm": (0, 500),
         "water_level_cm": (-1000, 5000), "water_temp_c": (-5, 60), "batt_v": (0, 6), "rssi_dbm": (-127, 0)}
EPOCH = 2841937411
BOOT = 17
FW = "1.1.0"
TRUSTED_AFTER = 1704067200  # 2024-01-01: contract v1 "Storage", times before it are re-based
FUTURE_S = 300
LATE_S = 900
ESP32_EPOCH = 946684800  # the ESP32 port's RTC counts from 2000-01-01
FOREST = ["air_temp_c", "air_rh_pct", "soil_vwc_pct", "soil_temp_c", "rain_mm"]


def topic(version: int, kind: str = "up", site: str = "smp29", node: str = "smp29-03") -> str:
    return f"rimba/v{version}/{site}/{node}/{kind}"


def decimal(x: int, dec: int) -> str:
    """The integer x in steps of 10 ** -dec as exact decimal text: (2831, 2) -> '28.31'."""
    if not dec:
        return str(x)
    digits = str(abs(x)).rjust(dec + 1, "0")
    return ("-" if x < 0 else "") + digits[:-dec] + "." + digits[-dec:]


def v1_value(x: int, dec: int):
    """What the v1 body carries for x: an integer when dec is 0, else the float of the exact decimal."""
    if not dec:
        return x
    value = float(decimal(x, dec))
    assert value == x / 10**dec, (x, dec)  # contract v2: the same float either way
    assert json.loads(json.dumps(value)) == value and float(json.dumps(value)) == x / 10**dec
    return value


def steps(times: list):
    gaps = [b - a for a, b in zip(times, times[1:])]
    return gaps[0] if gaps and all(g == gaps[0] for g in gaps) else gaps


def pair(name: str, seq: int, times: list, m: list, x: list, *, node: str = "smp29-03", site: str = "smp29",
         now: int = NOW, tq: str = "ntp", lost=None, v1_absent: bool = False) -> dict:
    """A v1 batch and a v2 batch of the same readings, and the points both must store.

    `v1_absent`: the v1 readings leave a null value out instead of writing null (v1 allows both)."""
    assert len(times) == len(x) and all(len(row) == len(m) for row in x)
    head = {"node": node, "epoch": EPOCH, "now": now, "tq": tq, "fw": FW}
    v2 = {"v": 2, **head, "boot": BOOT}
    if x:
        v2.update(seq=seq, t=times[0], dt=steps(times), m=m, x=x)
    readings = []
    for i, (t, row) in enumerate(zip(times, x)):
        r = {"seq": seq + i, "t": t}
        for name_, value in zip(m, row):
            if value is not None:
                r[name_] = v1_value(value, DEC[name_])
            elif not v1_absent:
                r[name_] = None
        readings.append(r)
    v1 = {"v": 1, **head, "r": readings}
    if lost:
        v1["lost"] = v2["lost"] = lost
    return {"name": name, "v1": {"topic": topic(1, site=site, node=node), "body": v1},
            "v2": {"topic": topic(2, site=site, node=node), "body": v2},
            "expect": expect(seq, times, m, x, now, tq, lost)}


def expect(seq, times, m, x, now, tq, lost) -> dict:
    """The stored points by the contract's rules (contract v1 "Storage", contract v2 "Re-basing after a
    wait" for one message alone: its own `received - now`): re-based when the time cannot be trusted, late
    when received more than 15 minutes after it, a value outside its range dropped as a fault."""
    out: dict = {"epoch": EPOCH, "readings": []}
    if lost:
        out["lost"] = lost
    faults = 0
    for i, (t, row) in enumerate(zip(times, x)):
        trusted = tq == "ntp" and TRUSTED_AFTER <= t <= RECEIVED + FUTURE_S
        offset = None if trusted else RECEIVED - now
        when = t if trusted else t + offset
        values = {}
        for name, value in zip(m, row):
            if value is None:
                continue
            v = value / 10 ** DEC[name]
            low, high = RANGE[name]
            if low <= v <= high:
                values[name] = float(v)
            else:
                faults += 1
        out["readings"].append({"seq": seq + i, "time": when, "late": RECEIVED - when > LATE_S, "offset": offset,
                                "values": values})
    if faults:
        out["faults"] = faults
    return out


def every(start: int, n: int, step: int) -> list:
    return [start + k * step for k in range(n)]


def full_batch() -> tuple:
    """200 readings of air temperature and humidity (a v1 batch of the five forest metrics would not fit in
    16 KiB), a seeded walk."""
    rng = random.Random(20251128)
    temp, rh = 2650, 880
    rows = []
    for _ in range(200):
        temp = max(2200, min(3400, temp + rng.randint(-15, 15)))
        rh = max(550, min(1000, rh + rng.randint(-8, 8)))
        rows.append([temp, rh if rng.random() > 0.03 else None])
    return every(RECEIVED - 200 * 600, 200, 600), rows


T0 = 1764300000
FULL_TIMES, FULL_ROWS = full_batch()
BOUNDS_M = list(DEC)
pairs = [
    pair("contract example", 1041, every(T0, 3, 600), ["air_temp_c", "air_rh_pct", "soil_vwc_pct"],
         [[2831, 842, 315], [2840, 839, None], [2852, 838, 316]], lost=[[1001, 1012]]),
    pair("nulls: a row of nulls, a null column, a value alone", 7, every(RECEIVED - 1200, 3, 300),
         ["air_temp_c", "air_rh_pct"], [[None, None], [2790, None], [None, 801]]),
    pair("nulls written as absent keys in v1", 7, every(RECEIVED - 1200, 3, 300), ["air_temp_c", "air_rh_pct"],
         [[None, None], [2790, None], [None, 801]], v1_absent=True),
    pair("every metric at its dec", 20, every(RECEIVED - 600, 2, 600), BOUNDS_M,
         [[2831, 842, 10132, 2647, 315, 123, 357, 489, 415, 12345, 279, 3105, 2925, 3941, -71],
          # steps that are not exact binary fractions: 4.35 * 100 is 434.99999999999994 in a double
          [435, 1, 9999, 1, 1, 1, 3, 7, 1, 1, 1, 1, 1, 1, -1]]),
    pair("forest row, dt as an integer (10-minute cadence)", 301, every(RECEIVED - 3600, 6, 600), FOREST,
         [[2650 + k, 880 - k, 315, 2600, 279 * (k % 2)] for k in range(6)]),
    pair("dt as a list (irregular steps, one of 1 s)", 41, [RECEIVED - 2401, RECEIVED - 1801, RECEIVED - 1800,
                                                              RECEIVED - 1], ["air_temp_c"],
         [[2810], [2811], [2812], [2813]]),
    pair("lost-only batch, no rows", 1, [], FOREST, [], lost=[[1, 5]]),
    pair("rtc clock is re-based by received - now", 7, [400, 700], ["air_temp_c"], [[2800], [2810]],
         tq="rtc", now=1000),
    pair("rtc backlog older than 15 min is late", 7, [400, 1000], ["air_temp_c"], [[2800], [2810]],
         tq="rtc", now=5000),
    pair("ESP32 clock counting from 2000 is re-based", 7, every(NOW - ESP32_EPOCH - 610, 2, 600), ["air_temp_c"],
         [[2800], [2805]], now=NOW - ESP32_EPOCH),
    pair("out-of-range value is dropped, reading kept", 7, [RECEIVED], ["air_temp_c", "air_rh_pct"],
         [[2800, 1205]]),
    pair("boundary values: every metric at both ends of its range", 1, [RECEIVED - 1, RECEIVED],
         BOUNDS_M, [[RANGE[n][0] * 10 ** DEC[n] for n in BOUNDS_M], [RANGE[n][1] * 10 ** DEC[n] for n in BOUNDS_M]],
         node="bansir-laut-01", site="bansir-laut"),
    pair("one step outside the range is dropped", 3, [RECEIVED],
         ["air_temp_c", "air_rh_pct", "water_level_cm", "rain_mm", "batt_v", "rssi_dbm", "soil_temp_c"],
         [[-4001, 1001, -10001, 500001, 6001, 1, 2500]], node="bansir-laut-01", site="bansir-laut"),
    pair("negative values (river level below its datum, signal, a frost)", 88, every(RECEIVED - 1200, 3, 600),
         ["water_level_cm", "water_temp_c", "air_temp_c", "rssi_dbm"],
         [[-1234, -45, -5, -71], [-1, 2925, -1, -127], [0, -500, -4000, -1]],
         node="bansir-laut-01", site="bansir-laut"),
    pair("200 rows (a full batch)", 5001, FULL_TIMES, ["air_temp_c", "air_rh_pct"], FULL_ROWS),
]

DROP = object()


def batch2(**over) -> dict:
    """The contract example as a v2 body, with keys replaced (DROP removes one)."""
    b = {"v": 2, "node": "smp29-03", "epoch": EPOCH, "boot": BOOT, "now": NOW, "tq": "ntp", "fw": FW,
         "seq": 1041, "t": T0, "dt": 600, "m": ["air_temp_c", "air_rh_pct", "soil_vwc_pct"],
         "x": [[2831, 842, 315], [2840, 839, None], [2852, 838, 316]]}
    b.update(over)
    return {k: v for k, v in b.items() if v is not DROP}


UP2 = topic(2)
STATUS2 = topic(2, "status")
ROW3 = [2831, 842, 315]
valid_text = json.dumps(batch2(), separators=(",", ":"))
invalid = [
    # (name, topic, payload as body | raw | hex, code)
    ("version 3 topic", "rimba/v3/smp29/smp29-03/up", {"body": batch2(v=3)}, "topic"),
    ("v2 topic without a node", "rimba/v2/smp29/up", {"body": batch2()}, "topic"),
    ("broken JSON on a v2 topic", UP2, {"raw": valid_text[:-7]}, "bad-json"),
    ("NaN in a row", UP2, {"raw": valid_text.replace("2831", "NaN")}, "bad-json"),
    ("non-UTF-8 bytes on a v2 topic", UP2, {"hex": valid_text.encode().replace(b'"1.1.0"', b'"\xff"').hex()},
     "not-utf8"),
    ("m twice", UP2, {"raw": valid_text[:-1] + ',"m":["air_temp_c"]}'}, "duplicate-key"),
    ("v is 1 on a v2 topic", UP2, {"body": batch2(v=1)}, "bad-version"),
    ("v missing on a v2 topic", UP2, {"body": batch2(v=DROP)}, "bad-version"),
    ("v is a string 2", UP2, {"body": batch2(v="2")}, "bad-version"),
    ("v is true", UP2, {"body": batch2(v=True)}, "bad-version"),
    ("a v2 batch on a v1 topic", topic(1), {"body": batch2()}, "bad-version"),
    ("unknown node on a v2 topic", topic(2, node="smp29-99"), {"body": batch2(node="smp29-99")}, "unknown-node"),
    ("node under another site on a v2 topic", topic(2, site="bansir-laut"), {"body": batch2()}, "wrong-site"),
    ("node publishing as another node on a v2 topic", UP2, {"body": batch2(node="bansir-laut-01")},
     "node-mismatch"),
    ("node missing", UP2, {"body": batch2(node=DROP)}, "missing"),
    ("epoch missing", UP2, {"body": batch2(epoch=DROP)}, "missing"),
    ("boot missing", UP2, {"body": batch2(boot=DROP)}, "missing"),
    ("boot missing from a lost-only batch", UP2,
     {"body": batch2(boot=DROP, seq=DROP, t=DROP, dt=DROP, m=DROP, x=DROP, lost=[[1, 5]])}, "missing"),
    ("now missing", UP2, {"body": batch2(now=DROP)}, "missing"),
    ("tq missing", UP2, {"body": batch2(tq=DROP)}, "missing"),
    ("seq missing with rows", UP2, {"body": batch2(seq=DROP)}, "missing"),
    ("t missing with rows", UP2, {"body": batch2(t=DROP)}, "missing"),
    ("dt missing with rows", UP2, {"body": batch2(dt=DROP)}, "missing"),
    ("m missing with rows", UP2, {"body": batch2(m=DROP)}, "missing"),
    ("negative epoch", UP2, {"body": batch2(epoch=-1)}, "bad-epoch"),
    ("epoch over 32 bits", UP2, {"body": batch2(epoch=2**32)}, "bad-epoch"),
    ("epoch as string", UP2, {"body": batch2(epoch=str(EPOCH))}, "bad-epoch"),
    ("epoch as float", UP2, {"body": batch2(epoch=EPOCH + 0.5)}, "bad-epoch"),
    # contract v2: boot is an unsigned 32-bit integer; no code of its own, so a boot of the wrong type or
    # outside 32 bits is a key of the wrong type
    ("boot negative", UP2, {"body": batch2(boot=-1)}, "bad-type"),
    ("boot over 32 bits", UP2, {"body": batch2(boot=2**32)}, "bad-type"),
    ("boot as string", UP2, {"body": batch2(boot="17")}, "bad-type"),
    ("boot as float", UP2, {"body": batch2(boot=17.5)}, "bad-type"),
    ("boot as bool", UP2, {"body": batch2(boot=True)}, "bad-type"),
    ("boot null", UP2, {"body": batch2(boot=None)}, "bad-type"),
    ("now as float", UP2, {"body": batch2(now=NOW + 0.5)}, "bad-time"),
    ("tq unknown", UP2, {"body": batch2(tq="gps")}, "bad-type"),
    ("x is an object", UP2, {"body": batch2(x={"0": ROW3})}, "bad-type"),
    ("x is a string", UP2, {"body": batch2(x="2831,842,315")}, "bad-type"),
    ("201 rows", UP2, {"body": batch2(x=[ROW3] * 201)}, "too-many"),
    ("seq zero", UP2, {"body": batch2(seq=0)}, "bad-seq"),
    ("seq negative", UP2, {"body": batch2(seq=-3)}, "bad-seq"),
    ("seq as string", UP2, {"body": batch2(seq="1041")}, "bad-seq"),
    ("seq as float", UP2, {"body": batch2(seq=1041.0)}, "bad-seq"),
    ("seq as bool", UP2, {"body": batch2(seq=True)}, "bad-seq"),
    ("t as string", UP2, {"body": batch2(t="2025-11-28T03:20:00Z")}, "bad-time"),
    ("t as float", UP2, {"body": batch2(t=T0 + 0.25)}, "bad-time"),
    ("m empty", UP2, {"body": batch2(m=[])}, "bad-columns"),
    ("m of 17 names", UP2, {"body": batch2(m=list(DEC) + ["air_temp_c", "air_rh_pct"],
                                           x=[[1] * 17, [2] * 17, [3] * 17])}, "bad-columns"),
    ("m repeats a name", UP2, {"body": batch2(m=["air_temp_c", "air_temp_c", "soil_vwc_pct"])}, "bad-columns"),
    ("m holds an unknown name", UP2, {"body": batch2(m=["air_temp_c", "air_rh_pct", "temperature"])},
     "bad-columns"),
    ("m name injection", UP2, {"body": batch2(m=["air_temp_c", "air_rh_pct", "a,b=c"])}, "bad-columns"),
    ("m name with newline", UP2, {"body": batch2(m=["air_temp_c", "air_rh_pct", "soil_vwc_pct\nx"])},
     "bad-columns"),
    ("m holds a number", UP2, {"body": batch2(m=["air_temp_c", "air_rh_pct", 5])}, "bad-columns"),
    ("m is a string", UP2, {"body": batch2(m="air_temp_c,air_rh_pct,soil_vwc_pct")}, "bad-columns"),
    ("a row too short", UP2, {"body": batch2(x=[ROW3, [2840, 839], [2852, 838, 316]])}, "bad-columns"),
    ("a row too long", UP2, {"body": batch2(x=[ROW3, [2840, 839, 315, 1], [2852, 838, 316]])}, "bad-columns"),
    ("an empty row", UP2, {"body": batch2(x=[ROW3, [], [2852, 838, 316]])}, "bad-columns"),
    ("dt as string", UP2, {"body": batch2(dt="600")}, "bad-dt"),
    ("dt as float", UP2, {"body": batch2(dt=600.5)}, "bad-dt"),
    ("dt as bool", UP2, {"body": batch2(dt=True)}, "bad-dt"),
    ("dt null", UP2, {"body": batch2(dt=None)}, "bad-dt"),
    ("dt as object", UP2, {"body": batch2(dt={"step": 600})}, "bad-dt"),
    ("dt zero", UP2, {"body": batch2(dt=0)}, "bad-dt"),
    ("dt negative", UP2, {"body": batch2(dt=-600)}, "bad-dt"),
    ("dt list one short", UP2, {"body": batch2(dt=[600])}, "bad-dt"),
    ("dt list one long", UP2, {"body": batch2(dt=[600, 600, 600])}, "bad-dt"),
    ("dt list for a single row is not empty", UP2, {"body": batch2(x=[ROW3], dt=[600])}, "bad-dt"),
    ("a step of zero in a dt list", UP2, {"body": batch2(dt=[600, 0])}, "bad-dt"),
    ("a negative step in a dt list", UP2, {"body": batch2(dt=[600, -1])}, "bad-dt"),
    ("a step as string in a dt list", UP2, {"body": batch2(dt=[600, "600"])}, "bad-dt"),
    ("a step as float in a dt list", UP2, {"body": batch2(dt=[600, 600.5])}, "bad-dt"),
    ("an integral float step in a dt list", UP2, {"raw": valid_text.replace('"dt":600', '"dt":[600,600.0]')},
     "bad-dt"),
    ("a step as bool in a dt list", UP2, {"body": batch2(dt=[600, True])}, "bad-dt"),
    ("a value as float", UP2, {"body": batch2(x=[ROW3, [28.4, 839, None], [2852, 838, 316]])}, "bad-value"),
    ("an integral float value", UP2, {"raw": valid_text.replace("2840", "2840.0")}, "bad-value"),
    ("a value in exponent form", UP2, {"raw": valid_text.replace("2840", "2.84e3")}, "bad-value"),
    ("a value as string", UP2, {"body": batch2(x=[ROW3, ["2840", 839, None], [2852, 838, 316]])}, "bad-value"),
    ("a value as bool", UP2, {"body": batch2(x=[ROW3, [True, 839, None], [2852, 838, 316]])}, "bad-value"),
    ("a value as list", UP2, {"body": batch2(x=[ROW3, [[2840], 839, None], [2852, 838, 316]])}, "bad-value"),
    ("a value as object", UP2, {"body": batch2(x=[ROW3, [{"v": 2840}, 839, None], [2852, 838, 316]])},
     "bad-value"),
    ("lost not a list", UP2, {"body": batch2(lost="1-5")}, "bad-lost"),
    ("lost range reversed", UP2, {"body": batch2(lost=[[9, 5]])}, "bad-lost"),
    ("lost range of three in a lost-only batch", UP2,
     {"body": batch2(seq=DROP, t=DROP, dt=DROP, m=DROP, x=DROP, lost=[[1, 2, 3]])}, "bad-lost"),
    ("time at 1970 on an rtc clock", UP2, {"body": batch2(tq="rtc", t=0)}, "time-impossible"),
    ("time in the future on an rtc clock", UP2, {"body": batch2(tq="rtc", now=NOW - 86400 * 365, t=NOW)},
     "time-impossible"),
    ("v2 status with v 1", STATUS2, {"body": {"v": 1, "state": "online"}}, "bad-version"),
    ("v2 status with unknown state", STATUS2, {"body": {"v": 2, "state": "asleep"}}, "bad-state"),
    ("v2 status wake more than 7 days after t", STATUS2,
     {"body": {"v": 2, "state": "sleeping", "t": 1764301801, "wake": 1764301801 + 7 * 86400 + 1}}, "bad-value"),
    ("v2 status wake before t", STATUS2,
     {"body": {"v": 2, "state": "sleeping", "t": 1764301801, "wake": 1764301800}}, "bad-value"),
    ("v2 status of an unknown node", topic(2, "status", node="smp29-77"), {"body": {"v": 2, "state": "online"}},
     "unknown-node"),
]

ok_status = {"v": 2, "state": "sleeping", "t": 1764301801, "fw": FW, "fw_state": "good", "cfg": 7, "boot": BOOT,
             "reset": "deepsleep", "batt_v": 3.94, "rssi_dbm": -71, "buffered": 0, "dropped": 12, "wake": 1764303600}
status_valid = [
    {"name": "v2 status example", "topic": STATUS2, "body": ok_status,
     "expect": {"state": "sleeping", "time": 1764301801}},
    {"name": "v2 last will", "topic": STATUS2, "body": {"v": 2, "state": "lost"},
     "expect": {"state": "lost", "time": RECEIVED}},
    {"name": "a release rolled back", "topic": STATUS2,
     "body": dict(ok_status, state="online", fw="1.1.0", fw_state="rolled-back", fw_failed="1.2.0"),
     "expect": {"state": "online", "time": 1764301801}},
    {"name": "a release on trial", "topic": STATUS2, "body": dict(ok_status, fw="1.2.0", fw_state="trial"),
     "expect": {"state": "sleeping", "time": 1764301801}},
    {"name": "wake exactly 7 days after t", "topic": STATUS2,
     "body": dict(ok_status, wake=1764301801 + 7 * 86400), "expect": {"state": "sleeping", "time": 1764301801}},
]


def check_pairs() -> None:
    """The float rule of every pair, and every v2 body within the contract's shape."""
    for p in pairs:
        v1, v2 = p["v1"]["body"], p["v2"]["body"]
        rows = v2.get("x", [])
        assert len(rows) <= 200 and len(json.dumps(v1, separators=(",", ":"))) <= 16 * 1024, p["name"]
        for i, row in enumerate(rows):
            for name, x in zip(v2["m"], row):
                value = v1["r"][i].get(name)
                assert (value is None) == (x is None), (p["name"], name)
                if x is not None:
                    assert float(decimal(x, DEC[name])) == x / 10 ** DEC[name] == value, (p["name"], name, x)


def main() -> None:
    check_pairs()
    out = {
        "comment": "Wire contract v2 golden vectors. Generated by gen_vectors_v2.py; read by the ingest tests and "
                   "by the firmware's encoder in MicroPython.",
        "received": RECEIVED,
        "fleet": FLEET,
        "pairs": pairs,
        "status_valid": status_valid,
        "invalid": [dict(name=n, topic=t, code=c, **p) for n, t, p, c in invalid],
    }
    emit(out, "contract-v2.json")


if __name__ == "__main__":
    main()
