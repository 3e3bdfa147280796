"""deploy/: the compose file and the systemd units, checked as far as this machine allows (no Docker daemon
here): parsed and validated, every referenced file present, every command a real `rimba` command with valid
settings, the broker configuration run by the real Mosquitto, the units verified by systemd-analyze."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from rimba import settings as settings_mod
from rimba.cli import parser
from rimba.stack import find_binary, free_port, mqtt_answers
from tests.support import ROOT, wait_until

DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_the_whole_platform():
    assert set(COMPOSE["services"]) == {"mosquitto", "influxdb", "grafana", "ingest", "analyze"}
    assert COMPOSE["services"]["ingest"]["depends_on"] == ["mosquitto", "influxdb"]


def test_every_file_the_compose_file_names_exists():
    for name, svc in COMPOSE["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().exists(), f"{name}: {source} is missing"
            else:
                assert source in COMPOSE["volumes"], f"{name}: named volume {source} is not declared"
        for env_file in svc.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert (DEPLOY / path).exists() or (isinstance(env_file, dict) and env_file["required"] is False)
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            dockerfile = context / svc["build"]["dockerfile"]
            assert dockerfile.exists()
            for src in re.findall(r"^COPY (\S+)", dockerfile.read_text(), re.MULTILINE):
                assert (context / src).exists(), f"Dockerfile copies {src}, which is missing"
    assert (ROOT / "dashboards" / "bundle" / "provisioning" / "datasources" / "rimba.yaml").exists()


@pytest.mark.parametrize("service", ["ingest", "analyze"])
def test_rimba_services_run_real_commands_with_valid_settings(service):
    svc = COMPOSE["services"][service]
    args = parser().parse_args(svc["command"])
    assert args.func.__name__ == f"cmd_{service}"
    env = dict(svc["environment"])
    known = {o.env for o in settings_mod.OPTIONS}
    example = dict(line.split("=", 1) for line in (DEPLOY / "rimba.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert {k for k in env if k.startswith("RIMBA_")} <= known
    assert {k for k in example if k.startswith("RIMBA_")} <= known
    settings_mod.build(env={**{k: v for k, v in example.items() if v}, **env})  # raises on a bad value


def test_the_broker_configuration_runs_in_the_real_mosquitto(tmp_path):
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    port = free_port()
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/").replace("listener 1883", f"listener {port} 127.0.0.1")
    (tmp_path / "m.conf").write_text(conf)
    proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(tmp_path / "m.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: mqtt_answers("127.0.0.1", port) or proc.poll() is not None, 20, "mosquitto")
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", ["rimba-ingest.service", "rimba-analyze.service"])
def test_systemd_units_verify(tmp_path, unit):
    text = (DEPLOY / "systemd" / unit).read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.+)$", text, re.MULTILINE)
    parser().parse_args(exec_start.group(2).split())  # a real rimba command
    # systemd checks that the program exists: point it at this checkout's
    local = text.replace(exec_start.group(1), str(Path(ROOT / ".venv" / "bin" / "rimba")))
    (tmp_path / unit).write_text(local)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "Unknown key" not in r.stderr and "Unknown section" not in r.stderr, r.stderr
