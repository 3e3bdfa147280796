"""Alerts through real delivery: the session's Mosquitto, a local SMTP server (aiosmtpd) and a webhook
receiver, with the engine's clock driven by the test.

One incident gives one notification, a repeat after the cooldown, one resolution; an overdue node never
auto-resolves; 30 nodes of one site going down together give one grouped alert; quiet hours hold all but
critical alerts; an acknowledged alert stops repeating.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from analytics import alerts
from rimba.fleet import parse_fleet
from rimba.adapters.mqtt import Mqtt
from rimba.dev.harness import ROOT, env_for, wait_until

MIDNIGHT_WIB = 1764262800  # 2025-11-28 00:00 WIB
STEP = 600
RIVER = alerts.Rule("river-high", "threshold", "warning", metric="water_level_cm", above=190.0, clear=185.0,
                    critical=200.0, for_s=600)
OVERDUE = alerts.Rule("overdue", "overdue", "warning", clear_s=0)


class Officer:
    """Everything an officer's tools receive: e-mail, webhook posts and the MQTT alert topic."""

    def __init__(self, platform, smtp, webhook, **engine):
        self.smtp, self.webhook = smtp, webhook
        self.mqtt_seen = []
        self.mqtt_v2 = []  # the same alerts under the v2 root (wire-v2: every version served gets them)
        self.sub = Mqtt(platform.settings.broker, f"officer-{platform.values['influx_db']}", v5=False,
                        persistent=False, subscriptions=("rimba/v1/+/alert", "rimba/v2/+/alert"),
                        on_message=lambda topic, payload, *_: (self.mqtt_v2 if topic.startswith("rimba/v2/")
                                                               else self.mqtt_seen).append(json.loads(payload))).start()
        wait_until(self.sub.subscribed.is_set, 10, "the officer's subscription")
        self.publisher = alerts.MqttPublisher(platform.settings, f"alerts-{platform.values['influx_db']}")
        self.store = alerts.AlertStore(platform.tmp / "alerts.sqlite")
        self.engine = alerts.Engine(self.store, publish=self.publisher,
                                    notify=alerts.apprise_notifier([smtp.url, webhook.url], pace=False), **engine)

    @property
    def mails(self):
        return self.smtp.messages

    def wait_mqtt(self, n: int):
        wait_until(lambda: len(self.mqtt_seen) >= n, 10, f"{n} alert message(s) on MQTT")
        return self.mqtt_seen

    def close(self):
        self.publisher.close()
        self.sub.stop()
        self.store.close()


@pytest.fixture
def officer(platform_factory, smtp, webhook):
    made = []

    def make(**engine):
        o = Officer(platform_factory({}), smtp, webhook, **engine)
        made.append(o)
        return o
    yield make
    for o in made:
        o.close()


def river(levels):
    """One node's water level on the grid, from MIDNIGHT_WIB."""
    v = np.asarray(levels, dtype=float)[None, :]
    return MIDNIGHT_WIB + np.arange(v.shape[1]) * STEP, v


def observe(engine, times, v, now):
    firing = {inc["key"] for inc in engine.store.open_incidents()}.__contains__
    obs = alerts.threshold_observations(RIVER, times, v, ["bl-01"], ["bansir-laut"], now, firing, 3 * 3600)
    return engine.evaluate(obs, now)


def test_one_incident_one_notification_a_repeat_after_the_cooldown_and_one_resolution(officer):
    o = officer(repeat_s=4 * 3600, clear_s=1200)
    levels = [150.0] * 36 + [195.0] * 200  # above 190 from 06:00 WIB
    t, v = river(levels)
    start = int(t[36])
    # 06:00: just crossed; the rule wants ten minutes of it
    assert observe(o.engine, t[:37], v[:, :37], start) == []
    changes = observe(o.engine, t[:39], v[:, :39], int(t[38]))
    assert [c.what for c in changes] == ["firing"]
    assert len(o.mails) == 1 and len(o.webhook.posts) == 1
    assert "river-high" in o.mails[0] and "water_level_cm 195.0" in o.webhook.posts[0]["message"]
    fired = o.wait_mqtt(1)[0]
    assert (fired["state"], fired["site"], fired["node"], fired["start"]) == ("firing", "bansir-laut", "bl-01", start)
    wait_until(lambda: o.mqtt_v2, 10, "the alert under the v2 root")
    assert o.mqtt_v2[0] == dict(fired, v=2) and fired["v"] == 1
    # every ten minutes for four hours: nothing new; then one repeat
    for k in range(39, 62):
        assert observe(o.engine, t[:k + 1], v[:, :k + 1], int(t[k])) == []
    assert int(t[62]) == int(t[38]) + 4 * 3600
    assert [c.what for c in observe(o.engine, t[:63], v[:, :63], int(t[62]))] == ["repeat"]
    assert len(o.mails) == 2 and len(o.webhook.posts) == 2
    # it falls to 187: inside the hysteresis band (clear at 185), still firing
    v[0, 64:] = 187.0
    assert observe(o.engine, t[:66], v[:, :66], int(t[65])) == []
    # below 185 for 10 minutes: not yet (clear_s is 20 minutes); at 20 minutes: one resolution
    v[0, 66:] = 170.0
    assert observe(o.engine, t[:67], v[:, :67], int(t[66])) == []
    assert observe(o.engine, t[:68], v[:, :68], int(t[67])) == []
    assert [c.what for c in observe(o.engine, t[:69], v[:, :69], int(t[68]))] == ["resolved"]
    assert len(o.mails) == 3 and len(o.webhook.posts) == 3
    assert "RESOLVED" in o.webhook.posts[2]["message"]
    seen = o.wait_mqtt(2)
    assert [m["state"] for m in seen] == ["firing", "resolved"] and seen[0]["id"] == seen[1]["id"]
    assert seen[1]["end"] == int(t[68])
    assert observe(o.engine, t[:80], v[:, :80], int(t[79])) == []  # and nothing more
    assert len(o.mails) == 3 and len(o.mqtt_seen) == 2


