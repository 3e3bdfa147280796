"""The `rimba` command. Every subcommand builds its settings once, from defaults,
`--config`/RIMBA_CONFIG, the RIMBA_* environment and its flags.

A user error prints one line saying what to do (exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time

from rimba import settings as settings_mod
from rimba import wib
from rimba.fleet import REPLACEABLE
from rimba.errors import ConfigError, RimbaError

# No flag carries a secret (the command line shows in `ps` to every user): passwords and tokens come from
# the environment (the env files of `rimba stack lock`) or from a file named by a *_file flag.
# the settings a command line may set, by what they are for: each command takes the groups it uses
BASE = ("fleet", "state_dir", "log_level")
MQTT = ("mqtt_url", "mqtt_password_file", "mqtt_ca_file")
INFLUX = ("influx_url", "influx_db", "influx_token_file", "influx_user", "influx_password_file")
INGEST = ("mqtt_client_id", "mqtt_share_group", "spool_max_mb", "batch_lines", "flush_ms", "gap_timeout_s",
          "stats_every_s")
_SETTING_FLAGS = MQTT + INFLUX + INGEST + BASE


def _common(*groups: tuple) -> argparse.ArgumentParser:
    """A parent parser with --config and the setting flags of `groups` (BASE always)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", help="settings file (TOML); see `rimba config sample`")
    by_key = {o.key: o for o in settings_mod.OPTIONS}
    for key in [k for k in _SETTING_FLAGS if k in BASE or any(k in g for g in groups)]:
        p.add_argument("--" + key.replace("_", "-"), dest=key, default=None, help=f"{by_key[key].help} "
                       f"[{by_key[key].env}]")
    return p


def _settings(args) -> settings_mod.Settings:
    overrides = {k: getattr(args, k, None) for k in _SETTING_FLAGS}
    if overrides["mqtt_url"] and settings_mod.parse_mqtt_url(overrides["mqtt_url"], "--mqtt-url").password:
        raise ConfigError("--mqtt-url: no password on the command line (`ps` shows it to everyone); set "
                          "RIMBA_MQTT_PASSWORD in an env file, or --mqtt-password-file")
    s = settings_mod.build(args.config, overrides)
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return s


def cmd_stack(args) -> int:
    from rimba.dev.stack import Stack

    s = _settings(args)
    stack = Stack.from_settings(s)
    if args.action == "lock":
        from hardware.provision import lock
        from rimba.dev.stack import reload_broker

        files = lock(s, args.ingest_processes)
        running = stack.mosquitto.running() or stack.influxd.running()
        if running:
            stack.up()  # restarts both with authentication on
            reload_broker(s)  # a broker locked before keeps running: it rereads the users and the ACL
        print(f"locked: Mosquitto users (client id = user) and ACL, InfluxDB users (admin, writer, analyst, reader) in "
              f"{stack.auth_dir}; each service's login in {files[0].parent}/<service>.env "
              f"({', '.join(f.stem for f in files)}); "
              + ("the running stack restarted with authentication on" if running else
                 "`rimba stack up` starts the stack with authentication on"))
        return 0
    if args.action == "up":
        stack.up()
        print(f"stack up: mosquitto {stack.mqtt_url}, influxdb {stack.influx_url}, data in {stack.dir}")
    elif args.action == "down":
        stack.down()
        print("stack down")
    else:
        status = stack.status()
        for name, st in status.items():
            state = "running" if st["pid"] and st["answers"] else ("started, not answering" if st["pid"] else "stopped")
            print(f"{name:10} {state:24} {st['url']}" + (f"  pid {st['pid']}" if st["pid"] else ""))
        return 0 if all(st["pid"] and st["answers"] for st in status.values()) else 1
    return 0


def _run_until_signal(service) -> int:
    def on_signal(signum, frame):
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()


def cmd_ingest(args) -> int:
    from ingest.service import Ingest

    return _run_until_signal(Ingest(_settings(args)))


