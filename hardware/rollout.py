"""Rolling a release out to the fleet: a canary first, then waves, halted when a wave fails.

A rollout of version V offers V to the first `canary` nodes, waits until each reports V `good` in its
status (success) or `rolled-back` with `fw_failed` V, or stays silent past the timeout (failures), then
offers V to the next wave of `wave_size` nodes, and so on. When a wave's failures pass the limit
(`max_failures`: a count, or a fraction of the wave) the rollout halts: every node that has not taken V
is offered again the release its config carried before the rollout (or V is withdrawn from its config
when it carried none), and no further node is offered V. A node refusing V (bad signature or hash)
reports it as rolled back, so it counts as a failure too.

The engine is pure: it drives a port (`hardware.fwbroker.FirmwareBroker` over the real broker, or a
fake in the tests) and the durable store (`hardware.fwstore`), with an injected clock. Why each step may
be repeated after a kill at any point:
    create      one transaction (the rollout and every target, with the config it had before); until it
                commits nothing is published.
    offer       publish the node's retained config with V, then record `offered`. Killed in between, the
                resumed run publishes the same config again: a retained message replaced by itself.
    judge       a status seen is recorded as `good`/`failed`; statuses are retained, so a resumed run
                sees the same ones again. A timeout is judged from `offered_at`, wall-clock time stored
                in the database, so waiting resumes where it stopped.
    advance     moving to the next wave, finishing, or halting (with every revert marked due) is one
                transaction.
    revert      publish the previous config, then mark the revert done; repeated, the same message again.
A second run of a finished rollout publishes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hardware.release import offer
from rimba.errors import ConfigError

ENDED = ("done", "halted")


@dataclass(frozen=True)
class Plan:
    canary: int
    wave_size: int  # nodes per wave after the canary
    max_failures: str  # "2" (a count) or "0.25" / "25%" (a fraction of the wave)
    timeout_s: float


def failure_limit(max_failures: str, size: int) -> float:
    """How many failures a wave of `size` nodes may have without halting the rollout.

    >>> failure_limit("0", 5), failure_limit("2", 5), failure_limit("0.2", 5), failure_limit("50%", 3)
    (0, 2, 1.0, 1.5)
    """
    text = str(max_failures).strip()
    try:
        if text.endswith("%"):
            value, fraction = float(text[:-1]) / 100, True
        elif "." in text:
            value, fraction = float(text), True
        else:
            value, fraction = int(text), False
    except ValueError:
        raise ConfigError(f"--max-failures {max_failures!r}: a count (0, 1, 2 ...) or a fraction (0.2, 20%)") from None
    if value < 0 or (fraction and not value < 1):
        raise ConfigError(f"--max-failures {max_failures!r}: a count of 0 or more, or a fraction below 1")
    return value * size if fraction else value


def waves(count: int, canary: int, wave_size: int) -> list:
    """The wave of each of `count` targets: 0 for the canary, then 1, 2, ... of `wave_size` each.

    >>> waves(7, 2, 2)
    [0, 0, 1, 1, 2, 2, 3]
    """
    if canary < 1 or wave_size < 1:
        raise ConfigError("--canary and --wave: at least 1 node")
    return [0 if i < canary else 1 + (i - canary) // wave_size for i in range(count)]


def with_fw(current, fw: dict | None) -> dict:
    """The node's config with `fw` set (or removed when None), every other key as it was. A node with no
    config, or one the node could not read either, gets `{"v":2,"rev":1}`. `rev` is never bumped: the node
    reads `fw` whatever the rev, and a higher rev would make it apply the sampling keys again."""
    cfg = dict(current) if isinstance(current, dict) and current.get("v") == 2 else {"v": 2, "rev": 1}
    if fw is None:
        cfg.pop("fw", None)
    else:
        cfg["fw"] = fw
    return cfg


def succeeded(status: dict | None, version: str) -> bool:
    return bool(status) and status.get("fw") == version and status.get("fw_state") == "good"


def failed(status: dict | None, version: str) -> bool:
    return bool(status) and status.get("fw_state") == "rolled-back" and status.get("fw_failed") == version


class Rollouts:
    """Starts, resumes and steps rollouts. `port` offers configs and reports statuses; `keys(node)` is the
    node's update key (hex); `nodes` maps each node of the fleet file to its site; `clock()` is wall time
    in seconds; `say(line)` reports each event."""

    def __init__(self, store, port, keys, nodes: dict, clock, say=lambda line: None):
        self.store = store
        self.port = port
        self.keys = keys
        self.nodes = nodes
        self.clock = clock
        self.say = say
        self._published: set = set()  # releases whose files this run has published

    # -- starting ----------------------------------------------------------------------------------------
    def start(self, version: str, selected: list, plan: Plan, notes=()) -> int | None:
        """The rollout of `version` over `selected` node ids (in canary order): the unfinished one resumed,
        or a new one (`notes` said before it is made); None when a finished rollout of `version` took every
        selected node (nothing to do)."""
        files = self.store.release(version)
        if files is None:
            raise ConfigError(f"no release {version}; `rimba firmware release` records one")
        open_ = self.store.unfinished()
        if open_ is not None:
            if open_["version"] != version:
                raise ConfigError(f"the rollout of {open_['version']} is unfinished; `rimba firmware rollout "
                                  f"{open_['version']}` resumes it")
            self.say(f"resuming the rollout of {version} (#{open_['id']}) at wave {open_['wave']}")
            return open_["id"]
        halted = [r for r in self.store.rollouts(version) if r["state"] == "halted"]
        if halted:
            raise ConfigError(f"the rollout of {version} halted ({halted[-1]['reason']}); release a newer version")
        done = self.store.rolled_out(version)
        todo = [n for n in selected if n not in done]
        if not todo:
            self.say(f"{version} is already rolled out to the {len(selected)} selected nodes: nothing to do")
            return None
        for node in todo:
            self.keys(node)  # every target has an update key before anything is published
        failure_limit(plan.max_failures, 1)
        assigned = waves(len(todo), plan.canary, plan.wave_size)
        targets = []
        for node, wave in zip(todo, assigned):
            before = self.port.config(self.nodes[node], node)
            previous = before.get("fw") if isinstance(before, dict) else None
            ok = isinstance(previous, dict) and previous.get("version") != version
            targets.append((node, self.nodes[node], wave, previous if ok else None))
        for line in notes:
            self.say(line)
        rid = self.store.create_rollout(version, plan.__dict__, targets, self.clock())
        rest = len(todo) - min(plan.canary, len(todo))
        self.say(f"rollout #{rid} of {version}: canary {', '.join(todo[:plan.canary])}"
                 + (f"; then {rest} nodes in {max(assigned)} wave{'s' if max(assigned) > 1 else ''} of up to "
                    f"{plan.wave_size}" if rest else "")
                 + (f"; {len(done & set(selected))} selected nodes were in its earlier rollout" if done & set(selected) else ""))
        return rid

    # -- stepping ----------------------------------------------------------------------------------------
    def step(self, rid: int) -> str:
        """Do everything that can be done now without waiting; return the rollout's state."""
        r = self.store.rollout(rid)
        while r["state"] == "running":
            self._running(r)
            before, r = r, self.store.rollout(rid)
            if r["wave"] == before["wave"]:
                break  # waiting for this wave; a wave passed is followed by the next one's offers at once
        if r["state"] == "halting":
            self._revert(r)
            r = self.store.rollout(rid)
        return r["state"]

    def run(self, rid: int, wait) -> str:
        """Step until the rollout ends; between steps `wait(deadline)` returns when a status may have
        changed or the clock reached `deadline`."""
        while (state := self.step(rid)) not in ENDED:
            wait(self.next_deadline(rid))
        return state

    def next_deadline(self, rid: int) -> float:
        r = self.store.rollout(rid)
        offered = [t["offered_at"] + r["timeout_s"] for t in self.store.targets(rid, r["wave"])
                   if t["state"] == "offered"]
        return min(offered, default=self.clock() + r["timeout_s"])

    def _files(self, version: str) -> dict:
        files = self.store.release(version)
        if version not in self._published:  # idempotent (retained, by hash); again once per run
            self.port.publish_files({sha: self.store.blob(sha) for sha in sorted(set(files.values()))})
            self._published.add(version)
        return files

    def _running(self, r) -> None:
        rid, version, wave = r["id"], r["version"], r["wave"]
        files = self._files(version)
        for t in self.store.targets(rid, wave):
            node = t["node"]
            if t["state"] == "pending":
                if node not in self.nodes:
                    self.store.set_target(rid, node, state="skipped", detail="no longer in the fleet file",
                                          settled_at=self.clock())
                    self.say(f"{node}: skipped, no longer in the fleet file")
                    continue
                fw = offer(self.keys(node), files, version)
                self.port.publish_config(t["site"], node, with_fw(self.port.config(t["site"], node), fw))
                self.store.set_target(rid, node, state="offered", offered_at=self.clock())
                self.say(f"{node}: offered {version} ({_wave_name(wave)})")
        now = self.clock()
        for t in self.store.targets(rid, wave):
            if t["state"] != "offered":
                continue
            node = t["node"]
            status = self.port.status(t["site"], node)
            self._record(node, status)
            if succeeded(status, version):
                self.store.set_target(rid, node, state="good", settled_at=now)
                self.say(f"{node}: runs {version}, good")
            elif failed(status, version):
                self.store.set_target(rid, node, state="failed", settled_at=now, detail="rolled back")
                self.say(f"{node}: rolled {version} back (runs {status.get('fw')})")
            elif now >= t["offered_at"] + r["timeout_s"]:
                self.store.set_target(rid, node, state="failed", settled_at=now,
                                      detail=f"no report of {version} good within {r['timeout_s']:g} s")
                self.say(f"{node}: no report of {version} good within {r['timeout_s']:g} s")
        ts = self.store.targets(rid, wave)
        bad = [t for t in ts if t["state"] == "failed"]
        limit = failure_limit(r["max_failures"], len(ts))
        if len(bad) > limit:
            why = (f"{_wave_name(wave)} had {len(bad)} of {len(ts)} failed ({', '.join(_failure(t) for t in bad)}), "
                   f"over the limit of {r['max_failures']}")
            self.store.set_rollout(rid, revert_all_but_good=True, state="halting", reason=why)
            self.say(f"halting the rollout of {version}: {why}")
        elif all(t["state"] in ("good", "failed", "skipped") for t in ts):
            last = max(t["wave"] for t in self.store.targets(rid))
            if wave >= last:
                self.store.set_rollout(rid, state="done", ended=now)
                good = sum(t["state"] == "good" for t in self.store.targets(rid))
                self.say(f"rollout of {version} done: {good} nodes run it")
            else:
                self.store.set_rollout(rid, wave=wave + 1)
                self.say(f"{_wave_name(wave)} passed ({len(bad)} failed); on to wave {wave + 1}")

    def _revert(self, r) -> None:
        rid, version = r["id"], r["version"]
        for t in self.store.targets(rid):
            if t["revert"] != "due":
                continue
            if t["node"] not in self.nodes:  # removed from the fleet since: its config is no one's
                self.store.set_target(rid, t["node"], revert="done")
                continue
            previous = json.loads(t["previous"]) if t["previous"] else None
            if previous is not None and previous.get("version") != version:
                if self.store.release(previous["version"]) is not None:
                    self._files(previous["version"])  # its files back on the broker, should they be gone
            else:
                previous = None  # never offer the halted release again
            self.port.publish_config(t["site"], t["node"], with_fw(self.port.config(t["site"], t["node"]), previous))
            self.store.set_target(rid, t["node"], revert="done")
            self.say(f"{t['node']}: offered {previous['version']} again" if previous else
                     f"{t['node']}: {version} withdrawn from its config (no release was offered before)")
        self.store.set_rollout(rid, state="halted", ended=self.clock())

    def _record(self, node: str, status: dict | None) -> None:
        """Keep the node's newest firmware report (for `rimba firmware status`, when its retained status is
        the Last Will, which carries none)."""
        if not status or "fw" not in status:
            return
        known = self.store.seen().get(node)
        now = (status.get("fw"), status.get("fw_state"), status.get("fw_failed"), status.get("t"))
        if known is None or (known["fw"], known["fw_state"], known["fw_failed"], known["t"]) != now:
            self.store.record_seen(node, *now, self.clock())


def _wave_name(wave: int) -> str:
    return "the canary" if wave == 0 else f"wave {wave}"


def _failure(t) -> str:
    return f"{t['node']} {t['detail']}"
