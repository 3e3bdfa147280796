# One wake of a Rimba node (contract v2, or v1 when its `wire` setting says so): sample, keep, and when
# due send what the platform has not confirmed, then sleep.
#
#   wake -> read this profile's sensors -> append to the flash buffer -> if sending is due:
#   watchdog armed -> Wi-Fi with a deadline -> NTP, recording the RTC's error for drift correction ->
#   MQTT connect with the Last Will -> retained `ack` and `config` -> free what is acknowledged ->
#   the rest oldest first in batches at QoS 1 with a PUBACK deadline -> `status` (sleeping, next
#   wake) -> clean disconnect -> deep sleep.
#
# What must survive deep sleep is on the filesystem: the buffer (store.py), the configuration
# (config.py) and this module's small state (cycle.json: samples since the last send, consecutive
# send failures, the boot-loop counter, the boot counter, NTP sync history).
#
# `boot` (in every v2 batch and every status) counts the resets after which the clock may have been
# reset: every reset but a wake from deep sleep. After a power-on or a hard reset the RTC starts again
# (from 2000 on the ESP32), so the sync history no longer describes it and the clock is not `ntp` until
# the next sync; a soft or watchdog reset keeps the RTC (ESP-IDF: only power-on and the chip's reset
# pin reset the RTC domain) and its history, and still counts as a boot.
import json
import os

import config
import machine
import rclock
import store
import wire
import mqtt
from mqtt import MQTTClient, MQTTError

FW = "0.4.0"  # the version this tree builds; a node runs the version in its slot's release.json (ota.py)
STATE = "cycle.json"
FW_TOPIC = "rimba/v2/fw/"


def _load(root):
    return config.read(root + "/" + STATE) or {"since_send": 0, "failures": 0, "boots": 0, "boot": 0, "syncs": [],
                                         "synced": False}


def _save(root, st):
    tmp = root + "/" + STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.rename(tmp, root + "/" + STATE)


