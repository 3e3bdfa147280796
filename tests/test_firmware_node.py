"""The node firmware in the real MicroPython interpreter (unix port, 96 KiB heap) against the real Mosquitto
and the real ingest: readings kept in flash until the platform's ack, an outage, power loss, the clock,
the config mailbox."""

from __future__ import annotations

import json
import time

from tests.firmware_node import FirmwareNode
from tests.support import wait_until


def port_of(p) -> int:
    return p.settings.broker.port


def test_readings_reach_influxdb_and_the_buffer_is_freed_only_by_the_ack(platform_factory, tmp_path):
    p = platform_factory({"fw-01": ("smp29", "forest")})
    node = FirmwareNode(tmp_path, "fw-01", "smp29", port_of(p), start=time.time() - 10 * 600)  # never ahead of now
    node.set(air_temp_c=27.5, air_rh_pct=81.0, batt_v=3.95)
    for _ in range(3):  # the third wake sends; no ingest runs yet: the broker takes the batch, nobody acks
        node.wake()
    assert node.world["wifi_connects"] == 1
    assert len(node.buffered()) == 3 and node.buffer_state()["acked"] == 0
    p.ingest()
    for _ in range(3):  # the batch waits at... nowhere: it was published before ingest subscribed; resent
        node.wake()
    wait_until(lambda: p.count() >= 6, 30, "six readings stored")
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


def run_powerloss(root, seed, phase) -> dict:
    import os
    import subprocess

    from tests.firmware_node import micropython
    from tests.support import ROOT

    env = {**os.environ, "MICROPYPATH": f"{ROOT / 'firmware' / 'lib'}", "PL_ROOT": str(root), "PL_SEED": str(seed),
           "PL_PHASE": phase}
    r = subprocess.run([micropython(), "-X", "heapsize=96k", str(ROOT / "tests" / "firmware" / "powerloss.py")],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode in (0, 9), r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_power_loss_during_buffer_writes_costs_at_most_the_reading_in_flight(tmp_path):
    """Fifty seeds: the power fails inside an append, around replacing state.json or while freeing a segment;
    the buffer reopens consistent, every reading taken before survives or was freed by an ack, at most the
    one being written is lost, and no seq is ever used twice."""
    where = {}
    for seed in range(50):
        root = tmp_path / f"s{seed}"
        crash = run_powerloss(root, seed, "crash")
        after = run_powerloss(root, seed, "check")
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
