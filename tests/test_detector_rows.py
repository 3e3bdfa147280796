"""Series kept each at its own column (`analytics.detector.Rows`, what incremental runs carry) against one
`score_rows` call over the whole series: any rows taken on by any number of columns at a time while the
others stay where they are, taken back to their checkpoints, saved and loaded on the way."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import anomaly, detector
from tests.test_detector_fast import fleet

pytestmark = pytest.mark.unit  # no stack, no process

STEP = 600
TOL = dict(rtol=1e-9, atol=1e-9)  # the running sums start from the carried ones: rounding only


def run_rows(x, why, ref, floor, plan, params=anomaly.PRODUCT, save=None):
    """Scores of x's rows from a Rows store driven by `plan`: ("go", rows, k) takes those of the rows at the
    smallest column on by k columns (a checkpoint at each start), ("back", rows, j) takes them back to
    their j-th newest checkpoint in common, ("save",) saves and loads the store (`save(store)` gives the
    loaded one; default the whole state's bytes). Then every row to the end."""
    rows_n, n = x.shape
    store = detector.Rows(STEP, params, rewind=n)
    store.add(rows_n, floor, 0)
    marked = [set() for _ in range(rows_n)]  # the columns each row's checkpoint holds
    got = {name: np.full((rows_n, n) if name != "views" else (3, rows_n, n), np.nan) for name in
           ("score", "views", "baseline", "surprise", "kind")}

    def go(sel, k):
        a = int(store.n[sel[0]])
        k = min(k, n - a)
        if k <= 0:
            return
        s = store.take(sel)
        store.mark(sel, s)
        for r in sel:
            marked[r].add(a)
        res = s.advance(x[sel, a:a + k], why[sel, a:a + k], ref[sel, a:a + k])
        store.put(sel, s)
        for name in got:
            got[name][..., sel, a:a + k] = getattr(res, name)

    for step in plan:
        if step[0] == "go":
            sel = sorted(set(step[1]))
            low = min(store.n[sel])
            go([r for r in sel if store.n[r] == low], step[2])
        elif step[0] == "back":
            sel = sorted(set(step[1]))
            common = sorted(set.intersection(*(marked[r] for r in sel)))
            if common:
                c = common[max(0, len(common) - step[2])]
                store.back_to(sel, c)
                for r in sel:
                    marked[r] = {m for m in marked[r] if m <= c}
        elif save is not None:
            store = save(store)
        else:
            store = detector.Rows.from_bytes(store.to_bytes(), params)
    while (store.n < n).any():
        low = store.n.min()
        go(list(np.flatnonzero(store.n == low)), n)
    return got


def check(plan, seed, n=620, rows=6, save=None):
    _, x = fleet(rows, n, STEP, seed=seed)
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.05] = np.nan
    floor = rng.uniform(0, 0.3, rows)
    why = rng.choice([-1, 0, 0, 0, 1, 2], size=x.shape).astype(np.int8)
    ref = np.where(rng.random(x.shape) < 0.01, np.nan, rng.normal(0, 0.1, x.shape))
    whole = detector.score_rows(np.arange(n) * STEP, x, anomaly.PRODUCT, floor=floor, explained=why, reference=ref,
                                step_s=STEP)
    got = run_rows(x, why, ref, floor, plan, save=save)
    for name in ("score", "views", "baseline", "surprise"):
        np.testing.assert_allclose(got[name], getattr(whole, name), equal_nan=True, err_msg=name, **TOL)
    np.testing.assert_array_equal(got["kind"], whole.kind)


def test_rows_at_their_own_columns_equal_one_pass():
    """Rows 0-2 go on in hours, 3-5 lag behind and catch up in days, with rewinds of some rows only."""
    plan = [("go", [0, 1, 2, 3, 4, 5], 150), ("go", [0, 1, 2], 6), ("go", [0, 1, 2], 6), ("save",),
            ("go", [3, 4, 5], 144), ("back", [1, 4], 1), ("go", [1, 4], 6), ("go", [1, 2], 50), ("back", [0, 5], 1),
            ("go", [0, 5], 200), ("go", [2, 3], 7), ("save",), ("back", [2, 3], 1), ("go", [3], 300)]
    check(plan, seed=41)


step_st = st.one_of(
    st.tuples(st.just("go"), st.lists(st.integers(0, 5), min_size=1, max_size=6), st.integers(1, 160)),
    st.tuples(st.just("back"), st.lists(st.integers(0, 5), min_size=1, max_size=6), st.integers(1, 3)),
    st.tuples(st.just("save")))


@settings(max_examples=15, deadline=None)
@given(st.lists(step_st, max_size=14), st.integers(0, 2**16))
def test_rows_equal_one_pass_on_any_plan(plan, seed):
    check(plan, seed)