def cmd_deadletter(args) -> int:
    from ingest import replay
    from ingest.store import Store

    s = _settings(args)
    store = Store.in_state_dir(s.state_path)
    if args.action == "list":
        rows = store.deadletters(include_replayed=args.all, code=args.code, node=args.node, limit=args.limit)
        if args.json:
            for r in rows:
                print(json.dumps(replay.as_dict(r)))
        else:
            for r in rows:
                print(replay.as_line(r))
            print(f"{len(rows)} dead letter(s){' (replayed ones included)' if args.all else ''}", file=sys.stderr)
        return 0
    if args.action == "purge":
        if not (args.id or args.code or args.node or args.all):
            print("rimba deadletter purge: say which: --node ID, --code CODE, --id N, or --all", file=sys.stderr)
            return 2
        count, size = store.purge_deadletters(ids=args.id, code=args.code, node=args.node)
        print(f"dropped {count} dead letter(s), {size:,} bytes")
        return 0
    result = replay.replay(s, store, ids=args.id, code=args.code, node=args.node)
    print(f"replayed {result.replayed}, still refused {result.refused}, readings stored {result.stored}")
    return 0


def cmd_config(args) -> int:
    if args.action == "sample":
        print(settings_mod.sample())
        return 0
    s = _settings(args)
    for key in sorted(s.values):
        value = s.values[key]
        if ("password" in key or "token" in key) and key not in settings_mod.SECRET_FILES:
            value = "***" if value else ""
        print(f"{key} = {value!r}")
    return 0


def cmd_simulate(args) -> int:
    from rimba.dev import simulate

    s = _settings(args)
    return simulate.main(s, args)


def cmd_analyze(args) -> int:
    from analytics import analyze

    return analyze.main(_settings(args), args)


def cmd_alerts(args) -> int:
    from analytics.alerts import AlertStore

    s = _settings(args)
    path = s.state_path / "alerts.sqlite"
    if not path.exists():
        raise ConfigError(f"no alerts yet in {s.state_path}; `rimba analyze` evaluates the rules")
    store = AlertStore(path)
    try:
        if args.action == "ack":
            if not args.id:
                raise ConfigError("say which alert: rimba alerts ack ID (ids are in `rimba alerts list`)")
            inc = store.ack(args.id, args.by, int(time.time()))
            print(f"acknowledged {inc['id']} ({inc['state']}) for {args.by}: no more reminders; "
                  "its resolution will still be announced")
            return 0
        rows = store.incidents(None if args.all else "firing")
        for inc in rows:
            if args.json:
                print(json.dumps(inc))
            else:
                ack = f" acked by {inc['acked_by']}" if inc["acked_by"] else ""
                print(f"{inc['id']}  {inc['state']:8} {inc['severity']:8} {inc['site']:12} "
                      f"{inc['node'] or '(site)':14} {inc['message']}{ack}")
        print(f"{len(rows)} alert(s){'' if args.all else ' firing'}", file=sys.stderr)
        return 0
    finally:
        store.close()


def cmd_dashboards(args) -> int:
    from dashboards import build
    from rimba.adapters import grafana as publish
    from rimba.fleet import load_fleet

    s = _settings(args)
    if args.action == "build":
        files = build.write_bundle(s, load_fleet(s.fleet), args.out)
        print(f"wrote {len(files)} files to {args.out}: {sum(f.endswith('.json') for f in files) - 1} dashboards, "
              "data source and dashboard provisioning")
        return 0
    if not args.grafana:
        raise ConfigError("say where Grafana is: rimba dashboards publish --grafana http://host:3000")
    token = settings_mod.read_secret(args.token_file, "--token-file") if args.token_file else \
        os.environ.get("GRAFANA_TOKEN", "")
    result = publish.publish(args.out, args.grafana, token, publish.datasource_json(s))
    print(f"published to {args.grafana}: {result}")
    return 0


