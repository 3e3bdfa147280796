"""Observations: what the latest data says for each alert rule and subject (a node's metric, a node, a site)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics.alert_rules import SEVERITIES, Rule
from rimba import metrics, wib



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
    unit = metrics.unit(rule.metric)
    for i, node in enumerate(nodes):
        v = series[i]
        valid = np.flatnonzero(~np.isnan(v))
        if not valid.size:
            continue  # this node does not measure it
        ob = Observation(rule, sites[i], node, rule.metric, None)
        last = int(valid[-1])
        ob.message = f"no {rule.metric} data since {wib.clock(times[last])}"
        if now - int(times[last]) <= stale_s:
            hot = firing(ob.key)
            value = float(v[last])
            ob.active = rule.crosses(value, hot)
            ob.value = value
            ob.severity = rule.severity_of(value)
            ob.since = _trailing_run_start(times[:last + 1], v[:last + 1], lambda x, hot=hot: rule.crosses(x, hot))
            side = "above" if rule.above is not None else "below"
            limit = rule.above if rule.above is not None else rule.below
            ob.message = (f"{rule.metric} {value:.1f} {unit} at {wib.clock(times[last])}, {side} {limit:g} "
                          f"since {wib.clock(ob.since)}").replace("  ", " ")
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
        ob.message = f"no data since {wib.clock(times[last])}"
        if now - int(times[last]) <= stale_s:
            cat = int(c[last])
            ob.active = cat >= rule.above
            ob.value = float(values[i, last])
            ob.severity = "critical" if rule.critical is not None and cat >= rule.critical else rule.severity
            cf = np.where(c[:last + 1] >= 0, c[:last + 1], np.nan)
            ob.since = _trailing_run_start(times[:last + 1], cf, lambda x: x >= rule.above)
            ob.message = f"{labels(cat, ob.value)} at {wib.clock(times[last])}"
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
        ob = Observation(rule, site, node, metric, None, message=f"no {metric} data since {wib.clock(t)}")
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
            every = node.cadence_s * node.send_every
            due = max(last + sends * every, wake.get(node.id) or 0) + grace_s
            ob.active = now > due
            ob.since = int(due)
            ob.message = (f"silent since {wib.clock(last)} (sends every {every // 60} min"
                          + (f", said it would wake at {wib.clock(wake[node.id])}" if wake.get(node.id) else "") + ")")
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
