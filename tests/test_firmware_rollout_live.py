"""A rollout with the real firmware: five nodes of the compiled firmware in MicroPython (96 KiB, behind the boot
selector), the real Mosquitto and ingest, and `rimba firmware release` and `rimba firmware rollout` as a
technician runs them. A good release reaches the canary of 2, then the other 3; a release that crashes at
import is rolled back by the canary nodes by themselves, and the rollout halts before any other node is
offered it. Readings flow exactly once through both."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from hardware.fwstore import FirmwareStore
from hardware.provision import Provisioner
from rimba.dev.hostnode import FirmwareNode
from rimba.dev.harness import ROOT, env_for, wait_until
from tests.test_firmware_ota_live import prepend, readings, status, tree
from tests.test_release import clear_retained

NODES = [f"roll-0{i}" for i in range(1, 6)]


def dead(p, node):
    from ingest.store import Store

    st = Store.in_state_dir(p.settings.state_path)
    try:
        from ingest import replay

        return [{k: v for k, v in replay.as_dict(r).items() if k != "payload"} for r in st.deadletters(node=node, include_replayed=True, limit=20)]
    except Exception as err:  # noqa
        return repr(err)


def cli(values: dict, *argv, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rimba", *argv], env=env_for(values), capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, check=False)


def roll(p, nodes: dict, version: str, deadline_s: float = 240) -> tuple:
    """Run `rimba firmware rollout VERSION --canary 2` while every node wakes in turn, as they would in the
    field, until the rollout ends. Returns (its exit code and output, {node: [round of each 'offered' line]})."""
    proc = subprocess.Popen([sys.executable, "-m", "rimba", "firmware", "rollout", version, "--canary", "2",
                             "--timeout", "600"], env=env_for(p.values), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    offered: dict = {n: [] for n in nodes}
    began = time.monotonic()
    rounds = 0
    while proc.poll() is None:
        assert time.monotonic() - began < deadline_s, "the rollout did not end"
        rounds += 1
        for name, node in nodes.items():
            r = node.wake(expect_sleep=False)
            assert r.returncode in (0, 3), r.stdout + r.stderr  # slept, or reset (an update, a crash)
            if f"release {version} offered" in r.stdout:
                offered[name].append(rounds)
    out = proc.communicate(timeout=30)[0]
    for _ in range(12):  # the nodes wake on: one that was in the middle of an update (on trial) finishes it
        if not any("trial" in n.boot_record or (n.root / "offer.json").exists()
                   or status(p, name)["fw_state"] == "trial" for name, n in nodes.items()):
            break
        rounds += 1
        for name, node in nodes.items():
            r = node.wake(expect_sleep=False)
            assert r.returncode in (0, 3), r.stdout + r.stderr
            if f"release {version} offered" in r.stdout:
                offered[name].append(rounds)
    return proc.returncode, out, offered


def test_a_rollout_reaches_a_canary_of_two_then_the_rest_and_a_crashing_release_halts_at_the_canary(
        platform_factory, tmp_path, compiled, heap):
    p = platform_factory({n: ("smp29", "forest") for n in NODES})
    p.ingest()
    prov = Provisioner(p.settings)
    for n in NODES:
        prov.credentials(n)  # provisioned: a config file, with the node's update key
    # each wake moves a node's world on by 600 s at once: it starts far enough back never to be ahead of now
    nodes = {n: FirmwareNode(tmp_path, n, "smp29", p.settings.broker.port, lib=compiled, heap=heap,
                             start=time.time() - 40 * 600, send_every=1, fw_key=prov.update_key(n)) for n in NODES}
    topics = [f"rimba/v2/smp29/{n}/config" for n in NODES]
    try:
        for node in nodes.values():
            node.wake()
        wait_until(lambda: all(status(p, n)["fw"] == "0.4.0" for n in NODES), 60, "every node's first status")

        r = cli(p.values, "firmware", "release", "--from", str(tree(tmp_path, "0.9.0")))
        assert r.returncode == 0, r.stdout + r.stderr
        code, out, offered = roll(p, nodes, "0.9.0")
        assert code == 0, out
        canary = [n for n in NODES if offered[n]][:2]
        assert canary == NODES[:2], offered  # the canary: the first two of the selection
        first_rest = min(offered[n][0] for n in NODES[2:])
        assert first_rest > max(offered[n][0] for n in canary), offered  # the rest only after the canary
        wait_until(lambda: all(status(p, n) == {"fw": "0.9.0", "fw_state": "good", "fw_failed": None}
                               for n in NODES), 60, "every node on 0.9.0, good")
        assert all(node.boot_record == {"good": "b"} for node in nodes.values())

        broken = prepend('raise RuntimeError("a broken release")\n')
        r = cli(p.values, "firmware", "release", "--from", str(tree(tmp_path, "0.9.1", broken)))
        assert r.returncode == 0, r.stdout + r.stderr
        code, out, offered = roll(p, nodes, "0.9.1")
        assert code == 1 and "halt" in out.lower(), out
        assert [n for n in NODES if offered[n]] == NODES[:2], offered  # no other node was ever offered it
        # the canary node whose failure halted the rollout rolled back by itself; the other had either done the
        # same or not yet installed it when the halt offered 0.9.0 again (a kept offer is still installed, tried)
        rolled = {"fw": "0.9.0", "fw_state": "rolled-back", "fw_failed": "0.9.1"}
        kept = {"fw": "0.9.0", "fw_state": "good", "fw_failed": None}

        def canary_settled():
            got = [status(p, n) for n in NODES[:2]]
            return rolled in got and all(g in (rolled, kept) for g in got)

        try:
            wait_until(canary_settled, 60, "the canary rolled back, by itself")
        except AssertionError:
            raise AssertionError({n: (status(p, n), nodes[n].boot_record, [r.stdout[-300:] for r in nodes[n].runs[-6:]])
                                  for n in NODES[:2]}) from None
        assert all(status(p, n) == {"fw": "0.9.0", "fw_state": "good", "fw_failed": None} for n in NODES[2:])
        for name in NODES[2:]:  # the others are offered 0.9.0 again, which they run: nothing to do
            cfg = json.loads(nodes[name].home.joinpath("fw.json").read_text())
            assert cfg == {"good": "b"}, (name, cfg)

        for node in nodes.values():  # one more wake each: everything sampled is stored, once
            node.wake()
        for name, node in nodes.items():
            taken = json.loads((node.root / "cycle.json").read_text())["ops"]["wakes"]  # wakes that sampled
            wait_until(lambda name=name, taken=taken: len(readings(p, name)) >= taken, 30,
                       f"{name}'s {taken} readings: {sorted(readings(p, name))}, {node.runs[-1].stdout} "
                       f"{node.buffer_state()} {dead(p, name)}")
            assert sorted(readings(p, name)) == list(range(1, taken + 1)), name  # each once, none missing
    finally:
        store = FirmwareStore.in_state_dir(p.settings.state_path)
        shas = {sha for version, files, _created in store.releases() for sha in files.values()}
        store.close()
        clear_retained(p.settings, topics + [f"rimba/v2/fw/{sha}" for sha in shas])
