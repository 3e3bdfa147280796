"""Provisioning and the locked-down broker, with the real Mosquitto using the generated password file and
ACL: wrong passwords and anonymous clients refused, a node cannot speak for another or read its config;
add a node, its readings are stored; remove it, it is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from hardware.provision import Provisioner, hash_password
from rimba import settings as settings_mod
from rimba.errors import StackError
from rimba.fleet import load_fleet
from rimba.adapters.mqtt import Mqtt
from rimba.settings import Broker
from rimba.dev.stack import Stack, free_port
from rimba.dev.harness import fleet_text
from rimba.dev.harness import ROOT, env_for, wait_until


def test_the_password_hash_is_mosquittos():
    """mosquitto_passwd's own hash of the same password and salt (PBKDF2-SHA512, 101 iterations)."""
    import base64
    import shutil

    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        pytest.skip("mosquitto_passwd is not installed")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/p"
        subprocess.run([exe, "-c", "-b", path, "someone", "s3cret"], check=True, capture_output=True, timeout=30)
        theirs = open(path).read().strip().split(":", 1)[1]
    _, seven, iterations, salt, _digest = theirs.split("$")
    assert seven == "7" and hash_password("s3cret", base64.b64decode(salt), int(iterations)) == theirs


@pytest.fixture
def locked(tmp_path):
    """A fleet, two provisioned nodes and a Mosquitto that knows only them and the services."""
    port = free_port()
    (tmp_path / "fleet.toml").write_text(fleet_text({}))
    values = {"mqtt_url": f"mqtt://127.0.0.1:{port}", "state_dir": str(tmp_path / "state"),
              "fleet": str(tmp_path / "fleet.toml"), "influx_url": f"http://127.0.0.1:{free_port()}"}
    s = settings_mod.build(overrides=values, env={})
    r = subprocess.run([sys.executable, "-m", "rimba", "node", "add", "--site", "smp29", "--profile", "forest"],
                       env=env_for(values), capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    a = r.stdout.split("added ")[1].split()[0]
    a_pw = r.stdout.split("password ")[1].split()[0]
    p = Provisioner(s)
    b, b_pw = p.add("smp29", "forest")
    stack = Stack(s.state_path, port, free_port())
    stack.start_mosquitto()
    yield s, p, stack, (a, a_pw), (b, b_pw), r.stdout
    stack.stop_mosquitto()


def client(s, user, password, cid=None, subscriptions=(), on_message=None, wait=10.0):
    broker = Broker(False, s.broker.host, s.broker.port, user, password)
    return Mqtt(broker, cid or f"{user}-{time.monotonic_ns()}", v5=False, persistent=False,
                subscriptions=subscriptions, on_message=on_message).start(wait)


def test_node_add_writes_the_fleet_the_password_file_the_acl_and_the_node_config(locked):
    s, p, _stack, (a, a_pw), (b, _), out = locked
    assert a == "smp29-01" and b == "smp29-02" and out.count(a_pw) == 1
    fleet = load_fleet(s.fleet)
    assert fleet.nodes[a].profile == "forest" and fleet.nodes[a].site == "smp29"
    passwd = (p.dir / "passwd").read_text()
    assert f"{a}:$7$101$" in passwd and a_pw not in passwd
    acl = (p.dir / "acl").read_text()
    assert f"user {a}\ntopic write rimba/v1/smp29/{a}/up\ntopic write rimba/v1/smp29/{a}/status\n" \
           f"topic read rimba/v1/smp29/{a}/ack\ntopic read rimba/v1/smp29/{a}/config" in acl
    cfg = json.loads((p.nodes_dir / f"{a}.json").read_text())
    assert cfg["mqtt_user"] == a and cfg["mqtt_password"] == a_pw and cfg["node"] == a
    assert oct((p.nodes_dir / f"{a}.json").stat().st_mode)[-3:] == "600"
    assert a_pw not in (ROOT / "fleet.toml").read_text() and a_pw not in open(s.fleet).read()
    label = (p.nodes_dir / f"{a}-label.svg").read_text()
    assert "<svg" in label and a in label and "smp29" in label and a_pw not in label
    import xml.etree.ElementTree as ET

    ET.fromstring(label)  # well-formed
    import segno

    assert segno.make(f'{{"node":"{a}","site":"smp29"}}', error="m").svg_inline(scale=4, border=2) in label


def test_the_broker_refuses_strangers_and_keeps_nodes_to_themselves(locked):
    s, p, _stack, (a, a_pw), (b, b_pw), _ = locked
    with pytest.raises(StackError, match="refused|no answer|Not authorized|Bad user"):
        client(s, a, "wrong-password", wait=5)
    with pytest.raises(StackError):
        client(s, None, None, wait=5)  # anonymous
    seen = []
    ingest = client(s, "rimba-ingest-1", p.service_password("rimba-ingest-1"),
                    subscriptions=("rimba/v1/+/+/up", "rimba/v2/+/+/up"),
                    on_message=lambda topic, payload, *_: seen.append(topic))
    wait_until(ingest.subscribed.is_set, 10, "the ingest user's subscription")
    node_a = client(s, a, a_pw)
    # A speaks for itself: delivered; A speaks as B: dropped by the broker
    node_a.wait_published([node_a.publish(f"rimba/v1/smp29/{a}/up", b"{}", qos=1)], 10)
    node_a.wait_published([node_a.publish(f"rimba/v1/smp29/{b}/up", b"{}", qos=1)], 10)
    node_a.wait_published([node_a.publish(f"rimba/v2/smp29/{b}/up", b"{}", qos=1)], 10)
    node_a.wait_published([node_a.publish(f"rimba/v2/smp29/{a}/up", b"{}", qos=1)], 10)  # both versions: its own
    wait_until(lambda: f"rimba/v1/smp29/{a}/up" in seen and f"rimba/v2/smp29/{a}/up" in seen, 10, "A's own messages")
    node_a.stop()  # one connection per user: the broker makes the client id the user name
    admin = client(s, "rimba-admin", p.service_password("rimba-admin"))
    admin.wait_published([admin.publish(f"rimba/v1/smp29/{b}/config", b'{"v":1,"rev":2}', qos=1, retain=True),
                          admin.publish(f"rimba/v1/smp29/{a}/config", b'{"v":1,"rev":3}', qos=1, retain=True)], 10)
    got = []
    spy = client(s, a, a_pw, subscriptions=(f"rimba/v1/smp29/{b}/config", f"rimba/v1/smp29/{a}/config"),
                 on_message=lambda topic, payload, *_: got.append(topic))
    wait_until(lambda: f"rimba/v1/smp29/{a}/config" in got, 10, "A's own retained config")
    spy.stop()
    node_a = client(s, a, a_pw)
    node_a.wait_published([node_a.publish(f"rimba/v1/smp29/{a}/up", b"{}", qos=1)], 10)
    wait_until(lambda: seen.count(f"rimba/v1/smp29/{a}/up") == 2, 10, "A's second message")
    assert f"rimba/v1/smp29/{b}/up" not in seen and f"rimba/v2/smp29/{b}/up" not in seen  # never delivered
    assert f"rimba/v1/smp29/{b}/config" not in got  # never readable by A
    for c in (ingest, node_a, admin):
        c.stop()


def test_provisioning_round_trip_with_the_simulator_and_ingest(locked, tmp_path):
    """A node added gets its readings stored through the locked broker; removed, it is refused."""
    from rimba.adapters.influx import Influx
    from rimba.dev.simulate import Publisher, Simulation
    from rimba.dev.stack import influx_answers
    from rimba.dev.harness import IngestProcess

    s, p, stack, (a, a_pw), _b, _ = locked
    stack.start_influx()
    try:
        assert influx_answers(stack.influx_url)
        ingest_values = {"mqtt_url": f"mqtt://rimba-ingest-1:{p.service_password('rimba-ingest-1')}@127.0.0.1:"
                                     f"{s.broker.port}", "influx_url": stack.influx_url, "influx_db": "rimba",
                         "state_dir": str(tmp_path / "ingest-state"), "fleet": s.fleet, "mqtt_client_id": "ingest-lock"}
        ingest = IngestProcess(env_for(ingest_values), tmp_path / "ingest.log").start().wait_subscribed()
        node_settings = s.with_(mqtt_url=f"mqtt://{a}:{a_pw}@127.0.0.1:{s.broker.port}")
        sim = Simulation(load_fleet(s.fleet), seed=4, nodes={a}, send_every=3)
        pub = Publisher(node_settings, client_id=a)
        for _t, topic, payload in sim.history(time.time() - 3 * 3600, time.time() - 60):
            pub.publish(topic, payload)
        pub.close()
        influx = Influx(stack.influx_url, "rimba")
        wait_until(lambda: (influx.rows("SELECT count(seq) FROM reading") or [{"count": 0}])[0]["count"]
                   >= sim.expected(), 30, "the node's readings stored")
        r = subprocess.run([sys.executable, "-m", "rimba", "node", "remove", a], env=env_for(
            {"state_dir": str(s.state_path), "fleet": s.fleet, "mqtt_url": s.values["mqtt_url"]}),
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
        assert r.returncode == 0 and "the broker has reloaded" in r.stdout, r.stdout + r.stderr
        assert a not in load_fleet(s.fleet).nodes and f"{a}:" not in (p.dir / "passwd").read_text()

        def refused():
            try:
                client(s, a, a_pw, wait=3).stop()
                return False
            except StackError:
                return True
        wait_until(refused, 20, "the removed node to be refused")
        ingest.stop()
        influx.close()
    finally:
        stack.stop_influx()


def test_tls_with_the_generated_ca_works_and_another_ca_is_refused(tmp_path):
    from hardware import tls

    state = tmp_path / "state"
    (tmp_path / "fleet.toml").write_text(fleet_text({}))
    values = {"state_dir": str(state), "fleet": str(tmp_path / "fleet.toml")}
    s = settings_mod.build(overrides=values, env={})
    p = Provisioner(s)
    p.write_files()  # the services' users: no anonymous access
    paths = tls.make(state / "broker")
    other = tls.make(tmp_path / "other", name="Someone else")
    port, tls_port = free_port(), free_port()
    stack = Stack(state, port, free_port(), tls_port=tls_port)
    stack.start_mosquitto()
    try:
        pw = p.service_password("rimba-admin")
        good = Mqtt(Broker(True, "localhost", tls_port, "rimba-admin", pw), "tls-good", ca_file=str(paths["ca"]),
                    v5=False, persistent=False).start(10)
        good.wait_published([good.publish("rimba/v1/smp29/x/config", b"{}", qos=1)], 10)
        good.stop()
        with pytest.raises(StackError):
            Mqtt(Broker(True, "localhost", tls_port, "rimba-admin", pw), "tls-bad", ca_file=str(other["ca"]),
                 v5=False, persistent=False).start(5)
        # the TLS listener too makes the client id the user name: no takeover of the ingest through it
        ingest = _Watched(s_at(port), "rimba-ingest-1", p.service_password("rimba-ingest-1"), "rimba-ingest-1",
                          clean=False)
        hostile = _Watched(s_at(port), "rimba-admin", pw, "rimba-ingest-1", ca=str(paths["ca"]), port=tls_port)
        hostile.round_trip("rimba/v1/smp29/x/config")
        ingest.round_trip("rimba/v1/smp29/x/ack")
        assert ingest.kicked == 0
        hostile.close()
        ingest.close()
        assert oct(paths["key"].stat().st_mode)[-3:] == "600"
    finally:
        stack.stop_mosquitto()


def test_influxdb_with_authentication_and_separate_writer_and_reader(tmp_path):
    from hardware.provision import lock_influx
    from rimba.errors import InfluxAuthError, InfluxRejected
    from rimba.adapters.influx import Influx

    s = settings_mod.build(overrides={"state_dir": str(tmp_path / "state")}, env={})
    users = lock_influx(s)
    stack = Stack(s.state_path, free_port(), free_port())
    stack.start_influx()
    try:
        with pytest.raises(InfluxAuthError):
            Influx(stack.influx_url, "rimba").rows("SELECT * FROM reading")  # nobody anonymous
        writer = Influx(stack.influx_url, "rimba", user=users["writer"][0], password=users["writer"][1])
        writer.write(b"reading,site=smp29,node=smp29-01 air_temp_c=27.5,seq=1i 1764300000000\n")
        with pytest.raises((InfluxAuthError, InfluxRejected)):
            writer.rows("SELECT * FROM reading")  # a writer cannot read
        reader = Influx(stack.influx_url, "rimba", user=users["reader"][0], password=users["reader"][1])
        assert reader.rows("SELECT air_temp_c FROM reading")[0]["air_temp_c"] == 27.5
        with pytest.raises((InfluxAuthError, InfluxRejected)):
            reader.write(b"reading,site=smp29,node=smp29-01 air_temp_c=99.0,seq=2i 1764300600000\n")
        stack.stop_influx()
        stack.start_influx()  # a restart finds its users
        assert reader.rows("SELECT count(air_temp_c) FROM reading")[0]["count"] == 1
    finally:
        stack.stop_influx()


def _env_file(path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_stack_lock_restarts_an_open_stack_locked_and_gives_every_service_its_own_login(tmp_path):
    """`rimba stack lock` on a running open stack: afterwards nobody gets in anonymously, and each service's
    env file lets it do its own job and nothing else."""
    from rimba.errors import InfluxAuthError, InfluxRejected
    from rimba.adapters.influx import Influx

    (tmp_path / "fleet.toml").write_text(fleet_text({}))
    values = {"mqtt_url": f"mqtt://127.0.0.1:{free_port()}", "influx_url": f"http://127.0.0.1:{free_port()}",
              "state_dir": str(tmp_path / "state"), "fleet": str(tmp_path / "fleet.toml")}
    s = settings_mod.build(overrides=values, env={})
    stack = Stack.from_settings(s)
    stack.up()
    try:
        client(s, None, None).stop()  # open before
        r = subprocess.run([sys.executable, "-m", "rimba", "stack", "lock"], env=env_for(values),
                           capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert r.returncode == 0 and "restarted with authentication on" in r.stdout, r.stdout + r.stderr
        with pytest.raises(StackError, match="anonymously; a locked broker wants"):
            client(s, None, None, wait=5)
        with pytest.raises(InfluxAuthError):
            Influx(stack.influx_url, "rimba").rows("SHOW MEASUREMENTS")
        env_dir = s.state_path / "broker" / "env"
        logins = {p.stem: _env_file(p) for p in env_dir.glob("*.env")}
        assert set(logins) == {"ingest-1", "analyze", "sim", "admin", "viewer", "influxdb"}
        assert all(oct(p.stat().st_mode)[-3:] == "600" for p in env_dir.glob("*.env"))
        as_ = {name: settings_mod.build(overrides=values, env=env) for name, env in logins.items() if name != "influxdb"}
        for name in ("ingest-1", "analyze", "sim", "admin"):
            b = as_[name].broker
            assert b.user == f"rimba-{name}"
            client(as_[name], b.user, b.password).stop()
        line = b"reading,site=smp29,node=smp29-01 air_temp_c=27.5,seq=1i 1764300000000\n"
        Influx.from_settings(as_["ingest-1"]).write(line)
        with pytest.raises((InfluxAuthError, InfluxRejected)):
            Influx.from_settings(as_["ingest-1"]).rows("SELECT * FROM reading")  # ingest only writes
        analyst = Influx.from_settings(as_["analyze"])
        assert analyst.rows("SELECT air_temp_c FROM reading")[0]["air_temp_c"] == 27.5
        analyst.write(b"qc,site=smp29,node=smp29-01,metric=air_temp_c,check=spike flag=1i 1764300000000\n")
        viewer = Influx.from_settings(as_["viewer"])
        assert viewer.rows("SELECT count(flag) FROM qc")[0]["count"] == 1
        with pytest.raises((InfluxAuthError, InfluxRejected)):
            viewer.write(line)
        image = logins["influxdb"]  # the same users for the InfluxDB image of deploy/compose.yaml
        assert image["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
        assert image["INFLUXDB_WRITE_USER"] == logins["ingest-1"]["RIMBA_INFLUX_USER"]
        assert image["INFLUXDB_USER_PASSWORD"] == logins["analyze"]["RIMBA_INFLUX_PASSWORD"]
        assert image["INFLUXDB_READ_USER"] == logins["viewer"]["RIMBA_INFLUX_USER"]
        r = subprocess.run([sys.executable, "-m", "rimba", "stack", "lock"], env=env_for(values),
                           capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert r.returncode == 0 and {p.stem: _env_file(p) for p in env_dir.glob("*.env")} == logins  # kept
    finally:
        stack.down()


def s_at(port: int):
    """Where a _Watched client connects: the loopback broker on `port`."""
    from types import SimpleNamespace

    return SimpleNamespace(broker=SimpleNamespace(host="127.0.0.1", port=port))


class _Watched:
    """A raw paho client that counts how often the broker disconnected it (the Mqtt adapter reconnects
    silently, which would hide a takeover)."""

    def __init__(self, s, user, password, cid, clean=True, subscriptions=(), ca="", port=None):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.kicked = 0
        self.session_present = None
        self.received = []
        self.subscribed = False
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean,
                             protocol=paho.MQTTv311)
        self.c.username_pw_set(user, password)
        if ca:
            self.c.tls_set(ca_certs=ca)

        def on_connect(client, userdata, flags, rc, props):
            self.session_present = None if rc.is_failure else flags.session_present
            for topic in subscriptions:
                client.subscribe(topic, qos=1)

        def on_subscribe(*_):
            self.subscribed = True

        def on_disconnect(client, userdata, flags, rc, props):
            self.kicked += not self.closing

        self.closing = False
        self.c.on_connect, self.c.on_subscribe, self.c.on_disconnect = on_connect, on_subscribe, on_disconnect
        self.c.on_message = lambda client, userdata, msg: self.received.append(msg.payload)
        self.c.connect("localhost" if ca else s.broker.host, port or s.broker.port)
        self.c.loop_start()
        wait_until(lambda: self.session_present is not None, 10, f"{user} to connect as {cid}")

    def round_trip(self, topic):
        """Publish once at QoS 1 and wait for the PUBACK: the broker has handled everything before it."""
        info = self.c.publish(topic, b"{}", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self):
        self.closing = True
        self.c.disconnect()
        self.c.loop_stop()


def test_a_node_asking_for_another_clients_id_takes_over_nothing(locked):
    """The locked broker forces every client id to the user's name (Mosquitto 2's
    `use_username_as_clientid`). A node that connects with the ingest's client id, or with another node's,
    with a clean session (which would otherwise wipe that session and its queue) is let in under its own
    name: the ingest's persistent session keeps its queued QoS 1 messages and the other node stays on."""
    s, p, _stack, (a, a_pw), (b, b_pw), _ = locked
    ingest_user = "rimba-ingest-1"
    ingest_pw = p.service_password(ingest_user)
    share = "$share/rimba-ingest/rimba/v1/+/+/up"
    ingest = _Watched(s, ingest_user, ingest_pw, ingest_user, clean=False, subscriptions=(share,))
    wait_until(lambda: ingest.subscribed, 10, "the ingest's shared subscription")
    ingest.close()  # away: the broker queues for its session from now on
    node_a = _Watched(s, a, a_pw, a)
    for i in range(3):
        node_a.c.publish(f"rimba/v1/smp29/{a}/up", b'{"queued":%d}' % i, qos=1).wait_for_publish(10)
    node_a.close()
    node_b = _Watched(s, b, b_pw, b)
    for cid in (ingest_user, b):  # the takeovers: clean sessions under someone else's id
        hostile = _Watched(s, a, a_pw, cid, clean=True)
        hostile.round_trip(f"rimba/v1/smp29/{a}/up")
        hostile.close()
    node_b.round_trip(f"rimba/v1/smp29/{b}/up")
    assert node_b.kicked == 0
    back = _Watched(s, ingest_user, ingest_pw, "any-id-at-all", clean=False)
    assert back.session_present  # its session survived, under its own name
    wait_until(lambda: len(back.received) >= 5, 10, "the queued messages")
    assert back.received[:3] == [b'{"queued":%d}' % i for i in range(3)]
    assert back.kicked == 0
    for c in (back, node_b):
        c.close()


def test_two_ingest_processes_from_the_lock_each_their_own_user_and_a_hostile_node(locked, tmp_path):
    """`rimba stack lock --ingest-processes 2`: two users, two env files, one shared subscription. The two
    `rimba ingest` processes never disconnect each other; a node connecting with their client ids while
    they run, and again while they are away (clean sessions), changes nothing: every reading is stored once."""
    from rimba.adapters.influx import Influx
    from rimba.dev.simulate import Publisher, Simulation
    from rimba.dev.harness import IngestProcess

    s, p, _stack, (a, a_pw), _b, _ = locked
    r = subprocess.run([sys.executable, "-m", "rimba", "stack", "lock", "--ingest-processes", "2"],
                       env=env_for(s.values), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0 and "restarted with authentication on" in r.stdout, r.stdout + r.stderr
    stack = Stack.from_settings(s)  # the lock restarted the running broker, and started InfluxDB, with these
    env_dir = s.state_path / "broker" / "env"
    files = {f.stem: _env_file(f) for f in env_dir.glob("ingest*.env")}
    assert set(files) == {"ingest-1", "ingest-2"}
    assert [f["RIMBA_MQTT_USER"] for f in files.values()] == [f["RIMBA_MQTT_CLIENT_ID"] for f in files.values()]
    assert {f["RIMBA_MQTT_SHARE"] for f in files.values()} == {"rimba-ingest"}
    assert "user rimba-ingest-2\ntopic read rimba/v1/+/+/up" in (p.dir / "acl").read_text()
    try:
        base = {**s.values, "influx_url": stack.influx_url, "stats_every_s": 1, "flush_ms": 20}

        def start(name):
            return IngestProcess({**env_for(base), **files[name]}, tmp_path / f"{name}.log").start()

        ingests = [start(name).wait_subscribed() for name in sorted(files)]
        sim = Simulation(load_fleet(s.fleet), seed=11, nodes={a}, send_every=3)
        events = sim.history(time.time() - 4 * 3600, time.time() - 60)
        node_settings = s.with_(mqtt_user=a, mqtt_password=a_pw)

        def send(part):
            pub = Publisher(node_settings, client_id=a)
            for _t, topic, payload in part:
                pub.publish(topic, payload)
            pub.close()

        def impostors():
            for user in sorted(files):
                hostile = _Watched(s, a, a_pw, f"rimba-{user}", clean=True)
                hostile.round_trip(f"rimba/v1/smp29/{a}/status")
                hostile.close()

        half = len(events) // 2
        send(events[:half])
        impostors()  # while the ingests run
        for ing in ingests:
            assert ing.stop() == 0
        send(events[half:])  # queued for the ingests' sessions
        impostors()  # while they are away
        ingests = [start(name).wait_subscribed() for name in sorted(files)]
        viewer = _env_file(env_dir / "viewer.env")
        influx = Influx(stack.influx_url, "rimba", user=viewer["RIMBA_INFLUX_USER"],
                        password=viewer["RIMBA_INFLUX_PASSWORD"])
        wait_until(lambda: (influx.rows("SELECT count(seq) FROM reading") or [{"count": 0}])[0]["count"]
                   >= sim.expected(), 60, "every reading stored")
        assert influx.rows("SELECT count(seq) FROM reading")[0]["count"] == sim.expected()
        for ing in ingests:
            ing.stop()
            assert "disconnected from broker" not in ing.output(), ing.output()
        influx.close()
    finally:
        stack.stop_influx()


def test_nodes_get_tls_once_the_broker_has_it_and_every_secret_file_is_the_owners_only(locked, tmp_path):
    """After `rimba broker tls` a node's config says TLS on the TLS port; the passwords, keys, env files and
    the firmware bundle's node.json (Wi-Fi and broker passwords) are mode 600, even over an older file."""
    from hardware import bundle, tls
    from hardware.provision import lock

    s, p, _stack, (a, _a_pw), _b, _ = locked
    assert json.loads((p.nodes_dir / f"{a}.json").read_text())["mqtt_tls"] is False  # no certificate yet
    lock(s)
    tls.make(p.dir)
    p.credentials(a, fresh=True)
    cfg = json.loads((p.nodes_dir / f"{a}.json").read_text())
    assert (cfg["mqtt_tls"], cfg["mqtt_port"]) == (True, s.broker_tls_port)
    out = tmp_path / "bundle"
    (out / "data").mkdir(parents=True)
    (out / "data" / "node.json").write_text("{}")
    (out / "data" / "node.json").chmod(0o644)  # a bundle built before
    bundle.build(out, {**cfg, "wifi_ssid": "sekolah", "wifi_password": "w1f1-pass"}, ca_pem=p.dir / "ca.crt")
    import ssl

    # the node gets the CA it must trust, as the DER its ssl module loads
    assert (out / "data" / "ca.der").read_bytes() == ssl.PEM_cert_to_DER_cert((p.dir / "ca.crt").read_text())
    secret = [p.dir / name for name in ("passwd", "secrets.json", "influx.json", "ca.key", "server.key")]
    secret += [*(p.dir / "env").glob("*.env"), *p.nodes_dir.glob("*.json"), out / "data" / "node.json"]
    assert len(secret) > 10
    modes = {str(f.relative_to(tmp_path)): oct(f.stat().st_mode & 0o777) for f in secret}
    assert set(modes.values()) == {"0o600"}, modes
    assert "w1f1-pass" in (out / "data" / "node.json").read_text()


def test_on_the_locked_stack_a_fragmenting_node_holds_back_no_one_and_a_repaired_dead_letter_is_stored(locked, tmp_path):
    """Issue 11 over the locked stack, each node with its own password and topics. Node A, hostile, fragments
    its seqs (30,000 holes tried): node B's reading is still acknowledged promptly. Node B's batch with a value out
    of range had been refused while the ingest's copy of the fleet file lacked B (a fleet file copied to the ingest
    host); once the copy is fixed, `rimba deadletter replay` stores its readings and B's next send gets its ack."""
    import shutil

    from rimba.adapters.influx import Influx
    from rimba.dev.harness import IngestProcess

    s, _p, _stack, (a, a_pw), (b, b_pw), _ = locked
    r = subprocess.run([sys.executable, "-m", "rimba", "stack", "lock"], env=env_for(s.values),
                       capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    stack = Stack.from_settings(s)
    env_dir = s.state_path / "broker" / "env"
    ingest_env = _env_file(env_dir / "ingest-1.env")
    stale = tmp_path / "fleet-on-the-ingest-host.toml"
    stale.write_text(fleet_text({a: ("smp29", "forest")}))  # copied before B was added
    base = {**s.values, "influx_url": stack.influx_url, "stats_every_s": 1, "flush_ms": 20, "fleet": str(stale)}
    try:
        ing = IngestProcess({**env_for(base), **ingest_env}, tmp_path / "ingest.log").start().wait_subscribed()
        t0 = 1_780_000_000
        acks: dict = {}
        watcher = client(s, b, b_pw, subscriptions=(f"rimba/v1/smp29/{b}/ack",),
                         on_message=lambda topic, payload, *_: acks.update({b: json.loads(payload)}) if payload else None)
        body_b = {"v": 1, "node": b, "epoch": 3, "now": t0 + 3600, "tq": "ntp",
                  "r": [{"seq": k, "t": t0 + 600 * k, "air_temp_c": 27.0 + k, **({"air_rh_pct": 140.0} if k == 2 else {})}
                        for k in (1, 2, 3)]}
        node_b = client(s, b, b_pw)
        node_b.wait_published([node_b.publish(f"rimba/v1/smp29/{b}/up", json.dumps(body_b).encode(), qos=1)], 10)
        node_b.stop()
        admin = {**env_for(base), **ingest_env}  # replay writes what it stores: the ingest's own login

        def listed():
            out = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "list"], env=admin,
                                 capture_output=True, text=True, cwd=ROOT, timeout=60, check=False).stdout
            return out if "unknown-node" in out else None

        wait_until(listed, 30, "B's batch among the dead letters")
        # A floods its own topic with batches of odd seqs
        node_a = client(s, a, a_pw)
        mids = []
        odd = list(range(1, 60_001, 2))
        for i in range(0, len(odd), 200):
            frag = {"v": 1, "node": a, "epoch": 1, "now": t0 + 10**6, "tq": "ntp",
                    "r": [{"seq": q, "t": t0 + q} for q in odd[i:i + 200]]}
            mids.append(node_a.publish(f"rimba/v1/smp29/{a}/up", json.dumps(frag, separators=(",", ":")).encode(), qos=1))
        # the ingest host's fleet file is fixed, and the dead letter replayed
        shutil.copy(s.fleet, stale)
        r = subprocess.run([sys.executable, "-m", "rimba", "deadletter", "replay", "--node", b], env=admin,
                           capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert r.returncode == 0 and "replayed 1, still refused 0, readings stored 3" in r.stdout, r.stdout + r.stderr
        # B wakes again, behind A's flood: its resend is a duplicate now, and its ack comes promptly
        node_b = client(s, b, b_pw)
        sent = time.monotonic()
        node_b.wait_published([node_b.publish(f"rimba/v1/smp29/{b}/up", json.dumps(body_b).encode(), qos=1)], 10)
        wait_until(lambda: acks.get(b) == {"v": 1, "epoch": 3, "seq": 3}, 30, "B's ack")
        waited = time.monotonic() - sent
        assert waited < 10, f"B waited {waited:.1f} s behind the fragmenting node"  # loose: bench.holes measures it
        viewer = _env_file(env_dir / "viewer.env")
        influx = Influx(stack.influx_url, "rimba", user=viewer["RIMBA_INFLUX_USER"], password=viewer["RIMBA_INFLUX_PASSWORD"])
        assert influx.rows(f"SELECT count(seq) FROM reading WHERE node = '{b}'")[0]["count"] == 3
        assert not influx.rows(f"SELECT air_rh_pct FROM reading WHERE node = '{b}'")
        influx.close()
        for c in (node_a, node_b, watcher):
            c.stop()
        assert ing.stop() == 0
    finally:
        stack.stop_influx()