def test_a_silent_node_never_resolves_a_threshold_alert(officer):
    o = officer(repeat_s=6 * 3600, clear_s=600)
    t, v = river([150.0] * 30 + [198.0] * 10)
    assert [c.what for c in observe(o.engine, t, v, int(t[-1]))] == ["firing"]
    # the node goes silent: for two days there is no data at all, and the alert stays up
    whats = [c.what for k in range(1, 2 * 144) for c in observe(o.engine, t, v, int(t[-1]) + k * STEP)]
    assert "resolved" not in whats and whats.count("repeat") == 7  # every six hours, for two days
    (inc,) = o.store.open_incidents()
    assert "no water_level_cm data since" in inc["note"]
    assert "no water_level_cm data since" in o.webhook.posts[-1]["message"]


def fleet(n_per_site: int):
    text = ['[sites.smp29]\nname = "SMP 29"\nlat = -0.03\nlon = 109.34\n',
            '[sites.bansir-laut]\nname = "Bansir Laut"\nlat = -0.04\nlon = 109.35\n']
    for site in ("smp29", "bansir-laut"):
        for i in range(n_per_site):
            text.append(f'[nodes.{site}-{i:02d}]\nsite = "{site}"\nprofile = "forest"\ncadence_s = 600\n'
                        f"send_every = 6\n")
    return parse_fleet(tomllib.loads("\n".join(text)))


def test_an_overdue_node_keeps_firing_until_it_reports(officer):
    o = officer(repeat_s=12 * 3600)
    f = fleet(2)
    last = MIDNIGHT_WIB + 8 * 3600
    contact = {n: last for n in f.nodes}
    wake = {"smp29-01": last + 3600}  # it said it would be back in an hour
    def run(now, contact=contact):
        return [c.what for c in o.engine.evaluate(
            alerts.overdue_observations(OVERDUE, f, contact, wake, now, 2.0, 300, 3), now)]
    # sends every hour: overdue after two missed sends and five minutes of grace
    assert run(last + 2 * 3600 + 299) == []
    assert run(last + 2 * 3600 + 301) == ["firing"] * 4
    assert len(o.mails) == 2  # one message per site, each listing its two nodes
    smp29 = next(p["message"] for p in o.webhook.posts if "overdue smp29" in p["message"])
    assert "smp29-00" in smp29 and "smp29-01" in smp29 and "bansir-laut" not in smp29
    # three days of evaluations every ten minutes: reminders, never a resolution
    whats = [w for k in range(1, 3 * 144) for w in run(last + 2 * 3600 + 301 + k * STEP)]
    assert set(whats) == {"repeat"} and len(whats) == 4 * 5  # each node at 12, 24, 36, 48 and 60 hours
    # smp29-00 reports again: its alert (and only its) resolves at once
    back = dict(contact, **{"smp29-00": last + 4 * 86400})
    assert sorted(run(last + 4 * 86400 + 60, back)) == ["repeat", "repeat", "repeat", "resolved"]
    assert {i["node"] for i in o.store.open_incidents()} == {"smp29-01", "bansir-laut-00", "bansir-laut-01"}
    states = [(m["node"], m["state"]) for m in o.wait_mqtt(5)]
    assert states.count(("smp29-00", "resolved")) == 1 and len(states) == 5


def test_thirty_nodes_of_one_site_going_down_give_one_alert(officer):
    o = officer()
    f = fleet(30)
    last = MIDNIGHT_WIB + 8 * 3600
    contact = {n: last for n in f.nodes}
    contact.update({f"bansir-laut-{i:02d}": last + 6 * 3600 for i in range(30)})  # the river site is fine
    now = last + 3 * 3600
    changes = o.engine.evaluate(alerts.overdue_observations(OVERDUE, f, contact, {}, now, 2.0, 300, 3), now)
    assert len(changes) == 1
    inc = changes[0].incident
    assert (inc["site"], inc["node"], len(inc["members"])) == ("smp29", None, 30)
    assert len(o.mails) == 1 and len(o.webhook.posts) == 1
    assert "30 of 30 nodes silent" in o.webhook.posts[0]["message"]
    msg = o.wait_mqtt(1)[0]
    assert (msg["site"], msg["node"], msg["kind"]) == ("smp29", None, "overdue")
    # they come back together: one resolution
    contact.update({n: now + 60 for n in f.nodes})
    changes = o.engine.evaluate(alerts.overdue_observations(OVERDUE, f, contact, {}, now + 120, 2.0, 300, 3), now + 120)
    assert [c.what for c in changes] == ["resolved"] and len(o.mails) == 2


