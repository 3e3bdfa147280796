"""`rimba stack up | status | down` through the CLI, on free loopback ports."""

import subprocess
import sys

from rimba.dev.stack import free_port, influx_answers, mqtt_answers
from rimba.dev.harness import ROOT


def rimba(*args, env):
    return subprocess.run([sys.executable, "-m", "rimba", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_stack_up_status_down(tmp_path):
    mq, ix = free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "RIMBA_STATE_DIR": str(tmp_path),
           "RIMBA_MQTT_URL": f"mqtt://127.0.0.1:{mq}", "RIMBA_INFLUX_URL": f"http://127.0.0.1:{ix}"}
    try:
        up = rimba("stack", "up", env=env)
        assert up.returncode == 0, up.stderr
        assert mqtt_answers("127.0.0.1", mq) and influx_answers(f"http://127.0.0.1:{ix}")
        conf = (tmp_path / "stack" / "mosquitto.conf").read_text()
        assert f"listener {mq} 127.0.0.1" in conf and "persistence true" in conf and "max_queued_messages 0" in conf
        assert f'bind-address = "127.0.0.1:{ix}"' in (tmp_path / "stack" / "influxdb.conf").read_text()
        st = rimba("stack", "status", env=env)
        assert st.returncode == 0 and st.stdout.count("running") == 2
        again = rimba("stack", "up", env=env)  # idempotent
        assert again.returncode == 0, again.stderr
    finally:
        down = rimba("stack", "down", env=env)
    assert down.returncode == 0
    assert not mqtt_answers("127.0.0.1", mq) and not influx_answers(f"http://127.0.0.1:{ix}")
    st = rimba("stack", "status", env=env)
    assert st.returncode == 1 and st.stdout.count("stopped") == 2


def test_port_taken_by_another_program(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin:/usr/sbin", "RIMBA_STATE_DIR": str(tmp_path),
               "RIMBA_MQTT_URL": f"mqtt://127.0.0.1:{port}", "RIMBA_INFLUX_URL": f"http://127.0.0.1:{free_port()}"}
        r = rimba("stack", "up", env=env)
    assert r.returncode == 2 and f"port {port}" in r.stderr and r.stderr.count("\n") == 1


def test_influxdb_debug_endpoints_and_the_backup_rpc(tmp_path):
    """InfluxDB 1.6 closes /debug/pprof (`pprof-enabled = false`) but has no way to close /debug/vars or
    /debug/requests, which answer anyone even with authentication on: the stack's InfluxDB, its HTTP API and
    its backup RPC (no authentication at all) listen on loopback only, and nothing else can be asked of it."""
    import urllib.error
    import urllib.request

    import pytest

    from hardware.provision import lock_influx
    from rimba import settings as settings_mod
    from rimba.errors import StackError
    from rimba.dev.stack import Stack

    s = settings_mod.build(overrides={"state_dir": str(tmp_path)}, env={})
    lock_influx(s)
    stack = Stack(tmp_path, free_port(), free_port())
    stack.start_influx()
    try:
        with pytest.raises(urllib.error.HTTPError) as closed:
            urllib.request.urlopen(stack.influx_url + "/debug/pprof/cmdline", timeout=10)
        assert closed.value.code == 404
        with urllib.request.urlopen(stack.influx_url + "/debug/vars", timeout=10) as r:  # what 1.6 cannot close
            assert r.status == 200
        conf = (tmp_path / "stack" / "influxdb.conf").read_text()
        assert f'bind-address = "{stack.rpc_address}"' in conf and stack.rpc_address.startswith("127.0.0.1:")
        assert f'bind-address = "127.0.0.1:{stack.influx_port}"' in conf and "auth-enabled = true" in conf
        assert Stack(tmp_path).rpc_address == stack.rpc_address  # kept: `rimba backup` finds it
    finally:
        stack.stop_influx()
    with pytest.raises(StackError, match="loopback only"):
        Stack(tmp_path, host="0.0.0.0")
