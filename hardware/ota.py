"""`rimba firmware release | rollout | status`: over-the-air updates, the platform's side (composition root).

    release   build the application from the tree (or --from DIR), publish its files, record it
    rollout   offer a release to a canary, then to the rest in waves; halt when a wave fails
    status    each node's running version, its fw_state and fw_failed (stored by the ingest), and its
              place in the rollout

The pieces: hardware/release.py (what a release is, its signature), hardware/fwstore.py (the durable
record), hardware/rollout.py (the rollout, pure), hardware/fwbroker.py (the broker). Each node's update
key comes from its config file (hardware/provision.py).
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from pathlib import Path

from hardware import release as rel
from rimba import image
from hardware.fwstore import FirmwareStore
from hardware.rollout import Plan, Rollouts, failure_limit, waves
from rimba.errors import ConfigError
from rimba.fleet import load_fleet

TIMEOUT_SENDS = 3  # a node takes a release at a send, boots it on trial, proves it at a later send


def _say(line: str) -> None:
    print(line, flush=True)


def _quiet_adapter() -> None:
    """A command's output is its own lines: the MQTT adapter's connection notes (meant for the services'
    logs) only when something goes wrong."""
    import logging

    logging.getLogger("rimba.adapters.mqtt").setLevel(max(logging.WARNING, logging.getLogger().level))


class _AdminLock:
    """One release or rollout process at a time: two rollouts would offer configs over each other, and on a
    locked broker the admin login is one client id, which two processes would take from each other."""

    def __init__(self, state: Path):
        state.mkdir(parents=True, exist_ok=True)
        self.f = open(state / "firmware.lock", "w")

    def __enter__(self):
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError("another `rimba firmware rollout` or `release` is running on this state directory") \
                from None
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False


def release_main(settings, args) -> int:
    from rimba.image import FIRMWARE

    _quiet_adapter()
    source = Path(args.source) if args.source else FIRMWARE
    version = image.check_version(args.version) if args.version else image.tree_version(source)
    blobs = rel.build(source)
    files = rel.manifest(blobs)
    with _AdminLock(settings.state_path):
        new = _record(settings, version, blobs, files)
    for path in sorted(files):
        print(f"  {len(blobs[path]):>7,} B  {files[path][:12]}  {path}")
    total = sum(len(b) for b in blobs.values())
    if new:
        print(f"release {version}: {len(files)} files, {total:,} bytes, retained on rimba/v2/fw/<sha256>")
    else:
        print(f"release {version} was recorded before with these files: nothing changed (files published again)")
    return 0


def _record(settings, version: str, blobs: dict, files: dict) -> bool:
    """Publish the release's files, then record it; False when it was recorded before with these files."""
    from hardware.fwbroker import FirmwareBroker

    store = FirmwareStore.in_state_dir(settings.state_path)
    try:
        store.check_release(version, files)  # refused before anything of it is published
        port = FirmwareBroker(settings, load_fleet(settings.fleet), watch=False).start()
        try:  # the files first: a release is recorded only once the broker holds every file of it
            port.publish_files({files[p]: data for p, data in blobs.items()})
        finally:
            port.close()
        return store.add_release(version, blobs, files, time.time())
    finally:
        store.close()


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def select(fleet, sites, nodes_arg, has_key) -> list:
    """(The rollout's nodes in canary order, lines naming those left out): --nodes as given, else the nodes of
    the --site(s), else the whole fleet, sorted by id. A node kept on contract v1, or without an update key,
    cannot take a release: named with --nodes, that is an error; otherwise it is left out."""
    def updatable(node) -> str:
        if fleet.nodes[node].extra.get("wire", 2) != 2:
            return "speaks contract v1 (wire = 1 in the fleet file); updates need v2"
        if not has_key(node):
            return "has no update key (not provisioned: `rimba node add`)"
        return ""

    if nodes_arg and sites:
        raise ConfigError("--site or --nodes, not both")
    if nodes_arg:
        chosen = list(dict.fromkeys(n.strip() for n in nodes_arg.split(",") if n.strip()))
        for node in chosen:
            if node not in fleet.nodes:
                raise ConfigError(f"--nodes: {node} is not in the fleet file")
            if why := updatable(node):
                raise ConfigError(f"--nodes: {node} {why}")
        return chosen, []
    for site in sites or ():
        if site not in fleet.sites:
            raise ConfigError(f"--site {site}: not in the fleet file; sites are {', '.join(sorted(fleet.sites))}")
    candidates = sorted(n.id for n in fleet.nodes.values() if not sites or n.site in sites)
    left = {n: updatable(n) for n in candidates}
    chosen = [n for n in candidates if not left[n]]
    if not chosen:
        raise ConfigError("no node of the selection can take a release: " + "; ".join(f"{n} {w}" for n, w in left.items()))
    return chosen, [f"{n}: left out, it {why}" for n, why in left.items() if why]


def _timeout(fleet, nodes) -> float:
    """Three of the slowest selected node's send intervals."""
    return TIMEOUT_SENDS * max(fleet.nodes[n].cadence_s * fleet.nodes[n].send_every
                               for n in nodes)