def cmd_report(args) -> int:
    from analytics import weekly
    from dashboards import report

    if not 1 <= args.days <= 62:
        raise ConfigError(f"--days {args.days}: choose 1 to 62")
    if args.lang not in report.WORDS:
        raise ConfigError(f"--lang {args.lang}: choose id (Bahasa Indonesia) or en (English)")
    r = report.make(weekly.gather(_settings(args), args.site, args.days, args.until), args.lang, args.out)
    print(f"wrote {r.pdf} (print) and {r.png} (share)")
    for line in r.highlights:
        print("  " + line)
    return 0


def cmd_hw(args) -> int:
    from hardware import cli as hw_cli
    from hardware import power, profiles
    from rimba import profiles as rimba_profiles

    if args.hw_action == "bom":
        p = rimba_profiles.load(args.profile)
        print(f"{p['name']}: {p['description']}\nboard: {p['board']}")
        print("\n".join(profiles.bom_lines(p)))
        print(f"wiring: hardware/wiring/{p['name']}.svg")
        return 0
    if args.board not in power.BOARDS:
        raise ConfigError(f"--board {args.board}: one of {', '.join(power.BOARDS)}, or give --sleep-ua")
    planned = rimba_profiles.load(args.profile)["power"]  # what the profile's node is built for
    for key in ("sample", "send", "battery"):
        if getattr(args, key) is None:
            setattr(args, key, planned[key])
    return hw_cli.main(args)


def cmd_firmware(args) -> int:
    if args.fw_action == "bundle":
        from hardware import bundle

        return bundle.main(_settings(args), args)
    from hardware import ota

    run = {"release": ota.release_main, "rollout": ota.rollout_main, "status": ota.status_main}[args.fw_action]
    return run(_settings(args), args)


NOT_RELOADED = ("no local stack's broker runs here: reload yours to use the new files (systemctl reload mosquitto, "
                "or docker compose kill -s HUP mosquitto), or `rimba stack up`")


def _reload_broker(settings) -> bool:
    """SIGHUP to the local stack's Mosquitto (a development or single-machine setup) if it runs; a server's
    broker is reloaded by its own service manager (NOT_RELOADED says how)."""
    from rimba.dev.stack import reload_broker

    return reload_broker(settings)


def cmd_node(args) -> int:
    from hardware.provision import Provisioner

    s = _settings(args)
    p = Provisioner(s)
    if args.node_action == "flash":
        from hardware import flash

        args.node = args.id
        return flash.main(s, args)
    if args.node_action == "list":
        for node_id, site, profile, cadence, creds in p.list():
            print(f"{node_id:20} {site:14} {profile:8} every {cadence:>5} s  "
                  f"{'credentials' if creds else 'no credentials (simulated or not provisioned)'}")
        return 0
    if args.node_action == "replaced":
        if args.undo and args.at is None:
            raise ConfigError("--undo takes back one record: give its time with --at (`rimba node list` does not show "
                              "them; the fleet file's pm_replaced does)")
        at = _replaced_at(args.at, time.time())
        times = p.replaced(args.id, args.part, at, undo=args.undo)
        when = f"{wib.date(at)} {wib.clock(at)}"
        if args.undo:
            print(f"taken back: {args.id}'s {args.part} sensor replaced {when}; the analytics judges it without that "
                  f"record from its next run ({len(times)} replacement{'' if len(times) == 1 else 's'} of it left)")
        else:
            print(f"recorded: {args.id}'s {args.part} sensor replaced {when}; the analytics judges the new sensor by "
                  f"its own readings from its next run ({len(times)} replacement{'s' if len(times) > 1 else ''} of it "
                  "in the fleet file)")
        return 0
    if args.node_action == "add":
        node_id, password = p.add(args.site, args.profile, args.id, args.cadence)
        reloaded = _reload_broker(s)
        print(f"added {node_id} ({args.profile} at {args.site})")
        print(f"  MQTT user {node_id}, password {password}  (shown once; it is in the node's config file)")
        print(f"  node config: {p.nodes_dir / (node_id + '.json')}; flash it with rimba firmware bundle --node {node_id}")
        print(f"  label (QR code of node and site): {p.nodes_dir / (node_id + '-label.svg')}")
        print("  broker: " + ("reloaded" if reloaded else NOT_RELOADED))
        return 0
    p.remove(args.id)
    reloaded = _reload_broker(s)
    print(f"removed {args.id}: out of the fleet file, the password file and the ACL; its config file and "
          "update key deleted; " + ("the broker has reloaded" if reloaded else NOT_RELOADED))
    return 0


