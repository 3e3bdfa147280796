"""Quality checks: vectorized equals the plain loop on seeded random data with NaNs, and each
check finds the fault it is for."""

import numpy as np
import pytest

from analytics.quality import DRIFT, FAN, FLAT, GAP, HUMID_PM, NOISE, RANGE, SPIKE, STEP, Limits, check
from bench.naive_quality import naive_check

pytestmark = pytest.mark.unit  # no stack, no process

METRICS = ("air_temp_c", "air_rh_pct", "pm25_ugm3", "rain_mm", "water_level_cm")


def cube(seed, nodes=5, t=80):
    rng = np.random.default_rng(seed)
    base = np.array([28.0, 80.0, 20.0, 0.0, 100.0])
    walk = np.cumsum(rng.normal(0, [0.6, 3.0, 6.0, 0.0, 8.0], (nodes, t, 5)), axis=1)
    x = base + walk
    x[:, :, 3] = np.where(rng.random((nodes, t)) < 0.1, rng.exponential(3, (nodes, t)), 0.0)
    x[rng.random(x.shape) < 0.08] = np.nan  # dropouts
    x[rng.random(x.shape) < 0.02] += rng.choice([-1, 1], 1) * 40  # spikes
    x[0, 10:30, 1] = 99.9  # stuck humidity
    x[1, 40:, 0] += 3.0  # drift
    x[2, 5, 2] = 2500.0  # out of range
    x[3, 20:28, 4] += rng.normal(0, 60, 8)  # a noise burst
    return x


@pytest.mark.parametrize("seed", range(6))
def test_vectorized_equals_plain_loop(seed):
    x = cube(seed)
    sites = ["a", "a", "a", "b", "b"]
    lim = Limits(flat_n=6, drift_window=12, site_spike_of=(("air_temp_c", 1.0 + seed), ("air_rh_pct", 6.0 - seed)))
    fast = check(x, METRICS, sites, lim)
    slow = np.array(naive_check(x.tolist(), list(METRICS), sites, lim), dtype=np.uint16)
    bad = np.argwhere(fast != slow)
    assert not len(bad), f"first difference at {tuple(bad[0])}: fast {fast[tuple(bad[0])]}, slow {slow[tuple(bad[0])]}"


def test_a_site_of_one_node_equals_the_plain_loop():
    x = cube(7)
    sites = ["a", "a", "a", "b", "c"]  # c: one node alone, with its own gauge
    fast = check(x, METRICS, sites)
    slow = np.array(naive_check(x.tolist(), list(METRICS), sites), dtype=np.uint16)
    assert (fast == slow).all()


def test_each_check_finds_its_fault():
    t = 200
    clean = np.zeros((4, t, 3))
    hours = np.arange(t) / 6.0
    clean[:, :, 0] = 28 + 3 * np.sin(2 * np.pi * hours / 24)  # air temperature
    clean[:, :, 1] = 80 - 8 * np.sin(2 * np.pi * hours / 24)  # humidity, humid but below condensing
    clean[:, :, 2] = 15 + 2 * np.sin(2 * np.pi * hours / 24)  # PM2.5
    rng = np.random.default_rng(1)
    x = clean + rng.normal(0, [0.05, 0.3, 0.5], clean.shape)
    x[0, 50, 0] += 9  # spike
    x[1, 100:, 0] += 6  # step (and a drift from here on)
    x[2, 30:60, 1] = 99.9  # stuck (alone at the crop: at a site at the crop together it would be fog)
    x[3, 70, 2] = np.nan  # dropout
    x[3, 120, 0] = 120.0  # out of range
    x[2, 150:160, 2] = np.maximum(x[2, 150:160, 2] + rng.normal(0, 25, 10), 0.5)  # noise burst (PM stays >= 0)
    x[0, 170:180, 1] = 99.0  # condensing air: PM flagged
    metrics = ("air_temp_c", "air_rh_pct", "pm25_ugm3")
    f = check(x, metrics, ["s"] * 4, Limits(drift_window=36))
    assert f[0, 50, 0] & SPIKE and not f[0, 49, 0] & SPIKE
    assert f[1, 100, 0] & STEP and not (f[1, 101, 0] & STEP)
    assert (f[2, 30:60, 1] & FLAT).all() and not (f[2, 0:29, 1] & FLAT).any()
    assert f[3, 70, 2] & GAP
    assert f[3, 120, 0] & RANGE
    assert (f[2, 150:160, 2] & NOISE).any() and not (f[2, :140, 2] & NOISE).any()
    assert (f[1, 130:190, 0] & DRIFT).all() and not (f[0, :, 0] & DRIFT).any()
    assert (f[0, 170:180, 2] & HUMID_PM).all() and not (f[0, :160, 2] & HUMID_PM).any()
    assert not (f[:, :, :] & (SPIKE | STEP | RANGE))[[0, 1, 3]][:, :40].any()


