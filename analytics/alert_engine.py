"""The alert engine: one incident per subject while its condition holds; announced, reminded, escalated,
resolved; grouped per site for people, held through quiet hours (see analytics/alerts.py for the rules of it)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from rimba import wib
from analytics.alert_rules import SEVERITIES
from analytics.alert_store import AlertStore
from rimba import contract

log = logging.getLogger("rimba.alerts")


def messages(inc: dict) -> list:
    """The contract's `alert` message of an incident, [(topic, payload)]: one on the alert topic of every
    contract version served (wire-v2)."""
    body = {"id": inc["id"], "site": inc["site"], "node": inc["node"], "metric": inc["metric"], "kind": inc["kind"],
            "severity": inc["severity"], "state": inc["state"], "start": inc["start"], "end": inc["end"],
            "value": inc["value"], "message": inc["message"]}
    return [(contract.alert_topic(inc["site"], v), json.dumps({"v": v, **body}, separators=(",", ":")).encode())
            for v in contract.VERSIONS]


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
        """Update incidents from this evaluation's observations, then announce and notify; returns the changes.

        The incidents and the alert messages they make are one transaction (the messages in the store's
        outbox); the messages go to the broker after it commits, never while it is open, and leave the outbox
        only once the broker took them, so one the broker did not confirm goes at the next evaluation."""
        seen = {}
        for ob in observations:
            seen[ob.key] = ob
        with self.store.transaction():
            changes, outbox = self._update(seen, now)
            self.store.put_outbox(outbox)
        self.send_outbox()
        self._deliver(changes, now)
        return changes

    def send_outbox(self) -> None:
        if self.publish is None:
            return
        for n, topic, payload in self.store.outbox():
            if self.publish(topic, payload) is False:
                log.warning("the broker did not take the alert on %s; it is sent again at the next evaluation",
                            topic)
                return
            self.store.outbox_done(n)

    def _update(self, seen: dict, now: int) -> tuple:
        """(the changes people are told, the alert messages [(topic, payload)] for the broker)."""
        changes: list = []
        outbox: list = []
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
                    outbox.extend(messages(inc))
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
                outbox.extend(messages(inc))
                self.store.save(inc)
        return changes, outbox

    def in_quiet_hours(self, now: int) -> bool:
        if not self.quiet:
            return False
        minute = wib.minute_of_day(now)
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
