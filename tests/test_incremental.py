"""Incremental runs (`analytics.incremental`) held to the batch path, through the real InfluxDB.

A small fleet (a forest site of four nodes and an air node, a river site of two and two air nodes: every
air node is scored against the city's, the regional reference) sends hourly, each
node at its own minute; a cold start, then a run every 20 minutes for a day and a half, with a node's
ten-hour outage backfilled oldest first, and an air node's batch lost and resent hours later behind its
newest readings (found by the audit; it moves the city's reference of the other site's air node, whose
series must be recomputed as far back although its own site sent nothing old). At the end every flag, index, score, event and fire code the
runs hold equals a full recomputation over the same data (quality, indices and events on the window,
the detector from its origin), within floating-point tolerance; the points in InfluxDB are what the
runs wrote, and later runs wrote only new or changed points.
"""

from dataclasses import replace

import numpy as np
import pytest

from analytics import anomaly, incremental, quality
from analytics.analyze import ANOMALY_METRICS, FWI_DAYS, SETTLED_S, derive, fire_days
from analytics.data import anomaly_line, event_tags, load_cube
from analytics.window import METRIC_LIST
from rimba import lineproto
from rimba.fleet import load_fleet

T0 = 1764262800  # 2025-11-28 00:00 WIB, a fixed time
STEP = 600
NODES = {"inc-f1": ("smp29", "forest"), "inc-f2": ("smp29", "forest"), "inc-f3": ("smp29", "forest"),
         "inc-f4": ("smp29", "forest"), "inc-r1": ("bansir-laut", "river"), "inc-r2": ("bansir-laut", "river"),
         "inc-a1": ("smp29", "air"), "inc-a2": ("bansir-laut", "air"), "inc-a3": ("bansir-laut", "air")}
PHASE = {n: 7 * k % 60 for k, n in enumerate(NODES)}  # each node sends at its own minute of the hour


def readings(seed=31, days=5):
    """(node, t, fields) for every 10 minutes, seeded: weather, rain showers, a spike, a warm node."""
    rng = np.random.default_rng(seed)
    out = []
    t = T0 + np.arange(days * 144) * STEP + 30
    hour = ((t + 7 * 3600) % 86400) / 3600
    rain = np.where(rng.random(len(t)) < 0.03, rng.gamma(1.0, 2.0, len(t)), 0.0)
    for k, node in enumerate(NODES):
        profile = NODES[node][1]
        temp = 27 + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.2, len(t))
        if node == "inc-f2":
            temp[500:530] += 5  # five hours warm: an anomaly
        rh = np.clip(80 - 12 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1.5, len(t)), 30, 100)
        for i, ti in enumerate(t):
            f = {"batt_v": 4.1 - 0.0005 * i + rng.normal(0, 0.005)}
            if profile in ("forest", "air"):
                f["air_temp_c"], f["air_rh_pct"] = temp[i], rh[i]
            if profile == "forest":
                f["soil_vwc_pct"] = 30 + rng.normal(0, 0.3)
                if k < 2:
                    f["rain_mm"] = rain[i]
            if profile == "air":
                f["pm25_ugm3"] = max(1.0, 20 + 10 * np.sin(i / 40) + rng.normal(0, 2))
            if profile == "river":
                f["water_level_cm"] = 120 + 60 * np.cos(2 * np.pi * ti / (12.42 * 3600)) + rng.normal(0, 2)
            if node == "inc-f1" and i == 400:
                f["air_temp_c"] += 12  # a spike
            out.append((node, int(ti), i, f))
    return out


def line(node, t, seq, f):
    values = ",".join(f"{k}={float(v)!r}" for k, v in f.items())
    return lineproto.reading(NODES[node][0], node, values, seq, False, None, t)


