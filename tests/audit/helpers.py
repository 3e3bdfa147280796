"""Shared by the audit's repros: payload builders and a raw paho publisher (a node is just a client)."""

from __future__ import annotations

import json
import random

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rimba.dev.harness import wait_until


def up(node: str, seqs, epoch: int = 1, now: int = 0, tq: str = "ntp", t0: int = 0, lost=None,
       values=None, times=None) -> bytes:
    """A v1 batch: reading `seq` at t0 + seq unless `times` gives each one's t."""
    r = []
    for i, s in enumerate(seqs):
        t = times[i] if times is not None else t0 + s
        r.append({"seq": s, "t": t, **(values or {"air_temp_c": 27.5})})
    body = {"v": 1, "node": node, "epoch": epoch, "now": now, "tq": tq, "r": r}
    if lost is not None:
        body["lost"] = lost
    return json.dumps(body, separators=(",", ":")).encode()


def status(node: str, state: str = "online", t=None, **fields) -> bytes:
    body = {"v": 1, "node": node, "state": state, **fields}
    if t is not None:
        body["t"] = t
    return json.dumps(body, separators=(",", ":")).encode()


class Node:
    """A node as the broker sees it: one paho client publishing on its topics."""

    def __init__(self, settings, site: str, node: str):
        self.site, self.node = site, node
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{node}-{random.getrandbits(24)}",
                             protocol=paho.MQTTv311)
        self.c.max_inflight_messages_set(0)
        self.c.max_queued_messages_set(0)
        self.c.connect(settings.broker.host, settings.broker.port)
        self.c.loop_start()

    def pub(self, kind: str, payload: bytes, qos: int = 1, retain: bool = False):
        return self.c.publish(f"rimba/v1/{self.site}/{self.node}/{kind}", payload, qos=qos, retain=retain)

    def flush(self, infos, timeout: float = 60):
        wait_until(lambda: all(i.is_published() for i in infos), timeout, "the broker to take the messages")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
