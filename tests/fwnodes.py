"""Nodes that take firmware releases over the real broker the way wire-v2 "Firmware updates" says a node
does, for the platform's rollout tests (the real firmware in MicroPython is the lead's end-to-end test).

Each node reads its retained `config`; at an offer of a version newer than the one it runs, and not one
it rolled back before, it fetches every file from `rimba/v2/fw/{sha256}` (retained), checks each
file's SHA-256 and the signature with its own update key (`fw_key` of its config file, as the node
reads it from node.json), and then, by the test's script for that version: `good` (reports it good),
`crash` (the release fails on trial: reports `rolled-back`, `fw_failed` the version, still running the
old one), `silent` (never reports), or `hold` (waits until the test calls `release_hold()`, then
`good`). A release it refuses (a file missing or with another hash, a bad signature) is reported as
rolled back, as the real node does. Statuses are retained, with fixed times.

What the real node does that this one does not: the download in pieces, the trial boots, the
watchdog, the power cuts; the wakes (this node reads its config the moment it is published, a real
one at its next wake). None of those changes what the platform sees: an offer, then a status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

T0 = 1_780_000_000  # statuses carry fixed times from here


def _key(v: str) -> tuple:
    return tuple(int(p) for p in v.split("."))


class FakeNodes:
    def __init__(self, settings, nodes: dict, keys: dict, script: dict, running: str = "1.0.0"):
        """`nodes` {node: site}; `keys` {node: fw_key}; `script` {version: behaviour}, or
        {(node, version): behaviour} for one node."""
        self.nodes, self.keys, self.script = nodes, keys, script
        self.running = {n: running for n in nodes}
        self.rolled_back: dict = {n: set() for n in nodes}
        self.log: list = []  # ("offer", node, version) and ("status", node, fw, fw_state, fw_failed), in order
        self.configs: dict = {n: [] for n in nodes}  # every config each node received
        self._blobs: dict = {}
        self._cond = threading.Condition()
        self._work: queue.Queue = queue.Queue()
        self._hold = threading.Event()
        self._boot = 0
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-nodes-{time.monotonic_ns()}",
                             protocol=paho.MQTTv311)
        self.c.on_message = self._message
        self.c.connect(settings.broker.host, settings.broker.port)
        self.c.loop_start()
        for node, site in nodes.items():
            self.c.subscribe(f"rimba/v2/{site}/{node}/config", qos=1)
        self.c.subscribe("rimba/v2/fw/+", qos=1)
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()
        for node in nodes:
            self._status(node, "good", None)

    def close(self) -> None:
        self._work.put(None)
        self._worker.join(10)
        self.c.disconnect()
        self.c.loop_stop()

    def release_hold(self) -> None:
        self._hold.set()

    def offered(self, node: str) -> list:
        """The versions offered to `node`, in order, one per config received (None: no `fw`)."""
        with self._cond:
            return [(c.get("fw") or {}).get("version") for c in self.configs[node]]

    def _message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if parts[2] == "fw":
            with self._cond:
                self._blobs[parts[3]] = msg.payload
                self._cond.notify_all()
        elif msg.payload:
            self._work.put((parts[3], json.loads(msg.payload)))

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            node, cfg = item
            with self._cond:
                self.configs[node].append(cfg)
            fw = cfg.get("fw")
            if not fw:
                continue
            version = fw["version"]
            if _key(version) <= _key(self.running[node]) or version in self.rolled_back[node]:
                continue
            self.log.append(("offer", node, version))
            if not self._valid(node, fw):
                self._fail(node, version)
                continue
            what = self.script.get((node, version), self.script.get(version, "good"))
            if what == "hold":
                self._hold.wait(60)
                what = "good"
            if what == "good":
                self.running[node] = version
                self._status(node, "good", None)
            elif what == "crash":
                self._fail(node, version)

    def _valid(self, node: str, fw: dict) -> bool:
        text = json.dumps({"files": fw["files"], "version": fw["version"]}, sort_keys=True, separators=(",", ":"))
        if not hmac.compare_digest(hmac.new(bytes.fromhex(self.keys[node]), text.encode(), hashlib.sha256)
                                   .hexdigest(), fw["sig"]):
            return False
        with self._cond:  # every file, fetched: retained, so it comes at once if the platform published it
            if not self._cond.wait_for(lambda: all(s in self._blobs for s in fw["files"].values()), 10):
                return False
            return all(hashlib.sha256(self._blobs[s]).hexdigest() == s for s in fw["files"].values())

    def _fail(self, node: str, version: str) -> None:
        self.rolled_back[node].add(version)
        self._status(node, "rolled-back", version)

    def _status(self, node: str, fw_state: str, fw_failed) -> None:
        self._boot += 1
        t = T0 + 60 * self._boot
        body = {"v": 2, "state": "sleeping", "t": t, "fw": self.running[node], "fw_state": fw_state, "boot": self._boot,
                "wake": t + 600, "cfg": 1}
        if fw_failed:
            body["fw_failed"] = fw_failed
        self.log.append(("status", node, self.running[node], fw_state, fw_failed))
        self.c.publish(f"rimba/v2/{self.nodes[node]}/{node}/status", json.dumps(body), qos=1, retain=True).wait_for_publish(10)
