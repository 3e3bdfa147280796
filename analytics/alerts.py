"""Alerts officers can trust: rules, incidents, grouping, reminders, quiet hours, delivery.

Each evaluation turns the latest data into *observations*, one per rule and
subject (a node's metric, a node, or a whole site): the condition is true,
false, or unknown (no data). The engine keeps one *incident* per subject while
its condition holds, in a small SQLite store beside the other state:

- an incident opens when the condition has held for the rule's `for_s`
  (measured on the data, not on the evaluation clock), and is announced once:
  one `alert` message on MQTT under each contract version served (`rimba/v1/{site}/alert`, `rimba/v2/...`,
  state `firing`) and one notification to people;
- while it holds, people get a reminder every `repeat_s` unless someone
  acknowledged it (`rimba alerts ack ID`); a rise in severity is announced
  at once;
- it resolves only when the condition has been *false* for `clear_s`: an
  unknown condition (a node that stopped reporting) never resolves anything,
  and an overdue node's incident clears only when the node reports again;
- when `group_min` or more nodes of one site are overdue together, they form
  one site incident (node null, the members listed) instead of one each;
- notifications to people are grouped: one message per site per evaluation,
  listing what fired, repeated, rose or resolved. In quiet hours only
  critical changes go out; the rest wait and go out together when they end.

People are reached through Apprise URLs (Telegram, e-mail, webhooks and
the other services Apprise knows). Times are UNIX seconds; `now` is always
passed in, so the tests drive the clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
from dataclasses import dataclass

import numpy as np

from rimba import contract, names
from rimba.errors import ConfigError
from rimba.metrics import METRICS
from rimba.settings import parse_quiet, read_toml  # noqa: F401 (parse_quiet: part of this module's API)

log = logging.getLogger("rimba.alerts")

KINDS = ("threshold", "ispu", "fire", "anomaly", "overdue")
SEVERITIES = ("info", "warning", "critical")
DERIVED = ("heat_index_c", "dew_point_c", "humidex", "ispu_pm25", "ispu_pm10", "fwi", "ffmc", "dc")
WIB_S = 7 * 3600


@dataclass(frozen=True)
class Rule:
    """One alert rule (configuration; see `DEFAULT_RULES` and `load_rules`).

    threshold: `metric` (a measurement or a derived index) above `above` or below `below` for
    `for_s`; clears past `clear` (hysteresis; the threshold itself when not given).
    ispu: the ISPU category (0 Baik .. 4 Berbahaya) of PM2.5 or PM10 at least `above`.
    fire: the fire weather index danger class (0 Rendah .. 3 Ekstrem) at least `above`.
    anomaly: an anomaly event of at least `severity` (warning or critical).
    overdue: a node silent for `overdue_sends` of its send intervals past its announced wake.
    Severity escalates to critical at `critical` when it is given (same units as `above`).
    """

    name: str
    kind: str
    severity: str = "warning"
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    critical: float | None = None
    for_s: int = 0
    clear_s: int | None = None  # None: the engine's default

    def crosses(self, value: float, firing: bool) -> bool:
        """Whether value is past the threshold (or, for a firing incident, not yet past `clear`)."""
        if self.above is not None:
            return value > (self.clear if firing and self.clear is not None else self.above)
        return value < (self.clear if firing and self.clear is not None else self.below)

    def severity_of(self, value: float) -> str:
        if self.critical is None:
            return self.severity
        hot = value >= self.critical if self.below is None else value <= self.critical
        return "critical" if hot else self.severity


DEFAULT_RULES = (
    # NWS heat index "danger" starts at 103 °F (39.4 °C); DOMAIN.md §3
    Rule("heat-danger", "threshold", "warning", metric="heat_index_c", above=39.4, clear=38.0, critical=51.0,
         for_s=1800),
    # Bansir Laut: forecast high tides 1.7-1.9 m, the annual maximum about 2.0 m above the datum (DOMAIN.md §4)
    Rule("river-high", "threshold", "warning", metric="water_level_cm", above=190.0, clear=185.0, critical=200.0,
         for_s=600),
    # ISPU category 2 is "Tidak Sehat" (101-200), 3 "Sangat Tidak Sehat" (Permen LHK P.14/2020)
    Rule("ispu-unhealthy", "ispu", "warning", above=2, critical=3),
    # FWI class 2 is "Tinggi" (ASEAN SEA-FDRS)
    Rule("fire-danger", "fire", "warning", above=2, critical=3),
    Rule("anomaly", "anomaly", "critical"),
    Rule("overdue", "overdue", "warning", clear_s=0),
)


def load_rules(path: str | None) -> tuple:
    """Rules from a TOML file of `[[rule]]` tables (the built-in ones when path is empty)."""
    if not path:
        return DEFAULT_RULES
    data = read_toml(path, "alert_rules")
    rules = []
    fields = set(Rule.__dataclass_fields__)
    for i, t in enumerate(data.get("rule", [])):
        where = f"alert_rules: {path}: rule {i + 1}"
        unknown = set(t) - fields
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        try:
            rule = Rule(**t)
        except TypeError as err:
            raise ConfigError(f"{where}: {err}") from None
        _validate(rule, where)
        rules.append(rule)
    if len({r.name for r in rules}) != len(rules):
        raise ConfigError(f"alert_rules: {path}: rule names must be unique")
    return tuple(rules)


def _validate(rule: Rule, where: str) -> None:
    if rule.kind not in KINDS:
        raise ConfigError(f"{where}: kind {rule.kind!r} is not one of {', '.join(KINDS)}")
    if rule.severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity {rule.severity!r} is not one of {', '.join(SEVERITIES)}")
    if not names.is_name(rule.name):
        raise ConfigError(f"{where}: name {rule.name!r} must be lowercase letters, digits and '-'")
    if rule.kind == "threshold":
        if rule.metric not in METRICS and rule.metric not in DERIVED:
            raise ConfigError(f"{where}: metric {rule.metric!r} is not a measurement or derived index")
        if (rule.above is None) == (rule.below is None):
            raise ConfigError(f"{where}: a threshold rule needs exactly one of above and below")
    if rule.kind in ("ispu", "fire") and rule.above is None:
        raise ConfigError(f"{where}: an {rule.kind} rule needs above (the lowest category that fires)")


@dataclass
class Observation:
    """What an evaluation sees for one rule and subject."""

    rule: Rule
    site: str
    node: str | None  # None: the whole site
    metric: str | None
    active: bool | None  # None: unknown (no data), which never resolves anything
    since: int = 0  # when the condition started to hold (data time)
    value: float | None = None
    severity: str = "warning"
    message: str = ""
    members: tuple = ()

    @property
    def key(self) -> str:
        return "/".join((self.rule.name, self.site, self.node or "*", self.metric or "*"))


@dataclass
class Change:
    """Something people are told: an incident `firing`, `repeat`, `escalated` or `resolved`."""

    what: str
    incident: dict


@dataclass
class Engine:
    store: AlertStore
    repeat_s: int = 4 * 3600
    clear_s: int = 600
    quiet: tuple | None = None  # (start minute, end minute) of the day, WIB
    publish: object = None  # callable(topic, payload bytes)
    notify: object = None  # callable(site, title, body, severity) -> bool

    def evaluate(self, observations, now: int) -> list:
        """Update incidents from this evaluation's observations; announce and notify. Returns the changes."""
        seen = {}
        for ob in observations:
            seen[ob.key] = ob
        with self.store.transaction():
            changes = self._update(seen, now)
        self._deliver(changes, now)
        return changes

    def _update(self, seen: dict, now: int) -> list:
        changes = []
        open_ = {inc["key"]: inc for inc in self.store.open_incidents()}
        for key, inc in open_.items():
            ob = seen.pop(key, None)
            rule_clear = inc["clear_s"]
            if ob is None or ob.active is None:
                # unknown: an incident never resolves for want of data, and keeps reminding
                inc["note"] = ob.message if ob is not None else "no observation"
                if not inc["acked_by"] and now - inc["last_sent"] >= self.repeat_s:
                    changes.append(Change("repeat", dict(inc)))
                    inc["last_sent"] = now
            elif ob.active:
                inc["clear_since"], inc["note"] = None, ""
                inc["value"], inc["message"], inc["members"] = ob.value, ob.message, list(ob.members)
                if SEVERITIES.index(ob.severity) > SEVERITIES.index(inc["severity"]):
                    inc["severity"] = ob.severity
                    changes.append(Change("escalated", dict(inc)))
                    inc["last_sent"] = now
                elif not inc["acked_by"] and now - inc["last_sent"] >= self.repeat_s:
                    changes.append(Change("repeat", dict(inc)))
                    inc["last_sent"] = now
            else:
                if inc["clear_since"] is None:
                    inc["clear_since"] = now
                if now - inc["clear_since"] >= (self.clear_s if rule_clear is None else rule_clear):
                    inc["state"], inc["end"] = "resolved", now
                    inc["value"] = ob.value if ob.value is not None else inc["value"]
                    changes.append(Change("resolved", dict(inc)))
                    self._publish(inc)
            self.store.save(inc)
        for key, ob in seen.items():
            if ob.active and now - ob.since >= ob.rule.for_s:
                inc = {"id": f"{ob.rule.name}-{ob.site}-{ob.node or 'site'}-{ob.metric or 'all'}-{ob.since}",
                       "key": key, "rule": ob.rule.name, "kind": ob.rule.kind, "site": ob.site, "node": ob.node,
                       "metric": ob.metric, "severity": ob.severity, "state": "firing", "start": ob.since,
                       "end": None, "value": ob.value, "message": ob.message, "members": list(ob.members),
                       "last_sent": now, "clear_since": None, "acked_by": None, "acked_at": None,
                       "clear_s": ob.rule.clear_s, "note": ""}
                changes.append(Change("firing", dict(inc)))
                self._publish(inc)
                self.store.save(inc)
        return changes

    def _publish(self, inc: dict) -> None:
        if self.publish is None:
            return
        body = {"id": inc["id"], "site": inc["site"], "node": inc["node"], "metric": inc["metric"],
                "kind": inc["kind"], "severity": inc["severity"], "state": inc["state"], "start": inc["start"],
                "end": inc["end"], "value": inc["value"], "message": inc["message"]}
        for version in contract.VERSIONS:  # wire-v2: every alert on the alert topic of each version served
            payload = {"v": version, **body}
            self.publish(contract.alert_topic(inc["site"], version), json.dumps(payload, separators=(",", ":")).encode())

    def in_quiet_hours(self, now: int) -> bool:
        if not self.quiet:
            return False
        minute = ((now + WIB_S) % 86400) // 60
        start, end = self.quiet
        return start <= minute < end if start <= end else minute >= start or minute < end

    def _deliver(self, changes: list, now: int) -> None:
        if self.notify is None:
            return
        quiet = self.in_quiet_hours(now)
        by_site: dict = {}
        if not quiet:
            for site, what, inc in self.store.take_held():
                by_site.setdefault(site, []).append(Change(what, inc))
        for ch in changes:
            if quiet and ch.incident["severity"] != "critical":
                self.store.hold(ch.incident["site"], ch.what, ch.incident)
            else:
                by_site.setdefault(ch.incident["site"], []).append(ch)
        for site, chs in sorted(by_site.items()):
            title, body, severity = digest(site, chs)
            if not self.notify(site, title, body, severity):
                log.warning("notification for %s failed; kept for the next evaluation", site)
                for ch in chs:
                    self.store.hold(site, ch.what, ch.incident)


