"""The image guards (cxr_core.safety.ood) on tiny synthetic inputs: a threshold rule from held-out scores, cross-fitted
false alarms, thumbnails, and the detector that refuses what is not laid out like a chest film and warns, in two
grades, on model features far from the training films'. Every threshold comes from the held-out films."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.safety.ood import (PIXEL_REASON, UNUSUAL_WARNING, VERY_UNUSUAL_WARNING, OODDetector, ThresholdRule,
                                 cross_fitted_flags, cross_fitted_thresholds, excess, fold_count, thumbnails)
from testkit.synthetic import non_xray, phantom_cxr

SIZE = 48


def _films(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([phantom_cxr(SIZE, rng, i % 3) for i in range(n)])


@pytest.mark.parametrize("quantile, margin", [(0.4, 1.0), (1.01, 1.0), (0.9, 0.99)])
def test_a_rule_outside_its_range_is_refused_quoting_the_value(quantile, margin):
    with pytest.raises(ValueError, match=repr(quantile) if not 0.5 <= quantile <= 1 else repr(margin)):
        ThresholdRule(quantile, margin)


def test_a_rule_is_the_quantile_of_held_out_scores_times_its_margin():
    scores = np.arange(1, 101, dtype=float)
    assert ThresholdRule(1.0).calibrate(scores) == 100.0
    assert ThresholdRule(1.0, 1.25).calibrate(scores) == 125.0
    assert ThresholdRule(0.5).calibrate(scores) == pytest.approx(np.quantile(scores, 0.5))
    assert "1.25 x the maximum" in ThresholdRule(1.0, 1.25).describe()
    with pytest.raises(ValueError, match="held-out"):
        ThresholdRule(0.9).calibrate(np.array([]))


def test_cross_fitted_flags_judge_each_film_by_a_threshold_set_without_its_patient():
    """With the maximum as the rule, no film is over a threshold set on itself, but the one patient whose scores
    are far above the others' is over the threshold the other patients set: what a new film would see."""
    scores = np.array([1.0, 1.1, 1.2, 1.3, 5.0, 5.1])
    groups = ["a", "a", "b", "b", "c", "c"]
    rule = ThresholdRule(1.0)
    assert not (scores > rule.calibrate(scores)).any()
    flags = cross_fitted_flags(scores, groups, rule, folds=3)
    assert flags.tolist() == [False, False, False, False, True, True]  # only c is over the max of a and b
    assert fold_count(groups, 5) == 3 and fold_count(["x"] * 4) == 1
    assert cross_fitted_flags(scores, ["x"] * 6, rule).tolist() == [False] * 6  # one patient: in-sample
    thresholds = cross_fitted_thresholds(scores, groups, rule, folds=3)
    assert thresholds.tolist() == [5.1, 5.1, 5.1, 5.1, 1.3, 1.3]  # each patient's: the others' maximum
    np.testing.assert_allclose(excess(scores, thresholds), scores / thresholds)


def test_the_excess_is_a_score_over_its_threshold_above_one_only_where_flagged():
    assert excess(np.array([1.0, 2.0, 3.0]), 2.0).tolist() == [0.5, 1.0, 1.5]  # at the threshold: 1, not over
    assert excess(np.array([0.0, 0.5]), 0.0).tolist() == [0.0, np.inf]  # a zero threshold: over any positive score
    assert excess(np.array([1.0, 4.0]), np.array([2.0, 2.0])).tolist() == [0.5, 2.0]


def test_thumbnails_are_32_by_32_and_contrast_normalised():
    t = thumbnails(_films(3, 0)[..., None])
    assert t.shape == (3, 32 * 32)
    assert np.allclose(t.mean(1), 0, atol=1e-5) and np.allclose(t.std(1), 1, atol=1e-3)
    assert thumbnails(_films(1, 0)[0]).shape == (1, 32 * 32)  # one image without a batch axis


@pytest.fixture(scope="module")
def detector():
    rng = np.random.default_rng(0)
    fit_features, held_features = rng.normal(size=(60, 4)), rng.normal(size=(30, 4))
    return OODDetector.fit(_films(60, 1), fit_features, _films(30, 2), held_features, n_components=8)


def test_the_detector_keeps_chest_films_and_refuses_what_is_not_laid_out_like_one(detector):
    films, zero = _films(20, 3), np.zeros(4)
    assert sum(bool(detector.check(f, zero)[0].reasons) for f in films) <= 1
    rng = np.random.default_rng(4)
    for kind in ("noise", "document", "checker"):
        image = non_xray(kind, SIZE, rng)
        layout, _ = detector.check(image, zero)
        assert layout.reasons == (PIXEL_REASON,) and layout.excess > 1, kind
        assert layout.excess == pytest.approx(detector.pixel_scores(image[None])[0] / detector.pixel_threshold)


def test_far_features_warn_in_two_grades_and_are_still_assessed(detector):
    film = _films(1, 5)[0]
    direction = np.ones(4) / 2.0
    scores = detector.feature_scores(np.stack([direction * s for s in np.linspace(0, 50, 501)]))
    unusual = direction * np.linspace(0, 50, 501)[np.argmax(scores > detector.feature_threshold)]
    very = direction * np.linspace(0, 50, 501)[np.argmax(scores > detector.feature_threshold_strong)]
    assert [detector.check(film, f)[1] for f in (np.zeros(4), unusual, very * 1.01)] == [
        [], [UNUSUAL_WARNING], [VERY_UNUSUAL_WARNING]]
    assert detector.check(film, very * 1.01)[0].reasons == ()  # warned, not refused
    assert detector.feature_threshold_strong >= detector.feature_threshold


def test_thresholds_come_from_the_held_out_scores(detector):
    rng = np.random.default_rng(0)
    rng.normal(size=(60, 4))
    held_features = rng.normal(size=(30, 4))
    held = _films(30, 2)
    assert detector.pixel_threshold == pytest.approx(np.quantile(detector.pixel_scores(held), 0.999) * 1.1)
    assert detector.feature_threshold == pytest.approx(np.quantile(detector.feature_scores(held_features), 0.995))


def test_the_detector_round_trips_through_the_model_folder_and_an_old_file_reads_as_none(detector, tmp_path):
    from cxr_core.model.folder import ModelFolder

    path = ModelFolder(tmp_path).ood_file
    assert OODDetector.load(path) is None
    detector.save(path)
    loaded = OODDetector.load(path)
    assert loaded.pixel_threshold == detector.pixel_threshold and np.array_equal(loaded.feat_mean, detector.feat_mean)
    films = _films(5, 6)
    assert np.allclose(loaded.pixel_scores(films), detector.pixel_scores(films))
    z = dict(np.load(path))
    del z["feature_threshold_strong"]  # a detector from before the graded warnings
    np.savez(path, **z)
    assert OODDetector.load(path) is None