def test_robust_median_matches_numpy():
    import doctest

    from analytics import robust

    rng = np.random.default_rng(5)
    a = rng.normal(size=(7, 50, 3))
    a[rng.random(a.shape) < 0.3] = np.nan
    a[:, 0, 0] = np.nan
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(a, axis=0)
    np.testing.assert_allclose(robust.nanmedian(a, axis=0), expected, equal_nan=True)
    assert doctest.testmod(robust).failed == 0


def test_a_rain_shower_raises_no_step_but_a_lone_jump_does():
    """Rain at the site explains humidity jumping to saturation and the air cooling; the same jump on one
    node of three, with no rain and its neighbours level, is the sensor."""
    t = 60
    metrics = ("air_temp_c", "air_rh_pct", "rain_mm")
    x = np.zeros((3, t, 3))
    x[:, :, 0], x[:, :, 1] = 30.0, 72.0
    x[:, 20:26, 2] = 4.0  # a shower on the site's gauges
    x[:, 20:26, 0], x[:, 20:26, 1] = 27.5, 99.0  # cooled, saturated
    x[0, 40:, 1] = 96.0  # one node alone, dry weather: water in its enclosure
    x += np.random.default_rng(2).normal(0, 0.05, x.shape) * [1, 1, 0]
    f = check(x, metrics, ["s"] * 3)
    assert not (f[:, 15:30] & (STEP | SPIKE)).any()
    assert f[0, 40, 1] & STEP and not (f[1:, 40] & STEP).any()


def humid_site(t=80, seed=4):
    """Five nodes of a site, 10-minute steps: humid air (84-90 %RH) and 27-29 °C, SHT4x-like noise, readings
    cropped at 100 %RH; one rain gauge, dry."""
    rng = np.random.default_rng(seed)
    hours = np.arange(t) / 6.0
    x = np.zeros((5, t, 3))
    x[:, :, 0] = 28 + np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.1, (5, t))
    x[:, :, 1] = 87 - 3 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.5, (5, t))
    x[1:, :, 2] = np.nan  # one gauge
    return x


def test_a_humidity_spike_to_the_crop_in_dry_weather_is_flagged():
    """85 -> 100 -> 85 for a sample (or two) on one node, no rain and the site's other nodes level: far less than
    the step limit (20 %RH), but the sensor's, not the air's (the spike was cropped at the SHT4x's 100 %)."""
    metrics = ("air_temp_c", "air_rh_pct", "rain_mm")
    x = humid_site()
    x[2, 30, 1] = 100.0  # one sample
    x[4, 50:52, 1] = 100.0  # two
    x[1, 65, 0] += 2.0  # the air temperature, one sample 2 °C off
    f = check(x, metrics, ["s"] * 5)
    spikes = {tuple(k) for k in np.argwhere(f & SPIKE)}
    assert spikes == {(2, 30, 1), (4, 50, 1), (4, 51, 1), (1, 65, 0)}
    assert not (f & STEP).any()


