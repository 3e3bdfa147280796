"""deploy/: the compose file and the systemd units, checked as far as this machine allows (no Docker daemon
here): parsed and validated, every referenced file present or made by `rimba stack lock` and `rimba broker
tls`, every command a real `rimba` command with valid settings and its own login, the locked broker
configuration run by the real Mosquitto with the generated files, the units verified by systemd-analyze."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rimba import settings as settings_mod
from rimba.app.cli import parser
from rimba.errors import StackError
from rimba.adapters.servers import find_binary
from rimba.dev.stack import free_port, mqtt_answers
from rimba.dev.harness import ROOT, env_for, wait_until

DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
GENERATED = "./state/"  # deploy/state: what `rimba stack lock` and `rimba broker tls` write, never committed
MADE_BY_COMPOSE = {"./state/backups"}  # bind-mount folders compose creates on the first start


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """deploy/state as the README's set-up makes it, in a temporary folder."""
    home = tmp_path_factory.mktemp("deploy")
    env = env_for({"state_dir": str(home / "state"), "fleet": str(ROOT / "fleet.toml")})
    for args in (["stack", "lock"], ["broker", "tls", "--host", "localhost", "--host", "127.0.0.1"]):
        r = subprocess.run([sys.executable, "-m", "rimba", *args], env=env, capture_output=True, text=True,
                           cwd=ROOT, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
    return home


def _source(path: str, state: Path) -> Path:
    return state / path[2:] if path.startswith(GENERATED) else (DEPLOY / path).resolve()


def _env_file(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_compose_has_the_whole_platform():
    assert set(COMPOSE["services"]) == {"mosquitto", "influxdb", "grafana", "ingest", "analyze", "backup"}
    assert COMPOSE["services"]["ingest"]["depends_on"] == ["mosquitto", "influxdb"]


def test_every_file_the_compose_file_names_exists(state):
    for name, svc in COMPOSE["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source in MADE_BY_COMPOSE:
                continue
            if source.startswith((".", "/")):
                assert _source(source, state).exists(), f"{name}: {source} is missing"
            else:
                assert source in COMPOSE["volumes"], f"{name}: named volume {source} is not declared"
        for env_file in svc.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert _source(path, state).exists() or (isinstance(env_file, dict) and env_file["required"] is False)
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    for inside in re.findall(r"/mosquitto/config/auth/(\S+)", conf):
        assert (state / "state" / "broker" / inside).exists(), f"mosquitto.conf names {inside}, not generated"
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            dockerfile = context / svc["build"]["dockerfile"]
            assert dockerfile.exists()
            for src in re.findall(r"^COPY (?!--from=)(\S+)", dockerfile.read_text(), re.MULTILINE):
                assert (context / src).exists(), f"Dockerfile copies {src}, which is missing"
    assert (ROOT / "dashboards" / "bundle" / "provisioning" / "datasources" / "rimba.yaml").exists()


@pytest.mark.parametrize(("service", "mqtt_user", "influx_user"), [("ingest", "rimba-ingest-1", "rimba-writer"),
                                                                    ("analyze", "rimba-analyze", "rimba-analyst")])
def test_rimba_services_run_real_commands_with_valid_settings_and_their_own_login(state, service, mqtt_user,
                                                                                   influx_user):
    svc = COMPOSE["services"][service]
    args = parser().parse_args(svc["command"])
    assert args.func.__name__ == f"cmd_{service}"
    known = {o.env for o in settings_mod.OPTIONS}
    env = {}
    for env_file in svc["env_file"]:  # later files win, then `environment`, as compose does
        path = _source(env_file["path"] if isinstance(env_file, dict) else env_file, state)
        env.update(_env_file(path if path.exists() else DEPLOY / "rimba.env.example"))
    env.update(svc["environment"])
    assert {k for k in env if k.startswith("RIMBA_")} <= known
    s = settings_mod.build(env={k: v for k, v in env.items() if v})  # raises on a bad value
    assert (s.broker.user, s.influx_user) == (mqtt_user, influx_user) and s.broker.password and s.influx_password


def test_grafana_reads_the_locked_database_as_the_reader(state):
    from dashboards import build

    committed = (DEPLOY / "grafana" / "datasources" / "rimba.yaml").read_text()
    assert committed == build.deploy_datasource_yaml(), \
        "run: python -c 'from dashboards import build; print(build.deploy_datasource_yaml(), end=\"\")' > " \
        "deploy/grafana/datasources/rimba.yaml"
    ds = yaml.safe_load(committed)["datasources"][0]
    viewer = _env_file(state / "state" / "broker" / "env" / "viewer.env")
    assert ds["url"] == "http://influxdb:8086" and ds["user"] == viewer["RIMBA_INFLUX_USER"]
    assert ds["secureJsonData"]["password"] == "${RIMBA_INFLUX_PASSWORD}" and "RIMBA_INFLUX_PASSWORD" in viewer
    grafana = COMPOSE["services"]["grafana"]
    assert "./state/broker/env/viewer.env" in grafana["env_file"]
    assert "GF_SECURITY_ADMIN_PASSWORD" in _env_file(DEPLOY / "rimba.env.example")


def interpolate(value: str, env: dict) -> str:
    """Compose's interpolation (compose-spec, "Interpolation"): ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, $$ for a dollar; an error stops compose with `VAR` and the message."""
    def one(m):
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        have = name in env and (env[name] != "" or ":" not in op)
        if op.endswith("?") and not have:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op.endswith("-") and not have:
            return arg
        return env.get(name, "")
    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}", one, value)


def test_grafana_lets_nobody_in_anonymously():
    """No anonymous organisation role (an anonymous Viewer may post any InfluxQL to /api/ds/query); the public site
    pages through Grafana's public dashboards, which run their stored queries only; no sign-up."""
    env = COMPOSE["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_PUBLIC_DASHBOARDS_ENABLED"] == "true" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert not any(k.startswith(("GF_AUTH_PROXY", "GF_AUTH_BASIC")) for k in env)
    public = json.loads((ROOT / "dashboards" / "bundle" / "public-dashboards.json").read_text())["public"]
    assert public and all(uid.startswith("rimba-site-") for uid in public)


@pytest.mark.parametrize("admin", [None, ""])
def test_grafana_does_not_start_without_an_admin_password(admin):
    """Compose stops before Grafana starts, naming the variable, when rimba.env does not set it (no admin/admin)."""
    env = {} if admin is None else {"GF_SECURITY_ADMIN_PASSWORD": admin}
    grafana = COMPOSE["services"]["grafana"]["environment"]
    with pytest.raises(ValueError, match="GF_SECURITY_ADMIN_PASSWORD"):
        interpolate(grafana["GF_SECURITY_ADMIN_PASSWORD"], env)
    example = _env_file(DEPLOY / "rimba.env.example")
    assert example["GF_SECURITY_ADMIN_PASSWORD"] == ""  # a copy left unfilled stops too
    assert interpolate(grafana["GF_SECURITY_ADMIN_PASSWORD"], {"GF_SECURITY_ADMIN_PASSWORD": "s3cret"}) == "s3cret"
    assert "--env-file deploy/rimba.env" in (DEPLOY / "compose.yaml").read_text()
    for name, svc in COMPOSE["services"].items():  # and nothing else in the file needs a variable to be set
        for value in (svc.get("environment") or {}).values():
            if name != "grafana" or "GF_SECURITY_ADMIN_PASSWORD" not in str(value):
                interpolate(str(value), {})


def test_the_locked_broker_configuration_runs_in_the_real_mosquitto(state, tmp_path):
    """deploy's mosquitto.conf with the generated files: nobody anonymous on either listener, a service
    logs in with its password, and a client trusting the project's CA gets in over TLS."""
    from rimba.adapters.mqtt import Mqtt
    from rimba.settings import Broker

    broker_dir = state / "state" / "broker"
    plain, tls_port = free_port(), free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    conf = (conf.replace("/mosquitto/data/", f"{tmp_path}/").replace("/mosquitto/config/auth/", f"{broker_dir}/")
            .replace("listener 1883", f"listener {plain} 127.0.0.1").replace("listener 8883", f"listener {tls_port} 127.0.0.1"))
    # the broker reads its files as the user it runs as (the README's chown to the container's 1883)
    (tmp_path / "m.conf").write_text(conf + f"user {getpass.getuser()}\n")
    proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(tmp_path / "m.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: mqtt_answers("127.0.0.1", plain) or proc.poll() is not None, 20, "mosquitto")
        assert proc.poll() is None, proc.stderr.read().decode()
        ingest = _env_file(broker_dir / "env" / "ingest-1.env")
        for port, ca in ((plain, ""), (tls_port, str(broker_dir / "ca.crt"))):
            tls = bool(ca)
            with pytest.raises(StackError):
                Mqtt(Broker(tls, "127.0.0.1", port, None, None), "stranger", ca_file=ca, v5=False,
                     persistent=False).start(5)
            Mqtt(Broker(tls, "127.0.0.1", port, ingest["RIMBA_MQTT_USER"], ingest["RIMBA_MQTT_PASSWORD"]),
                 "deploy-ingest", ca_file=ca, v5=False, persistent=False).start(10).stop()
        # on both listeners the client id is the user name: asking for the ingest's id takes nothing over
        from tests.test_provision import _Watched, s_at

        admin = _env_file(broker_dir / "env" / "admin.env")
        watched = _Watched(s_at(plain), ingest["RIMBA_MQTT_USER"], ingest["RIMBA_MQTT_PASSWORD"], "rimba-ingest-1",
                           clean=False)
        for port, ca in ((plain, ""), (tls_port, str(broker_dir / "ca.crt"))):
            hostile = _Watched(s_at(port), admin["RIMBA_MQTT_USER"], admin["RIMBA_MQTT_PASSWORD"], "rimba-ingest-1",
                               ca=ca)
            hostile.round_trip("rimba/v1/smp29/x/config")
            hostile.close()
        watched.round_trip("rimba/v1/smp29/x/ack")
        assert watched.kicked == 0
        watched.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", ["rimba-ingest@.service", "rimba-analyze.service", "rimba-backup.service"])
def test_systemd_units_verify(tmp_path, unit):
    text = (DEPLOY / "systemd" / unit).read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.+)$", text, re.MULTILINE)
    parser().parse_args(exec_start.group(2).split())  # a real rimba command
    # systemd checks that the program exists: point it at this checkout's
    local = text.replace(exec_start.group(1), str(Path(ROOT / ".venv" / "bin" / "rimba")))
    _verify(tmp_path, {unit.replace("@.", "@1."): local})  # a template is verified as an instance


def _verify(tmp_path, units: dict) -> None:
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / name) for name in units)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "Unknown key" not in r.stderr and "Unknown section" not in r.stderr, r.stderr
    assert "Failed to parse" not in r.stderr, r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_backup_timer_verifies_and_its_calendar_is_valid(tmp_path):
    service = (DEPLOY / "systemd" / "rimba-backup.service").read_text()
    service = re.sub(r"^ExecStart=\S+", f"ExecStart={ROOT / '.venv' / 'bin' / 'rimba'}", service, flags=re.MULTILINE)
    timer = (DEPLOY / "systemd" / "rimba-backup.timer").read_text()
    _verify(tmp_path, {"rimba-backup.service": service, "rimba-backup.timer": timer})
    calendar = re.search(r"^OnCalendar=(.+)$", timer, re.MULTILINE).group(1)
    r = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0 and "Next elapse" in r.stdout, r.stdout + r.stderr


