"""`rimba backup` and `rimba restore` on the real servers, and why they exist: InfluxDB 1.x's WRITE
privilege includes DELETE and DROP SERIES (checked here against the real influxd)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from hardware import tls
from hardware.provision import Provisioner, as_service, lock_influx, service_env
from ingest.store import Store
from rimba.app import backup
from rimba import settings as settings_mod
from rimba.errors import ConfigError
from rimba.fleet import load_fleet
from rimba.adapters.influx import Influx
from rimba.adapters.mqtt import Mqtt
from rimba.settings import Broker
from rimba.dev.simulate import Publisher, Simulation
from rimba.dev.stack import Stack, free_port
from rimba.dev.harness import fleet_text
from rimba.dev.harness import ROOT, IngestProcess, env_for, wait_until


def rimba(*args, values):
    return subprocess.run([sys.executable, "-m", "rimba", *args], env=env_for(values), capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False)


def _values(tmp_path, name) -> dict:
    return {"state_dir": str(tmp_path / name), "fleet": str(tmp_path / f"{name}-fleet.toml"),
            "mqtt_url": f"mqtt://127.0.0.1:{free_port()}", "influx_url": f"http://127.0.0.1:{free_port()}",
            "broker_tls_port": free_port()}


def _viewer(s) -> Influx:
    return Influx.from_settings(as_service(s, "viewer"))


def _count(influx) -> int:
    return (influx.rows("SELECT count(seq) FROM reading") or [{"count": 0}])[0]["count"]


def test_influxdb_1x_write_includes_delete_and_drop_series(tmp_path):
    """The limit the backups answer: the ingest's write-only user erases readings. If a later InfluxDB
    refuses this, the README's "Security and backups" must say so."""
    import urllib.error

    s = settings_mod.build(overrides={"state_dir": str(tmp_path / "state")}, env={})
    users = lock_influx(s)
    stack = Stack(s.state_path, free_port(), free_port())
    stack.start_influx()
    try:
        writer = Influx(stack.influx_url, "rimba", user=users["writer"][0], password=users["writer"][1])
        reader = Influx(stack.influx_url, "rimba", user=users["reader"][0], password=users["reader"][1])
        writer.write(b"reading,site=smp29,node=n1 air_temp_c=27.5,seq=1i 1764300000000\n"
                     b"reading,site=smp29,node=n2 air_temp_c=28.5,seq=1i 1764300000000\n")
        assert _count(reader) == 2
        assert "error" not in json.dumps(stack.query("DROP SERIES FROM reading WHERE node = 'n1'", users["writer"], "rimba"))
        assert "error" not in json.dumps(stack.query("DELETE FROM reading WHERE node = 'n2'", users["writer"], "rimba"))
        assert _count(reader) == 0  # both gone, by the "write-only" user
        with pytest.raises(urllib.error.HTTPError) as refused:
            stack.query("DROP MEASUREMENT reading", users["writer"], "rimba")
        assert refused.value.code == 403  # what needs an admin: dropping measurements, databases, users
    finally:
        stack.stop_influx()


