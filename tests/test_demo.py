"""The main job: `rimba demo` runs the whole stack and stops what it started."""

import subprocess
import sys

from rimba.dev.stack import free_port, influx_answers, mqtt_answers
from rimba.dev.harness import ROOT


def test_demo_runs_and_cleans_up(tmp_path):
    mq, ix = free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "HOME": str(tmp_path), "RIMBA_STATE_DIR": str(tmp_path / "state"),
           "RIMBA_MQTT_URL": f"mqtt://127.0.0.1:{mq}", "RIMBA_INFLUX_URL": f"http://127.0.0.1:{ix}"}
    r = subprocess.run([sys.executable, "-m", "rimba", "demo", "--seconds", "12"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    last = r.stdout.split("Rimba live demo")[-1]
    stored = int(last.split("stored")[1].split()[0].replace(",", ""))
    assert stored > 5000, last  # eight days of seven nodes
    assert "analyzed 8 days" in r.stdout and "alerts fired" in r.stdout
    assert (tmp_path / "state" / "grafana" / "dashboards" / "rimba" / "rimba-overview.json").exists()
    reports = sorted(p.name for p in (tmp_path / "state" / "reports").iterdir())
    assert len(reports) == 8 and "weekly report smp29 (id)" in r.stdout  # two sites, two languages, PDF and PNG
    firing = int(last.split("alerts firing: ")[1].split()[0])
    assert firing >= 2, last  # the haze (ISPU) and the ongoing offset (anomaly) at least
    assert "ISPU PM" in last and "above this node's usual" in last
    seen, total = last.split("nodes seen (1 h) ")[1].split()[0].split("/")
    assert seen == total == "9" and "dead letters" in last  # seven simulated, two run by the real firmware
    assert "real firmware (MicroPython, 96 KiB heap): 2 nodes" in last and " 0 failed" in last
    assert "quality flags (3 days): " in last and "spike" in last.split("quality flags")[1].split("\n")[0]
    assert "Hutan Sekolah SMP Negeri 29 Pontianak" in last and "River level" in last
    assert "an anonymous client is refused" in r.stdout  # locked down, and every service logged in as itself
    broker = tmp_path / "state" / "broker"
    assert {"passwd", "acl", "influx.json", "secrets.json"} <= {p.name for p in broker.iterdir()}
    assert all(f"user {n}" in (broker / "acl").read_text() for n in ("smp29-05", "bansir-laut-04"))
    assert "stopped the stack" in r.stdout
    assert not mqtt_answers("127.0.0.1", mq) and not influx_answers(f"http://127.0.0.1:{ix}")