class Node:
    def __init__(self, root, sensors, log=print):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass  # it exists
        self.sensors = sensors  # callable -> {metric: value or None}
        self.log = log
        notes: list = []
        self.cfg = config.load(root, notes)
        for note in notes:
            log(note)
        self.st = _load(root)
        self.store = store.Store(root + "/buf", self.cfg["capacity"])
        self.fs = root.rsplit("/", 1)[0]  # the filesystem root: the data directory is its `data`
        self.fw = running(self.fs)
        self.offer = None  # the release the retained config offers, read at this session
        self.reboot = False  # a release was installed: reset into it instead of sleeping
        self.ops = {"wifi": 0, "wifi_static": 0, "mqtt": 0, "mqtt_ms": 0, "bytes": 0, "bytes_in": 0, "readings_sent": 0}

    def topic(self, kind):
        return "rimba/v%d/%s/%s/%s" % (self.cfg["wire"], self.cfg["site"], self.cfg["node"], kind)

    # -- the cycle -----------------------------------------------------------------------------------
    def wake(self):
        """One cycle; returns the milliseconds to deep-sleep."""
        st = self.st
        st["boots"] += 1
        cause = machine.reset_cause()
        if cause != machine.DEEPSLEEP_RESET:
            st["boot"] = (st.get("boot", 0) + 1) & 0xFFFFFFFF
            if cause not in (machine.SOFT_RESET, machine.WDT_RESET):
                st["syncs"] = []  # a new clock: the old errors say nothing about it
                st["synced"] = False
        self._count("wakes", 1)
        _save(self.root, st)  # a crash before the end of this cycle counts towards safe mode
        safe = st["boots"] > self.cfg["safe_after"]
        if not safe:
            t = rclock.now()  # when sampling starts: the DS18B20's conversion alone takes 0.75 s
            values = self.sensors()
            names = getattr(self.sensors, "columns", None) or sorted(values)
            for name in getattr(self.sensors, "names", ()):
                self._count(name, 1)
            for name, n in getattr(self.sensors, "ops", {}).items():
                self._count(name, n)
            self.store.append(t, wire.head(names), wire.row(values, names))
            st["since_send"] += 1
        power_on = self.cfg["send_at_power_on"] and cause != machine.DEEPSLEEP_RESET
        trial = self.fw["state"] == "trial"  # a release on trial proves itself at every wake until it is good
        due = safe or power_on or trial or st["since_send"] >= self.cfg["send_every"] or \
            self.store.count() >= self.cfg["capacity"] * 3 // 4
        # after repeated failures, try only every 2nd, 4th, ... due cycle (at most every 16th)
        wait = 1 << min(max(st["failures"] - 2, 0), 4)
        if due and st["since_send"] % wait == 0 or due and (safe or power_on or trial):
            ok = self.send(safe)
            st["failures"] = 0 if ok else st["failures"] + 1
            if ok:
                st["since_send"] = 0
        for k in self.ops:
            self._count(k, self.ops[k])
        st["boots"] = 0
        _save(self.root, st)
        return self.cfg["sample_s"] * 1000

    def _count(self, what, n):
        """The operations the energy model is fed with, counted across wakes in cycle.json."""
        ops = self.st.setdefault("ops", {})
        ops[what] = ops.get(what, 0) + n

    def send(self, safe=False):
        wdt = machine.WDT(timeout=self.cfg["wdt_ms"])
        try:
            if not self._wifi(wdt):
                return False
            self._ntp()
            wdt.feed()
            import gc

            gc.collect()  # TLS needs its large blocks whole: what the sampling left is freed first
            client = self._client()
            import time

            began = time.ticks_ms()
            try:
                client.connect(will_topic=self.topic("status"), will_payload='{"v":%d,"state":"lost"}' % self.cfg["wire"])
                self.ops["mqtt"] += 1
                client.subscribe([self.topic("ack"), self.topic("config")])
                gc.collect()  # the retained config (2 KB when it offers a release) comes next, in one block
                # a barrier, not a fixed wait: the broker sends the retained ack and config it queued for the
                # subscription before it answers a PINGREQ sent after it (Mosquitto answers in order)
                client.ping()
                self._mailbox(client)
                wdt.feed()
                if not safe:
                    self._flush(client, wdt)
                    if self.fw["state"] == "trial":
                        self._confirm(client, wdt)
                    elif self.cfg["wire"] == 2 and self.offer is not None:
                        self._consider()
                self._status(client, "sleeping")
                client.disconnect()
            finally:
                self.ops["bytes"] += client.bytes_sent
                self.ops["bytes_in"] += client.bytes_received
                self.ops["mqtt_ms"] += time.ticks_diff(time.ticks_ms(), began)
                client.close()
            return True
        except (OSError, MQTTError) as err:
            self.log("send failed: %s" % err)
            return False

    def _client(self):
        return MQTTClient(self.cfg["node"], self.cfg["mqtt_host"], self.cfg["mqtt_port"],
                          self.cfg["mqtt_user"] or None, self.cfg["mqtt_password"] or None,
                          ssl=self._tls() if self.cfg["mqtt_tls"] else None, timeout_ms=self.cfg["puback_ms"])

    def _tls(self):
        """A TLS context trusting the project's CA (ca.der beside the config, from `rimba broker tls`)."""
        import tls

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]  # in MicroPython, not in the stubs
        with open(self.root + "/ca.der", "rb") as f:
            ctx.load_verify_locations(f.read())  # positional: the tls module's own signature
        return ctx

    def _wifi(self, wdt):
        import network
        import time

        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        self.ops["wifi"] += 1
        if self.cfg["wifi_ip"] and not wlan.isconnected():
            wlan.ifconfig(tuple(self.cfg["wifi_ip"]))  # static: no DHCP exchange (about half the connect's charge)
            self.ops["wifi_static"] += 1
        if not wlan.isconnected():
            wlan.connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])
            waited = 0
            while not wlan.isconnected():
                if waited >= self.cfg["wifi_timeout_ms"]:
                    self.log("wifi: no connection within %d ms" % self.cfg["wifi_timeout_ms"])
                    wlan.active(False)
                    return False
                time.sleep_ms(100)
                waited += 100
                wdt.feed()
        self.rssi = wlan.status("rssi")
        return True

    def _ntp(self):
        import ntptime

        before = rclock.now()
        try:
            ntptime.host = self.cfg["ntp_host"]
            ntptime.settime()
        except (OSError, OverflowError) as err:
            self.log("ntp failed: %s" % err)
            return
        after = rclock.now()
        self.st["syncs"] = (self.st["syncs"] + [[after, before, after]])[-8:]
        self.st["synced"] = True

    def _mailbox(self, client):
        for topic, payload, _retain in client.messages:
            if topic.endswith("/ack"):
                try:
                    ack = json.loads(payload)
                    self.store.ack(ack["epoch"], ack["seq"])
                except (ValueError, KeyError, TypeError):
                    self.log("ack: unreadable")
            elif topic.endswith("/config"):
                self.cfg, note = config.apply(self.root, self.cfg, payload)
                if note:
                    self.log(note)
                try:
                    self.offer = json.loads(payload).get("fw")
                except (ValueError, AttributeError):
                    self.offer = None
        client.messages = []

    def _flush(self, client, wdt):
        """Send every unacknowledged reading, oldest first, each batch confirmed by PUBACK; then take
        the ack the platform publishes for them and free the buffer."""
        import gc

        sent_to = self.store.state["acked"]
        first = True
        while True:
            gc.collect()
            recs = self.store.pending_raw(self.cfg["batch"], after=sent_to)
            if not recs and not (first and self.store.lost()):
                break
            body, n = self._batch_text(recs)
            pid = client.publish(self.topic("up"), body, qos=1)
            body = None
            client.wait_acked([pid], self.cfg["puback_ms"])
            self.ops["readings_sent"] += n
            wdt.feed()
            first = False
            if not n:
                break
            sent_to = recs[n - 1][0]
            recs = None
        # No wait for the platform's ack of these batches: it is retained, and the next session reads it
        # before sending (the buffer is freed only up to an ack received). An ack that came meanwhile counts.
        self._mailbox(client)

    # -- firmware updates (ota.py, wire-v2 "Firmware updates") --------------------------------------
    def _confirm(self, client, wdt):
        """A release on trial: wait for the platform's ack of everything sent, then it is the good one."""
        import time

        top = self.store.next - 1
        began = time.ticks_ms()
        try:
            while self.store.state["acked"] < top:
                left = self.cfg["ack_ms"] - time.ticks_diff(time.ticks_ms(), began)
                if left <= 0:
                    raise MQTTError("timed out")
                client.until(lambda: any(m[0].endswith("/ack") for m in client.messages), left)
                self._mailbox(client)
                wdt.feed()
        except MQTTError as err:
            self.log("trial %s: no ack yet (%s)" % (self.fw["version"], err))
            return
        import ota

        ota.mark_good(self.fs)
        self.fw = running(self.fs)
        self.log("release %s is good" % self.fw["version"])

    def _consider(self):
        """A release the config offers: refused here (not newer, badly formed, a bad signature: nothing is
        fetched), or kept in data/offer.json and installed in a boot of its own (update), which has the heap
        to itself: this session's batches and sensors are not in it."""
        import gc

        gc.collect()  # what the batches left, before ota's code comes in
        import ota

        offer, self.offer = self.offer, None
        verdict = ota.check(offer, self.cfg["fw_key"], self.fw)
        if verdict is None:
            return
        if isinstance(verdict, str):
            self._refuse(offer, verdict)
            return
        wait = self.st.get("fw_wait")  # [version, failed attempts, send sessions still to skip]
        if wait and wait[0] == verdict["version"] and wait[2] > 0:
            wait[2] -= 1
            return
        ota.keep_offer(self.root, verdict)
        self.reboot = True
        self.log("release %s offered: installing it at once, in a boot of its own" % verdict["version"])

    def _refuse(self, offer, why):
        import ota

        version = offer.get("version") if isinstance(offer, dict) and ota.version_key(offer.get("version")) else "?"
        self.log("release %s refused: %s" % (version, why))
        ota.refuse(self.fs, version, why)
        self.fw = running(self.fs)

    def update(self):
        """The boot that installs a kept offer (the offer is taken first: a crash here costs this one attempt,
        and the next session's retained config offers it again). Wi-Fi, MQTT, the files fetched and installed,
        the switch to the trial (self.reboot), or a refusal when a file's bytes do not match."""
        import ota

        release = ota.take_offer(self.root)
        if release is None:
            return
        self._count("update_boots", 1)  # a boot of its own: the energy model counts it as a wake
        wdt = machine.WDT(timeout=self.cfg["wdt_ms"])
        client = None
        try:
            if not self._wifi(wdt):
                raise OSError("no Wi-Fi")
            client = self._client()
            client.connect()
            self.ops["mqtt"] += 1
            why = ota.install(self.fs, self.fw, release, lambda sha, path: self._fetch(client, sha, path, wdt),
                              wdt.feed)
            client.disconnect()
        except (OSError, MQTTError) as err:
            # tried again at a later send session: the next, then every 2nd, 4th, ... (at most every 16th)
            wait = self.st.get("fw_wait")
            n = wait[1] + 1 if wait and wait[0] == release["version"] else 1
            self.st["fw_wait"] = [release["version"], n, (1 << min(n - 1, 4)) - 1]
            self.log("update %s: interrupted (%s)" % (release["version"], err))
            return
        finally:
            if client is not None:
                self.ops["bytes"] += client.bytes_sent
                self.ops["bytes_in"] += client.bytes_received
                client.close()
            for k in self.ops:
                self._count(k, self.ops[k])
            _save(self.root, self.st)
        self.st.pop("fw_wait", None)
        if why is not None:
            self._refuse(release, why)
        else:
            ota.switch(self.fs, self.fw)
            self.reboot = True
            self.log("release %s installed; booting it on trial" % release["version"])
        _save(self.root, self.st)

    def _fetch(self, client, sha, path, wdt):
        """One file from its retained topic, streamed to flash as it arrives (a Sink checks its hash)."""
        import ota

        got: list = []

        def sink(topic):
            if topic == FW_TOPIC + sha and not got:
                got.append(ota.Sink(path, sha, wdt.feed))
                return got[0]
            return None

        client.sink = sink
        try:
            client.subscribe([FW_TOPIC + sha])
            client.until(lambda: got and got[0].ok is not None, self.cfg["fw_ms"])
        finally:
            client.sink = mqtt.keep
            if got and got[0].ok is None:
                got[0].abandon()

    def _batch_text(self, recs, now=None):
        """The next `up` payload from stored (seq, t, row, head) readings (text pieces, see wire.Up) and how
        many of the readings it carries: one run of them (wire.run: consecutive seqs, one column list,
        rising times). The rows go out as stored; only the times are drift-corrected, in integers
        (rclock.py), each when it is written: no second list of a batch's size is made."""
        syncs = self.st["syncs"]

        def when(t):
            return rclock.correct(t, syncs)

        fields = {"v": self.cfg["wire"], "node": self.cfg["node"], "epoch": self.store.epoch,
                  "now": rclock.now() if now is None else now, "tq": "ntp" if self.st["synced"] else "rtc",
                  "fw": self.fw["version"]}
        if self.cfg["wire"] == 2:
            fields["boot"] = self.st.get("boot", 0)
        if self.store.lost():
            fields["lost"] = self.store.lost()
        return wire.batch(fields, recs, wire.run(recs, when), self.cfg["wire"], when)

    def _status(self, client, state):
        now = rclock.now()
        body = {"v": self.cfg["wire"], "state": state, "t": now, "fw": self.fw["version"], "cfg": self.cfg["rev"],
                "boot": self.st.get("boot", 0), "reset": _reset(),
                "buffered": self.store.count(), "dropped": self.store.dropped, "wake": now + self.cfg["sample_s"]}
        if self.cfg["wire"] == 2:
            body["fw_state"] = self.fw["state"]
            if self.fw["state"] == "rolled-back" and self.fw["failed"]:
                body["fw_failed"] = self.fw["failed"]
        batt = _battery()
        if batt is not None:
            body["batt_v"] = batt
        if getattr(self, "rssi", None) is not None:
            body["rssi_dbm"] = self.rssi
        pid = client.publish(self.topic("status"), json.dumps(body, separators=(",", ":")), qos=1, retain=True)
        client.wait_acked([pid], self.cfg["puback_ms"])


