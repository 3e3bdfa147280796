"""The detector's series saved in parts (`analytics.detector.Rows.changes`, what the incremental snapshot
keeps): after any plan of runs, rewinds and saves of only what changed, the parts assembled give the same
Rows to the bit, and it scores on as one pass over the whole series does (`tests.test_detector_rows`)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import anomaly, detector
from tests.test_detector_fast import fleet
from tests.test_detector_rows import check, step_st

STEP = 600


class Parts:
    """Keyed parts as the snapshot's table keeps them: each save replaces its keys and drops what is no longer
    needed."""

    def __init__(self):
        self.header, self.rows, self.tail, self.floors, self.checks = b"", {}, {}, {}, {}

    def save(self, store: detector.Rows) -> int:
        ch = store.changes()
        self.header = store.header()
        self.rows.update(ch["rows"])
        for name in ("tail", "floors"):
            getattr(self, name).update(ch[name])
        for r, (low_t, low_f) in ch["drop"].items():
            for name, low in (("tail", low_t), ("floors", low_f)):
                part = getattr(self, name)
                for key in [k for k in part if k[0] == r and k[1] < low]:
                    del part[key]
        self.checks.update(ch["checks"])
        self.checks = {k: v for k, v in self.checks.items() if ch["checks_from"] is not None and k[1] >= ch["checks_from"]}
        store.saved()
        return sum(len(b) for part in (ch["rows"], ch["tail"], ch["floors"], ch["checks"]) for b in part.values())

    def load(self, params) -> detector.Rows:
        return detector.Rows.from_parts(self.header, self.rows, self.tail, self.floors, self.checks, params)


def same(a: detector.Rows, b: detector.Rows) -> None:
    for name in ("n", "width", "fwidth", "floor", "sums", "range", "ratios"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for r in range(len(a)):  # the valid context only: what is left of it is never read
        w, wf = a.width[r], a.fwidth[r]
        np.testing.assert_array_equal(a.tail[r, a.cap - w:], b.tail[r, b.cap - w:])
        np.testing.assert_array_equal(a.floors[r, a.cap_f - wf:], b.floors[r, b.cap_f - wf:])
    for ra, rb in zip(a.rec, b.rec, strict=True):
        for x, y in zip(ra, rb, strict=True):
            np.testing.assert_array_equal(x, y)
    assert sorted(a.checks) == sorted(b.checks)
    for c in a.checks:
        for k in ("sums", "range", "ratios"):
            np.testing.assert_array_equal(a.checks[c][k], b.checks[c][k], err_msg=f"check {c} {k}")
        for ra, rb in zip(a.checks[c]["rec"], b.checks[c]["rec"], strict=True):
            for x, y in zip(ra, rb, strict=True):
                np.testing.assert_array_equal(x, y)


def through_parts():
    """A `save` for `check`: the store's changes into a Parts, the Rows they assemble checked equal to the bit."""
    parts = Parts()

    def save(store):
        parts.save(store)
        loaded = parts.load(anomaly.PRODUCT)
        same(store, loaded)
        assert not any(loaded.changes()[k] for k in ("rows", "tail", "floors", "checks"))  # as saved
        return loaded

    return save


def test_parts_after_runs_rewinds_and_saves():
    plan = [("go", [0, 1, 2, 3, 4, 5], 150), ("save",), ("go", [0, 1, 2], 6), ("save",), ("go", [3, 4, 5], 100),
            ("back", [0, 4], 1), ("save",), ("go", [0, 4], 300), ("go", [1, 2, 3, 5], 200), ("save",), ("go", [2], 7),
            ("save",), ("back", [2, 3], 1), ("save",), ("go", [3], 300)]
    check(plan, seed=7, save=through_parts())


def test_a_save_carries_only_what_changed():
    """After a whole save, a row that goes on six columns saves its carried values and one or two blocks of its
    context, not its whole context."""
    _, x = fleet(4, 1200, STEP, seed=3)
    store = detector.Rows(STEP, anomaly.PRODUCT, rewind=300)
    store.add(4, 0.1, 0)
    s = store.take([0, 1, 2, 3])
    s.advance(x[:, :1100])
    store.put([0, 1, 2, 3], s)
    parts = Parts()
    whole = parts.save(store)
    s = store.take([1])
    store.mark([1], s)
    s.advance(x[1:2, 1100:1106])
    store.put([1], s)
    again = parts.save(store)
    assert again < whole / 8, (again, whole)
    same(store, parts.load(anomaly.PRODUCT))


@settings(max_examples=15, deadline=None)
@given(st.lists(step_st, max_size=14), st.integers(0, 2**16))
def test_parts_equal_the_whole_state_on_any_plan(plan, seed):
    check(plan, seed, save=through_parts())
