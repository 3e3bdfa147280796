"""Firmware updates over the air, end to end: the real firmware (compiled, behind its boot selector, in 96 KiB) in
MicroPython, the real Mosquitto and the real ingest. A release is offered in the node's retained config and its
files are retained on rimba/v2/fw/{sha256}; the node downloads, installs, reboots on trial and reports."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time

import pytest

from hardware import release as rel
from rimba.dev.hostnode import FirmwareNode
from rimba.adapters.mqtt import Mqtt
from rimba.dev.harness import ROOT, wait_until

KEY = bytes.fromhex("5a" * 32)


def tree(tmp_path, version: str, change=None):
    """A copy of the firmware tree at `version` (its FW line), `change(src)` applied to it."""
    src = tmp_path / f"src-{version}"
    shutil.copytree(ROOT / "firmware", src, ignore=shutil.ignore_patterns("__pycache__", "host"))
    node_py = src / "lib" / "node.py"
    node_py.write_text(re.sub(r'^FW = "[^"]*"', f'FW = "{version}"', node_py.read_text(), flags=re.MULTILINE))
    if change:
        change(src)
    return src


def release(tmp_path, version: str, change=None, extra: dict | None = None) -> dict:
    """A release of the tree at `version` ({path: bytes}), built as `rimba firmware release` builds it."""
    return {**rel.build(tree(tmp_path, version, change)), **(extra or {})}


def offer(files: dict, version: str, key: bytes = KEY) -> dict:
    return rel.offer(key.hex(), rel.manifest(files), version)


class Publisher:
    """The platform's side, as the contract says it: file bytes retained on rimba/v2/fw/{sha256}, the release in
    the node's retained config. Clears what it retained when the test ends (the broker is shared)."""

    def __init__(self, p):
        self.m = Mqtt(p.settings.broker, f"fw-pub-{time.monotonic_ns()}", v5=False, persistent=False).start()
        self.topics: set = set()

    def files(self, files: dict, corrupt: str | None = None) -> None:
        mids = []
        for path, data in files.items():
            topic = f"rimba/v2/fw/{hashlib.sha256(data).hexdigest()}"
            if path == corrupt:
                data = bytes([data[0] ^ 0x01]) + data[1:]  # one flipped bit, under the true file's name
            mids.append(self.m.publish(topic, data, qos=1, retain=True))
            self.topics.add(topic)
        self.m.wait_published(mids, 30)

    def config(self, node: str, body: dict) -> None:
        topic = f"rimba/v2/smp29/{node}/config"
        self.m.wait_published([self.m.publish(topic, json.dumps(body).encode(), qos=1, retain=True)], 10)
        self.topics.add(topic)

    def close(self) -> None:
        self.m.wait_published([self.m.publish(t, b"", qos=1, retain=True) for t in self.topics], 10)
        self.m.stop()


@pytest.fixture
def publisher(platform_factory):
    made = []

    def make(p):
        made.append(Publisher(p))
        return made[-1]

    yield make
    for pub in made:
        pub.close()


def status(p, node: str) -> dict:
    rows = p.influx.rows(f"SELECT last(fw) AS fw, last(fw_state) AS fw_state FROM node_status WHERE node = '{node}'")
    failed = p.influx.rows(f"SELECT last(fw_failed) AS fw_failed FROM node_status WHERE node = '{node}'")
    row = rows[0] if rows else {}
    return {"fw": row.get("fw"), "fw_state": row.get("fw_state"), "fw_failed": failed[0]["fw_failed"] if failed else None}


def wait_status(p, node: str, want: dict) -> None:
    got: dict = {}

    def arrived():
        got.update(status(p, node))
        return got == want

    try:
        wait_until(arrived, 20, f"{node}'s status")
    except AssertionError:
        raise AssertionError(f"{node}'s status is {got}, not {want}") from None


def readings(p, node: str) -> list:
    return [r["seq"] for r in p.influx.rows(f"SELECT seq FROM reading WHERE node = '{node}'")]


def make_node(p, tmp_path, node_id, compiled, heap, **cfg) -> FirmwareNode:
    # the ingest trusts an NTP time only up to its own clock, and each wake moves the node's world on by a
    # sample (600 s) at once: the world starts far enough back that no wake of the test is ahead of now
    return FirmwareNode(tmp_path, node_id, "smp29", p.settings.broker.port, lib=compiled, heap=heap,
                        start=time.time() - 20 * 600, send_every=1, fw_key=KEY.hex(), **cfg)