def test_the_backup_service_reaches_influxdbs_loopback_rpc_and_every_store():
    backup, influxdb = COMPOSE["services"]["backup"], COMPOSE["services"]["influxdb"]
    args = parser().parse_args(backup["command"])
    assert args.func.__name__ == "cmd_backup" and args.every and args.keep > 0
    host, port = influxdb["environment"]["INFLUXDB_BIND_ADDRESS"].split(":")
    assert host == "127.0.0.1" and args.influx_rpc == f"{host}:{port}"  # the RPC has no authentication
    assert backup["network_mode"] == "service:influxdb"  # ... so the backup shares influxdb's loopback
    mounts = {v.split(":")[1]: v.split(":")[0] for v in backup["volumes"]}
    state = backup["environment"]["RIMBA_STATE_DIR"]
    for service in ("ingest", "analyze"):  # their stores are in the volume the backup reads
        own = {v.split(":")[1]: v.split(":")[0] for v in COMPOSE["services"][service]["volumes"]}
        assert own[COMPOSE["services"][service]["environment"]["RIMBA_STATE_DIR"]] == mounts[state]
    assert mounts[f"{state}/broker"] == "./state/broker" and mounts[f"{state}/nodes"] == "./state/nodes"
    assert mounts[backup["environment"]["RIMBA_FLEET"]] == "../fleet.toml"
    # InfluxDB 1.8 guards every /debug endpoint (an admin) only with pprof on and pprof-auth on
    env = influxdb["environment"]
    assert env["INFLUXDB_HTTP_PPROF_ENABLED"] == "true" and env["INFLUXDB_HTTP_PPROF_AUTH_ENABLED"] == "true"


