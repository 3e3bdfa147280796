"""Settings, the sample file, the fleet file, and the CLI's one-line errors."""

import subprocess
import sys

import pytest

from rimba import settings
from rimba.errors import ConfigError
from rimba.fleet import parse_fleet
from rimba.dev.harness import ROOT


def test_sample_file_is_current_and_valid():
    assert (ROOT / "rimba.sample.toml").read_text() == settings.sample() + "\n", "run: rimba config sample > rimba.sample.toml"
    # every commented line, uncommented, is a valid file
    body = "\n".join(line[2:] for line in settings.sample().splitlines() if " = " in line and line.startswith("# "))
    path = ROOT / "build" / "sample-uncommented.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    s = settings.build(str(path), env={})
    assert s.values == settings.build(env={}).values


def test_precedence_defaults_file_env_flags(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('influx_db = "fromfile"\nflush_ms = 10\n')
    s = settings.build(str(f), env={"RIMBA_INFLUX_DB": "fromenv"}, overrides={"flush_ms": "30"})
    assert (s.influx_db, s.flush_ms, s.batch_lines) == ("fromenv", 30, 5000)


@pytest.mark.parametrize("env, key", [
    ({"RIMBA_MQTT_URL": "http://x"}, "mqtt_url"),
    ({"RIMBA_MQTT_URL": "mqtt://host:notaport"}, "mqtt_url"),
    ({"RIMBA_FLUSH_MS": "fast"}, "flush_ms"),
    ({"RIMBA_FLUSH_MS": "0"}, "flush_ms"),
    ({"RIMBA_SPOOL_MAX_MB": "-1"}, "spool_max_mb"),
    ({"RIMBA_INFLUX_URL": "influx:8086"}, "influx_url"),
    ({"RIMBA_INFLUX_TOKEN": "t", "RIMBA_INFLUX_USER": "u", "RIMBA_INFLUX_PASSWORD": "p"}, "influx_token"),
    ({"RIMBA_INFLUX_USER": "u"}, "influx_user"),
    ({"RIMBA_LOG_LEVEL": "loud"}, "log_level"),
])
def test_invalid_setting_names_the_key(env, key):
    with pytest.raises(ConfigError) as info:
        settings.build(env=env)
    assert str(info.value).startswith(key)


def test_unknown_key_in_file(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("influxdb = 1\n")
    with pytest.raises(ConfigError, match="^influxdb .*unknown setting"):
        settings.build(str(f), env={})


def test_mqtt_url_with_credentials_and_tls():
    b = settings.parse_mqtt_url("mqtts://ingest:p%40ss@broker.example:8884")
    assert (b.tls, b.host, b.port, b.user, b.password) == (True, "broker.example", 8884, "ingest", "p@ss")
    assert settings.parse_mqtt_url("mqtt://h").port == 1883


def test_fleet_file_errors_name_the_key():
    base = {"sites": {"smp29": {"name": "x", "lat": 0, "lon": 109}}}
    with pytest.raises(ConfigError, match=r"nodes\.n1\.site names unknown site"):
        parse_fleet({**base, "nodes": {"n1": {"site": "zz", "profile": "forest", "cadence_s": 600}}})
    with pytest.raises(ConfigError, match=r"nodes\.N1 is not a valid node name"):
        parse_fleet({**base, "nodes": {"N1": {"site": "smp29", "profile": "forest", "cadence_s": 600}}})
    with pytest.raises(ConfigError, match=r"nodes\.n1\.cadence_s is required"):
        parse_fleet({**base, "nodes": {"n1": {"site": "smp29", "profile": "forest"}}})
    for bad in (0, "6", True, 145):
        with pytest.raises(ConfigError, match=r"nodes\.n1\.send_every must be a whole number of samples, 1 to 144"):
            parse_fleet({**base, "nodes": {"n1": {"site": "smp29", "profile": "forest", "cadence_s": 600,
                                                  "send_every": bad}}})
    with pytest.raises(ConfigError, match=r"nodes\.n1\.profile 'forst' is not one of air, forest, river"):
        parse_fleet({**base, "nodes": {"n1": {"site": "smp29", "profile": "forst", "cadence_s": 600}}})
    with pytest.raises(ConfigError, match=r"sites\.smp29\.lat has the wrong type"):
        parse_fleet({"sites": {"smp29": {"name": "x", "lat": "0", "lon": 109}}})


def test_sample_fleet_parses():
    from rimba.fleet import load_fleet

    fleet = load_fleet(ROOT / "fleet.toml")
    assert set(fleet.sites) == {"smp29", "bansir-laut"}
    assert {n.profile for n in fleet.nodes.values()} == {"forest", "river", "air"}


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rimba", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **(env or {})})


def test_cli_user_errors_are_one_line():
    r = run_cli("ingest", env={"RIMBA_FLUSH_MS": "soon"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "flush_ms" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("ingest", "--fleet", "/nonexistent/fleet.toml")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "fleet file" in r.stderr


def test_stack_says_how_to_install_a_missing_binary(tmp_path):
    from rimba.errors import StackError
    from rimba.adapters.servers import find_binary

    for name, package in (("mosquitto", "mosquitto"), ("influxd", "influxdb")):
        with pytest.raises(StackError, match=f"apt-get install {package}"):
            find_binary(name, search_path=str(tmp_path))
    assert find_binary("mosquitto").endswith("mosquitto")


def test_no_flag_takes_a_secret():
    """A command line shows in `ps` to every user: secrets come from the environment or a *_file flag."""
    import argparse

    from rimba.app.cli import parser

    def flags(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from flags(sub)
            else:
                yield from action.option_strings

    every = set(flags(parser()))
    assert "--influx-password-file" in every and "--token-file" in every
    leaking = {f for f in every if any(w in f for w in ("password", "token", "secret")) and not f.endswith("-file")}
    assert not leaking


def test_a_password_in_the_mqtt_url_flag_is_refused_in_one_line():
    r = run_cli("config", "show", "--mqtt-url", "mqtt://rimba-ingest-1:s3cret@127.0.0.1:1883")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--mqtt-url" in r.stderr and "s3cret" not in r.stderr


def test_secrets_from_files(tmp_path):
    pw = tmp_path / "influx.pw"
    pw.write_text("from-the-file\n")
    s = settings.build(env={"RIMBA_INFLUX_USER": "rimba-writer", "RIMBA_INFLUX_PASSWORD_FILE": str(pw)})
    assert s.influx_password == "from-the-file"
    s = settings.build(env={"RIMBA_MQTT_USER": "u"}, overrides={"mqtt_password_file": str(pw)})
    assert s.broker.password == "from-the-file"
    child = settings.build(env=s.env())  # a child process given these settings finds the same
    assert child.broker.password == "from-the-file"
    r = run_cli("config", "show", "--influx-password-file", str(pw), env={"RIMBA_INFLUX_USER": "w"})
    assert r.returncode == 0 and "from-the-file" not in r.stdout and str(pw) in r.stdout
    (tmp_path / "empty").write_text("\n")
    for path, why in ((tmp_path / "missing", "cannot read"), (tmp_path / "empty", "is empty")):
        with pytest.raises(ConfigError, match=f"^influx_password_file .*{why}"):
            settings.build(env={"RIMBA_INFLUX_USER": "u", "RIMBA_INFLUX_PASSWORD_FILE": str(path)})


def test_each_commands_help_shows_the_settings_it_uses_and_no_others():
    """`rimba node flash --help` once listed the ingest's spool and share-group flags: each command takes the
    groups of settings it uses (rimba/app/cli.py), and the ingest and `config show` take them all."""
    ingest_only = ("--spool-max-mb", "--mqtt-share-group", "--batch-lines", "--flush-ms")
    for argv in (("node", "flash"), ("firmware", "rollout"), ("report",), ("simulate",), ("alerts",)):
        out = run_cli(*argv, "--help").stdout
        assert "--state-dir" in out and not any(f in out for f in ingest_only), argv
    assert "--mqtt-url" not in run_cli("report", "--help").stdout  # the report reads InfluxDB only
    assert "--influx-url" not in run_cli("simulate", "--help").stdout  # the simulator publishes only
    for argv in (("ingest",), ("config", "show")):
        out = run_cli(*argv, "--help").stdout
        assert all(f in out for f in ingest_only + ("--mqtt-url", "--influx-url")), argv


@pytest.mark.unit
def test_the_fleet_watcher_judges_by_the_file_as_it_is_now(tmp_path):
    """A node added to the fleet file is known at the very next message, however soon after the last look
    (the watcher looked at most every 0.2 s: a node added and resending at once was refused as unknown)."""
    from rimba.fleet import FleetWatcher

    path = tmp_path / "fleet.toml"
    site = '[sites.smp29]\nname = "SMP Negeri 29"\nlat = -0.05\nlon = 109.35\n'
    node = '\n[nodes.{}]\nsite = "smp29"\nprofile = "forest"\ncadence_s = 600\n'
    path.write_text(site + node.format("smp29-01"))
    watcher = FleetWatcher(path)
    assert set(watcher.current().nodes) == {"smp29-01"}
    path.write_text(site + node.format("smp29-01") + node.format("smp29-02"))
    assert set(watcher.current().nodes) == {"smp29-01", "smp29-02"}
    path.write_text(site + node.format("smp29-01") + "\n[nodes.smp29-03]\nsite = \"nowhere\"\n")  # a bad edit
    assert set(watcher.current().nodes) == {"smp29-01", "smp29-02"}  # the last good file is kept