def test_a_release_is_downloaded_in_pieces_booted_on_trial_and_good_and_readings_flow_once(
        platform_factory, publisher, tmp_path, compiled, heap):
    """0.9.0 with a 100 KB file (more than the whole 96 KiB heap: it can only arrive streamed to flash): fetched,
    checked, installed into slot b, booted on trial, good at its first acknowledged send; the status says so,
    and every reading of the wakes before, during and after is stored once."""
    p = platform_factory({"ota-01": ("smp29", "forest")})
    p.ingest()
    node = make_node(p, tmp_path, "ota-01", compiled, heap)
    node.wake()
    wait_until(lambda: status(p, "ota-01").get("fw_state") == "good", 20, "the factory release's status")
    assert status(p, "ota-01")["fw"] == "0.4.0"
    epoch = node.buffer_state()["epoch"]
    big = bytes(range(256)) * 400  # 102,400 bytes
    files = release(tmp_path, "0.9.0", extra={"lib/tables.bin": big})
    pub = publisher(p)
    pub.files(files)
    pub.config("ota-01", {"v": 2, "rev": 1, "fw": offer(files, "0.9.0")})
    r = node.wake(expect_sleep=False)  # a send session: the offer checked, kept, and the chip reset at once
    assert r.returncode == 3 and "release 0.9.0 offered" in r.stdout, r.stdout + r.stderr
    r = node.wake(expect_sleep=False)  # the boot that installs it, with the heap to itself; then reset into it
    assert r.returncode == 3 and node.world["cause"] == "crash", r.stdout + r.stderr
    assert "release 0.9.0 installed" in r.stdout
    assert node.boot_record == {"good": "a", "trial": "b", "tries": 0, "wdt": 0}
    assert (node.home / "fw" / "b" / "lib" / "tables.bin").read_bytes() == big
    downloaded = json.loads((node.root / "cycle.json").read_text())["ops"]["bytes_in"]
    factory = node.home / "fw" / "a"
    changed = {p for p, d in files.items() if not (factory / p).exists() or (factory / p).read_bytes() != d}
    assert {"lib/node.mpy", "lib/tables.bin"} <= changed and len(changed) < len(files)
    # what changed came over the air, once; the rest was copied from the running slot
    assert sum(len(files[p]) for p in changed) < downloaded < sum(len(d) for d in files.values())
    r = node.wake()  # the trial's first boot: it sends, waits for the ack, and is good
    assert "release 0.9.0 is good" in r.stdout, r.stdout
    assert node.boot_record == {"good": "b"}
    node.wake()
    wait_status(p, "ota-01", {"fw": "0.9.0", "fw_state": "good", "fw_failed": None})
    wait_until(lambda: len(readings(p, "ota-01")) >= 4, 20, "every reading stored")
    seqs = readings(p, "ota-01")
    assert sorted(seqs) == [1, 2, 3, 4], seqs  # one reading a wake (the one that installed too), each once
    assert node.buffer_state()["epoch"] == epoch  # the buffer's epoch (and so its seqs) untouched by the update


def prepend(code: str):
    """A change to a firmware tree: `code` first in lib/sensors.py (which main.py imports at every wake)."""
    def change(src):
        sensors = src / "lib" / "sensors.py"
        sensors.write_text(code + sensors.read_text())
    return change


def installed(node, pub, files: dict, version: str) -> None:
    """Offer the release to the node and let it take it: the send session that keeps the offer and resets, and
    the boot that installs it and resets into the trial."""
    pub.files(files)
    pub.config(node.home.name, {"v": 2, "rev": 1, "fw": offer(files, version)})
    assert node.wake(expect_sleep=False).returncode == 3  # offered: reset into the boot that installs it
    assert node.wake(expect_sleep=False).returncode == 3  # installed: reset into the trial
    assert node.boot_record["trial"] == "b"


