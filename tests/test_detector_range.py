"""The detector's range check (`analytics.detector.novel_values`, Numenta's "spatial anomaly"): the fast
one against the value-by-value loop of `tests/naive_detector.py`, carried across stretches, and a `Stream`
with it on (the NAB constants; the product runs without it) against one pass, rows added and rewound."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import detector
from tests.naive_detector import novel as naive_novel
from tests.test_detector_fast import fleet

pytestmark = pytest.mark.unit  # no stack, no process

TOL = dict(rtol=1e-9, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 6), n=st.integers(0, 300), cut=st.integers(0, 300), seed=st.integers(0, 2**32 - 1),
       tol=st.sampled_from([0.0, 0.05, 0.5]), flat=st.booleans())
def test_range_check_equals_the_loop_and_carries_across_stretches(rows, n, cut, seed, tol, flat):
    rng = np.random.default_rng(seed)
    xs = np.cumsum(rng.standard_t(2, (rows, n)), axis=1)
    if flat:  # a flat start (no range yet), then resolution-sized steps
        xs[:, :n // 2] = 3.0
        xs = np.round(xs, 0)
    floor = rng.uniform(0, 1, rows) * rng.integers(0, 2, rows)
    p = detector.Params(novel_tol=tol)
    mask, lo, hi = detector.novel_values(xs, floor, p)
    np.testing.assert_array_equal(mask, naive_novel(xs, floor, p))
    if n:
        np.testing.assert_array_equal(lo, xs.min(axis=1))
        np.testing.assert_array_equal(hi, xs.max(axis=1))
    cut = min(cut, n)  # the same from a carried range
    a, lo_a, hi_a = detector.novel_values(xs[:, :cut], floor, p)
    b, lo_b, hi_b = detector.novel_values(xs[:, cut:], floor, p, lo_a, hi_a)
    np.testing.assert_array_equal(np.concatenate([a, b], axis=1), mask)
    np.testing.assert_array_equal(np.stack([lo_b, hi_b]), np.stack([lo, hi]))


def test_range_check_off_and_no_range_before_two_values():
    xs = np.array([[1.0, 5.0, 100.0]])
    assert not detector.novel_values(xs, np.zeros(1), detector.Params(novel_tol=None))[0].any()
    assert detector.novel_values(xs, np.zeros(1), detector.PARAMS)[0].tolist() == [[False, False, True]]


def test_a_value_beyond_the_range_scores_where_the_views_do_not():
    """A series that jumps out of its range by a fifth of it, where the views say little: the range check
    scores it (a rise creeping past the range is not news to it: each value widens the range)."""
    t = np.arange(3000) * 300
    x = 10 + np.sin(2 * np.pi * np.arange(3000) / 288) + np.random.default_rng(5).normal(0, 0.05, 3000)
    crest = 2500 + int(np.argmax(x[2500:2800]))
    x[crest] += 0.5
    on = detector.score(t, x)
    off = detector.score(t, x, detector.Params(novel_tol=None))
    new = np.flatnonzero(detector.novel_values(x[None, :], np.zeros(1), detector.PARAMS)[0][0, 600:]) + 600
    assert new.tolist() == [crest]
    k = crest
    assert on[k] >= 2 / 3 - 1e-12 > 0.6 > off[k]
    np.testing.assert_array_equal(on[300:k], off[300:k])  # nothing new since the start: the same scores


def test_stream_with_the_range_check_equals_one_pass_rows_added_and_rewound():
    p = detector.PARAMS
    assert p.novel_tol is not None
    for seed, rewound in ((25, True), (26, False)):
        _, x = fleet(6, 900, 600, seed=seed)
        x[4:, :300] = np.nan  # two series that first speak at column 300
        x[5, 600:620] += 30  # beyond everything before
        whole = detector.score_rows(np.arange(900) * 600, x, p, floor=0.2, step_s=600)
        assert detector.novel_values(detector.carry_forward(x), np.full(6, 0.2), p)[0][5, 600]  # the first of them is news
        s = detector.Stream(4, 600, p, floor=0.2, rewind=400)
        first = s.advance(x[:4, :300])
        ck = s.checkpoint()
        s.add_rows(2, floor=0.2)
        if rewound:
            s.advance(x[:, 300:400])
            s.restore(ck)  # back before the two rows came: as they were then
        s = detector.Stream.from_bytes(s.to_bytes(), p)
        rest = s.advance(x[:, 300:])
        np.testing.assert_allclose(np.concatenate([first.score, rest.score[:4]], axis=1), whole.score[:4], **TOL)
        np.testing.assert_allclose(rest.score[4:], whole.score[4:, 300:], **TOL)
        np.testing.assert_array_equal(rest.kind, whole.kind[:, 300:])
