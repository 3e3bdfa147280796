"""The simulator: deterministic, plausible for Pontianak, and firmware-like in what it sends."""

import json

from rimba import contract
from rimba.dev.climate import Climate, Haze
from rimba.fleet import load_fleet
from rimba.metrics import METRICS
from rimba.dev.simulate import Fault, Simulation
from rimba.dev.harness import ROOT

FLEET = load_fleet(ROOT / "fleet.toml")
START = 1764288000  # 2025-11-28 00:00 UTC (07:00 WIB)


def test_same_seed_same_traffic():
    a = Simulation(FLEET, seed=4).history(START, START + 86400, resend_prob=0.1)
    b = Simulation(FLEET, seed=4).history(START, START + 86400, resend_prob=0.1)
    c = Simulation(FLEET, seed=5).history(START, START + 86400, resend_prob=0.1)
    assert a == b and a != c


def test_traffic_is_valid_contract_with_plausible_values():
    sim = Simulation(FLEET, seed=2)
    events = sim.history(START, START + 7 * 86400)
    values: dict = {}
    for _t, topic, payload in events:
        batch = contract.decode_up(topic, payload, FLEET)
        assert not batch.faults
        for r in batch.readings:
            for k, v in r.values.items():
                values.setdefault(k, []).append(v)
    temps = values["air_temp_c"]
    assert 21 <= min(temps) <= 25 and 30 <= max(temps) <= 35  # Pontianak: 22/23 to 32/33 °C
    assert max(values["air_rh_pct"]) >= 95 and min(values["air_rh_pct"]) <= 75
    assert 0 < sum(values["rain_mm"]) / 3 < 7 * 60  # three forest nodes, a week of November
    levels = values["water_level_cm"]
    assert 80 <= max(levels) - min(levels) <= 250  # a mixed, mainly diurnal tide
    assert all(METRICS[k].in_range(v) for k, vs in values.items() for v in vs)


def test_haze_episode_peaks_in_the_morning():
    c = Climate(1, "smp29", Haze(START, 4, 320))
    morning = c.pm25(START + 86400 + 3 * 3600)  # 10:00 WIB on day 2
    night = c.pm25(START + 86400 + 17 * 3600)  # 00:00 WIB
    clear = Climate(1, "smp29").pm25(START + 86400 + 3 * 3600)
    assert morning > 150 and morning > 2 * night and clear < 60


def test_outage_backfills_and_overflow_reports_lost():
    sim = Simulation(FLEET, seed=3, nodes={"smp29-01"}, capacity=30, send_every=6, batch=50)
    events = sim.history(START, START + 2 * 86400, outages=[("smp29-01", START + 3600, START + 86400)])
    bodies = [json.loads(p) for _t, _topic, p in events]
    lost = [b["lost"] for b in bodies if "lost" in b]
    assert lost and lost[0][0][0] > 1
    seqs = [r["seq"] for b in bodies for r in b["r"]]
    assert len(seqs) == len(set(seqs)) == sim.expected()


def test_faults_are_injected_and_recorded():
    f = Fault("smp29-01", "air_temp_c", "spike", START + 3600, START + 7200, 15.0)
    sim = Simulation(FLEET, seed=3, nodes={"smp29-01"}, faults=[f])
    sim.history(START, START + 86400)
    assert sim.truth and all(x[:3] == ("smp29-01", "air_temp_c", "spike") for x in sim.truth)


def test_live_batches_carry_the_current_time():
    sim = Simulation(FLEET, seed=3, nodes={"bansir-laut-01"})
    sn = sim.nodes["bansir-laut-01"]
    now = START + 3600
    sim.sample(sn, now)
    (topic, payload), = sim.batches(sn, now)
    body = json.loads(payload)
    assert topic == "rimba/v1/bansir-laut/bansir-laut-01/up" and body["now"] == now and body["tq"] == "ntp"


