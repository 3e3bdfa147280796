"""The node firmware in the real MicroPython interpreter (unix port, 96 KiB heap) against the real Mosquitto
and the real ingest: readings kept in flash until the platform's ack, an outage, power loss, the clock,
the config mailbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rimba.dev.hostnode import FirmwareNode
from rimba.dev.harness import wait_until


def port_of(p) -> int:
    return p.settings.broker.port


# Both contract versions end to end: v2 is the firmware's default, v1 stays supported (a node kept on it).
WIRES = [1, 2]


@pytest.mark.parametrize("wire", WIRES)
def test_readings_reach_influxdb_and_the_buffer_is_freed_only_by_the_ack(platform_factory, tmp_path, wire):
    p = platform_factory({"fw-01": ("smp29", "forest")})
    node = FirmwareNode(tmp_path, "fw-01", "smp29", port_of(p), start=time.time() - 10 * 600,  # never ahead of now
                        wire=wire)
    node.set(air_temp_c=27.5, air_rh_pct=81.0, batt_v=3.95)
    for _ in range(3):  # the third wake sends; no ingest runs yet: the broker takes the batch, nobody acks
        node.wake()
    assert node.world["wifi_connects"] == 1
    assert len(node.buffered()) == 3 and node.buffer_state()["acked"] == 0
    p.ingest()
    for _ in range(3):  # the batch waits at... nowhere: it was published before ingest subscribed; resent
        node.wake()
    wait_until(lambda: p.count() >= 6, 15, "six readings stored")
    # the ack moved over them: the node freed its buffer (at once, or at its next wake)
    node.wake()
    node.wake()
    node.wake()
    wait_until(lambda: p.count() >= 9, 30, "nine readings stored")
    assert node.buffer_state()["acked"] >= 6 and len(node.buffered()) <= 3
    rows = p.influx.rows("SELECT air_temp_c, air_rh_pct, seq FROM reading WHERE node = 'fw-01'")
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), str([(r["time"], r["seq"]) for r in rows])
    assert all(abs(r["air_temp_c"] - 27.5) < 0.01 and abs(r["air_rh_pct"] - 81.0) < 0.1 for r in rows)
    status = p.influx.rows("SELECT last(batt_v), last(state) FROM node_status WHERE node = 'fw-01'")
    assert status and abs(status[0]["last"] - 3.95) < 0.01 and status[0]["last_1"] == "sleeping"


def old_buffer(root, readings: list, state: dict) -> None:
    """A flash buffer as firmware 0.2 left it: state.json and one segment of v1 JSON readings, CRC-checked."""
    from binascii import crc32

    buf = root / "buf"
    buf.mkdir(parents=True)
    (buf / "state.json").write_text(json.dumps(state))
    lines = []
    for r in readings:
        text = json.dumps(r, separators=(",", ":"))
        lines.append(f"{crc32(text.encode()) & 0xFFFFFFFF:08x} {text}\n")
    (buf / f"s{readings[0]['seq']}.log").write_text("".join(lines))


@pytest.mark.parametrize("wire", WIRES)
def test_readings_buffered_by_firmware_0_2_are_stored_after_the_update(platform_factory, tmp_path, wire):
    """A node updated while 0.2 still held five readings it had not sent (epoch 99, seq 11-15, 1-10 acked): the
    new firmware keeps the epoch and the seq, sends the old readings and its own, every one stored once."""
    p = platform_factory({"fw-07": ("smp29", "forest")})
    p.ingest()
    start = time.time() - 20 * 600
    node = FirmwareNode(tmp_path, "fw-07", "smp29", port_of(p), start=start, wire=wire)
    old = [{"seq": s, "t": int(start) - 600 * (16 - s), "air_temp_c": round(26.5 + s / 10, 1), "air_rh_pct": 90.1,
            "soil_vwc_pct": 33.3, "soil_temp_c": 26.25, "rain_mm": 0.0} for s in range(11, 16)]
    old_buffer(node.root, old, {"epoch": 99, "next": 16, "acked": 10, "lost": []})
    for _ in range(3):
        node.wake()
    wait_until(lambda: len(stored(p, "fw-07")) >= 8, 15, "the old and the new readings")
    rows = p.influx.rows("SELECT seq, air_temp_c, air_rh_pct FROM reading WHERE node = 'fw-07'", epoch="s")
    assert [r["seq"] for r in rows] == list(range(11, 19))
    assert [r["air_temp_c"] for r in rows[:5]] == [r["air_temp_c"] for r in old]  # the same floats
    # their times as taken (the first sync's measured error applies to them too: within 2 s here)
    assert all(abs(r["time"] - o["t"]) <= 2 for r, o in zip(rows, old, strict=False))
    assert node.buffer_state()["epoch"] == 99


def run_powerloss(root, seed, phase, lib) -> dict:
    """The power-loss harness in 96 KiB, on the firmware compiled as the device loads it (`lib`): compiling the
    sources in the heap at import would leave the test at the mercy of the heap's fragmentation."""
    import os
    import subprocess

    from rimba.dev.hostnode import micropython
    from rimba.dev.harness import ROOT

    env = {**os.environ, "MICROPYPATH": str(lib), "PL_ROOT": str(root), "PL_SEED": str(seed), "PL_PHASE": phase}
    r = subprocess.run([micropython(), "-X", "heapsize=96k", str(ROOT / "tests" / "firmware" / "powerloss.py")],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode in (0, 9), r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_power_loss_during_buffer_writes_costs_at_most_the_reading_in_flight(tmp_path, compiled):
    """Fifty seeds: the power fails inside an append, around replacing state.json or while freeing a segment;
    the buffer reopens consistent, every reading taken before survives or was freed by an ack, at most the
    one being written is lost, and no seq is ever used twice."""
    where = {}
    for seed in range(50):
        root = tmp_path / f"s{seed}"
        crash = run_powerloss(root, seed, "crash", compiled)
        after = run_powerloss(root, seed, "check", compiled)
        where[crash["crashed"]] = where.get(crash["crashed"], 0) + 1
        seqs = after["seqs"]
        assert seqs == sorted(set(seqs)), (seed, seqs)  # no duplicates, in order
        assert after["new"] > max(seqs + [after["acked"]]), (seed, after)  # the next seq is new
        assert after["new_readable"], (seed, crash)  # a torn record does not take the next one with it
        taken = crash["at"] - 1 if crash["crashed"] == "append" else None
        held = set(seqs) | set(range(1, after["acked"] + 1)) | {s for a, b in after["lost"] for s in range(a, b + 1)}
        top = max(seqs + [after["acked"]])
        missing = set(range(1, top + 1)) - held
        assert not missing, (seed, crash, sorted(missing)[:5])
        if taken is not None:
            assert top >= taken, (seed, "a stored reading vanished")  # at most the torn one is gone
    assert set(where) >= {"append", "state", "rename", "remove"}, where


def stored(p, node: str) -> list:
    return p.influx.rows(f"SELECT seq, air_temp_c FROM reading WHERE node = '{node}'", epoch="s")


def test_an_outage_of_twenty_cycles_loses_nothing_and_keeps_the_times(platform_factory, tmp_path, compiled, heap):
    p = platform_factory({"fw-02": ("smp29", "forest")})
    p.ingest()
    node = FirmwareNode(tmp_path, "fw-02", "smp29", port_of(p), start=time.time() - 60 * 600, lib=compiled,
                        heap=heap)
    truth = {}  # seq -> the true time the reading was taken

    def wake():
        t = node.world["true"]
        node.wake()
        truth[len(truth) + 1] = t

    for _ in range(3):
        wake()
    node.set(wifi=False)
    for _ in range(20):
        wake()
    # the first batch's ack is read at the next session (the node does not wait for it), which the outage delays:
    # the three readings it covers are still kept, with the twenty of the outage
    assert len(node.buffered()) == 23 and node.world["wifi_connects"] >= 4  # it kept trying, with backoff
    node.set(wifi=True)
    for _ in range(30):
        wake()
        if p.count("SELECT count(seq) FROM reading WHERE node = 'fw-02'") >= len(truth) - 2:
            break
    wait_until(lambda: len(stored(p, "fw-02")) >= len(truth) - 2, 30, "the outage's readings stored")
    rows = stored(p, "fw-02")
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(set(seqs)) and seqs[:23] == list(range(1, 24))  # every one, once
    for r in rows:
        assert abs(r["time"] - truth[r["seq"]]) <= 2, (r, truth[r["seq"]])  # its original time
    assert p.count("SELECT count(seq) FROM reading WHERE late = true AND node = 'fw-02'") >= 15


def test_a_drifting_clock_is_corrected_between_syncs(platform_factory, tmp_path):
    """The RTC runs 5 % fast from a wrong start (never set since power-on); NTP at each send measures its
    error, and the readings between two syncs are corrected linearly: stored within 2 s of the truth."""
    p = platform_factory({"fw-03": ("smp29", "forest")})
    p.ingest()
    start = time.time() - 40 * 600
    node = FirmwareNode(tmp_path, "fw-03", "smp29", port_of(p), start=start)
    node.set(drift=0.05, rtc=[start - 3 * 86400, start])
    truth = {}
    for _ in range(15):
        truth[len(truth) + 1] = node.world["true"]
        node.wake()
    wait_until(lambda: len(stored(p, "fw-03")) >= 15, 30, "fifteen readings")
    rows = stored(p, "fw-03")
    after_first_sync = [r for r in rows if r["seq"] > 3]
    assert len(after_first_sync) == 12
    for r in after_first_sync:
        assert abs(r["time"] - truth[r["seq"]]) <= 2, (r["seq"], r["time"] - truth[r["seq"]])
    # before the first sync only the clock's offset is known, not its rate: within the drift of that span
    for r in rows[:3]:
        assert abs(r["time"] - truth[r["seq"]]) <= 0.05 * 3 * 600 + 2


@pytest.mark.parametrize("wire", WIRES)
def test_the_config_mailbox_applies_a_newer_rev_and_rejects_a_bad_one(platform_factory, tmp_path, wire):
    from rimba.adapters.mqtt import Mqtt

    p = platform_factory({"fw-04": ("smp29", "forest")})
    p.ingest()
    node = FirmwareNode(tmp_path, "fw-04", "smp29", port_of(p), start=time.time() - 30 * 600, send_every=3,
                        wire=wire)
    m = Mqtt(p.settings.broker, "config-writer", v5=False, persistent=False).start()

    def desired(body):
        m.wait_published([m.publish(f"rimba/v{wire}/smp29/fw-04/config", json.dumps(body).encode(), retain=True)], 10)

    desired({"v": wire, "rev": 2, "send_every": 2, "sample_s": 300})
    for _ in range(3):
        node.wake()  # the third wake sends and reads the mailbox
    assert node.world["slept_ms"] == 300_000  # rev 2 in force
    connects = node.world["wifi_connects"]
    node.wake()
    node.wake()
    assert node.world["wifi_connects"] == connects + 1  # now every second wake sends
    desired({"v": wire, "rev": 3, "send_every": 0, "sample_s": 5})  # invalid: send_every below 1
    for _ in range(2):
        r = node.wake()
    assert "config rev 3 rejected" in r.stdout
    assert node.world["slept_ms"] == 300_000  # still rev 2, still running
    status = p.influx.rows("SELECT last(cfg) FROM node_status WHERE node = 'fw-04'")
    assert status and status[0]["last"] == 2
    m.stop()


PROFILE_WORLD = {
    "forest": ({"soil_mv": 2000, "soil_temp_c": 26.5}, {"soil_vwc_pct": 50.0, "soil_temp_c": 26.5, "rain_mm": 0.0}),
    "river": ({"water_distance_mm": 1234, "water_temp_c": 29.25}, {"water_temp_c": 29.25}),
    "air": ({"pm25_ugm3": 35, "pm1_ugm3": 20, "pm10_ugm3": 48}, {"pm25_ugm3": 35.0, "pm1_ugm3": 20.0, "pm10_ugm3": 48.0}),
}


@pytest.mark.parametrize("profile", sorted(PROFILE_WORLD))
def test_a_full_cycle_of_each_profile_runs_from_mpy_cross_compiled_files_in_96_kib(platform_factory, tmp_path,
                                                                                    profile, compiled, heap):
    """The files as the device loads them: every firmware module compiled with mpy-cross, main.py as source,
    behind the boot selector; each profile's sensors read through the (compiled) fakes; its metrics stored."""
    lib = compiled
    node_id = f"fw-{profile}"
    p = platform_factory({node_id: ("bansir-laut" if profile == "river" else "smp29", profile)})
    p.ingest()
    node = FirmwareNode(tmp_path, node_id, "bansir-laut" if profile == "river" else "smp29", port_of(p), heap=heap,
                        lib=lib, start=time.time() - 20 * 600, send_every=3, profile=profile)
    world, expect = PROFILE_WORLD[profile]
    node.set(air_temp_c=25.0, air_rh_pct=80.0, **world)
    for _ in range(3):
        node.wake()
    wait_until(lambda: len(stored(p, node_id)) >= 3, 30, "three readings from the compiled firmware")
    fields = ", ".join(f'last("{k}") AS "{k}"' for k in expect)
    row = p.influx.rows(f"SELECT {fields} FROM reading WHERE node = '{node_id}'")[0]
    for k, v in expect.items():
        assert row[k] == pytest.approx(v, abs=0.06), (k, row)
    if profile == "river":  # 310 cm mount minus 1234 mm corrected to 25 °C
        level = p.influx.rows(f"SELECT last(water_level_cm) FROM reading WHERE node = '{node_id}'")[0]["last"]
        assert level == pytest.approx(310 - 123.4 * 346.45 / 343, abs=0.1)
    assert not list(lib.glob("*.py"))


def test_the_firmware_builds_what_the_golden_vectors_say(tmp_path):
    """The contract's valid v1 `up` vectors (shared with the ingest tests), stored in a real buffer and sent by the
    firmware's own encoder with `wire` 1 in MicroPython, decode to the same readings, lost ranges and times as the
    vectors (a vector's readings may take several batches: one column list and rising times each)."""
    import os
    import subprocess

    from rimba import contract
    from rimba.dev.hostnode import FAKES, micropython
    from rimba.dev.harness import ROOT, VECTOR_FLEET, VECTORS

    world = tmp_path / "world.json"
    world.write_text(json.dumps({"true": 1764301800, "rtc": [1764301800, 1764301800]}))
    (tmp_path / "buf").mkdir()
    env = {**os.environ, "MICROPYPATH": f"{FAKES}:{ROOT / 'firmware' / 'lib'}", "RIMBA_WORLD": str(world),
           "RIMBA_VECTORS": str(ROOT / "tests" / "vectors" / "contract-v1.json"), "RIMBA_BUF": str(tmp_path / "buf")}
    # a larger heap: the whole vector file is loaded at once here, which a node never does
    r = subprocess.run([micropython(), "-X", "heapsize=1m", str(ROOT / "tests" / "firmware" / "vectors_fw.py")],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    built = json.loads(r.stdout.strip().splitlines()[-1])
    by_name = {v["name"]: v for v in VECTORS["up_valid"]}
    assert len(built) >= 10
    for b in built:
        vector = by_name[b["name"]]
        got = []
        for payload in b["payloads"]:
            batch = contract.decode_up(vector["topic"], payload.encode(), VECTOR_FLEET)
            placed = contract.place(batch, VECTORS["received"])
            got += [{"seq": x.seq, "time": p.time, "late": p.late, "offset": p.offset, "values": x.values}
                    for x, p in zip(batch.readings, placed, strict=True)]
            assert [list(x) for x in batch.lost] == vector["expect"].get("lost", []), b["name"]
        assert got == vector["expect"]["readings"], b["name"]


def test_repeated_crashes_lead_to_safe_mode_and_the_watchdog_is_armed_first(platform_factory, tmp_path):
    p = platform_factory({"fw-06": ("smp29", "forest")})
    p.ingest()
    node = FirmwareNode(tmp_path, "fw-06", "smp29", port_of(p), start=time.time() - 20 * 600, safe_after=3)
    node.wake()
    node.wake()
    node.wake()  # sends
    assert node.world["events"][:2] == ["wdt", "wifi"]  # the watchdog before any network call
    wait_until(lambda: len(stored(p, "fw-06")) >= 3, 30, "three readings")
    node.set(i2c_crash=True)
    for _ in range(3):
        r = node.wake(expect_sleep=False)
        assert r.returncode == 3 and "crashed" in r.stdout  # main.py resets the board
    r = node.wake()  # the fourth boot in a row without a clean end: safe mode, status only
    assert node.world["slept_ms"] == 600_000
    def safe_status():
        rows = p.influx.rows("SELECT last(state), last(boot) FROM node_status WHERE node = 'fw-06'")
        return rows and rows[0]["last_1"] == 4 and rows[0]["last"] == "sleeping"
    wait_until(safe_status, 30, "the safe-mode status (boot 4)")
    assert len(stored(p, "fw-06")) == 3  # no readings from a node in safe mode
    node.set(i2c_crash=False)
    node.wake()  # the cycle ended cleanly last time: back to normal
    assert node.runs[-1].returncode == 0 and len(node.buffered()) == 1


def test_the_node_speaks_tls_to_the_broker_with_the_projects_ca(platform_factory, tmp_path, compiled, heap):
    """The firmware in MicroPython, compiled as flashed, in the 96 KiB heap (the compiled fakes' own added: on
    the board they are C), connects to the broker's TLS listener, trusting only the CA that `rimba broker tls`
    made (in DER beside its config); readings reach the ingest on the plain listener."""
    import subprocess

    from hardware import tls
    from rimba.dev.stack import Stack, free_port

    p = platform_factory({"fw-tls": ("smp29", "forest")})
    state = tmp_path / "broker-state"
    paths = tls.make(state / "broker")
    plain, secure = free_port(), free_port()
    stack = Stack(state, plain, free_port(), tls_port=secure)
    stack.start_mosquitto()
    from rimba.dev.harness import IngestProcess, env_for

    ingest = None
    try:
        ingest = IngestProcess(env_for(dict(p.values, mqtt_url=f"mqtt://127.0.0.1:{plain}",
                                            mqtt_client_id="ingest-tls")), tmp_path / "ingest.log").start()
        ingest.wait_subscribed()
        node = FirmwareNode(tmp_path, "fw-tls", "smp29", secure, start=time.time() - 10 * 600, mqtt_tls=True,
                            mqtt_host="localhost", lib=compiled, heap=heap)
        subprocess.run(["openssl", "x509", "-in", str(paths["ca"]), "-outform", "DER", "-out",
                        str(node.root / "ca.der")], check=True, timeout=30)
        for _ in range(3):
            node.wake()
        assert "send failed" not in node.runs[-1].stdout, node.runs[-1].stdout
        wait_until(lambda: len(stored(p, "fw-tls")) >= 3, 30, "three readings over TLS")
        # a node trusting another CA is refused (the reading stays in its buffer)
        other = tls.make(tmp_path / "other", name="Someone else")
        subprocess.run(["openssl", "x509", "-in", str(other["ca"]), "-outform", "DER", "-out",
                        str(node.root / "ca.der")], check=True, timeout=30)
        for _ in range(3):
            node.wake()
        assert "send failed: TLS" in node.runs[-1].stdout and len(node.buffered()) >= 3
    finally:
        if ingest is not None:
            ingest.stop()
        stack.stop_mosquitto()
