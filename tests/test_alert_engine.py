"""The alert engine's rules with its parts substituted: its SQLite store in a temporary directory, a notifier and a
broker we own, observations made by hand, a clock passed in. (tests/test_alerts.py holds the same engine to real
delivery: the broker, an SMTP server and a webhook.)"""

from __future__ import annotations

import json

import pytest

from analytics.alert_engine import Engine
from analytics.alert_observations import Observation
from analytics.alert_rules import Rule
from analytics.alert_store import AlertStore

pytestmark = pytest.mark.unit  # no stack, no process

MIDNIGHT = 1764262800  # 2025-11-28 00:00 WIB
HOT = Rule("heat-danger", "threshold", "warning", metric="heat_index_c", above=39.4, clear=38.0, critical=51.0,
           for_s=1800)
SILENT = Rule("node-overdue", "overdue", "warning")


class Notifier:
    """Records each digest; `up` False makes it fail, as a mail server that is down."""

    def __init__(self):
        self.sent, self.up = [], True

    def __call__(self, site, title, body, severity) -> bool:
        if self.up:
            self.sent.append((site, title, severity))
        return self.up


class Broker:
    def __init__(self):
        self.messages = []

    def __call__(self, topic, payload) -> bool:
        self.messages.append((topic, json.loads(payload)["state"]))
        return True


@pytest.fixture
def parts(tmp_path):
    store = AlertStore(tmp_path / "alerts.sqlite")
    notify, broker = Notifier(), Broker()
    engine = Engine(store, repeat_s=4 * 3600, clear_s=600, quiet=(22 * 60, 6 * 60), publish=broker, notify=notify)
    yield engine, notify, broker
    store.close()


def hot(node: str, active: bool | None, since: int, value: float = 41.0, severity: str = "warning") -> Observation:
    return Observation(HOT, "smp29", node, "heat_index_c", active, since, value, severity, f"heat index {value}")


def test_fires_after_its_duration_repeats_after_the_cooldown_and_resolves_after_the_clear_time(parts):
    engine, notify, broker = parts
    t = MIDNIGHT + 10 * 3600  # 10:00 WIB, outside the quiet hours
    assert engine.evaluate([hot("smp29-01", True, t)], t + 1799) == []  # not yet held for 30 min
    fired = engine.evaluate([hot("smp29-01", True, t)], t + 1800)
    assert [c.what for c in fired] == ["firing"] and len(notify.sent) == 1
    assert engine.evaluate([hot("smp29-01", True, t)], t + 1800 + 3600) == []  # within the cooldown
    assert [c.what for c in engine.evaluate([hot("smp29-01", True, t)], t + 1800 + 4 * 3600)] == ["repeat"]
    assert engine.evaluate([hot("smp29-01", False, t, 37.0)], t + 6 * 3600) == []  # clear, not yet for 10 min
    resolved = engine.evaluate([hot("smp29-01", False, t, 37.0)], t + 6 * 3600 + 600)
    assert [c.what for c in resolved] == ["resolved"] and resolved[0].incident["value"] == 37.0
    assert [m[1] for m in broker.messages] == ["firing", "firing", "resolved", "resolved"]  # v1 and v2 roots
    assert len(notify.sent) == 3


def test_no_data_never_resolves_and_a_worse_value_escalates_at_once(parts):
    engine, _notify, _broker = parts
    t = MIDNIGHT + 12 * 3600
    engine.evaluate([hot("smp29-02", True, t - 1800)], t)
    assert engine.evaluate([hot("smp29-02", None, t - 1800)], t + 3 * 3600) == []  # unknown: still open
    assert engine.store.open_incidents()[0]["note"] == "heat index 41.0"
    worse = engine.evaluate([hot("smp29-02", True, t - 1800, 52.0, "critical")], t + 3 * 3600 + 60)
    assert [c.what for c in worse] == ["escalated"] and worse[0].incident["severity"] == "critical"


def test_quiet_hours_hold_all_but_critical_and_deliver_them_after(parts):
    engine, notify, _broker = parts
    night = MIDNIGHT + 23 * 3600  # 23:00 WIB
    engine.evaluate([hot("smp29-03", True, night - 1800)], night)
    assert notify.sent == []  # held
    engine.evaluate([hot("smp29-03", True, night - 1800), hot("smp29-04", True, night - 1800, 55.0, "critical")],
                    night + 60)
    assert [s[2] for s in notify.sent] == ["critical"]  # a critical one goes at night
    morning = MIDNIGHT + 86400 + 6 * 3600  # 06:00 WIB
    engine.evaluate([hot("smp29-03", True, night - 1800), hot("smp29-04", True, night - 1800, 55.0, "critical")],
                    morning)
    assert len(notify.sent) == 2 and "1 new" in notify.sent[1][1]  # the held one, at the end of the quiet hours


def test_a_failed_notification_is_kept_for_the_next_evaluation(parts):
    engine, notify, _broker = parts
    t = MIDNIGHT + 9 * 3600
    notify.up = False
    engine.evaluate([hot("smp29-05", True, t - 1800)], t)
    notify.up = True
    engine.evaluate([hot("smp29-05", True, t - 1800)], t + 60)
    assert len(notify.sent) == 1 and "1 new" in notify.sent[0][1]


def test_an_acknowledged_incident_stops_repeating_and_still_resolves(parts):
    engine, notify, _broker = parts
    t = MIDNIGHT + 9 * 3600
    inc = engine.evaluate([hot("smp29-06", True, t - 1800)], t)[0].incident
    engine.store.ack(inc["id"], "officer", t + 60)
    assert engine.evaluate([hot("smp29-06", True, t - 1800)], t + 5 * 3600) == []
    assert [c.what for c in engine.evaluate([hot("smp29-06", False, t - 1800, 30.0)], t + 6 * 3600)] == []
    assert [c.what for c in engine.evaluate([hot("smp29-06", False, t - 1800, 30.0)], t + 6 * 3600 + 600)] == \
        ["resolved"]
    assert len(notify.sent) == 2


def test_one_digest_a_site_an_evaluation(parts):
    engine, notify, _broker = parts
    t = MIDNIGHT + 9 * 3600
    obs = [Observation(SILENT, "smp29", f"smp29-{i:02d}", None, True, t - 60, None, "warning", "silent")
           for i in range(30)]
    assert len(engine.evaluate(obs, t)) == 30
    assert len(notify.sent) == 1 and notify.sent[0][1] == "Rimba smp29: 30 new"
