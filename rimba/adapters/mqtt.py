"""The paho-mqtt adapter: the only module that imports paho.

`Mqtt` builds a client from settings (URL with credentials, TLS), with a fixed
client id, and reconnects in the background. Ingest uses MQTT 3.1.1 with a
persistent session (clean session off) and manual acknowledgements: a message
is PUBACKed only when ingest says so. (MQTT 5 works too, `v5=True`, with a
client-set Receive Maximum; paho decodes its per-message properties in Python,
which costs ingest about a tenth of its throughput, so ingest asks for 3.1.1 and
the broker's in-flight window is set in its configuration. The adapter's own
default is MQTT 5, for the other clients.)
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from rimba.errors import StackError
from rimba.settings import Broker

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86400
PUBACKS_KEPT = 1024  # PUBACK ids kept for untracked publishes before they are dropped  # what the broker keeps for ingest while it is away


class Mqtt:
    """A connected paho client running its network loop in a background thread."""

    def __init__(self, broker: Broker, client_id: str, *, ca_file: str = "", v5: bool = True,
                 persistent: bool = False, manual_ack: bool = False, receive_maximum: int = 0,
                 subscriptions: tuple = (), on_message=None, max_inflight: int = 0):
        self.broker = broker
        self.client_id = client_id
        self.v5 = v5
        self.persistent = persistent
        self.receive_maximum = receive_maximum
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.connected = threading.Event()
        self._settled = threading.Event()  # connected, or the broker turned the login away (no use retrying)
        self.subscribed = threading.Event()
        self.refused: str | None = None
        self._closing = False
        protocol = paho.MQTTv5 if v5 else paho.MQTTv311
        kwargs = {"protocol": protocol, "manual_ack": manual_ack}
        if not v5:
            kwargs["clean_session"] = not persistent
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.05, 2)
        if broker.user is not None:
            self.client.username_pw_set(broker.user, broker.password)
        if broker.tls:
            ctx = ssl.create_default_context(cafile=ca_file or None)
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self._unacked: set = set()  # message ids sent and not yet acknowledged; guarded by _lock
        self._lock = threading.Lock()
        # filled by paho's thread, lock-free; drained by `wait_published`, and by untracked publishes
        self._puback: collections.deque = collections.deque()
        self._puback_event = threading.Event()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = str(reason_code)
            if _is_login(self.refused):
                self._settled.set()
            log.error("broker %s:%d refused %s: %s", self.broker.host, self.broker.port, self.client_id, reason_code)
            return
        self.refused = None
        if self.persistent and not self.v5 and flags.session_present:
            # the broker kept our session and its subscriptions: subscribing again would replay
            # every retained message
            self.subscribed.set()
            log.info("%s ready: resumed its session and subscriptions", self.client_id)
        else:
            for topic in self.subscriptions:
                if self.v5:
                    # retained messages only when the subscription is new, not on every reconnect
                    client.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1))
                else:
                    client.subscribe(topic, qos=1)
        self.connected.set()
        self._settled.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused a subscription of %s: %s", self.client_id, ", ".join(failed))
            return
        log.info("%s ready: subscribed to %s", self.client_id, ", ".join(self.subscriptions))
        self.subscribed.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # no lock here: paho holds its own while calling us, and publish() holds ours while calling paho
        self._puback.append(mid)
        self._puback_event.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set() and not self._closing:
            log.warning("disconnected from broker %s:%d (%s); reconnecting",
                        self.broker.host, self.broker.port, reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse such topics; should one pass, it is refused as a topic
            topic = msg._topic.decode("utf-8", "backslashreplace")
        self.on_message(topic, msg.payload, msg.mid, msg.qos, msg.retain)

    def start(self, wait_s: float = 10.0) -> Mqtt:
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if self.persistent:
                props.SessionExpiryInterval = SESSION_EXPIRY_S
            if self.receive_maximum:
                props.ReceiveMaximum = self.receive_maximum
        kwargs = {"properties": props, "clean_start": not self.persistent} if self.v5 else {}
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30, **kwargs)
        self.client.loop_start()
        if wait_s and not (self._settled.wait(wait_s) and self.connected.is_set()):
            self.stop()
            why = self.refused or "no answer"
            if self.refused and _is_login(self.refused):
                who = f"as {self.broker.user}" if self.broker.user else "anonymously"
                why += (f" ({who}; a locked broker wants this service's own user: RIMBA_MQTT_USER and "
                        "RIMBA_MQTT_PASSWORD, from the env file `rimba stack lock` wrote)")
            raise StackError(f"cannot connect to the broker at {self.broker.host}:{self.broker.port}: {why}")
        return self

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self.client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, track: bool = True):
        """Queue a message; paho sends it now, or after reconnecting if the broker is away.
        Returns its message id (QoS 1 with `track`: wait for it with `wait_published`)."""
        with self._lock:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if qos > 0 and track:
                self._unacked.add(info.mid)
            elif len(self._puback) > PUBACKS_KEPT:
                self._forget_untracked()
        return info.mid

    def _forget_untracked(self) -> None:
        """Drop the PUBACKs nobody will wait for (a client that publishes without tracking never drains them).
        popleft and append are atomic, so paho's thread may go on appending meanwhile."""
        for _ in range(len(self._puback)):
            mid = self._puback.popleft()
            if mid in self._unacked:
                self._puback.append(mid)

    def wait_published(self, mids, timeout: float) -> list:
        """Wait until the broker acknowledged each message id; return those it did.
        One thread at a time may wait (each Rimba service has one publishing thread)."""
        deadline = time.monotonic() + timeout
        mids = list(mids)
        with self._lock:
            remaining = {m for m in mids if m in self._unacked}
        while remaining:
            self._puback_event.clear()
            with self._lock:
                while self._puback:
                    mid = self._puback.popleft()
                    self._unacked.discard(mid)
                    remaining.discard(mid)
            left = deadline - time.monotonic()
            if not remaining or left <= 0:
                break
            self._puback_event.wait(min(left, 0.5))
        return [m for m in mids if m not in remaining]

    def stop(self) -> None:
        self._closing = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def _is_login(reason: str) -> bool:
    """A CONNACK refusal about who the client is (wrong or missing credentials), not a passing state."""
    return "authori" in reason.lower() or "password" in reason.lower()
