"""End to end: simulator with injected faults -> ingest -> `rimba analyze` -> qc and index points."""

import subprocess
import sys
import time

from rimba.fleet import load_fleet
from rimba.simulate import Fault, Publisher, Simulation
from tests.support import ROOT, env_for, wait_until


def test_faults_become_qc_points_and_indices_are_stored(platform_factory):
    nodes = {"qa-01": ("smp29", "forest"), "qa-02": ("smp29", "forest"), "qa-03": ("smp29", "forest"),
             "qa-04": ("smp29", "air")}
    p = platform_factory(nodes)
    now = int(time.time())
    start = now - 30 * 3600
    spike_at = start + 20 * 3600
    faults = [Fault("qa-01", "air_temp_c", "spike", spike_at, spike_at + 600, 12.0),
              Fault("qa-02", "air_rh_pct", "stuck", start + 5 * 3600, start + 9 * 3600, 99.9)]
    sim = Simulation(load_fleet(p.fleet_path), seed=21, faults=faults, send_every=6)
    events = sim.history(start, now - 60)
    p.ingest()
    pub = Publisher(p.settings, client_id="pub-analyze")
    for _t, topic, payload in events:
        pub.publish(topic, payload)
    pub.close()
    wait_until(lambda: p.count() >= sim.expected(), 60, "the history stored")
    r = subprocess.run([sys.executable, "-m", "rimba.cli", "analyze", "--once", "--hours", "31", "--until", str(now)],
                       env=env_for(p.values), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    spikes = p.influx.rows("SELECT flag, value FROM qc WHERE node = 'qa-01' AND \"check\" = 'spike' "
                           "AND metric = 'air_temp_c'")
    spike_times = {row["time"] for row in spikes}
    truth = {t - t % 600 for node, metric, kind, t in sim.truth if kind == "spike"}
    assert truth and truth <= spike_times, (truth, spike_times)
    flat = p.influx.rows("SELECT count(flag) FROM qc WHERE node = 'qa-02' AND \"check\" = 'flat'")
    assert flat and flat[0]["count"] >= 20  # four hours stuck at 10-minute steps
    assert not p.influx.rows("SELECT flag FROM qc WHERE node = 'qa-03' AND \"check\" = 'spike'")
    idx = p.influx.rows("SELECT last(heat_index_c), last(dew_point_c), last(ispu_pm25) FROM \"index\" "
                        "GROUP BY node")
    by_node = {row["node"]: row for row in idx}
    assert set(by_node) == set(nodes)
    assert 20 < by_node["qa-01"]["last"] < 50
    assert by_node["qa-04"]["last_2"] is not None and 0 <= by_node["qa-04"]["last_2"] <= 500