def test_the_installed_package_carries_what_it_reads(tmp_path):
    """`pip install .` (the image's install) ships the node profiles the fleet file is checked against: the wheel,
    installed into a directory of its own, loads the sample fleet with nothing of this checkout on the path."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr
    assert "Warning" not in built.stderr, built.stderr  # no packaging warning of ours (package data, licence)
    wheel = next(tmp_path.glob("rimba-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   capture_output=True, timeout=300, check=True)
    script = (f"import sys; sys.path.insert(0, {str(target)!r})\n"
              "from rimba import fleet, profiles\n"
              f"print(profiles.__file__.startswith({str(target)!r}), profiles.names(), "
              f"len(fleet.load_fleet({str(ROOT / 'fleet.toml')!r}).nodes))")
    r = subprocess.run([sys.executable, "-S", "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "['air',", "'forest',", "'river']", "9"]


def test_the_services_commands_load_no_development_tool():
    """`rimba ingest`, `rimba analyze` and `rimba backup` (the units and compose services) parse and load their
    code without the local stack, the simulator or the host node."""
    script = ("import sys\nfrom rimba.app import backup, cli\nimport analytics.analyze, ingest.service\n"
              "cli.parser().parse_args(['ingest'])\n"
              "print(sorted(m for m in sys.modules if m.startswith('rimba.dev')))")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