def test_quiet_hours_hold_all_but_critical_alerts(officer):
    o = officer(quiet=alerts.parse_quiet("21:00-06:00"))
    t, v = river([150.0] * 138 + [195.0] * 3)  # 23:00 WIB: a warning
    assert [c.what for c in observe(o.engine, t, v, int(t[-1]))] == ["firing"]
    assert o.mails == [] and o.webhook.posts == []
    assert o.wait_mqtt(1)[0]["state"] == "firing"  # machines are told at once
    t2, v2 = river([150.0] * 138 + [195.0] * 3 + [205.0] * 3)  # 23:30: critical, goes out in quiet hours
    assert [c.what for c in observe(o.engine, t2, v2, int(t2[-1]))] == ["escalated"]
    assert len(o.mails) == 1
    # 06:00: the held warning goes out with the morning's news, in one message
    t3, v3 = river([150.0] * 138 + [195.0] * 3 + [205.0] * 3 + [170.0] * 46)
    observe(o.engine, t3, v3, MIDNIGHT_WIB + 86400 + 6 * 3600 - 1200)
    assert len(o.mails) == 1
    observe(o.engine, t3, v3, MIDNIGHT_WIB + 86400 + 6 * 3600 + 60)
    assert len(o.mails) == 2 and "FIRING" in o.webhook.posts[1]["message"] \
        and "RESOLVED" in o.webhook.posts[1]["message"]


def test_an_acknowledged_alert_stops_repeating_and_still_resolves(officer):
    o = officer(repeat_s=3600)
    t, v = river([150.0] * 30 + [195.0] * 100)
    fired = observe(o.engine, t[:32], v[:, :32], int(t[31]))[0].incident
    o.store.ack(fired["id"], "petugas-dlh", int(t[32]))
    whats = [c.what for k in range(33, 100) for c in observe(o.engine, t[:k + 1], v[:, :k + 1], int(t[k]))]
    assert whats == []
    v[0, 100:] = 160.0
    assert observe(o.engine, t[:104], v[:, :104], int(t[103])) == []  # clear for ten minutes first
    assert [c.what for c in observe(o.engine, t[:105], v[:, :105], int(t[104]))] == ["resolved"]


def test_alerts_cli_lists_and_acknowledges(tmp_path):
    store = alerts.AlertStore(tmp_path / "alerts.sqlite")
    engine = alerts.Engine(store)
    t, v = river([150.0] * 30 + [195.0] * 10)
    inc = observe(engine, t, v, int(t[-1]))[0].incident
    store.close()
    env = env_for({"state_dir": str(tmp_path)})
    cli = [sys.executable, "-m", "rimba", "alerts"]
    r = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 0 and inc["id"] in r.stdout and "1 alert(s) firing" in r.stderr
    r = subprocess.run([*cli, "ack", inc["id"], "--by", "petugas"], env=env, capture_output=True, text=True, cwd=ROOT,
                       timeout=60, check=False)
    assert r.returncode == 0 and "acknowledged" in r.stdout
    r = subprocess.run([*cli, "list", "--json"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60,
                       check=False)
    assert json.loads(r.stdout.splitlines()[0])["acked_by"] == "petugas"
    r = subprocess.run([*cli, "ack", "no-such-id"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60,
                       check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "rimba alerts list" in r.stderr


@pytest.mark.unit
def test_alert_messages_go_to_the_broker_after_the_commit_and_one_not_confirmed_goes_again(tmp_path):
    """The engine's outbox: the alert messages of an evaluation are stored in its transaction and published after
    it commits (never while the store is held: the broker may take seconds); a message the broker did not
    confirm stays in the outbox and goes at the next evaluation, in order, once."""
    store = alerts.AlertStore(tmp_path / "alerts.sqlite")
    sent: list = []
    broker_up = [False]

    def publish(topic, payload):
        assert not store.db.in_transaction, "published inside the store's transaction"
        if not broker_up[0]:
            return False
        sent.append((topic, json.loads(payload)))
        return True

    engine = alerts.Engine(store, publish=publish)
    t, v = river([150.0] * 30 + [195.0] * 10)
    inc = observe(engine, t, v, int(t[-1]))[0].incident
    assert sent == [] and len(store.outbox()) == 2  # the incident is recorded; its two messages wait
    broker_up[0] = True
    assert observe(engine, t, v, int(t[-1]) + STEP) == []  # nothing new: the waiting messages go out
    assert [(topic, body["state"], body["v"]) for topic, body in sent] == [
        ("rimba/v1/bansir-laut/alert", "firing", 1), ("rimba/v2/bansir-laut/alert", "firing", 2)]
    assert sent[0][1]["id"] == inc["id"] and store.outbox() == []
    store.close()
