"""The NAB cross-validation's own arithmetic (`bench.nab_cv`): the selection procedures, the files' parts of a
pooled score, the comparison of two runs and the score cache, on small hand-made inputs (the NAB set itself
is not in the repository)."""

import json
import statistics
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from analytics import anomaly, detector
from bench import nab_cv

pytestmark = pytest.mark.unit  # no stack, no process

CANDS = nab_cv.candidates()


def fake_nab(windows: dict):
    """What the procedures read of NAB: each file's windows."""
    return SimpleNamespace(files={r: SimpleNamespace(windows=[(0, 1)] * k) for r, k in windows.items()})


def result(score: float, raws: dict, null: float, perfect: float) -> dict:
    return {nab_cv.PROFILE: {"score": score, "null": null, "perfect": perfect,
                             "files": {r: {"raw": v} for r, v in raws.items()}}}


def test_the_grid_is_a_full_product_with_the_defaults_in_it():
    assert len(CANDS) == 96 and len(set(map(repr, CANDS))) == 96
    assert detector.PARAMS in CANDS
    assert all(len(nb) == (3 - 1) + 5 * (2 - 1) for nb in nab_cv.neighbours(CANDS))  # one constant moved


def test_contributions_sum_to_the_pooled_score():
    nab = fake_nab({"a": 2, "b": 0, "c": 1})
    raws, null, perfect = {"a": 1.5, "b": -0.33, "c": -1.0}, -3.0, 3.0
    score = 100 * (sum(raws.values()) - null) / (perfect - null)
    c = nab_cv.contributions(nab, result(score, raws, null, perfect))
    assert c.sum() == pytest.approx(score)
    assert c[1] == pytest.approx(100 * -0.33 / 6)  # a file without windows: its false positives only


def test_majority_takes_each_constant_most_members_share_ties_to_the_best():
    base = replace(detector.PARAMS, windows=(48, 240), recent=3, hold_s=2 * 3600, z_floor=1.0)  # in the grid
    best = CANDS.index(replace(base, recent=5, hold_s=4 * 3600))
    members = [best, CANDS.index(replace(base, recent=5)), CANDS.index(replace(base, z_floor=2.0))]
    got = CANDS[nab_cv.majority(CANDS, members, best)]
    assert got.recent == 5  # two of three
    assert got.hold_s == 2 * 3600 and got.z_floor == 1.0  # two of three at the base's
    assert CANDS[nab_cv.majority(CANDS, list(range(96)), best)] == CANDS[best]  # the whole grid: every value tied


def test_one_se_is_the_argmax_when_the_best_is_alone_and_the_majority_when_all_are_within():
    nab = fake_nab({"a": 1, "b": 1})
    rng = np.random.default_rng(3)
    scores = rng.uniform(40, 60, 96)
    best = int(np.argmax(scores))
    close = [result(s, {"a": 0.0, "b": 0.0}, -2.0, 2.0) for s in scores]  # equal parts: no spread, SE 0
    assert nab_cv.choose_one_se(nab, close, CANDS) == {"chosen": best, "se": 0.0, "within_se": 1}
    wide = [result(s, {"a": 1.0, "b": -1.0} if i == best else {"a": 0.0, "b": 0.0}, -2.0, 2.0)
            for i, s in enumerate(scores)]  # the best's files differ by 50 points: all within one SE
    pick = nab_cv.choose_one_se(nab, wide, CANDS)
    assert pick["within_se"] == 96 and pick["chosen"] == best  # a full grid: ties everywhere, the best's values


def test_neighbourhood_and_marginal_prefer_a_flat_region_to_a_lone_peak():
    nab = fake_nab({"a": 1})
    flat = [i for i, c in enumerate(CANDS) if c.spread_frac == 0.05]
    scores = np.full(96, 50.0)
    scores[flat] = 60.0
    peak = next(i for i, c in enumerate(CANDS) if c.spread_frac == 0.1)
    scores[peak] = 70.0
    inner = [result(s, {"a": 0.0}, -1.0, 1.0) for s in scores]
    assert nab_cv.choose_argmax(nab, inner, CANDS)["chosen"] == peak
    assert CANDS[nab_cv.choose_neighbourhood(nab, inner, CANDS)["chosen"]].spread_frac == 0.05
    assert CANDS[nab_cv.choose_marginal(nab, inner, CANDS)["chosen"]].spread_frac == 0.05
    assert nab_cv.choose_top5(nab, inner, CANDS)["mean_of"][0] == peak
    # "fit" chooses by the training categories' own score, not by the inner leave-one-out
    fit = [result(s, {"a": 0.0}, -1.0, 1.0) for s in scores[::-1]]
    assert nab_cv.choose_fit(nab, inner, CANDS, fit=fit)["chosen"] == len(CANDS) - 1 - peak


