"""Fault injection as the field makes them (`rimba.dev.simulate.realistic_faults`): a stuck sensor still dithers,
drifts are slow, spikes come in many sizes, a DS18B20 reports its error values, a PM fan dies slowly,
water gets into an enclosure, a log floats under a river sensor. The analytics' qc flags and anomaly
events (`bench.detection`, the same steps as `rimba analyze`) must find each kind (recall: the share of
injected faults with an alarm on that node and metric while it lasts) and raise little else
(precision: the share of alarms that fall on a fault), on a seed no constant was chosen on.

Targets (issue 13): 0.9 / 0.9 for stuck, spike, out-of-range, dead fan and wet enclosure; 0.7 / 0.8 for
drift. A kind the analytics does not reach yet is an xfail with its measured figures, strict, so that
reaching it is noticed.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.detection import faults_run

pytestmark = [pytest.mark.unit, pytest.mark.slow]  # no stack, no process

SEED = 201  # not one of bench.detection.TUNING_SEEDS
NODES, DAYS, COUNT = 40, 7.0, 12  # the density of bench.detection (30 faults of a kind per 100 nodes)
TARGET = {"stuck": (0.9, 0.9), "spike": (0.9, 0.9), "out-of-range": (0.9, 0.9), "dead-fan": (0.9, 0.9),
          "wet": (0.9, 0.9), "drift": (0.7, 0.8), "log": (0.9, 0.9)}
NOT_YET: dict = {}
# The dying fan is judged against the city's PM sensors, one in five nodes: 40 nodes make a city of eight,
# where 12 faults leave up to seven of them sinking at once and no reference at all. It is run on the
# bench's city (20 PM sensors, 30 faults: still up to 15 sinking at once).
CITY = {"dead-fan": (100, 8.0, 30)}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[k]))
                                  if k in NOT_YET else k for k in TARGET])
def test_each_fault_kind_is_found_and_little_else_is_raised(kind):
    nodes, days, count = CITY.get(kind, (NODES, DAYS, COUNT))
    r = faults_run(kind, nodes, days, SEED, count)
    assert r["faults"] >= count // 2, "the injection placed too few faults to judge"
    recall = r["detected"] / r["faults"]
    precision = r["true_alarms"] / max(r["alarms"], 1)
    want_recall, want_precision = TARGET[kind]
    assert recall >= want_recall, f"{kind}: recall {recall:.3f}; missed {r['missed']}"
    assert precision >= want_precision, f"{kind}: precision {precision:.3f}; false alarms {r['false']}"


def test_the_benchmark_s_fleets_and_its_silent_node():
    from bench.detection import lone_fleet, silence, three_fleet

    three = three_fleet(7)  # whole sites only
    assert len(three.nodes) == 6 and sorted(n.profile for n in three.nodes.values()).count("air") == 2
    lone = lone_fleet(4)
    assert len({n.site for n in lone.nodes.values()}) == 4
    sites = ["a", "a", "a", "b", "b", "b"]
    times = np.arange(10) * 600
    values = np.ones((6, 10, 2))
    silence(sites, times, values, 1200, 3000)
    gone = np.isnan(values)
    assert gone[[0, 3]][:, 2:5].all() and gone.sum() == 2 * 3 * 2  # the first of each site, steps 2 to 4 only


def test_rain_in_the_sky_is_the_simulator_s_rain_at_each_site_gauge_or_not():
    """bench.detection counts the `step`/`spike` flags near rain as the simulator made it, not only near a gauge's
    report: a site of one air node has no gauge, and its humidity still jumps under a shower."""
    from bench.detection import START, STEP, lone_fleet, rain_in_the_sky
    from rimba.dev.simulate import Simulation

    sim = Simulation(lone_fleet(3), seed=101)
    times = START + np.arange(0, 4 * 86400, STEP)
    ids = sorted(sim.nodes)
    sky = rain_in_the_sky(sim, ids, times, 3600)
    for i, node in enumerate(ids):
        climate = sim.nodes[node].climate
        raining = np.array([climate.rain_rate(float(t)) > 0 for t in times])
        assert raining.any() and sky[i][raining].all()  # every rainy step, and the hour either side
        assert not sky[i].all()
    assert (sky[0] != sky[1]).any()  # each site its own weather


def test_a_false_alarm_after_a_fault_of_its_channel_is_counted_as_the_return_to_normal():
    """`bench.detection.score` counts apart the false alarms that begin after a fault of their node and channel has
    ended (later than `AFTER_S`, which still counts as the fault's): a second alarm when the node recovers."""
    from bench.detection import AFTER_S, score
    from rimba.dev.simulate import Fault

    f = Fault("n1", "air_temp_c", "stuck", 10_000.0, 20_000.0)
    found = [("n1", "air_temp_c", 20_000 + AFTER_S // 2, 20_000 + AFTER_S),  # within the hour: the fault's
             ("n1", "air_temp_c", 20_000 + 2 * AFTER_S, 20_000 + 3 * AFTER_S),  # later: after it, false
             ("n1", "air_rh_pct", 20_000 + 2 * AFTER_S, 20_000 + 3 * AFTER_S),  # another channel: plain false
             ("n2", "air_temp_c", 5_000, 6_000)]  # before any fault of its own
    r = score([f], found)
    assert (r["detected"], r["true_alarms"], r["false_after_a_fault"]) == (1, 1, 1)