def test_rain_does_not_excuse_a_jump_against_its_direction():
    """While it rains, humidity falling to 0 % for a sample, the air warming 30 °C and soil drying to nothing are
    not the rain: rain moves them the other way (and the site's other nodes stay)."""
    metrics = ("air_temp_c", "air_rh_pct", "rain_mm", "soil_vwc_pct")
    x = np.concatenate([humid_site(), np.full((5, 80, 1), 30.0)], axis=2)
    x[:, 20:60, 1], x[:, 20:60, 0] = 98.0, 26.0  # a long shower: saturated and cooled
    x[0, 20:60, 2] = 2.0
    x[3, 30, 1] = 0.0  # humidity to nothing and back
    x[1, 40, 0] = 58.0  # the air 32 °C warmer
    x[2, 50, 3] = 0.0  # the soil dry for a sample
    f = check(x, metrics, ["s"] * 5)
    assert {tuple(k) for k in np.argwhere(f & SPIKE)} == {(3, 30, 1), (1, 40, 0), (2, 50, 3)}


def test_a_shower_reaching_nodes_a_sample_apart_raises_no_step_or_spike():
    """A real shower: nodes feel it a step before the gauge or after it, a pause dries three of them for a sample
    while the gauge still counts rain, and it ends at different steps, the gauge counting it a step late."""
    t = 80
    metrics = ("air_temp_c", "air_rh_pct", "rain_mm")
    x = humid_site(t)
    x[:, :, 1] -= 15  # a dry afternoon, 69-75 %RH
    x[:, :, 0] += 3
    wet = np.zeros((5, t), dtype=bool)
    wet[:2, 20:35] = True  # the first two nodes from step 20
    wet[2:, 21:36] = True  # the others a step later, and dry a step later
    wet[:3, 27] = False  # a pause: three nodes dry for a sample
    x[:, :, 1] = np.where(wet, 98.0 + np.random.default_rng(5).normal(0, 0.5, (5, t)), x[:, :, 1])
    x[:, :, 0] = np.where(wet, x[:, :, 0] - 2.5, x[:, :, 0])
    x[0, 21:37, 2] = 3.0  # the gauge: from a step after the first nodes, to a step after the last
    x = np.minimum(x, [85.0, 100.0, 500.0])
    f = check(x, metrics, ["s"] * 5)
    assert not (f & (STEP | SPIKE)).any(), np.argwhere(f & (STEP | SPIKE))
    x[3, 27, 1] = 40.0  # one node, in the pause, falling far below the dry air
    assert check(x, metrics, ["s"] * 5)[3, 27, 1] & SPIKE


def test_a_jump_the_whole_site_makes_together_is_weather():
    t = 40
    x = np.full((4, t, 1), 70.0) + np.random.default_rng(3).normal(0, 0.2, (4, t, 1))
    x[:, 20:, 0] += 25  # every node at once (a front, no gauge at the site)
    x[3, 30:, 0] -= 25  # then one node alone
    f = check(x, ("air_rh_pct",), ["s"] * 4)
    assert not (f[:, 20] & STEP).any()
    assert f[3, 30, 0] & STEP and not (f[:3, 30] & STEP).any()


def pm_city(seed, nodes=6, t=400):
    """Particulates of a city's PM sensors, 10-minute steps: a shared diurnal swing, each node's own level,
    noise and dropouts; node 0's fan dies from step 150 (e-folding 0.8 days), node 1 falls once (a step)."""
    rng = np.random.default_rng(seed)
    hours = np.arange(t) / 6.0
    traffic = 10 * np.exp(-((hours % 24 - 7.5) ** 2) / 2)
    x = (rng.uniform(8, 22, (nodes, 1)) + traffic) * rng.lognormal(0, 0.08, (nodes, t))
    x[0, 150:] *= np.exp(-(np.arange(t - 150) / 144) / 0.8)
    x[1, 200:] *= 0.5
    x[rng.random(x.shape) < 0.05] = np.nan
    return np.round(x, 2)


@pytest.mark.parametrize("seed", range(3))
def test_fan_vectorized_equals_plain_loop(seed):
    from bench.naive_quality import naive_fan

    lim = Limits(fan_block=12, fan_blocks=4, fan_fall=0.04)
    x = pm_city(seed)
    fast = quality_fan(x, lim)
    slow = np.array(naive_fan([[None if np.isnan(v) else float(v) for v in row] for row in x], lim))
    bad = np.argwhere(fast != slow)
    assert not len(bad), f"first difference at {tuple(bad[0])}: fast {fast[tuple(bad[0])]}"
    assert fast[0].any(), "the dying fan was not found: the comparison proves little"