def test_backup_then_restore_on_a_fresh_state_directory_gives_back_everything(tmp_path):
    """A locked stack with TLS, a provisioned node, readings stored by ingest and a dead letter; `rimba backup`
    while ingest runs; everything stopped; `rimba restore` into another state directory on other ports:
    the same readings, fleet file, node password, service logins, CA, seq marks and dead letters, and the
    restored platform goes on storing."""
    va, vc = _values(tmp_path, "a"), _values(tmp_path, "c")
    (tmp_path / "a-fleet.toml").write_text(fleet_text({"bk-01": ("smp29", "forest"), "bk-02": ("bansir-laut", "river")}))
    a = settings_mod.build(overrides=va, env={})
    assert rimba("stack", "lock", values=va).returncode == 0
    tls.make(a.state_path / "broker")
    node, node_pw = Provisioner(a).add("smp29", "forest", "bk-03")
    stack_a = Stack.from_settings(a)
    stack_a.up()
    ingest = None
    try:
        ingest = IngestProcess({**env_for(va), **service_env(a, "ingest")}, tmp_path / "ingest-a.log").start()
        ingest.wait_subscribed()
        sim = Simulation(load_fleet(a.fleet), seed=7, nodes={"bk-01", "bk-02"}, send_every=3)
        now = time.time()
        pub = Publisher(as_service(a, "sim"), client_id="rimba-sim")
        for _t, topic, payload in sim.history(now - 6 * 3600, now - 3 * 3600):
            pub.publish(topic, payload)
        pub.publish("rimba/v1/smp29/nobody-01/up", b'{"v":1,"epoch":1,"seq":1,"now":1,"r":[]}')  # a dead letter
        pub.close()
        viewer_a = _viewer(a)
        assert sim.expected() >= 30
        wait_until(lambda: _count(viewer_a) == sim.expected(), 60, "the readings stored")
        store_a = Store.in_state_dir(a.state_path)
        wait_until(lambda: store_a.deadletters(include_replayed=True), 30, "the dead letter")
        r = rimba("backup", "--to", str(tmp_path / "backups"), values=va)  # ingest still running
        assert r.returncode == 0, r.stderr
        readings = sorted(map(json.dumps, viewer_a.rows("SELECT * FROM reading")))
        ingest.stop()
        ingest = None
        dead = store_a.deadletters(include_replayed=True)
        acks = {n: store_a.current_ack(n) for n in ("bk-01", "bk-02")}
        assert all(acks.values())
        store_a.close()
        viewer_a.close()
    finally:
        if ingest is not None:
            ingest.stop()
        stack_a.down()
    made = backup.complete_backups(tmp_path / "backups")
    assert len(made) == 1 and not list((tmp_path / "backups").glob("*.partial"))
    modes = {oct(p.stat().st_mode & 0o777) for p in made[0].rglob("*")}
    assert modes == {"0o600", "0o700"}, modes
    refused = rimba("restore", str(made[0]), values=va)  # not a fresh state directory
    assert refused.returncode == 2 and "fresh state directory" in refused.stderr and refused.stderr.count("\n") == 1

    r = rimba("restore", str(made[0]), values=vc)
    c = settings_mod.build(overrides=vc, env={})
    stack_c = Stack.from_settings(c)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "c-fleet.toml").read_bytes() == (tmp_path / "a-fleet.toml").read_bytes()
        viewer_c = _viewer(c)  # the restored reader's password, with its privilege granted again
        assert sorted(map(json.dumps, viewer_c.rows("SELECT * FROM reading"))) == readings
        for user, password, port, ca in ((node, node_pw, c.broker.port, ""),  # the node's password,
                                         (node, node_pw, c.broker_tls_port, str(c.state_path / "broker" / "ca.crt"))):
            Mqtt(Broker(bool(ca), "localhost", port, user, password), user, ca_file=ca, v5=False,
                 persistent=False).start(10).stop()  # ... over plain MQTT and over TLS with the restored CA
        assert (c.state_path / "broker" / "ca.key").read_bytes() == (a.state_path / "broker" / "ca.key").read_bytes()
        store_c = Store.in_state_dir(c.state_path)
        assert store_c.deadletters(include_replayed=True) == dead
        assert {n: store_c.current_ack(n) for n in acks} == acks
        store_c.close()
        # and it runs: the restored ingest login writes, the restored simulator login publishes
        ingest = IngestProcess({**env_for(vc), **service_env(c, "ingest")}, tmp_path / "ingest-c.log").start()
        ingest.wait_subscribed()
        pub = Publisher(as_service(c, "sim"), client_id="rimba-sim")
        for _t, topic, payload in sim.history(now - 3 * 3600, now - 60):
            pub.publish(topic, payload)
        pub.close()
        wait_until(lambda: _count(viewer_c) == sim.expected(), 60, "the new readings stored after the restore")
        ingest.stop()
        viewer_c.close()
    finally:
        stack_c.down()


def test_a_damaged_backup_is_refused_and_keep_prunes_the_oldest(tmp_path):
    root = tmp_path / "backups"
    for i, name in enumerate(("rimba-20261101T000000Z", "rimba-20261102T000000Z", "rimba-20261103T000000Z")):
        (root / name).mkdir(parents=True)
        (root / name / "fleet.toml").write_text(f"# {i}\n")
        (root / name / "manifest.json").write_text(json.dumps({"influx_db": "rimba", "files": {
            "fleet.toml": {"bytes": 4, "sha256": backup._sha256(root / name / "fleet.toml")}}}))
    (root / "rimba-20261104T000000Z.partial").mkdir()
    assert [p.name for p in backup.complete_backups(root)] == [f"rimba-2026110{d}T000000Z" for d in (1, 2, 3)]
    assert backup.verify(root / "rimba-20261101T000000Z")["influx_db"] == "rimba"
    (root / "rimba-20261102T000000Z" / "fleet.toml").write_text("# 9\n")  # same size, other bytes
    with pytest.raises(ConfigError, match="fleet.toml is missing or does not match"):
        backup.verify(root / "rimba-20261102T000000Z")
    with pytest.raises(ConfigError, match="not a complete Rimba backup"):
        backup.verify(root / "rimba-20261104T000000Z.partial")
    backup.prune(root, keep=2)
    assert [p.name for p in backup.complete_backups(root)] == ["rimba-20261102T000000Z", "rimba-20261103T000000Z"]
    assert (root / "rimba-20261104T000000Z.partial").exists()  # a backup being written is not touched