def _replaced_at(at: str | None, now: float) -> int:
    """--at of `rimba node replaced`: an ISO 8601 date and time, WIB unless it gives its offset; now without one."""
    if at is None:
        return int(now)
    try:
        t = dt.datetime.fromisoformat(at)
    except ValueError:
        raise ConfigError(f"--at {at}: give a date and time, e.g. 2026-11-20T10:00 (WIB) or 2026-11-20T03:00Z") \
            from None
    t = t if t.tzinfo else t.replace(tzinfo=wib.TZ)
    if t.timestamp() > now + 300:
        raise ConfigError(f"--at {at}: that is in the future; give when the sensor was replaced")
    return int(t.timestamp())


def cmd_broker(args) -> int:
    from hardware import tls

    s = _settings(args)
    paths = tls.make(s.state_path / "broker", tuple(args.host or ("localhost", "127.0.0.1")))
    print(f"CA {paths['ca']} (give it to nodes and clients; RIMBA_MQTT_CA for Rimba's services)")
    print(f"broker certificate {paths['cert']}; `rimba stack up` listens for TLS on port {s.broker_tls_port}")
    return 0


def cmd_backup(args) -> int:
    from rimba.app import backup

    s = _settings(args)
    if args.every is None:
        path = backup.backup(s, args.to, args.influx_rpc, args.keep)
        print(f"backup {path}: the database {s.influx_db}, the fleet file, the broker's users, ACL and CA, the "
              "nodes' configs, the ingest store and the alerts")
        return 0
    from hardware.power import parse_duration

    try:
        every = parse_duration(args.every)
    except ValueError as err:
        raise ConfigError(f"--every: {err}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = logging.getLogger("rimba.app.backup")
    while not stop.is_set():
        try:
            log.info("backup %s written", backup.backup(s, args.to, args.influx_rpc, args.keep))
        except RimbaError as err:  # the next run may succeed: say so loudly, keep the schedule
            log.error("backup failed: %s", err)
        stop.wait(every)
    return 0


def cmd_restore(args) -> int:
    from rimba.app import backup

    done = backup.restore(_settings(args), args.source, args.influx_rpc)
    print(f"restored {done['files']} files from {args.source}: database {done['database']}, state in "
          f"{done['state']}, fleet file {done['fleet']}")
    return 0


def cmd_demo(args) -> int:
    from rimba.app import demo

    return demo.main(_settings(args), args)


def parser() -> argparse.ArgumentParser:
    from rimba import profiles as node_profiles

    # each command's --help shows the settings it uses
    with_base, with_mqtt, with_influx, with_both, with_all = (
        _common(), _common(MQTT), _common(INFLUX), _common(MQTT, INFLUX), _common(MQTT, INFLUX, INGEST))
    p = argparse.ArgumentParser(prog="rimba", description="Rimba environmental sensing platform")
    sub = p.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stack", parents=[with_both], help="start/stop the local Mosquitto and InfluxDB")
    st.add_argument("action", choices=("up", "down", "status", "lock"),
                    help="lock: broker users and ACL (no anonymous access), InfluxDB users, an env file per service")
    st.add_argument("--ingest-processes", type=int, choices=range(1, 65), metavar="N",
                    help="with lock: this many ingest processes, each its own user and env file (default: as before, "
                    "at least 1)")
    st.set_defaults(func=cmd_stack)

    bk = sub.add_parser("backup", parents=[with_both], help="back up the database, fleet, credentials, CA and stores")
    bk.add_argument("--to", required=True, help="folder for the backups (each in its own rimba-<time>Z folder)")
    bk.add_argument("--keep", type=int, default=0, help="delete all but the newest KEEP backups there (0: keep all)")
    bk.add_argument("--influx-rpc", help="InfluxDB's backup RPC, host:port (default: the local stack's, else "
                    "127.0.0.1:8088)")
    bk.add_argument("--every", help="keep running, one backup every this long (e.g. 1d, 6h): for compose")
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", parents=[with_both], help="restore a backup into a fresh state directory")
    rs.add_argument("source", help="a backup folder (rimba-<time>Z)")
    rs.add_argument("--influx-rpc", help="restore into the InfluxDB whose backup RPC is here (default: start the "
                    "local stack)")
    rs.set_defaults(func=cmd_restore)

    ing = sub.add_parser("ingest", parents=[with_all], help="run the ingest service")
    ing.set_defaults(func=cmd_ingest)

    dl = sub.add_parser("deadletter", parents=[with_base], help="list, replay or purge rejected messages")
    dl.add_argument("action", choices=("list", "replay", "purge"))
    dl.add_argument("--id", type=int, action="append", help="only this dead letter (repeatable)")
    dl.add_argument("--code", help="only this reason code, e.g. unknown-node")
    dl.add_argument("--node", help="only this node")
    dl.add_argument("--all", action="store_true", help="list: include replayed ones; purge: every dead letter")
    dl.add_argument("--json", action="store_true", help="list: one JSON object per line")
    dl.add_argument("--limit", type=int, default=1000)
    dl.set_defaults(func=cmd_deadletter)

    cf = sub.add_parser("config", parents=[with_all], help="show the settings in force, or a commented sample")
    cf.add_argument("action", choices=("show", "sample"))
    cf.set_defaults(func=cmd_config)

    sim = sub.add_parser("simulate", parents=[with_mqtt], help="publish realistic contract traffic for the fleet")
    # the simulator's options here: parsing any command loads no simulator (rimba.dev.simulate.main)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--backfill-hours", type=float, default=0, help="first send this much history (late readings)")
    sim.add_argument("--live-seconds", type=float, default=0, help="then run live this long (0: until Ctrl-C)")
    sim.add_argument("--speed", type=float, default=60.0, help="live: sample this many times faster than the cadence")
    sim.add_argument("--haze", action="store_true", help="a three-day haze episode in the backfilled period")
    sim.add_argument("--resend-prob", type=float, default=0.0, help="probability a batch is sent twice")
    sim.add_argument("--no-live", action="store_true", help="only the backfill")
    sim.add_argument("--wire", type=int, choices=(1, 2), default=1, help="the contract version the nodes speak")
    sim.add_argument("--until", type=int,
                     help="backfill up to this time, UNIX seconds (default: now; implies --no-live)")
    sim.add_argument("--outage", action="append", default=[], metavar="NODE:FROM_H:TO_H",
                     help="backfill: NODE cannot send from FROM_H to TO_H hours ago (repeatable)")
    sim.add_argument("--fault", action="append", default=[], metavar="NODE:METRIC:KIND:FROM_H:TO_H[:SIZE]",
                     help="backfill: a sensor fault (spike, stuck, drift, dropout, out-of-range, noise), hours ago")
    sim.set_defaults(func=cmd_simulate)

    an = sub.add_parser("analyze", parents=[with_both],
                        help="quality flags, anomalies, indices and alerts: every minute, or --once")
    an.add_argument("--once", action="store_true", help="one run over the window, then stop")
    an.add_argument("--hours", type=float, default=192.0, help="with --once: this many hours back from --until")
    an.add_argument("--until", type=int, help="end of the window, UNIX seconds (default: now; implies --once)")
    an.add_argument("--step", type=int, help="grid step, seconds (default: analyze_step_s)")
    an.set_defaults(func=cmd_analyze)

    al = sub.add_parser("alerts", parents=[with_base], help="list alerts, or acknowledge one")
    al.add_argument("action", choices=("list", "ack"))
    al.add_argument("id", nargs="?", help="with ack: the alert's id (from list)")
    al.add_argument("--by", default=os.environ.get("USER", "someone"), help="with ack: who acknowledges it")
    al.add_argument("--all", action="store_true", help="with list: resolved ones too")
    al.add_argument("--json", action="store_true", help="with list: one JSON object per line")
    al.set_defaults(func=cmd_alerts)

    db = sub.add_parser("dashboards", parents=[with_influx], help="build the Grafana bundle, or publish it")
    db.add_argument("action", choices=("build", "publish"))
    db.add_argument("--out", default="dashboards/bundle", help="where the bundle goes (build) or comes from (publish)")
    db.add_argument("--grafana", help="with publish: Grafana's base URL, e.g. http://localhost:3000")
    db.add_argument("--token-file", help="with publish: a file holding a service-account token (default: "
                    "$GRAFANA_TOKEN)")
    db.set_defaults(func=cmd_dashboards)

    rp = sub.add_parser("report", parents=[with_influx], help="a site's weekly report: PDF to print, PNG to share")
    rp.add_argument("--site", required=True, help="a site id from the fleet file, e.g. smp29")
    rp.add_argument("--days", type=int, default=7, help="whole days back from the last midnight (WIB)")
    rp.add_argument("--lang", default="id", help="id (Bahasa Indonesia) or en (English)")
    rp.add_argument("--until", type=int, help="end, UNIX seconds (default: now); the report stops at the midnight before")
    rp.add_argument("--out", default=".", help="folder for the PDF and PNG")
    rp.set_defaults(func=cmd_report)

    hw = sub.add_parser("hw", help="hardware planning: the power budget of a node profile")
    hw_sub = hw.add_subparsers(dest="hw_action", required=True)
    pw = hw_sub.add_parser("power", help="awake time, mAh per day and battery life")
    pw.add_argument("--profile", default="forest", choices=node_profiles.names())
    pw.add_argument("--sample", help="sampling interval, e.g. 10m (default: the profile's [power] sample)")
    pw.add_argument("--send", help="sending interval, e.g. 1h (default: the profile's [power] send)")
    pw.add_argument("--battery", help="e.g. 2x18650, 4xAA, 2x3400mAh (default: the profile's [power] battery)")
    pw.add_argument("--board", default="module", help="deep-sleep current by board: chip, module, devkitc-v4, "
                    "devkitc-clone")
    pw.add_argument("--sleep-ua", type=float, help="the board's deep-sleep current, µA (overrides --board)")
    pw.add_argument("--static-ip", action="store_true", help="Wi-Fi with a static IP (about half the energy)")
    pw.add_argument("--plot", help="write a plot of battery life against the sending interval (PNG)")
    pw.set_defaults(func=cmd_hw)
    bm = hw_sub.add_parser("bom", help="a profile's bill of materials, with approximate prices in rupiah")
    bm.add_argument("--profile", default="forest", choices=node_profiles.names())
    bm.set_defaults(func=cmd_hw)

    fw = sub.add_parser("firmware", parents=[with_base], help="the node firmware: a node's flash bundle, releases "
                        "over the air")
    fw_sub = fw.add_subparsers(dest="fw_action", required=True)
    fb = fw_sub.add_parser("bundle", parents=[with_mqtt], help="compiled firmware plus the node's config, and its size")
    fb.add_argument("--node", required=True, help="a node id from the fleet file")
    fb.add_argument("--out", default="build/firmware", help="folder for the bundle")
    fb.set_defaults(func=cmd_firmware)
    fr = fw_sub.add_parser("release", parents=[with_mqtt], help="build a release from the tree, publish its files, "
                           "record it")
    fr.add_argument("--version", help="the release's version (default: FW in firmware/lib/node.py, or in DIR)")
    fr.add_argument("--from", dest="source", metavar="DIR", help="a firmware tree (lib/ and main.py) instead of "
                    "firmware/")
    fo = fw_sub.add_parser("rollout", parents=[with_mqtt], help="offer a release to a canary, then the rest in waves; "
                           "halt when a wave fails")
    fo.add_argument("version", metavar="VERSION")
    fo.add_argument("--canary", type=int, required=True, metavar="N", help="nodes that get it first")
    fo.add_argument("--site", action="append", help="only this site's nodes (repeatable)")
    fo.add_argument("--nodes", help="only these nodes, comma-separated, canary first")
    fo.add_argument("--wave", type=int, default=10, metavar="K", help="nodes per wave after the canary")
    fo.add_argument("--max-failures", default="0", metavar="F",
                    help="failures a wave may have: a count (0, 1, ...) or a fraction (0.2, 20%%); more halts it")
    fo.add_argument("--timeout", type=float, metavar="S", help="seconds a node has to report the release good "
                    "(default: three of the slowest node's send intervals)")
    fs = fw_sub.add_parser("status", parents=[with_influx], help="each node's version and fw_state, and the rollout")
    fs.add_argument("--json", action="store_true", help="one JSON object")
    for parser_ in (fr, fo, fs):
        parser_.set_defaults(func=cmd_firmware)

    nd = sub.add_parser("node", help="provision nodes: the fleet file, broker credentials, the ACL")
    nd_sub = nd.add_subparsers(dest="node_action", required=True)
    na = nd_sub.add_parser("add", parents=[with_mqtt], help="register a node; prints its password once")
    na.add_argument("--site", required=True)
    na.add_argument("--profile", required=True, choices=node_profiles.names())
    na.add_argument("--id", help="the node id (default: the site and the next free number)")
    na.add_argument("--cadence", type=int, default=600, help="seconds between readings")
    nl = nd_sub.add_parser("list", parents=[with_base], help="the fleet's nodes and whether they have credentials")
    nx = nd_sub.add_parser("replaced", parents=[with_base], help="record that a node's sensor was replaced: the checks "
                           "that judge it by its own past (a dying PM fan's) start again from the new one")
    nx.add_argument("id")
    nx.add_argument("part", choices=REPLACEABLE, help="the sensor: pm (the particulate sensor)")
    nx.add_argument("--at", help="when, ISO 8601 (WIB unless it gives its offset), e.g. 2026-11-20T10:00; "
                    "default: now")
    nx.add_argument("--undo", action="store_true", help="take back the record at --at (one made by mistake)")
    nr = nd_sub.add_parser("remove", parents=[with_mqtt], help="take a node out of the fleet and the broker")
    nr.add_argument("id")
    nf = nd_sub.add_parser("flash", parents=[with_both], help="erase, write MicroPython, upload the firmware and "
                           "config, wait for the first reading")
    nf.add_argument("id")
    nf.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    nf.add_argument("--firmware", help="MicroPython for the ESP32 (.bin); without it the board keeps its MicroPython")
    nf.add_argument("--bundle", help="folder for the node's bundle (default: under the state dir)")
    nf.add_argument("--dry-run", action="store_true", help="print every step, run none")
    nf.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the first reading")
    nf.add_argument("--no-wait", action="store_true", help="do not wait for the first reading")
    for parser_ in (na, nl, nx, nr, nf):
        parser_.set_defaults(func=cmd_node)

    br = sub.add_parser("broker", help="the broker's TLS certificate")
    br_sub = br.add_subparsers(dest="broker_action", required=True)
    bt = br_sub.add_parser("tls", parents=[with_mqtt], help="make the project CA and the broker's certificate")
    bt.add_argument("--host", action="append", help="a name or address clients use (repeatable; default "
                    "localhost and 127.0.0.1)")
    bt.set_defaults(func=cmd_broker)

    demo = sub.add_parser("demo", parents=[with_base], help="the live demo: stack, simulated fleet, ingest, live view")
    demo.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    demo.add_argument("--speed", type=float, default=120.0,
                      help="live nodes sample this many times faster than their cadence")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except RimbaError as err:
        print(f"rimba: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
