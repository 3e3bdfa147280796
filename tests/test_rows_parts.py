"""The detector's series saved in parts (`analytics.detector.Rows.changes`, what the incremental snapshot
keeps): after any plan of runs, rewinds and saves of only what changed, the parts assembled give the same
Rows as the whole state saved at once, to the bit, and it scores on as one pass does."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import anomaly, detector
from tests.test_detector_fast import fleet
from tests.test_detector_rows import step_st

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


def run(plan, seed, n=620, rows=6):
    params = anomaly.PRODUCT
    _, x = fleet(rows, n, STEP, seed=seed)
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.05] = np.nan
    floor = rng.uniform(0, 0.3, rows)
    store = detector.Rows(STEP, params, rewind=n // 3)
    store.add(rows // 2, floor[:rows // 2], 0)
    parts = Parts()
    marked = [set() for _ in range(rows)]
    got = np.full((rows, n), np.nan)
    for k, step in enumerate(plan):
        if k == 2:  # rows added later, at a column of their own
            store.add(rows - rows // 2, floor[rows // 2:], 150)
        sel = sorted({r for r in (step[1] if step[0] != "save" else []) if r < len(store)})
        if step[0] == "go" and sel:
            low = min(store.n[sel])
            sel = [r for r in sel if store.n[r] == low]
            a = int(low)
            kk = min(step[2], n - a)
            if kk > 0:
                s = store.take(sel)
                store.mark(sel, s)
                for r in sel:
                    marked[r].add(a)
                res = s.advance(x[sel, a:a + kk])
                store.put(sel, s)
                got[sel, a:a + kk] = res.score
        elif step[0] == "back" and sel:
            common = sorted(set.intersection(*(marked[r] for r in sel)))
            if common:
                c = common[max(0, len(common) - step[2])]
                store.back_to(sel, c)
                for r in sel:
                    marked[r] = {m for m in marked[r] if m <= c}
        elif step[0] == "save":
            store.forget(int(store.n.min()) - store.rewind)
            parts.save(store)
            loaded = parts.load(params)
            same(store, loaded)
            store = loaded
    parts.save(store)
    same(store, parts.load(params))
    return store, got, x, floor


def test_parts_after_runs_rewinds_and_saves():
    plan = [("go", [0, 1, 2], 150), ("save",), ("go", [0, 1], 6), ("go", [3, 4, 5], 100), ("save",),
            ("back", [0], 1), ("go", [0], 300), ("go", [1, 2, 3, 4, 5], 200), ("save",), ("go", [2], 7), ("save",)]
    store, _, _, _ = run(plan, seed=7)
    ch = store.changes()
    assert not ch["rows"] and not ch["tail"] and not ch["checks"]  # saved: nothing changed since


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
    run(plan, seed)