def update_due(root):
    """Whether this boot installs a firmware update (ota.keep_offer left one under the data directory)."""
    try:
        os.stat(root + "/" + config.OFFER_FILE)
        return True
    except OSError:
        return False


def running(fs):
    """What runs now (the loader's fw.json, the slot's release.json): {"version", "state", "failed", "slot"}.
    A node flashed without slots runs FW, good, and cannot be updated (slot None). Here and not in ota.py:
    every wake needs it, and only a wake that updates needs ota's code in its heap."""
    rec = config.read(fs + "/fw.json")
    slot = rec.get("trial") or rec.get("good")
    version = config.read(fs + "/fw/%s/release.json" % slot).get("version") if slot in ("a", "b") else None
    if not isinstance(version, str):
        return {"version": FW, "state": "good", "failed": None, "slot": None}
    state = "trial" if rec.get("trial") else "rolled-back" if rec.get("failed") else "good"
    return {"version": version, "state": state, "failed": rec.get("failed"), "slot": slot}


def _reset():
    """The status's `reset`: what started this run of the firmware."""
    m = machine
    names = {m.DEEPSLEEP_RESET: "deepsleep", m.PWRON_RESET: "power", m.HARD_RESET: "hard", m.SOFT_RESET: "soft",
             m.WDT_RESET: "watchdog"}
    return names.get(m.reset_cause(), "other")


def _battery():
    try:
        import battery
        return battery.read()
    except (ImportError, OSError):
        return None