def digest(site: str, changes: list) -> tuple:
    """One message for one site: (title, body, highest severity)."""
    counts: dict = {}
    for ch in changes:
        counts[ch.what] = counts.get(ch.what, 0) + 1
    words = {"firing": "new", "repeat": "still firing", "escalated": "worse", "resolved": "resolved"}
    title = f"Rimba {site}: " + ", ".join(f"{n} {words[w]}" for w, n in counts.items())
    lines = []
    for ch in changes:
        inc = ch.incident
        who = inc["node"] or f"{len(inc['members'])} nodes"
        mark = {"firing": "FIRING", "repeat": "STILL", "escalated": "WORSE", "resolved": "RESOLVED"}[ch.what]
        note = f" [{inc['note']}]" if inc.get("note") else ""
        lines.append(f"[{mark}] {inc['severity']} {inc['rule']} {who}: {inc['message']}{note} (id {inc['id']})")
    severity = max((ch.incident["severity"] for ch in changes), key=SEVERITIES.index)
    return title, "\n".join(lines), severity


class AlertStore:
    """Incidents and held notifications in SQLite (`alerts.sqlite` in the state dir)."""

    def __init__(self, path):
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # one evaluation is one transaction; see Engine.evaluate
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS incident (id TEXT PRIMARY KEY, key TEXT NOT NULL, state TEXT NOT NULL,
                                                 site TEXT NOT NULL, start INTEGER, body TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS incident_open ON incident (state, key);
            CREATE TABLE IF NOT EXISTS held (n INTEGER PRIMARY KEY, site TEXT, what TEXT, body TEXT);
        """)

    @contextlib.contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def save(self, inc: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO incident VALUES (?, ?, ?, ?, ?, ?)",
                        (inc["id"], inc["key"], inc["state"], inc["site"], inc["start"], json.dumps(inc)))

    def open_incidents(self) -> list:
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM incident WHERE state = 'firing'")]

    def incidents(self, state: str | None = None, limit: int = 200) -> list:
        q = "SELECT body FROM incident" + (" WHERE state = ?" if state else "") + " ORDER BY start DESC LIMIT ?"
        return [json.loads(b) for (b,) in self.db.execute(q, (state, limit) if state else (limit,))]

    def ack(self, incident_id: str, by: str, now: int) -> dict:
        row = self.db.execute("SELECT body FROM incident WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no alert with id {incident_id!r}; `rimba alerts list` shows them")
        inc = json.loads(row[0])
        inc["acked_by"], inc["acked_at"] = by, now
        self.save(inc)
        return inc

    def hold(self, site: str, what: str, inc: dict) -> None:
        self.db.execute("INSERT INTO held (site, what, body) VALUES (?, ?, ?)", (site, what, json.dumps(inc)))

    def take_held(self) -> list:
        with self.transaction():
            rows = self.db.execute("SELECT n, site, what, body FROM held ORDER BY n").fetchall()
            self.db.execute("DELETE FROM held")
        return [(site, what, json.loads(body)) for _n, site, what, body in rows]

    def close(self) -> None:
        self.db.close()


def apprise_notifier(urls: list, pace: bool = True):
    """A notify callable that sends through Apprise to every URL; False when any failed.

    Apprise paces messages to one service (5.5 s apart by default), as public services expect;
    `pace=False` turns that off for local receivers (the tests).
    """
    import apprise

    ap = apprise.Apprise()
    for url in urls:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            raise ConfigError(f"alert_notify: Apprise does not understand {url.split('://')[0]}:// URLs")
        if not pace:
            plugin.request_rate_per_sec = 0
        ap.add(plugin)

    def notify(site, title, body, severity) -> bool:
        kind = {"critical": apprise.NotifyType.FAILURE, "warning": apprise.NotifyType.WARNING}.get(
            severity, apprise.NotifyType.INFO)
        return bool(ap.notify(body=body, title=title, notify_type=kind))
    return notify


# --- observations: what the latest data says, rule by rule ------------------------------------------------


def _clock(t: int) -> str:
    m = ((int(t) + WIB_S) % 86400) // 60
    return f"{m // 60:02d}:{m % 60:02d} WIB"


def _trailing_run_start(times, values, cond) -> int:
    """The time of the first sample of the trailing run of valid samples meeting cond."""
    k = len(values) - 1
    start = int(times[k])
    while k >= 0:
        v = values[k]
        if math.isnan(v):  # gaps do not break a run
            k -= 1
            continue
        if not cond(v):
            break
        start = int(times[k])
        k -= 1
    return start


def threshold_observations(rule: Rule, times, series, nodes, sites, now: int, firing, stale_s: int) -> list:
    """Observations of a threshold rule; series is (nodes, time) of the rule's metric."""
    out = []
    unit = METRICS[rule.metric].unit if rule.metric in METRICS else ("°C" if rule.metric.endswith("_c") else "")
    for i, node in enumerate(nodes):
        v = series[i]
        valid = np.flatnonzero(~np.isnan(v))
        if not valid.size:
            continue  # this node does not measure it
        ob = Observation(rule, sites[i], node, rule.metric, None)
        last = int(valid[-1])
        ob.message = f"no {rule.metric} data since {_clock(times[last])}"
        if now - int(times[last]) <= stale_s:
            hot = firing(ob.key)
            value = float(v[last])
            ob.active = rule.crosses(value, hot)
            ob.value = value
            ob.severity = rule.severity_of(value)
            ob.since = _trailing_run_start(times[:last + 1], v[:last + 1], lambda x, hot=hot: rule.crosses(x, hot))
            side = "above" if rule.above is not None else "below"
            limit = rule.above if rule.above is not None else rule.below
            ob.message = (f"{rule.metric} {value:.1f} {unit} at {_clock(times[last])}, {side} {limit:g} "
                          f"since {_clock(ob.since)}").replace("  ", " ")
        out.append(ob)
    return out


def category_observations(rule: Rule, times, categories, values, nodes, sites, metric, now: int, stale_s: int,
                          labels) -> list:
    """Observations of an ispu or fire rule from category numbers (nodes, time), -1 where unknown."""
    out = []
    for i, node in enumerate(nodes):
        c = categories[i]
        valid = np.flatnonzero(c >= 0)
        if not valid.size:
            continue
        ob = Observation(rule, sites[i], node, metric, None)
        last = int(valid[-1])
        ob.message = f"no data since {_clock(times[last])}"
        if now - int(times[last]) <= stale_s:
            cat = int(c[last])
            ob.active = cat >= rule.above
            ob.value = float(values[i, last])
            ob.severity = "critical" if rule.critical is not None and cat >= rule.critical else rule.severity
            cf = np.where(c[:last + 1] >= 0, c[:last + 1], np.nan)
            ob.since = _trailing_run_start(times[:last + 1], cf, lambda x: x >= rule.above)
            ob.message = f"{labels(cat, ob.value)} at {_clock(times[last])}"
        out.append(ob)
    return out


def anomaly_observations(rule: Rule, events, last_time: dict, step_s: int, now: int, stale_s: int) -> list:
    """One observation per (node, metric) with recent data: active while a qualifying event goes on.

    last_time maps (node, site, metric) to the time of its newest value.
    """
    floor = SEVERITIES.index(rule.severity)
    ongoing = {}
    for ev in events:
        if SEVERITIES.index(ev.severity) >= floor:
            ongoing[(ev.node, ev.metric)] = ev  # events come in time order; the latest wins
    out = []
    for (node, site, metric), t in last_time.items():
        ob = Observation(rule, site, node, metric, None, message=f"no {metric} data since {_clock(t)}")
        if now - t <= stale_s:
            ev = ongoing.get((node, metric))
            ob.active = ev is not None and ev.end >= t  # the event runs up to the newest value
            if ob.active:
                ob.since, ob.value, ob.severity, ob.message = ev.start, ev.value, ev.severity, ev.message
        out.append(ob)
    return out


def overdue_observations(rule: Rule, fleet, contact: dict, wake: dict, now: int, sends: float, grace_s: int,
                         group_min: int) -> list:
    """Nodes silent past their own cadence and announced wake; a site's many at once as one.

    contact: node -> time it was last heard from (a reading, or a status other than the Last Will).
    wake: node -> the wake time it announced before sleeping.
    """
    per_site: dict = {}
    for node in fleet.nodes.values():
        ob = Observation(rule, node.site, node.id, None, None)
        last = contact.get(node.id)
        if last is not None:
            every = node.cadence_s * int(node.extra.get("send_every", 6))
            due = max(last + sends * every, wake.get(node.id) or 0) + grace_s
            ob.active = now > due
            ob.since = int(due)
            ob.message = (f"silent since {_clock(last)} (sends every {every // 60} min"
                          + (f", said it would wake at {_clock(wake[node.id])}" if wake.get(node.id) else "") + ")")
        per_site.setdefault(node.site, []).append(ob)
    out = []
    for site, obs in per_site.items():
        down = [o for o in obs if o.active]
        group = Observation(rule, site, None, None, False, message="")
        if len(down) >= group_min:
            group.active, group.since = True, min(o.since for o in down)
            group.members = tuple(sorted(o.node for o in down))
            group.message = f"{len(down)} of {len(obs)} nodes silent: {', '.join(group.members)}"
            for o in down:
                o.active = None  # covered by the site's incident
        out.append(group)
        out.extend(obs)
    return out


class MqttPublisher:
    """Publishes `alert` messages (QoS 1) and waits for the broker to take each one."""

    def __init__(self, settings, client_id: str):
        from rimba.mqtt import Mqtt

        self.mqtt = Mqtt(settings.broker, client_id, ca_file=settings.mqtt_ca_file, v5=False, persistent=False)
        self.started = False

    def __call__(self, topic: str, payload: bytes) -> None:
        if not self.started:
            self.mqtt.start()
            self.started = True
        mid = self.mqtt.publish(topic, payload, qos=1)
        if not self.mqtt.wait_published([mid], timeout=10):
            log.warning("the broker did not confirm the alert on %s", topic)

    def close(self) -> None:
        if self.started:
            self.mqtt.stop()