def rollout_main(settings, args, clock=time.time) -> int:
    from hardware.fwbroker import FirmwareBroker
    from hardware.provision import Provisioner

    _quiet_adapter()
    version = image.check_version(args.version)
    fleet = load_fleet(settings.fleet)
    prov = Provisioner(settings)
    with _AdminLock(settings.state_path):
        store = FirmwareStore.in_state_dir(settings.state_path)
        port = None
        try:
            if store.release(version) is None:
                raise ConfigError(f"no release {version}; `rimba firmware release` records one")
            waves(1, args.canary, args.wave)  # the plan checked before anything else
            failure_limit(args.max_failures, 1)
            if args.timeout is not None and not args.timeout > 0:
                raise ConfigError(f"--timeout {args.timeout:g}: seconds, more than 0")
            chosen, left_out = select(fleet, args.site, args.nodes, lambda n: bool(prov.bundle_keys(n)))
            plan = Plan(args.canary, args.wave, str(args.max_failures),
                        float(args.timeout) if args.timeout else _timeout(fleet, chosen))
            port = FirmwareBroker(settings, fleet).start()
            engine = Rollouts(store, port, prov.update_key, {n.id: n.site for n in fleet.nodes.values()}, clock, _say)
            rid = engine.start(version, chosen, plan, notes=left_out)
            if rid is None:
                return 0
            if engine.run(rid, lambda deadline: port.wait_change(min(deadline - clock(), 30.0))) == "halted":
                reason = store.rollout(rid)["reason"]
                reverted = [t for t in store.targets(rid) if t["revert"] == "done"]
                none = sum(t["previous"] is None for t in reverted)
                print(f"rimba: rollout of {version} halted: {reason}; {_count(len(reverted), 'node')} not updated "
                      "offered the release they had before again"
                      + (f" ({none} had none: {version} withdrawn from their config)" if none else ""), file=sys.stderr)
                return 1
            return 0
        finally:
            if port is not None:
                port.close()
            store.close()


def status_rows(store, fleet, reports: dict) -> tuple:
    """(the current rollout or None, one row per node of the fleet): running version, fw_state, fw_failed
    (from `reports`, {node: newest report}, else the last one a rollout saw) and its place in the rollout."""
    seen = store.seen()
    r = store.unfinished() or store.latest()
    place = {}
    if r is not None:
        for t in store.targets(r["id"]):
            where = "canary" if t["wave"] == 0 else f"wave {t['wave']}"
            what = t["state"] + (f" ({t['detail']})" if t["detail"] else "")
            if t["revert"] == "done":
                before = json.loads(t["previous"])["version"] if t["previous"] else None
                what += f", {before} offered again" if before else f", {r['version']} withdrawn"
            place[t["node"]] = f"{where}: {what}"
    rows = []
    for node in sorted(fleet.nodes.values(), key=lambda n: n.id):
        st = reports.get(node.id) or {}
        report = st if st.get("fw") else seen.get(node.id) or {}
        rows.append({"node": node.id, "site": node.site, "state": st.get("state"), "fw": report.get("fw"),
                     "fw_state": report.get("fw_state"), "fw_failed": report.get("fw_failed"),
                     "rollout": place.get(node.id)})
    current = None if r is None else {"id": r["id"], "version": r["version"], "state": r["state"],
                                      "wave": r["wave"], "reason": r["reason"]}
    return current, rows


def stored_reports(settings) -> dict:
    """{node: state, fw, fw_state, fw_failed} from InfluxDB's `node_status`: the newest status that carries a
    firmware report (a Last Will carries none), and the newest state. Read as the viewer: a status query
    needs no admin login (on a locked broker the admin is one client id, which a running rollout holds)."""
    from hardware.provision import as_service
    from rimba.adapters.influx import Influx

    if not (settings.influx_user or settings.influx_token):
        settings = as_service(settings, "viewer")
    influx = Influx.from_settings(settings)
    out: dict = {}
    try:
        for row in influx.rows('SELECT "fw", "fw_state", "fw_failed" FROM "node_status" WHERE "fw" =~ /./ '
                               'GROUP BY "node" ORDER BY time DESC LIMIT 1'):
            out[row["node"]] = {k: row.get(k) for k in ("fw", "fw_state", "fw_failed")}
        for row in influx.rows('SELECT last("state") AS "state" FROM "node_status" GROUP BY "node"'):
            out.setdefault(row["node"], {})["state"] = row["state"]
    finally:
        influx.close()
    return out


def status_main(settings, args) -> int:
    fleet = load_fleet(settings.fleet)
    reports = stored_reports(settings)
    store = FirmwareStore.in_state_dir(settings.state_path)
    try:
        current, rows = status_rows(store, fleet, reports)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"rollout": current, "nodes": rows}, sort_keys=True))
        return 0
    if current is None:
        print("no rollout yet")
    else:
        print(f"rollout #{current['id']} of {current['version']}: {current['state']}"
              + (f" at wave {current['wave']}" if current["state"] in ("running", "halting") else "")
              + (f" ({current['reason']})" if current["reason"] else ""))
    for row in rows:
        fw = row["fw"] or "?"
        state = row["fw_state"] or "-"
        failed = f" failed {row['fw_failed']}" if row["fw_failed"] else ""
        print(f"{row['node']:20} {row['site']:14} {row['state'] or '-':9} {fw:10} {state:12}{failed:16} "
              f"{row['rollout'] or ''}".rstrip())
    return 0