def quality_fan(x, lim):
    from analytics.quality import fan_sinking

    return fan_sinking(x[:, :, None], lim)[:, :, 0]


def test_a_dying_fan_is_found_and_a_one_time_fall_is_not():
    """A fan sinking by a factor for a day and more stands out against the city's upper quartile; a node whose
    level halves once (a local source gone) and the healthy rest do not; with too few PM sensors, no check."""
    x = pm_city(7, nodes=8, t=600)
    f = check(x[:, :, None], ("pm25_ugm3",))[:, :, 0]
    assert (f[0, 450:] & FAN).all() and not (f[0, :150] & FAN).any()
    assert not (f[1:] & FAN).any()
    assert not (check(x[:3, :, None], ("pm25_ugm3",))[:, :, 0] & FAN).any()


def test_a_dead_fan_stays_flagged_through_a_silence():
    """A node silent for four hours (a block of samples with no median) comes back with its fan as dead as it was:
    the flag goes on where the values do. It ended at the gap, and a fan that has stopped sinking never falls
    again by a day's worth, so its PM fed the ISPU as if clean."""
    x = pm_city(7, nodes=8, t=700)
    x[0, 400:] = x[0, 399] * np.random.default_rng(3).lognormal(0, 0.05, 300)  # dead: it sinks no further
    x[0, 480:504] = np.nan  # four hours without a reading
    f = check(x[:, :, None], ("pm25_ugm3",))[:, :, 0]
    assert (f[0, 450:492] & FAN).all()  # while a block has half its samples, it has a median
    assert not (f[0, 492:515] & FAN).any()  # none: nothing to judge
    assert (f[0, 515:] & FAN).all()  # again from the first block with half its samples (12 of 24)
    assert not (f[1:] & FAN).any()


def replaced_city(seed=7, t=1000):
    """Particulates of a city (`pm_city`) whose node 0's fan slows at step 300, over a day, to read a third less
    (0.07 on log(1 + x) a block), and stays so; the sensor is replaced at step 500 by a unit reading 0.74 of the
    old one's healthy level (above the dead one, below where the hold releases), whose own fan slows from 650
    to read 0.4 of that."""
    x = pm_city(seed, nodes=8, t=t)
    healthy = x[0] / np.exp(-(np.arange(t) - 150).clip(0) / 144 / 0.8)  # pm_city's own dying fan taken out

    def slows(at, per_block):
        return np.exp(-per_block * np.clip(np.arange(t) - at, 0, 144) / 24)

    x[0] = np.round(np.where(np.arange(t) < 500, healthy * slows(300, 0.07), 0.74 * healthy * slows(650, 0.15)), 2)
    return x


@pytest.mark.parametrize("seed", range(3))
def test_fan_with_a_replaced_sensor_vectorized_equals_plain_loop(seed):
    from analytics.quality import fan_sinking
    from bench.naive_quality import naive_fan

    lim = Limits(fan_block=12, fan_blocks=4, fan_fall=0.04)
    x = pm_city(seed)
    replaced = [[250], [], [30, 300]] + [[]] * (len(x) - 3)
    fresh = np.zeros(x.shape, dtype=bool)
    for i, cols in enumerate(replaced):
        fresh[i, cols] = True
    fast = fan_sinking(x[:, :, None], lim, fresh=fresh)[:, :, 0]
    slow = np.array(naive_fan([[None if np.isnan(v) else float(v) for v in row] for row in x], lim, replaced))
    bad = np.argwhere(fast != slow)
    assert not len(bad), f"first difference at {tuple(bad[0])}: fast {fast[tuple(bad[0])]}"
    assert fast[0, :250].any() and not fast[0, 250:250 + 4 * 12 - 1].any(), "the replacement proves nothing here"