def test_a_release_that_crashes_at_import_is_rolled_back_by_itself_and_not_tried_again(
        platform_factory, publisher, tmp_path, compiled, heap):
    p = platform_factory({"ota-02": ("smp29", "forest")})
    p.ingest()
    node = make_node(p, tmp_path, "ota-02", compiled, heap)
    node.wake()

    installed(node, publisher(p), release(tmp_path, "0.9.1", prepend('raise RuntimeError("a broken release")\n')),
              "0.9.1")
    for boot in (1, 2, 3):
        r = node.wake(expect_sleep=False)
        assert r.returncode == 3 and "a broken release" in r.stdout, r.stdout  # crashed, the chip resets
        assert node.boot_record["tries"] == boot
    r = node.wake()  # the fourth boot: the loader rolls back to slot a, which runs and sends
    assert node.boot_record == {"good": "a", "failed": "0.9.1", "why": "3 boots without an acknowledged send"}
    wait_status(p, "ota-02", {"fw": "0.4.0", "fw_state": "rolled-back", "fw_failed": "0.9.1"})
    node.wake()  # the config still offers 0.9.1: not tried again
    assert node.boot_record["good"] == "a" and "trial" not in node.boot_record
    wait_until(lambda: len(readings(p, "ota-02")) >= 4, 20, "the readings")
    assert sorted(readings(p, "ota-02")) == [1, 2, 3, 4]  # the crashed boots took none; none lost or doubled


def test_a_release_that_hangs_is_reset_by_the_watchdog_twice_and_rolled_back(
        platform_factory, publisher, tmp_path, compiled, heap):
    """A release that never returns from an import: nothing in it feeds or even arms a watchdog, but the loader
    armed one for the trial, so the chip resets (the harness kills the run and resets it with the watchdog as the
    cause); after two such resets the loader rolls back."""
    p = platform_factory({"ota-03": ("smp29", "forest")})
    p.ingest()
    node = make_node(p, tmp_path, "ota-03", compiled, heap)
    node.wake()

    installed(node, publisher(p), release(tmp_path, "0.9.3", prepend("while True:\n    pass\n")), "0.9.3")
    for resets in (1, 2):
        assert node.wake(expect_sleep=False, hang_s=3).returncode == -9  # hung, reset by the watchdog
        assert node.world["cause"] == "watchdog"
    node.wake()  # the loader counts the second watchdog reset: back to slot a, which runs and reports
    assert node.boot_record == {"good": "a", "failed": "0.9.3", "why": "2 watchdog resets"}
    wait_status(p, "ota-03", {"fw": "0.4.0", "fw_state": "rolled-back", "fw_failed": "0.9.3"})


@pytest.mark.parametrize("fault", ["flipped-byte", "wrong-signature"])
def test_a_release_with_a_flipped_byte_or_a_wrong_signature_is_refused_and_reported(
        platform_factory, publisher, tmp_path, compiled, heap, fault):
    node_id = f"ota-{fault[:4]}"
    p = platform_factory({node_id: ("smp29", "forest")})
    p.ingest()
    node = make_node(p, tmp_path, node_id, compiled, heap)
    files = release(tmp_path, "0.9.2")
    pub = publisher(p)
    pub.files(files, corrupt="lib/node.mpy" if fault == "flipped-byte" else None)
    pub.config(node_id, {"v": 2, "rev": 1, "fw": offer(files, "0.9.2", KEY if fault == "flipped-byte" else bytes(32))})
    r = node.wake(expect_sleep=fault == "wrong-signature")  # a bad signature is refused before anything is fetched
    if fault == "flipped-byte":
        assert r.returncode == 3 and "release 0.9.2 offered" in r.stdout, r.stdout
        r = node.wake()  # the boot that installs it finds the flipped byte, and sleeps on with its good release
    why = "bad-hash: lib/node.mpy" if fault == "flipped-byte" else "bad-signature"
    assert f"release 0.9.2 refused: {why}" in r.stdout, r.stdout
    assert node.boot_record["good"] == "a" and node.boot_record["failed"] == "0.9.2"
    if fault == "flipped-byte":
        node.wake()  # the next send session reports it
    wait_status(p, node_id, {"fw": "0.4.0", "fw_state": "rolled-back", "fw_failed": "0.9.2"})
    if fault == "wrong-signature":  # refused before a byte of the release was fetched
        assert json.loads((node.root / "cycle.json").read_text())["ops"]["bytes_in"] < 2000
