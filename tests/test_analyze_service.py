"""The analytics service's loop (`analytics.analyze.serve`) with a clock and a stop event we own: runs at its
cadence, a failed run logged and the next one going on, and a stop that ends it between runs."""

from __future__ import annotations

import logging

import pytest

from analytics.analyze import serve

pytestmark = pytest.mark.unit  # no stack, no process

START = 1764547200  # 2025-12-01 07:00 WIB


class Clock:
    """Wall time that moves only when a run takes time or the loop waits; never sleeps."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Stop:
    """threading.Event's is_set/wait on the fake clock: waiting moves time on; set after `runs` waits."""

    def __init__(self, clock: Clock, after_waits: int):
        self.clock, self.left, self.waits = clock, after_waits, []

    def is_set(self) -> bool:
        return self.left <= 0

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.t += seconds
        self.left -= 1
        return self.is_set()


def test_runs_at_the_cadence_counting_from_when_each_began():
    clock = Clock(START)
    stop = Stop(clock, after_waits=3)
    began = []

    def run(now):
        began.append(now)
        clock.t += 12.5  # a run takes 12.5 s

    assert serve(run, 60, stop, clock) == (3, 0)
    assert began == [START, START + 60, START + 120]
    assert stop.waits == [47.5, 47.5, 47.5]


def test_a_run_longer_than_the_cadence_is_followed_by_the_next_a_second_later():
    clock = Clock(START)
    stop = Stop(clock, after_waits=2)

    def run(now):
        clock.t += 75

    serve(run, 60, stop, clock)
    assert stop.waits == [1.0, 1.0]


def test_a_failed_run_is_logged_and_the_next_goes_on(caplog):
    clock = Clock(START)
    stop = Stop(clock, after_waits=3)
    seen = []

    def run(now):
        seen.append(now)
        if len(seen) == 2:
            raise TimeoutError("InfluxDB did not answer")

    with caplog.at_level(logging.ERROR, logger="rimba.analyze"):
        assert serve(run, 60, stop, clock) == (3, 1)
    assert len(seen) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "analysis run failed: InfluxDB did not answer (the next run reads again from where this one stopped)"]


def test_a_stop_before_the_first_run_runs_nothing():
    clock = Clock(START)
    assert serve(lambda now: pytest.fail("ran"), 60, Stop(clock, after_waits=0), clock) == (0, 0)
