"""The detector carried between runs (`analytics.detector.Stream`) against one `score_rows` call over the
whole series: columns fed in chunks of any size, rewound to checkpoints (values arriving late) and saved
and loaded on the way, with context, gaps and every view in play."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import anomaly, detector
from tests.test_detector_fast import fleet

pytestmark = pytest.mark.unit  # no stack, no process

TOL = dict(rtol=1e-9, atol=1e-9)  # the running sums start from the carried ones: rounding only


def streamed(x, step, params, chunks, rewinds, floor, why, ref, save_every=3):
    """Scores of x fed chunk by chunk; after chunk i in `rewinds`, back to the checkpoint `rewinds[i]` chunks
    before and on again from there."""
    s = detector.Stream(x.shape[0], step, params, floor=floor, rewind=400)
    results, marks, i, done = {}, {}, 0, 0
    sizes = iter(chunks)
    while i < x.shape[1]:
        k = next(sizes, 97)
        marks[i] = s.checkpoint()
        results[i] = s.advance(x[:, i:i + k], why[:, i:i + k], ref[:, i:i + k])
        i += k
        done += 1
        back = rewinds.get(done)
        if back:
            starts = [a for a in sorted(marks) if i - a <= 400]
            c = starts[max(0, len(starts) - back)]
            s.restore(marks[c])
            marks = {a: m for a, m in marks.items() if a <= c}
            results = {a: r for a, r in results.items() if a < c}
            i = c
        if done % save_every == 0:
            s = detector.Stream.from_bytes(s.to_bytes(), params)
    return {name: np.concatenate([getattr(results[a], name) for a in sorted(results)], axis=-1)
            for name in ("score", "views", "baseline", "surprise", "kind")}


def check(x, step, params, chunks, rewinds, seed):
    rng = np.random.default_rng(seed)
    floor = rng.uniform(0, 0.3, x.shape[0])
    why = rng.choice([-1, 0, 0, 0, 1, 2], size=x.shape).astype(np.int8)
    ref = np.where(rng.random(x.shape) < 0.01, np.nan, rng.normal(0, 0.1, x.shape))
    ref[-2:] = 0.0
    whole = detector.score_rows(np.arange(x.shape[1]) * step, x, params, floor=floor, explained=why,
                                reference=ref, step_s=step)
    got = streamed(x, step, params, chunks, rewinds, floor, why, ref)
    for name in ("score", "views", "baseline", "surprise"):
        np.testing.assert_allclose(got[name], getattr(whole, name), equal_nan=True, err_msg=name, **TOL)
    np.testing.assert_array_equal(got["kind"], whole.kind)


@pytest.mark.parametrize("params", [anomaly.PRODUCT, detector.PARAMS, replace(detector.PARAMS, windows=(48, 240))],
                         ids=["product", "nab", "two-windows"])  # (the grid's other level: two windows, one baseline)
def test_stream_equals_one_pass_through_warm_up_days_and_rewinds(params):
    t, x = fleet(10, 1500, 600, seed=21)  # ten days at 10 minutes: warm-up, the day view, a rewind at each
    check(x, 600, params, [1, 2, 99, 50, 144, 7, 300, 1, 13], {2: 1, 5: 2, 7: 3, 10: 1}, seed=22)
    day = detector.view_starts(params, 600)[1]  # where the day view's ratio starts to count: it matters after it
    assert (detector.score_rows(t, x, params).kind[:, day:day + 200] == 1).any()


def test_stream_equals_one_pass_with_the_week_view():
    t, x = fleet(8, 48 * 28, 1800, seed=23)  # past the week view's start (1,108 columns): its ratio counts
    check(x, 1800, detector.PARAMS, [500, 40, 3, 200, 300], {3: 2, 5: 1}, seed=24)
    week = detector.view_starts(detector.PARAMS, 1800)[2]
    assert week < x.shape[1] - 200 and (detector.score_rows(t, x).kind[:, week:week + 200] == 2).any()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 900), chunks=st.lists(st.integers(1, 300), max_size=12),
       rewinds=st.dictionaries(st.integers(1, 12), st.integers(1, 4), max_size=4),
       nan_frac=st.floats(0, 0.9), seed=st.integers(0, 2**32 - 1))
def test_stream_equals_one_pass_on_any_chunking(n, chunks, rewinds, nan_frac, seed):
    _, x = fleet(5, n, 600, seed, nan_frac)
    check(x, 600, anomaly.PRODUCT, chunks, rewinds, seed)


def test_series_added_later_are_as_if_there_from_the_start():
    _, x = fleet(6, 600, 600, seed=25)
    x[4:, :300] = np.nan  # two series that first speak at column 300
    whole = detector.score_rows(np.arange(600) * 600, x, anomaly.PRODUCT, floor=0.2, step_s=600)
    s = detector.Stream(4, 600, anomaly.PRODUCT, floor=0.2)
    first = s.advance(x[:4, :300])
    s.add_rows(2, floor=0.2)
    rest = s.advance(x[:, 300:])
    np.testing.assert_allclose(np.concatenate([first.score, rest.score[:4]], axis=1), whole.score[:4], **TOL)
    np.testing.assert_allclose(rest.score[4:], whole.score[4:, 300:], **TOL)


def test_a_state_of_another_version_is_refused():
    s = detector.Stream(2, 600, anomaly.PRODUCT)
    s.advance(np.ones((2, 5)))
    blob = s.to_bytes()
    with pytest.raises(detector.StateVersionError):
        detector.Stream.from_bytes(blob, detector.PARAMS)  # other constants
    with pytest.raises(detector.StateVersionError):
        detector.Stream.from_bytes(b"not a state", anomaly.PRODUCT)