def test_a_replaced_sensor_is_released_from_the_dead_fan_s_flag_and_its_own_fan_s_death_is_found():
    """A technician replaces a dead fan's sensor with a unit that reads lower than the old one did before its
    fall. Without the record, the hold never ends: the node's PM stays flagged, and out of the ISPU, for good.
    With it, the flag ends at the replacement, the lower unit is no fall, and the new unit's own fan dying
    is found again from its own readings."""
    x = replaced_city()[:, :, None]
    before = check(x, ("pm25_ugm3",))[:, :, 0]
    assert (before[0, 450:] & FAN).all()  # flagged for good, the new unit too
    f = check(x, ("pm25_ugm3",), replaced=[[500]] + [[]] * 7)[:, :, 0]
    np.testing.assert_array_equal(f[:, :500], before[:, :500])
    assert not (f[0, 500:700] & FAN).any()
    assert (f[0, 850:] & FAN).all()
    assert not (f[1:] & FAN).any()


def test_a_hold_carried_into_a_window_ends_at_a_replacement_in_the_day_before_it_or_in_it():
    """What FAN carries into a window (a hold from before it) is the old sensor's when the replacement came less
    than a day (a fall's finding) before the window: released. An older replacement may have been followed by a
    new fall, held since: kept."""
    x = pm_city(7, nodes=8, t=140)[:, :, None]  # less than a day: nothing is found in it, only held
    level = np.array([[np.nan]] * 2 + [[np.inf]] + [[np.nan]] * 5)
    carried = (np.zeros((8, 0, 1)), np.zeros((0, 1)), level)
    with_day = (np.full((8, 144, 1), np.nan), np.full((144, 1), np.nan), level)  # the service's day, not read yet
    held = check(x, ("pm25_ugm3",), fan_before=carried)[:, :, 0]
    np.testing.assert_array_equal(check(x, ("pm25_ugm3",), fan_before=with_day)[:, 23:, 0], held[:, 23:])
    assert (held[2, 23:] & FAN).all() and not (held[[0, 1, 3, 4, 5, 6, 7]] & FAN).any()  # from the first median
    for cols, kept in (([-10], False), ([-143], False), ([-144], True), ([-400], True), ([100], False)):
        f = check(x, ("pm25_ugm3",), fan_before=carried, replaced=[[]] * 2 + [cols] + [[]] * 5)[:, :, 0]
        np.testing.assert_array_equal(
            check(x, ("pm25_ugm3",), fan_before=with_day, replaced=[[]] * 2 + [cols] + [[]] * 5)[:, 23:, 0], f[:, 23:])
        assert bool((f[2, 23:] & FAN).all()) == kept, cols
        assert kept or (not (f[2, max(0, cols[0]):] & FAN).any() and (f[2, 23:max(23, cols[0])] & FAN).all()), cols


def test_a_carried_hold_is_the_old_sensor_s_when_its_fall_began_before_the_replacement():
    """`carried_hold`: a hold set by a fall found at column f rests on the samples from f - 143 on (a day at
    10 minutes). A sensor replaced at c (at or before the window) ends it when those include the old sensor's
    (f - 143 < c), and leaves it when the fall is all the new sensor's (f - 143 >= c, as `_sinking` finds it with
    the replacement); one replaced inside the window is left to `check`, which ends it there."""
    from analytics.quality import carried_hold

    level = np.array([[0.5], [0.5], [0.5], [np.nan]])
    found = np.array([[-200], [-200], [-200], [-1]])
    for cols, kept in (([[-343], [-342], [-57], [-57]], [True, False, False, False]),
                       ([[10], [], [0], []], [True, True, False, False])):
        got = ~np.isnan(carried_hold(level, found, cols, 144)[:, 0])
        assert got.tolist() == kept, cols