def sent_by(node, t, now, outage, hole):
    """Whether the node's reading at t is in the database at `now`."""
    send = (now - PHASE[node] * 60) // 3600 * 3600 + PHASE[node] * 60  # the node's last send
    if t >= send:
        return False
    if node == outage[0] and t >= outage[1]:
        if now < outage[2]:
            return False  # silent for ten hours; then its buffer, oldest first, two hours of it per 20 minutes
        return t < outage[1] + 2 * 3600 * (1 + (now - outage[2]) // 1200)
    if node == hole[0] and hole[1] <= t < hole[1] + 3600:
        return now >= hole[2]  # a lost batch, resent later
    return True


@pytest.fixture
def fleet_platform(platform_factory):
    return platform_factory(NODES)


def test_incremental_runs_equal_the_batch_with_late_arrivals(fleet_platform):
    """The whole fleet in one process, and in two partitions by site (each holds its own nodes and the other's
    particulate sensors, its regional reference), each restarted part-way from its incremental snapshot."""
    p = fleet_platform
    data = readings()
    cold_at = T0 + 3 * 86400 + 17 * 60
    outage = ("inc-f3", cold_at + 2 * 3600, cold_at + 12 * 3600)
    hole = ("inc-a2", cold_at + 20 * 3600, cold_at + 30 * 3600)  # a particulate sensor: the city's reference
    runs = [cold_at + k * 1200 for k in range(36 * 3 + 1)]
    settings = p.settings.with_(analyze_audit_s=3600, analyze_snapshot_s=3 * 3600, analyze_days=3.0)
    fleet = load_fleet(p.fleet_path)
    parts = {"all": settings, "smp29": settings.with_(analyze_sites="smp29"),
             "bansir-laut": settings.with_(analyze_sites="bansir-laut")}
    written = set()
    engines: dict = {}
    lines_per_run = []
    saves = {}
    for k, now in enumerate(runs):
        batch = [(n, t, i, f) for n, t, i, f in data if (n, t) not in written and sent_by(n, t, now, outage, hole)]
        if batch:
            p.influx.write(("\n".join(line(n, t, i, f) for n, t, i, f in batch) + "\n").encode())
            written.update((n, t) for n, t, _, _ in batch)
        for name, s in parts.items():
            if name not in engines or k == 40:  # a restart part-way resumes from the saved state
                if name in engines:
                    saves[name] = engines[name].store.last  # the last snapshot before it: of what changed only
                    engines[name].close()
                engines[name] = incremental.Incremental(s, fleet, p.influx, progress=False)
                assert (k == 0) == (engines[name].st is None)
            got = engines[name].run(now)
            if name == "all":
                lines_per_run.append(got["lines"])
                if k == 0:
                    saves["cold"] = engines[name].store.last
    for e in engines.values():
        e.close()
    # only what changed: a few points a run (more when the window moves on at a WIB midnight)
    assert lines_per_run[0] > 1000 and np.median(lines_per_run[1:]) < lines_per_run[0] / 50
    assert saves["cold"]["whole"] and not saves["all"]["whole"]
    assert saves["all"]["bytes"] < saves["cold"]["bytes"] / 3, saves
    end = runs[-1]
    st = engines["all"].st
    assert st.origin == incremental.window_start(cold_at, 3.0) < st.start  # the window moved on a day

    # the batch over the same data
    cube = load_cube(p.influx, fleet, st.start, end, STEP)
    whole = load_cube(p.influx, fleet, st.origin, end, STEP)
    cols = [whole.metrics.index(m) for m in ANOMALY_METRICS]
    wflags = quality.check(whole.values, whole.metrics, whole.sites)
    x = np.where(wflags[:, :, cols] & quality.RANGE, np.nan, whole.values[:, :, cols])
    scores = anomaly.score_cube(x, whole.times, ANOMALY_METRICS, STEP, whole.sites, whole.metric("rain_mm"))
    w = slice((st.start - st.origin) // STEP, None)
    flags = quality.check(cube.values, cube.metrics, cube.sites)
    derived = derive(cube, STEP, flags)
    window_scores = anomaly.Scores(scores.score[:, w], scores.baseline[:, w], scores.kind[:, w], scores.referenced,
                                   scores.z[:, w])
    events = anomaly.events(window_scores, x[:, w], cube.times, cube.nodes, ANOMALY_METRICS)
    assert events and any(e.node == "inc-f2" and e.metric == "air_temp_c" for e in events)
    hourly = load_cube(p.influx, fleet, incremental.window_start(end, FWI_DAYS), end, 3600,
                       ("air_temp_c", "air_rh_pct", "rain_mm"))
    fire = fire_days(hourly, {k: v.lat for k, v in fleet.sites.items()}, settings.fire_wind_kmh)
    for name, engine in engines.items():
        st = engine.st
        own = st.nodes[:st.n_own]
        rows = [cube.nodes.index(n) for n in own]
        assert own == sorted(n for n in fleet.nodes if name in ("all", fleet.nodes[n].site)), name
        assert len(cube.times) == st.steps and st.start == engines["all"].st.start
        np.testing.assert_allclose(st.values(np.arange(st.n_own)), cube.values[rows], rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(st.flags, flags[rows])
        for k in derived:
            np.testing.assert_allclose(st.derived[k], derived[k][rows], rtol=1e-9, atol=1e-9, equal_nan=True,
                                       err_msg=f"{name} {k}")
        held = [ANOMALY_METRICS.index(m) for m in st.a_metrics]
        assert set(ANOMALY_METRICS) - set(st.a_metrics) >= {"co2_ppm", "soil_temp_c"}  # metrics no node has
        assert np.isnan(scores.score[rows][:, :, [j for j in range(len(ANOMALY_METRICS)) if j not in held]]).all()
        for field in ("score", "z"):
            np.testing.assert_allclose(getattr(st.scores, field), getattr(scores, field)[rows][:, w][:, :, held],
                                       rtol=1e-7, atol=1e-7, equal_nan=True, err_msg=f"{name} {field}")
        mine = sorted((e for e in events if e.node in own), key=repr)
        assert sorted(st.events.values(), key=repr) == mine, name
        for d, t in enumerate(fire.times):
            for i, node in enumerate(hourly.nodes):
                if node in own and not np.isnan(fire.codes.fwi[d, i]):
                    assert st.fire[(node, int(t))]["fwi"] == pytest.approx(float(fire.codes.fwi[d, i]), rel=1e-9)
        assert engine.stats["read_failures"] == 0
        if name != "all":  # the other partition's particulate sensors, their particulates only
            city = st.nodes[st.n_own:]
            assert city == sorted(n for n in fleet.nodes if fleet.nodes[n].site != name and NODES[n][1] == "air")
            others = [k for k, m in enumerate(st.metrics) if m not in quality.PM_METRICS]
            assert not st.counts[st.n_own:][:, :, others].any()

    # what InfluxDB shows in the window is what the batch finds there, every flag and event and no other: one that
    # late readings changed (an event's start or kind, a step flag filled in) is withdrawn, not left beside its
    # successor (the day the window moved past has flags of its own, which the batch over the window does not compute)
    start = engines["all"].st.start
    assert live_points(p.influx, "qc", start) == {
        (cube.nodes[i], cube.metrics[j], check, int(cube.times[t]))
        for bit, check in quality.FLAG_NAMES.items() for i, t, j in np.argwhere(flags & bit)}
    assert live_points(p.influx, "anomaly", start) == {(e.node, e.metric, e.kind, e.severity, e.start) for e in events}
    # and every derived value from a day into the window on (the ISPU's 24 hours: before it, the window cannot give
    # what the history gave): a value whose input was later found unfit (a spike, flagged at the next value) is
    # withdrawn; on the code before withdrawals 17 heat indices (and dew points, humidexes) and 4 corrected PM2.5 stayed
    settled = start + SETTLED_S
    fields = list(derived)
    stored = {k: np.full(derived[k].shape, np.nan) for k in fields}
    for r in p.influx.rows(f'SELECT {", ".join(fields)} FROM "index" WHERE time >= {settled}s GROUP BY node'):
        for k in fields:
            if r[k] is not None and r[k] > lineproto.WITHDRAWN_VALUE:
                stored[k][cube.nodes.index(r["node"]), (int(r["time"]) - start) // STEP] = r[k]
    cut = (settled - start) // STEP
    for k in fields:
        np.testing.assert_allclose(stored[k][:, cut:], derived[k][:, cut:], rtol=1e-9, equal_nan=True, err_msg=k)
    # before it, the values written while the window began a day earlier stand: the window's first day is
    # history there, not withdrawn for want of the day before it
    early = derive(whole, STEP, wflags)
    before = (start - st.origin) // STEP
    for r in p.influx.rows(f'SELECT {", ".join(fields)} FROM "index" WHERE time >= {start}s AND time < {settled}s '
                           'GROUP BY node'):
        for k in fields:
            want = early[k][whole.nodes.index(r["node"]), before + (int(r["time"]) - start) // STEP]
            if r[k] is not None and r[k] <= lineproto.WITHDRAWN_VALUE:
                assert np.isnan(want), (k, r)
            elif r[k] is not None and k.startswith("ispu_"):  # and not written again from a part of its 24 hours
                assert r[k] == pytest.approx(want, rel=1e-9), (k, r)


def live_points(influx, measurement, start) -> set:
    """The `qc` or `anomaly` points from `start` on that stand (`lineproto.LIVE`), by tags and time."""
    tags = lineproto.POINT_TAGS[measurement][1:]  # the site follows from the node
    columns = ", ".join(f'"{k}"' for k in (lineproto.LIVE_FIELD[measurement], *tags))
    q = f"SELECT {columns} FROM {measurement} WHERE {lineproto.LIVE[measurement]} AND time >= {start}s"
    return {(*(r[k] for k in tags), int(r["time"])) for r in influx.rows(q)}


def test_partition_by_site_names_and_hash(fleet_platform):
    from rimba.errors import ConfigError

    p = fleet_platform
    fleet = load_fleet(p.fleet_path)
    assert incremental.owned_sites(p.settings.with_(analyze_sites="smp29"), fleet) == ["smp29"]
    parts = [incremental.owned_sites(p.settings.with_(analyze_partition=f"{k}/3"), fleet) for k in (1, 2, 3)]
    assert sorted(s for part in parts for s in part) == sorted(fleet.sites)  # each site owned exactly once
    with pytest.raises(ConfigError, match="analyze_sites"):
        incremental.owned_sites(p.settings.with_(analyze_sites="nowhere"), fleet)
    with pytest.raises(ConfigError, match="analyze_partition"):
        p.settings.with_(analyze_partition="4/3")


def test_a_cold_start_withdraws_what_its_state_does_not_stand_by_in_its_window_and_nothing_else(fleet_platform):
    """A state built again from history (new constants, another version) does not know what the one before it
    wrote. In its window, from a day in (before, it lacks the evidence), a flag or a derived value of its own nodes
    that it does not find is withdrawn; an event it finds again differently (overlapping, another start or kind)
    is withdrawn, one it does not find at all stays (a detector started at the window's start lacks the history's
    context: no evidence against it). The other partition's nodes, and what is before the window, are left."""
    p = fleet_platform
    now = T0 + 3 * 86400 + 17 * 60
    p.influx.write(("\n".join(line(n, t, i, f) for n, t, i, f in readings(days=4) if t < now) + "\n").encode())
    settings = p.settings.with_(analyze_days=2.0, analyze_sites="smp29")
    start = incremental.window_start(now, 2.0)
    spike = T0 + 400 * STEP  # inc-f1's air temperature (readings())
    inside, early, before = T0 + 2 * 86400 + 14 * 3600, start + 2 * 3600, start - 6 * 3600  # on the grid
    assert start + incremental.SETTLED_S < inside and early < start + incremental.SETTLED_S

    def event(node, site, t):
        return lineproto.line("anomaly", {"site": site, "node": node, "metric": "air_temp_c", "kind": "day",
                                          "severity": "warning"},
                              {"score": 0.8, "value": 30.0, "end": t + 2 * 3600, "message": "old"}, t * 1000)

    def flag(node, site, t):
        return lineproto.line("qc", {"site": site, "node": node, "metric": "air_rh_pct", "check": "flat"},
                              {"flag": quality.FLAT, "value": 90.0}, t * 1000)

    def ispu(node, site, t):  # neither node measures particulates
        return lineproto.line("index", {"site": site, "node": node}, {"ispu_pm25": 40.0}, t * 1000)

    mine, theirs = ("inc-f1", "smp29"), ("inc-r1", "bansir-laut")
    old = [event(*n, t) for n in (mine, theirs) for t in (spike - 1200, inside, before)]
    old += [f(*n, t) for f in (flag, ispu) for n in (mine, theirs) for t in (inside, early, before)]
    p.influx.write(("\n".join(old) + "\n").encode())
    engine = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    got = engine.run(now)
    engine.close()
    st = engine.st
    assert st.start == start and not any(e.kind == "day" for e in st.events.values())
    assert any(e.node == "inc-f1" and e.metric == "air_temp_c" and e.start <= spike + 3600 and spike - 1200 <= e.end
               for e in st.events.values())  # the spike, found again: the old event beside it is superseded
    f1, rh = st.nodes.index("inc-f1"), METRIC_LIST.index("air_rh_pct")
    assert not (st.flags[f1, :, rh] & quality.FLAT).any()

    def stored(what, node, extra=""):
        return [(r["time"], r[what.split()[0]]) for r in p.influx.rows(f"SELECT {what} WHERE node = '{node}'{extra}")]

    assert stored("score FROM anomaly", "inc-f1", " AND kind = 'day'") == [(before, 0.8), (inside, 0.8),
                                                                           (spike - 1200, 0.0)]
    assert inside < spike - 1200
    assert stored('flag FROM qc', "inc-f1", " AND \"check\" = 'flat'") == [(before, quality.FLAT),
                                                                          (early, quality.FLAT), (inside, 0)]
    assert stored('ispu_pm25 FROM "index"', "inc-f1") == [(before, 40.0), (early, 40.0),
                                                          (inside, lineproto.WITHDRAWN_VALUE)]
    for what in ("score FROM anomaly", "flag FROM qc", 'ispu_pm25 FROM "index"'):  # not this partition's
        assert all(v > 0 for _, v in stored(what, "inc-r1")) and len(stored(what, "inc-r1")) == 3
    assert got["swept"] == 3
    # what the state found stands
    assert {(e.node, e.metric, e.kind, e.severity, e.start) for e in st.events.values()} <= \
        live_points(p.influx, "anomaly", start)


def test_an_event_not_found_again_is_withdrawn_and_one_that_began_before_the_window_is_left(fleet_platform):
    """An event a run found (planted in its state and written, as that run would have) that the next computation of
    its node does not find again (late readings moved its start or changed its kind) is withdrawn; one that began
    before the window, which is not computed again, stays as history."""
    p = fleet_platform
    now = T0 + 3 * 86400 + 17 * 60
    data = readings(days=4)
    p.influx.write(("\n".join(line(n, t, i, f) for n, t, i, f in data if t < now) + "\n").encode())
    engine = incremental.Incremental(p.settings.with_(analyze_days=2.0), load_fleet(p.fleet_path), p.influx,
                                     progress=False)
    engine.run(now)
    st = engine.st
    found = set(st.events)
    spike = [e for e in st.events.values() if e.node == "inc-f1" and e.metric == "air_temp_c"]
    assert len(spike) == 1  # readings()' spike
    planted = [anomaly.Event("inc-f1", "air_temp_c", "day", t, t + 3600, 0.8, 30.0, "warning", "old")
               for t in (now - 10 * 3600, st.start - 6 * 3600)]
    # and the spike's event as a run would have written it with the other severity: the same start, another point
    other = replace(spike[0], severity="critical" if spike[0].severity == "warning" else "warning", message="old")
    for e in [*planted, other]:
        st.events[(e.node, e.metric, e.start)] = e
    p.influx.write(("\n".join(anomaly_line("smp29", e) for e in [*planted, other]) + "\n").encode())
    later = now + 3600
    p.influx.write(("\n".join(line(n, t, i, f) for n, t, i, f in data if now <= t < later) + "\n").encode())
    engine.run(later)
    engine.close()
    assert set(st.events) >= found - {k for k in found if k[0] == "inc-f1"}
    assert [(r["time"], r["score"]) for r in p.influx.rows("SELECT score FROM anomaly WHERE node = 'inc-f1' AND "
                                                           "kind = 'day'")] == [(st.start - 6 * 3600, 0.8),
                                                                                (now - 10 * 3600, 0.0)]
    by_severity = {r["severity"]: r["score"] for r in p.influx.rows(
        f"SELECT score, severity FROM anomaly WHERE node = 'inc-f1' AND time = {spike[0].start}s")}
    assert by_severity == {spike[0].severity: spike[0].peak, other.severity: 0.0}


def test_each_process_sweeps_once_and_a_sweep_that_fails_loses_nothing(fleet_platform, monkeypatch):
    """The sweep (`Incremental._stale`) runs on a process's first run, cold or loaded from a snapshot (a process that
    died after its last snapshot wrote what the snapshot does not hold), once the run's own points are written:
    if InfluxDB does not answer its queries, nothing the run computed is lost, and the next run sweeps."""
    from rimba.errors import InfluxUnavailable

    p = fleet_platform
    now = T0 + 3 * 86400 + 17 * 60
    p.influx.write(("\n".join(line(n, t, i, f) for n, t, i, f in readings(days=4) if t < now) + "\n").encode())
    settings = p.settings.with_(analyze_days=2.0)
    fleet = load_fleet(p.fleet_path)
    real = incremental.stale_points
    tries = []

    def unanswered(*args, **kwargs):
        tries.append(1)
        raise InfluxUnavailable("InfluxDB at 127.0.0.1 did not answer: timed out")

    monkeypatch.setattr(incremental, "stale_points", unanswered)
    engine = incremental.Incremental(settings, fleet, p.influx, progress=False)
    with pytest.raises(InfluxUnavailable):
        engine.run(now)
    st = engine.st
    first = st.flags.copy()

    def written():
        assert live_points(p.influx, "qc", 0) == {
            (st.nodes[i], METRIC_LIST[j], check, st.start + t * STEP)
            for bit, check in quality.FLAG_NAMES.items() for i, t, j in np.argwhere(st.flags & bit)}
        assert live_points(p.influx, "anomaly", 0) == {(e.node, e.metric, e.kind, e.severity, e.start)
                                                        for e in st.events.values()} != set()

    written()
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(incremental, "stale_points", counted)
    got = engine.run(now + 60)
    assert (first == st.flags).all() and tries == [1] and calls == [1] and got["swept"] == 0
    written()
    engine.run(now + 120)
    assert calls == [1]  # once a process
    engine.close()
    # after the snapshot, the process that died wrote a flag that the one loading it does not find; and a batch over
    # a shorter window withdrew an event the service stands by and wrote another heat index: the service, which
    # writes only what changes, would never write them again but for its sweep
    t = T0 + 2 * 86400 + 14 * 3600
    e = max(st.events.values(), key=lambda e: e.start)
    hi = st.derived_of("heat_index_c")
    i, k = next((i, k) for i, k in np.argwhere(~np.isnan(hi)) if k >= incremental.SETTLED_S // STEP)
    when = st.start + int(k) * STEP
    p.influx.write(("\n".join([
        lineproto.line("qc", {"site": "smp29", "node": "inc-f1", "metric": "air_rh_pct", "check": "flat"},
                       {"flag": quality.FLAT}, t * 1000),
        lineproto.withdrawal("anomaly", event_tags(st.sites[st.nodes.index(e.node)], e), e.start),
        lineproto.line("index", {"site": st.sites[i], "node": st.nodes[i]}, {"heat_index_c": 99.0}, when * 1000),
    ]) + "\n").encode())
    again = incremental.Incremental(settings, fleet, p.influx, progress=False)
    assert again.st is not None  # loaded, not rebuilt
    assert again.run(now + 180)["swept"] == 3 and calls == [1, 1]
    again.close()
    assert [r["flag"] for r in p.influx.rows("SELECT flag FROM qc WHERE \"check\" = 'flat' AND node = 'inc-f1'")] == [0]
    assert [r["score"] for r in p.influx.rows(f"SELECT score FROM anomaly WHERE node = '{e.node}' AND "
                                              f"time = {e.start}s AND kind = '{e.kind}'")] == [e.peak]
    assert [r["heat_index_c"] for r in p.influx.rows(f"SELECT heat_index_c FROM \"index\" WHERE "
                                                     f"node = '{st.nodes[i]}' AND time = {when}s")] == [hi[i, k]]


def weather(i) -> str:
    """The air beside the particulates at step i (the ISPU is of the humidity-corrected PM2.5): a day's swing."""
    swing = np.sin(2 * np.pi * i / 144)
    return f"air_temp_c={28 + 3 * swing:.2f},air_rh_pct={75 - 12 * swing:.2f}"


@pytest.mark.parametrize("depth", [0.9, 0.4])  # to a tenth; and barely past what the check finds (0.3 is not)
def test_a_dead_fan_stays_flagged_when_its_fall_slides_out_of_the_window(platform_factory, depth):
    """FAN holds for as long as the sensor stays sunk, on the evidence of a fall that the window may no longer hold.
    The service carries what FAN needs from the steps that leave the window (`State.fan_x`, saved with it): a fan
    dead from day 2.3 stays flagged after two midnights have moved the window past its whole fall, and through a
    restart, as the check over the whole history flags it; its PM gives no ISPU; no flag of it is withdrawn. (The
    batch, over its window alone, cannot see the fall: it finds no fan there.) A fan barely sunk too: the city's
    reference counts it again once its fall has left the window, which moves the reference, not the flags."""
    # the dead fan alone at its site (no neighbours to drift from: only the city's sensors can tell)
    air = {f"fan-{k}": ("bansir-laut" if k == 0 else "smp29", "air") for k in range(5)}
    p = platform_factory(air)
    rng = np.random.default_rng(11)
    t = T0 + np.arange(int(5.4 * 144)) * STEP + 30
    hours = ((t + 7 * 3600) % 86400) / 3600
    dying = np.clip((t - (T0 + 1.3 * 86400)) / 86400, 0, 1)  # over a day, then no lower

    def pm(k):
        level = 15 + 3 * k + 8 * np.exp(-((hours - 7.5) ** 2) / 2)
        x = level * rng.lognormal(0, 0.08, len(t))
        return x * (1 - depth * dying) if k == 0 else x

    values = np.stack([pm(k) for k in range(5)])
    rows = [(node, int(ti), i, float(values[k, i])) for k, node in enumerate(air) for i, ti in enumerate(t)]

    def send(until):
        batch = [r for r in rows if sent[0] <= r[1] < until]
        p.influx.write(("\n".join(lineproto.reading(air[n][0], n, f"pm25_ugm3={v!r},{weather(i)}", i, False, None,
                                                    ti) for n, ti, i, v in batch) + "\n").encode())
        sent[0] = until

    sent = [0]
    settings = p.settings.with_(analyze_days=2.0)
    fleet = load_fleet(p.fleet_path)
    engine = incremental.Incremental(settings, fleet, p.influx, progress=False)
    pm = METRIC_LIST.index("pm25_ugm3")
    for day in (3.5, 3.9, 4.1, 4.6, 5.1):  # the window from day 1, then 2, then 3 (the fall ended at day 2.3)
        send(T0 + int(day * 86400))
        engine.run(T0 + int(day * 86400))
    st = engine.st
    assert st.start == T0 + 3 * 86400
    alone = quality.check(engine._cube(np.arange(5)).values[:, :, [pm]], ("pm25_ugm3",))  # the batch's view
    assert not (alone & quality.FAN).any()
    history = quality.check(values[:, :, None], ("pm25_ugm3",))[:, :, 0]  # all of it, from day 0
    first = (st.start - T0) // STEP
    assert (history[0, first:first + st.steps] & quality.FAN).all()
    assert (st.flags[0, :, pm] & quality.FAN).all() and not (st.flags[1:, :, pm] & quality.FAN).any()
    assert not (st.flags[0, :, pm] & quality.DRIFT).any()
    assert np.isnan(st.derived_of("ispu_pm25")[0]).all() and not np.isnan(st.derived_of("ispu_pm25")[1:]).all()
    engine.close()
    again = incremental.Incremental(settings, fleet, p.influx, progress=False)  # loaded from its snapshot
    assert again.st is not None and (again.st.flags[0, :, pm] & quality.FAN).all()
    send(T0 + int(5.3 * 86400))
    again.run(T0 + int(5.3 * 86400))
    again.close()
    assert (again.st.flags[0, :, pm] & quality.FAN).all()
    fan = p.influx.rows(f"SELECT flag FROM qc WHERE \"check\" = 'fan' AND node = 'fan-0' AND time >= {T0 + 3 * 86400}s")
    assert len(fan) >= again.st.steps and all(r["flag"] == quality.FAN for r in fan)
    assert not p.influx.rows(f"SELECT ispu_pm25 FROM \"index\" WHERE node = 'fan-0' AND time >= {T0 + 3 * 86400}s "
                             f"AND {lineproto.live_value('ispu_pm25')}")


def test_a_fan_flag_the_service_no_longer_raises_is_withdrawn(platform_factory):
    """The service judges FAN with what it carries from before its window, so a fan flag it no longer raises is
    withdrawn like any other (a batch or a sweep, over the window alone, leaves FAN's flags: they may rest on a
    fall before the window)."""
    air = {f"fan-{k}": ("bansir-laut" if k == 0 else "smp29", "air") for k in range(5)}
    p = platform_factory(air)
    rng = np.random.default_rng(12)
    t = T0 + np.arange(3 * 144) * STEP + 30
    hours = ((t + 7 * 3600) % 86400) / 3600
    values = np.stack([(15 + 3 * k + 8 * np.exp(-((hours - 7.5) ** 2) / 2)) * rng.lognormal(0, 0.08, len(t))
                       for k in range(5)])
    now = T0 + int(2.9 * 86400)
    def reading(k, i):
        return lineproto.reading(air[f"fan-{k}"][0], f"fan-{k}", f"pm25_ugm3={float(values[k, i])!r},{weather(i)}", i,
                                 False, None, int(t[i]))

    p.influx.write(("\n".join(reading(k, i) for k in range(5) for i in range(len(t)) if t[i] < now) + "\n").encode())
    engine = incremental.Incremental(p.settings.with_(analyze_days=2.0), load_fleet(p.fleet_path), p.influx,
                                     progress=False)
    engine.run(now)
    st = engine.st
    pm = METRIC_LIST.index("pm25_ugm3")
    assert not (st.flags & quality.FAN).any()
    # a flag the state held and wrote (as a run on a partial city reference would have), that it no longer raises
    k = (T0 + 2 * 86400 + 6 * 3600 - st.start) // STEP
    st.flags[0, k, pm] |= quality.FAN
    p.influx.write(lineproto.line("qc", {"site": "bansir-laut", "node": "fan-0", "metric": "pm25_ugm3",
                                         "check": "fan"}, {"flag": quality.FAN}, (st.start + k * STEP) * 1000).encode())
    p.influx.write(("\n".join(reading(j, i) for j in range(5) for i in range(len(t)) if now <= t[i] < now + 3600)
                    + "\n").encode())
    engine.run(now + 3600)
    engine.close()
    assert [r["flag"] for r in p.influx.rows("SELECT flag FROM qc WHERE \"check\" = 'fan'")] == [0]


def test_a_rebuilt_state_holds_the_fans_written_dead_where_its_window_begins(platform_factory):
    """A state built again from history (new constants, a new node in the fleet file) cannot see a fall older than
    its window: it takes the fans held dead where its window begins from the FAN flags written there (by the
    state it replaces), so a dead fan's PM does not come back into the ISPU, and its sweep writes none again."""
    air = {f"fan-{k}": ("bansir-laut" if k == 0 else "smp29", "air") for k in range(5)}
    p = platform_factory(air)
    rng = np.random.default_rng(13)
    t = T0 + np.arange(int(5.2 * 144)) * STEP + 30
    hours = ((t + 7 * 3600) % 86400) / 3600
    dying = np.clip((t - (T0 + 1.3 * 86400)) / 86400, 0, 1)
    values = np.stack([(15 + 3 * k + 8 * np.exp(-((hours - 7.5) ** 2) / 2)) * rng.lognormal(0, 0.08, len(t))
                       * ((1 - 0.9 * dying) if k == 0 else 1) for k in range(5)])
    now = T0 + int(5.1 * 86400)
    start = T0 + 3 * 86400
    lines = [lineproto.reading(air[n][0], n, f"pm25_ugm3={float(values[k, i])!r},{weather(i)}", i, False, None, int(ti))
             for k, n in enumerate(air) for i, ti in enumerate(t) if ti < now]
    # what the replaced state wrote where the window begins: fan-0 dead, its ISPU withdrawn
    lines += [lineproto.line("qc", {"site": "bansir-laut", "node": "fan-0", "metric": "pm25_ugm3", "check": "fan"},
                             {"flag": quality.FAN}, (start + j * STEP) * 1000) for j in range(24)]
    p.influx.write(("\n".join(lines) + "\n").encode())
    engine = incremental.Incremental(p.settings.with_(analyze_days=2.0), load_fleet(p.fleet_path), p.influx,
                                     progress=False)
    engine.run(now)
    engine.close()
    st = engine.st
    pm = METRIC_LIST.index("pm25_ugm3")
    assert st.start == start
    held = st.flags[0, 11:, pm] & quality.FAN  # from the first block median (12 of its 24 samples) on
    assert held.all() and not (st.flags[1:, :, pm] & quality.FAN).any()
    assert np.isnan(st.derived_of("ispu_pm25")[0]).all() and np.isnan(st.derived_of("pm25_corr_ugm3")[0, 11:]).all()
    assert not np.isnan(st.derived_of("ispu_pm25")[1:]).all()
    assert not p.influx.rows(f"SELECT ispu_pm25 FROM \"index\" WHERE node = 'fan-0' AND "
                             f"{lineproto.live_value('ispu_pm25')}")
    # and the batch over the same window, which writes every value it computes, takes them the same way
    import subprocess
    import sys

    from rimba.dev.harness import ROOT, env_for

    r = subprocess.run([sys.executable, "-m", "rimba", "analyze", "--once", "--hours", "48", "--until", str(now)],
                       env=env_for(p.values), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert not p.influx.rows(f"SELECT ispu_pm25 FROM \"index\" WHERE node = 'fan-0' AND "
                             f"{lineproto.live_value('ispu_pm25')}")
    assert p.influx.rows(f"SELECT ispu_pm25 FROM \"index\" WHERE node = 'fan-1' AND "
                         f"{lineproto.live_value('ispu_pm25')}")


def test_a_replaced_pm_sensor_is_judged_by_its_own_readings_from_the_technician_s_record(platform_factory):
    """A fan slows over a day to read a third less and stays so: held flagged, no ISPU. A technician replaces the
    sensor at day 3.0 with a unit reading 0.72 of the old one's healthy level: below where the hold releases, so
    it stays flagged, for good. `rimba node replaced` records it in the fleet file while the service runs; its
    next run judges the new sensor by its own readings: no FAN from the replacement on (InfluxDB's flags from a day
    into the window withdrawn), the ISPU back. A restart (the state's snapshot) and the batch agree."""
    from hardware.provision import Provisioner

    air = {f"fan-{k}": ("bansir-laut" if k == 0 else "smp29", "air") for k in range(5)}
    p = platform_factory(air)
    rng = np.random.default_rng(14)
    t = T0 + np.arange(int(4.6 * 144)) * STEP + 30
    hours = ((t + 7 * 3600) % 86400) / 3600
    replaced = T0 + 3 * 86400
    old = 1 - 0.35 * np.clip((t - (T0 + 1.3 * 86400)) / 86400, 0, 1)  # a third less, after a day
    values = np.stack([(15 + 3 * k + 8 * np.exp(-((hours - 7.5) ** 2) / 2)) * rng.lognormal(0, 0.08, len(t))
                       * ((np.where(t < replaced, old, 0.72)) if k == 0 else 1) for k in range(5)])
    rows = [(n, int(ti), i, float(values[k, i])) for k, n in enumerate(air) for i, ti in enumerate(t)]

    def send(until):
        p.influx.write(("\n".join(lineproto.reading(air[n][0], n, f"pm25_ugm3={v!r},{weather(i)}", i, False, None, ti)
                                  for n, ti, i, v in rows if sent[0] <= ti < until) + "\n").encode())
        sent[0] = until

    sent = [0]
    settings = p.settings.with_(analyze_days=2.0)
    engine = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    pm = METRIC_LIST.index("pm25_ugm3")
    for day in (3.1, 3.5, 3.9):
        send(T0 + int(day * 86400))
        engine.run(T0 + int(day * 86400))
    st = engine.st
    after = (replaced - st.start) // STEP
    assert (st.flags[0, after:, pm] & quality.FAN).all()  # the new unit, held for the old one's fall
    assert not (st.flags[1:, :, pm] & quality.FAN).any()
    Provisioner(settings).replaced("fan-0", "pm", replaced)  # the technician's record, the service running

    def live_fan(since):
        return p.influx.rows(f"SELECT flag FROM qc WHERE \"check\" = 'fan' AND node = 'fan-0' AND time >= {since}s "
                             f"AND {lineproto.LIVE['qc']}")

    for day in (3.92, 4.1):  # the next run, nothing new read; then past a midnight (the window from day 2)
        if day > 4:
            send(T0 + int(day * 86400))
        engine.run(T0 + int(day * 86400))
        st = engine.st
        after = (replaced - st.start) // STEP
        assert st.replaced == {"fan-0": (replaced,)}
        assert (st.flags[0, after - 48:after - 24, pm] & quality.FAN).all()  # the old sensor's, before it was replaced
        assert not (st.flags[0, after:, pm] & quality.FAN).any()
        assert live_fan(T0 + 2 * 86400) and not live_fan(replaced)
    assert st.start == T0 + 2 * 86400
    assert not np.isnan(st.derived_of("ispu_pm25")[0, after + 144:]).any()  # a day of the new unit: its ISPU
    assert p.influx.rows(f"SELECT ispu_pm25 FROM \"index\" WHERE node = 'fan-0' AND time >= {replaced}s AND "
                         f"{lineproto.live_value('ispu_pm25')}")
    engine.close()
    # a flag another writer left after the replacement (a process that ran without the record): the sweep of the
    # next process withdraws it, for from the replacement on the window holds all of FAN's evidence
    p.influx.write(lineproto.line("qc", {"site": "bansir-laut", "node": "fan-0", "metric": "pm25_ugm3", "check": "fan"},
                                  {"flag": quality.FAN}, (replaced + 86400 + 3600) * 1000).encode())
    assert live_fan(replaced)
    again = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)  # a restart
    assert again.st.replaced == {"fan-0": (replaced,)}
    send(T0 + int(4.3 * 86400))
    again.run(T0 + int(4.3 * 86400))
    again.close()
    assert not (again.st.flags[0, after:, pm] & quality.FAN).any() and not live_fan(replaced)
    # the batch over three days, the fall in its window: released at the replacement, what the service withdrew
    # stays so, and a flag another writer left after the replacement (only the batch's sweep can see it) withdrawn
    p.influx.write(lineproto.line("qc", {"site": "bansir-laut", "node": "fan-0", "metric": "pm25_ugm3", "check": "fan"},
                                  {"flag": quality.FAN}, (replaced + 3600) * 1000).encode())
    assert live_fan(replaced)
    # and a maintenance point no record stands for (taken back while no analytics ran): the batch withdraws it
    p.influx.write(lineproto.line("maintenance", {"site": "bansir-laut", "node": "fan-0", "part": "pm"},
                                  {"replaced": 1}, (replaced - 7200) * 1000).encode())
    import subprocess
    import sys

    from rimba.dev.harness import ROOT, env_for

    r = subprocess.run([sys.executable, "-m", "rimba", "analyze", "--once", "--hours", "72", "--until",
                        str(T0 + int(4.3 * 86400))], env=env_for(p.values), capture_output=True, text=True, cwd=ROOT,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert live_fan(T0 + 2 * 86400) and not live_fan(replaced)
    assert [r["time"] for r in p.influx.rows(f"SELECT * FROM maintenance WHERE {lineproto.LIVE['maintenance']}")] \
        == [replaced]


def replaced_fan(platform_factory, replaced: int, days: float):
    """The fleet of the replaced-sensor test, fan-0's sensor replaced at `replaced`: (platform, send(until),
    live_fan(since): fan-0's live FAN flags from `since`)."""
    air = {f"fan-{k}": ("bansir-laut" if k == 0 else "smp29", "air") for k in range(5)}
    p = platform_factory(air)
    rng = np.random.default_rng(14)
    t = T0 + np.arange(int(days * 144)) * STEP + 30
    hours = ((t + 7 * 3600) % 86400) / 3600
    old = 1 - 0.35 * np.clip((t - (T0 + 1.3 * 86400)) / 86400, 0, 1)
    values = np.stack([(15 + 3 * k + 8 * np.exp(-((hours - 7.5) ** 2) / 2)) * rng.lognormal(0, 0.08, len(t))
                       * ((np.where(t < replaced, old, 0.72)) if k == 0 else 1) for k in range(5)])
    rows = [(n, int(ti), i, float(values[k, i])) for k, n in enumerate(air) for i, ti in enumerate(t)]
    sent = [0]

    def send(until):
        p.influx.write(("\n".join(lineproto.reading(air[n][0], n, f"pm25_ugm3={v!r},{weather(i)}", i, False, None, ti)
                                  for n, ti, i, v in rows if sent[0] <= ti < until) + "\n").encode())
        sent[0] = until

    def live_fan(since):
        return p.influx.rows(f"SELECT flag FROM qc WHERE \"check\" = 'fan' AND node = 'fan-0' AND time >= {since}s "
                             f"AND {lineproto.LIVE['qc']}")

    return p, send, live_fan


def fan_service(platform_factory, replaced: int, days: float, runs: tuple) -> tuple:
    """`replaced_fan`'s fleet with a two-day window and a service run at each of `runs` (days after T0), each
    after the readings up to it: (platform, send, live_fan, settings, engine)."""
    p, send, live_fan = replaced_fan(platform_factory, replaced, days)
    settings = p.settings.with_(analyze_days=2.0)
    engine = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    for day in runs:
        send(T0 + int(day * 86400))
        engine.run(T0 + int(day * 86400))
    return p, send, live_fan, settings, engine


def test_a_replacement_in_the_window_s_first_day_withdraws_the_flags_from_it_not_from_a_day_in(platform_factory):
    """From the replacement on, the window holds all of FAN's evidence: the service withdraws the old sensor's
    flags from there, though it is in the window's first day (the rest of the first day is history)."""
    from hardware.provision import Provisioner

    replaced = T0 + int(2.8 * 86400)
    p, _send, live_fan, settings, engine = fan_service(platform_factory, replaced, 4.2, (3.1, 3.5, 3.9, 4.05))
    assert live_fan(replaced) and engine.st.start == T0 + 2 * 86400
    Provisioner(settings).replaced("fan-0", "pm", replaced)
    engine.run(T0 + int(4.1 * 86400))
    engine.close()
    c = -(-(replaced - engine.st.start) // STEP)
    assert c < SETTLED_S // STEP
    assert not (engine.st.flags[0, c:, METRIC_LIST.index("pm25_ugm3")] & quality.FAN).any()
    assert live_fan(T0 + 2 * 86400) and not live_fan(replaced)


def test_a_replacement_recorded_while_no_service_ran_is_taken_by_a_rebuilt_state_and_seeds_no_hold(platform_factory):
    """The record is written while the service is down, and its state is rebuilt from history (a new machine, new
    constants), with the replacement less than a day before the window: the rebuilt state's sweep withdraws the
    old sensor's flags from the window's start on, so the next rebuild, after a midnight, takes no hold for the new
    sensor from the flags written where its window begins (it did: 292 of its 303 steps flagged)."""
    import shutil

    from hardware.provision import Provisioner

    replaced = T0 + int(2.8 * 86400)
    p, send, live_fan, settings, engine = fan_service(platform_factory, replaced, 6.2, (3.1, 3.9, 4.7, 5.05))
    engine.close()
    assert live_fan(T0 + 3 * 86400)
    Provisioner(settings).replaced("fan-0", "pm", replaced)
    pm = METRIC_LIST.index("pm25_ugm3")
    for day in (5.1, 6.1):
        shutil.rmtree(settings.state_path)
        cold = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
        send(T0 + int(day * 86400))
        cold.run(T0 + int(day * 86400))
        cold.close()
        assert -SETTLED_S // STEP < (replaced - cold.st.start) // STEP < 0 or day > 6
        assert not (cold.st.flags[0, :, pm] & quality.FAN).any()
        assert not live_fan(cold.st.start)


def test_a_record_made_by_mistake_and_taken_back_after_a_midnight_leaves_the_dead_fan_flagged(platform_factory):
    """The sensor is replaced at day 3.6; the technician first records day 2.4 (a typo), and the service releases
    the old, dead sensor from there; a midnight moves the window past the mistaken time; then the record is taken
    back (`rimba node replaced --undo`) and the true one made. The dead sensor's flags come back from the window's
    start to the true replacement, as if the mistake had not been made: the hold carried over the midnight is
    kept as if no sensor were replaced, with the time its fall was found, and a replacement is taken out where it
    is used. (It was taken out in the carry: the mistake, taken back, left the dead fan's PM in the ISPU.) Then
    a replacement recorded nine days late, long past the window, still releases a hold carried from before it."""
    from hardware.provision import Provisioner

    true, wrong = T0 + int(3.6 * 86400), T0 + int(2.4 * 86400)
    p, send, live_fan = replaced_fan(platform_factory, true, 5.3)
    settings = p.settings.with_(analyze_days=2.0)
    engine = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    pm = METRIC_LIST.index("pm25_ugm3")
    tech = Provisioner(settings)
    for day in (3.1, 3.5, 3.7, 3.75, 4.1, 4.6, 5.1):
        if day == 3.75:
            tech.replaced("fan-0", "pm", wrong)
        send(T0 + int(day * 86400))
        engine.run(T0 + int(day * 86400))
    st = engine.st
    assert st.start == T0 + 3 * 86400 and not (st.flags[0, :, pm] & quality.FAN).any()  # released from day 2.4
    tech.replaced("fan-0", "pm", wrong, undo=True)
    tech.replaced("fan-0", "pm", true)
    send(T0 + int(5.2 * 86400))
    engine.run(T0 + int(5.2 * 86400))
    c = -(-(true - st.start) // STEP)  # the first step the new sensor reads
    assert (st.flags[0, 24:c, pm] & quality.FAN).all() and not (st.flags[0, c:, pm] & quality.FAN).any()
    assert live_fan(st.start) and not live_fan(true)
    assert not p.influx.rows(f"SELECT ispu_pm25 FROM \"index\" WHERE node = 'fan-0' AND time >= {st.start + 86400}s "
                             f"AND time < {true}s AND {lineproto.live_value('ispu_pm25')}")
    engine.close()
    # what the dashboards annotate: the record that stands, not the one taken back
    assert [r["time"] for r in p.influx.rows(f"SELECT * FROM maintenance WHERE {lineproto.LIVE['maintenance']}")] \
        == [true]
    assert len(p.influx.rows("SELECT * FROM maintenance")) == 2


def test_a_late_record_withdraws_the_old_flags_from_the_window_s_start_so_no_rebuild_or_batch_takes_them(
        platform_factory):
    """A record made after the replacement has left the window and the day before it: the service still knows when
    the fall it carries was found, and the sensor was replaced after that fall began, so the hold is the old
    sensor's and ends. The old sensor's flags in the window's first day are withdrawn too (they were left, a day
    into the window being the rule), so neither a state rebuilt the same day nor the batch, which know only the
    flags written where their window begins, takes a hold for the new sensor from them (a rebuild flagged 306 of
    its 317 steps, the batch wrote 159 flags)."""
    import shutil
    import subprocess
    import sys

    from hardware.provision import Provisioner
    from rimba.dev.harness import ROOT, env_for

    replaced = T0 + int(2.5 * 86400)
    p, send, live_fan, settings, engine = fan_service(platform_factory, replaced, 6.3, (3.1, 4.1, 5.1, 6.05))
    pm = METRIC_LIST.index("pm25_ugm3")
    start = engine.st.start
    assert start == T0 + 4 * 86400 and (engine.st.flags[0, 24:, pm] & quality.FAN).all()  # held for good
    assert live_fan(start)
    Provisioner(settings).replaced("fan-0", "pm", replaced)
    engine.run(T0 + int(6.1 * 86400))
    engine.close()
    assert not (engine.st.flags[0, :, pm] & quality.FAN).any() and not live_fan(start)
    r = subprocess.run([sys.executable, "-m", "rimba", "analyze", "--once", "--hours", "50", "--until",
                        str(T0 + int(6.1 * 86400))], env=env_for(p.values), capture_output=True, text=True, cwd=ROOT,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert not live_fan(start)
    assert [r["time"] for r in p.influx.rows(f"SELECT * FROM maintenance WHERE {lineproto.LIVE['maintenance']}")] \
        == [replaced]
    shutil.rmtree(settings.state_path)
    cold = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    send(T0 + int(6.2 * 86400))
    cold.run(T0 + int(6.2 * 86400))
    cold.close()
    assert not (cold.st.flags[0, :, pm] & quality.FAN).any() and not live_fan(start)


def live_maintenance(p) -> list:
    return [r["time"] for r in p.influx.rows(f"SELECT * FROM maintenance WHERE {lineproto.LIVE['maintenance']}")]


def test_a_record_seen_by_a_run_that_fails_before_its_write_is_still_written(platform_factory):
    """The record's point is kept with what is not written yet as soon as the run sees it: a run that fails before
    its write (InfluxDB down once the reader's retries are spent) loses none, though the next run's records differ
    from the state's no more."""
    from hardware.provision import Provisioner
    from rimba.errors import InfluxUnavailable

    replaced = T0 + int(2.5 * 86400)
    p, send, _ = replaced_fan(platform_factory, replaced, 3.5)
    settings = p.settings.with_(analyze_days=2.0)
    engine = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    send(T0 + int(3.1 * 86400))
    engine.run(T0 + int(3.1 * 86400))
    Provisioner(settings).replaced("fan-0", "pm", replaced)
    read = engine._read_recent

    def down(*_args, **_kw):
        raise InfluxUnavailable("influxdb: 503")

    engine._read_recent = down
    with pytest.raises(InfluxUnavailable):
        engine.run(T0 + int(3.2 * 86400))
    engine._read_recent = read
    send(T0 + int(3.3 * 86400))
    engine.run(T0 + int(3.3 * 86400))
    engine.close()
    assert live_maintenance(p) == [replaced]


@pytest.mark.parametrize("case", ["a state that holds the record and wrote no point", "a record taken back unseen"])
def test_a_process_s_sweep_makes_the_maintenance_points_the_fleet_file_s_records(platform_factory, case):
    """Each process's first run writes the owned nodes' records as points, of any time, and withdraws a live one no
    record stands for: a state saved by a service from before the points holds its records and wrote none (its
    diff finds no change); a record taken back while no service ran, the state rebuilt, has none to diff from."""
    import shutil

    from hardware.provision import Provisioner

    replaced = T0 + int(2.5 * 86400)
    p, send, _ = replaced_fan(platform_factory, replaced, 3.5)
    settings = p.settings.with_(analyze_days=2.0)
    tech = Provisioner(settings)
    tech.replaced("fan-0", "pm", replaced)
    first = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    send(T0 + int(3.1 * 86400))
    first.run(T0 + int(3.1 * 86400))
    first.close()
    assert live_maintenance(p) == [replaced]
    if case.startswith("a record"):
        tech.replaced("fan-0", "pm", replaced, undo=True)
        shutil.rmtree(settings.state_path)
    else:  # as a service from before the points left it: the record in its state, no point
        p.influx.write(lineproto.withdrawal("maintenance", {"site": "bansir-laut", "node": "fan-0", "part": "pm"},
                                            replaced).encode())
        assert live_maintenance(p) == []
    then = incremental.Incremental(settings, load_fleet(p.fleet_path), p.influx, progress=False)
    send(T0 + int(3.2 * 86400))
    then.run(T0 + int(3.2 * 86400))
    then.close()
    assert live_maintenance(p) == ([] if case.startswith("a record") else [replaced])