def test_compare_pairs_by_file_and_by_candidate():
    old = {"cv_nested_files": {"a": 10.0, "b": 20.0, "c": 30.0}, "cv_each_candidate": {"{}": 60.0, '{"a": 1}': 50.0}}
    new = {"cv_nested_files": {"a": 11.0, "b": 22.0, "c": 33.0}, "cv_each_candidate": {"{}": 61.0, '{"a": 1}': 49.0}}
    line = nab_cv.compare(old, new)
    assert "nested +6.00 (paired standard error over 3 files 1.73)" in line  # sqrt(3) * sd(1, 2, 3)
    assert "the 2 candidates held fixed: median change +0.00, 1 up" in line


def test_compare_pairs_the_candidates_by_all_their_constants_when_the_defaults_changed():
    # the same constants, {"a": 1, "b": 2}, keyed "{}" in the old run and {"a": 1} in the new, whose default a is 0
    old = {"cv_nested_files": {"f": 1.0, "g": 2.0}, "defaults": {"a": 1, "b": 2},
           "cv_each_candidate": {"{}": 60.0, '{"a": 0}': 50.0}}
    new = {"cv_nested_files": {"f": 1.0, "g": 2.0}, "defaults": {"a": 0, "b": 2},
           "cv_each_candidate": {'{"a": 1}': 63.0, "{}": 40.0}}
    assert "the 2 candidates held fixed: median change -3.50, 1 up" in nab_cv.compare(old, new)  # +3 and -10


def test_cache_round_trip_keyed_by_every_constant(tmp_path):
    path = tmp_path / "scores.npz"
    scores = [{"cat/a.csv": np.array([0.1, 0.9])}, {"cat/a.csv": np.array([0.5, 0.5])}]
    nab_cv.save_cache(path, {}, CANDS[:2], scores)
    back = nab_cv.load_cache(path)
    assert set(back) == {repr(CANDS[0]), repr(CANDS[1])}
    np.testing.assert_array_equal(back[repr(CANDS[0])]["cat/a.csv"], [0.1, 0.9])
    assert nab_cv.load_cache(tmp_path / "none.npz") == {} and nab_cv.load_cache(None) == {}


def test_a_cache_named_without_npz_is_read_back(tmp_path):
    # NumPy's savez adds .npz to a name without it: the cache was written to scores.npz and looked for at scores
    path = tmp_path / "scores"
    nab_cv.save_cache(path, {}, CANDS[:1], [{"cat/a.csv": np.array([0.25])}])
    assert set(nab_cv.load_cache(path)) == {repr(CANDS[0])}


def test_the_committed_results_are_of_these_defaults_the_best_by_cv_and_give_the_event_threshold():
    """The detector's defaults are the candidate with the best cross-validated score in the committed run, and the
    product's event threshold is that run's threshold for them (the median of the folds'): changing one without
    running `python -m bench.nab_cv` again fails here."""
    report = json.loads((Path(nab_cv.ROOT) / "bench" / "results" / "nab_cv.json").read_text())
    assert report["defaults"] == json.loads(json.dumps(asdict(detector.Params())))
    assert report["best_by_cv"]["params"] == {} and report["product_params"] == {}
    assert anomaly.EVENT_THRESHOLD == round(statistics.median(report["fold_thresholds"].values()), 2)


def test_the_fold_threshold_is_the_median_of_the_inner_folds_as_the_product_s_is():
    """The nested score's threshold for a left-out category is made as `anomaly.EVENT_THRESHOLD` is: the median of
    the thresholds tuned with one training category left out each; NAB's optimiser on all three is the other rule."""
    in_cat = {"A": ["a1"], "B": ["b1", "b2"], "C": ["c1", "c2", "c3"]}

    def score_arrays(scores, files, thresholds=None, per_file=False):
        return {nab_cv.PROFILE: {"threshold": 0.5 + 0.01 * len(files), "score": 0.0}}  # more files, a higher one

    nab = SimpleNamespace(profiles={nab_cv.PROFILE: {}}, score_arrays=score_arrays)
    det = {r: np.zeros(3) for rs in in_cat.values() for r in rs}
    # without A: 5 files, 0.55; without B: 4, 0.54; without C: 3, 0.53
    assert nab_cv.threshold_median_of_folds(nab, det, ["A", "B", "C"], in_cat) == pytest.approx(0.54)
    assert nab_cv.threshold_in_sample(nab, det, ["A", "B", "C"], in_cat) == pytest.approx(0.56)
    assert nab_cv.THRESHOLD_RULES[nab_cv.THRESHOLD_RULE] is nab_cv.threshold_median_of_folds