def test_a_few_sites_checked_against_the_city_reference_flag_as_the_whole_city_does():
    """What the incremental service relies on: the checks of a few sites, given the city's PM reference
    (quality.pm_reference over every sensor), flag the dying fan as the check over the whole city does; without
    it, two sites' sensors are too few to judge by."""
    from analytics.quality import pm_reference

    x = pm_city(7, nodes=8, t=600)[:, :, None]
    sites = [f"s{i // 2}" for i in range(8)]  # two PM sensors a site
    whole = check(x, ("pm25_ugm3",), sites)
    ref = pm_reference(x)
    part = check(x[:2], ("pm25_ugm3",), sites[:2], pm_reference=ref)
    np.testing.assert_array_equal(part, whole[:2])
    assert (whole[0, 450:, 0] & FAN).all()
    assert not (check(x[:2], ("pm25_ugm3",), sites[:2])[:, :, 0] & FAN).any()


def test_saturated_humidity_is_left_out_of_the_site_median():
    """Three of a site's five nodes pinned at 100 % (water in their enclosures) for days: the median of the
    two others is the reference, so the wet ones drift and the dry ones do not."""
    t = 300
    hours = np.arange(t) / 6.0
    x = (80 - 12 * np.sin(2 * np.pi * hours / 24))[None, :, None] + np.random.default_rng(4).normal(0, 0.5, (5, t, 1))
    x[:3, 50:, 0] = 99.5 + 0.5 * np.random.default_rng(5).random((3, t - 50))
    f = check(x, ("air_rh_pct",), ["s"] * 5, Limits(drift_window=72))[:, :, 0]
    assert (f[:3, 100:260] & DRIFT).all()
    assert not (f[3:] & DRIFT).any()


def test_a_metric_with_its_own_site_spike_limit_is_judged_by_it_and_the_others_by_the_shared_one():
    t = 60
    x = np.full((4, t, 2), np.nan)
    x[:, :, 0] = 28.0 + 0.01 * np.arange(t)  # air temperature: the site's nodes move together
    x[:, :, 1] = 80.0
    x[0, 30, 0] += 1.2  # one node 1.2 °C off for a sample: 4 of temperature's 0.3 °C floors
    x[1, 40, 1] += 8.0  # and another 8 %RH: 4 of humidity's 2 %RH floors
    sites = ["s"] * 4
    metrics = ("air_temp_c", "air_rh_pct")
    shared = check(x, metrics, sites, Limits(site_spike=3.0, site_spike_of=()))
    assert shared[0, 30, 0] & SPIKE and shared[1, 40, 1] & SPIKE
    wide = Limits(site_spike=3.0, site_spike_of=(("air_temp_c", 5.0),))
    own = check(x, metrics, sites, wide)
    assert not own[0, 30, 0] & SPIKE and own[1, 40, 1] & SPIKE  # only temperature's limit moved
    assert (own == np.array(naive_check(x.tolist(), list(metrics), sites, wide), dtype=np.uint16)).all()


def test_humidity_at_the_crop_is_not_stuck_when_the_site_is_there_too_and_is_when_a_node_is_alone():
    t = 200
    rng = np.random.default_rng(3)
    x = np.empty((4, t, 1))
    x[:, :, 0] = 85.0 + rng.normal(0, 0.8, (4, t))
    x[:, 60:120, 0] = 100.0  # fog: every node of the site at the SHT4x's crop for ten hours
    f = check(x, ("air_rh_pct",), ["s"] * 4, Limits(drift_window=36))[:, :, 0]
    assert not (f & (FLAT | DRIFT)).any()
    x[0, 130:, 0] = 100.0  # then water in node 0's box: pinned at the crop while the others are not
    f = check(x, ("air_rh_pct",), ["s"] * 4, Limits(drift_window=36))[:, :, 0]
    assert (f[0, 130:] & FLAT).all()  # alone at the crop: stuck, or water in its box
    assert not (f[:, :130] & FLAT).any() and not (f[1:] & (FLAT | DRIFT)).any()
    slow = np.array(naive_check(x.tolist(), ["air_rh_pct"], ["s"] * 4, Limits(drift_window=36)), dtype=np.uint16)
    assert (check(x, ("air_rh_pct",), ["s"] * 4, Limits(drift_window=36)) == slow).all()
    x[1, 20:40, 0] = 91.3  # stuck below the crop: still FLAT
    assert (check(x, ("air_rh_pct",), ["s"] * 4, Limits(drift_window=36))[1, 20:40, 0] & FLAT).all()