def test_simulate_command_end_to_end(platform_factory):
    import subprocess
    import sys

    from rimba.dev.harness import env_for

    p = platform_factory({"cli-01": ("smp29", "forest"), "cli-02": ("bansir-laut", "river")})
    p.ingest()
    r = subprocess.run([sys.executable, "-m", "rimba", "simulate", "--backfill-hours", "6", "--until", str(START),
                        "--resend-prob", "0.3", "--outage", "cli-01:4:2",
                        "--fault", "cli-02:water_level_cm:out-of-range:3:2"],
                       env=env_for(p.values), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    from rimba.dev.harness import wait_until

    # 36 samples a node in 6 h at 10 min; only the last unsent few are missing
    wait_until(lambda: p.count() >= 60, 30, "the backfill")
    rows = p.influx.rows("SELECT count(seq), max(seq) FROM reading GROUP BY node")
    assert all(row["count"] == row["max"] for row in rows)  # every seq once, the outage backfilled
    assert not p.influx.rows("SELECT water_level_cm FROM reading WHERE water_level_cm > 5000")


def test_simulate_command_refuses_bad_specs():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "rimba", "simulate", "--fleet", str(ROOT / "fleet.toml"),
                        "--fault", "smp29-01:air_temp:spike:1:0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--fault" in r.stderr


def test_light_at_the_edges_of_the_day_is_a_real_number():
    """sin(pi) rounds to a tiny negative number; raised to a power it was once a complex 'light'."""
    from rimba.dev.climate import Climate

    c = Climate(1, "smp29")
    midnight = 1764262800  # WIB
    for s in range(int(17.8 * 3600), int(17.9 * 3600)):
        v = c.light(midnight + s)
        assert isinstance(v, float) and v >= 0.0


def test_realistic_faults_look_like_the_field():
    """Stuck dithers by the resolution (no exact repeat to find), a dying fan sinks (all three PM channels), a
    wet enclosure pins the humidity near 100 %, a DS18B20 error is its own value (85 °C is inside the
    physical range)."""
    import numpy as np

    from rimba.dev.simulate import realistic_faults

    sim = Simulation(FLEET, seed=6)
    stuck = Fault("smp29-01", "air_temp_c", "stuck", START + 86400, START + 2 * 86400, float("nan"))
    fan = Fault("smp29-04", "pm25_ugm3", "dead-fan", START + 86400, START + 3 * 86400, 0.5)
    wet = Fault("smp29-02", "air_rh_pct", "wet", START + 86400, START + 3 * 86400)
    ds = Fault("bansir-laut-01", "water_temp_c", "out-of-range", START + 86400, START + 90000, 85.0)
    sim = Simulation(FLEET, seed=6, faults=[stuck, fan, wet, ds])
    ids, _sites, times, x = sim.arrays(START, START + 4 * 86400, 600)
    col = list(METRICS).index
    during = (times >= START + 86400 + 600) & (times < START + 2 * 86400)
    t = x[ids.index("smp29-01"), during, col("air_temp_c")]
    assert np.ptp(t) <= 0.021 and len(np.unique(t)) > 1
    pm = x[ids.index("smp29-04"), :, col("pm25_ugm3")]
    day = 144
    assert np.nanmean(pm[2 * day + 72:3 * day]) < 0.2 * np.nanmean(pm[:day])
    for other in ("pm1_ugm3", "pm10_ugm3"):  # one fan for all the sensor's channels
        ch = x[ids.index("smp29-04"), :, col(other)]
        assert np.nanmean(ch[2 * day + 72:3 * day]) < 0.2 * np.nanmean(ch[:day])
    rh = x[ids.index("smp29-02"), day + 1:3 * day, col("air_rh_pct")]
    assert rh.min() >= 99.5
    assert 85.0 in x[ids.index("bansir-laut-01"), :, col("water_temp_c")]
    drawn = realistic_faults(Simulation(FLEET, seed=6), "log", START, START + 8 * 86400, 5, seed=6)
    assert len(drawn) == 5 and all(f.metric == "water_level_cm" and 30 <= f.size <= 250 for f in drawn)
    assert drawn == realistic_faults(Simulation(FLEET, seed=6), "log", START, START + 8 * 86400, 5, seed=6)
