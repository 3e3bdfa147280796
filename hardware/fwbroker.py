"""The broker side of firmware updates: the rollout's port to the real Mosquitto, as `rimba-admin`.

It publishes file bytes (retained on `rimba/v2/fw/{sha256}`) and nodes' configs (retained on
`rimba/v2/{site}/{node}/config`), QoS 1, each waited for until the broker acknowledged it; and it
watches every node's retained `config` and `status`.

Why statuses come from the broker and not from InfluxDB: the retained `status` is the node's own last
word, pushed to us the moment it is published (no polling, no query), it does not depend on the ingest
being up or caught up, and a rollout that resumes after a kill gets every node's current status again
when it subscribes. The ingest stores the same statuses in `node_status` for the dashboards. The one
thing the retained status loses is the firmware report under a Last Will (`{"v":2,"state":"lost"}`
carries no `fw`): the watcher keeps the last report it saw, and the rollout keeps it in its store.
`rimba firmware status`, which only reads, takes them from InfluxDB as the viewer: on a locked broker the
admin is one client id (the user's name), which a running rollout holds.

Reading a retained config before changing it needs to know when the broker has sent every retained
message of the subscription; MQTT has no marker for that. The barrier: after subscribing, publish a
unique, unretained message on a config topic the subscription covers (`rimba/v2/rimba-admin/rimba-admin/
config`: a `rimba-` name, which no node may have, so no node reads it) and wait for it to come back.
Mosquitto queues the retained messages of a subscription for the client when it handles the SUBSCRIBE,
and delivers a client's messages in the order queued, so the barrier comes after all of them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from rimba import contract
from rimba.errors import StackError

log = logging.getLogger(__name__)

STATUS_FILTER = contract.topic("+", "+", "status", 2)
CONFIG_FILTER = contract.topic("+", "+", "config", 2)
BARRIER = contract.topic("rimba-admin", "rimba-admin", "config", 2)
UNREADABLE = object()  # a retained config that is not a JSON object
PUBACK_S = 30.0


class FirmwareBroker:
    def __init__(self, settings, fleet, watch: bool = True):
        from hardware.provision import as_service
        from rimba.adapters.mqtt import Mqtt

        admin = as_service(settings, "admin")  # the locked broker lets only the admin write configs and files
        self.fleet = fleet
        self._lock = threading.Condition()
        self._configs: dict = {}
        self._statuses: dict = {}
        self._barrier: str | None = None
        self._changes = 0
        self.watch = watch  # False: only publish (a release), no configs or statuses needed
        # the config filter last: its SUBSCRIBE is the later one, so the barrier comes after both
        self.mqtt = Mqtt(admin.broker, f"rimba-admin-fw-{os.getpid()}", ca_file=admin.mqtt_ca_file, v5=False,
                         persistent=False, subscriptions=(STATUS_FILTER, CONFIG_FILTER) if watch else (),
                         on_message=self._message)

    def start(self, timeout: float = 30.0) -> FirmwareBroker:
        self.mqtt.start()
        if not self.watch:
            return self
        deadline = time.monotonic() + timeout
        while not self.mqtt.subscribed.wait(0.5):
            if time.monotonic() > deadline:
                raise StackError("the broker did not confirm the admin's subscriptions")
        self.sync(deadline - time.monotonic())
        return self

    def sync(self, timeout: float = 30.0) -> None:
        """Return once every retained config and status the broker held has arrived (the barrier)."""
        token = os.urandom(8).hex()
        with self._lock:
            self._barrier = token
        deadline = time.monotonic() + max(timeout, 1.0)
        while True:
            self.mqtt.publish(BARRIER, json.dumps({"barrier": token}).encode(), qos=1, track=False)
            with self._lock:  # again after a while: a reconnect in between would lose it
                if self._lock.wait_for(lambda: self._barrier is None, min(5.0, max(0.0, deadline - time.monotonic()))):
                    return
            if time.monotonic() > deadline:
                raise StackError("the broker did not deliver the retained configs and statuses in time")

    def close(self) -> None:
        self.mqtt.stop()

    # -- what the rollout reads ----------------------------------------------------------------------
    def config(self, site: str, node: str):
        """The node's retained config: a dict, None when there is none, or UNREADABLE."""
        with self._lock:
            return self._configs.get((site, node))

    def status(self, site: str, node: str) -> dict | None:
        """The node's newest status: state, t, and its newest firmware report (fw, fw_state, fw_failed)."""
        with self._lock:
            s = self._statuses.get((site, node))
            return dict(s) if s else None

    def statuses(self) -> dict:
        with self._lock:
            return {key: dict(s) for key, s in self._statuses.items()}

    def wait_change(self, timeout: float) -> None:
        """Return when a status arrives or `timeout` seconds pass."""
        with self._lock:
            seen = self._changes
            self._lock.wait_for(lambda: self._changes != seen, max(0.0, timeout))

    # -- what the rollout writes ---------------------------------------------------------------------
    def publish_files(self, blobs: dict) -> None:
        """Each file retained under its SHA-256 (the name the node asks for)."""
        self._publish_all([(contract.fw_topic(sha), data) for sha, data in blobs.items()])

    def publish_config(self, site: str, node: str, cfg: dict) -> None:
        with self._lock:
            self._configs[(site, node)] = cfg  # ours from now on, before the broker echoes it back
        self._publish_all([(contract.topic(site, node, "config", 2),
                            json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode())])

    def _publish_all(self, messages: list) -> None:
        mids = [self.mqtt.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        done = self.mqtt.wait_published(mids, PUBACK_S)
        if len(done) < len(mids):
            raise StackError(f"the broker acknowledged {len(done)} of {len(mids)} publishes within {PUBACK_S:g} s; "
                             "run the command again")

    # -- what the broker sends -----------------------------------------------------------------------
    def _message(self, topic, payload, mid, qos, retain) -> None:
        parts = topic.split("/")
        if len(parts) != 5:
            return
        key, kind = (parts[2], parts[3]), parts[4]
        if kind == "config":
            self._config(topic, key, payload)
        elif kind == "status" and payload:
            self._status(topic, key, payload)

    def _config(self, topic, key, payload) -> None:
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            body = UNREADABLE
        with self._lock:
            if topic == BARRIER:
                if isinstance(body, dict) and body.get("barrier") == self._barrier:
                    self._barrier = None
                    self._lock.notify_all()
                return
            self._configs[key] = body if body is None or isinstance(body, dict) else UNREADABLE

    def _status(self, topic, key, payload) -> None:
        try:
            st = contract.decode_status(topic, payload, self.fleet)
        except contract.Rejected as err:  # the ingest dead-letters it; here it says nothing about firmware
            log.debug("ignoring a status on %s: %s", topic, err)
            return
        with self._lock:
            known = dict(self._statuses.get(key) or {})
            known.update(state=st.state, t=st.t)
            if "fw" in st.fields:  # a Last Will carries no report: the last one stands
                for field in ("fw", "fw_state", "fw_failed"):
                    known[field] = st.fields.get(field)
            self._statuses[key] = known
            self._changes += 1
            self._lock.notify_all()
