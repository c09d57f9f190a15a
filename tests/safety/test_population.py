"""The population check (cxr_core.safety.population): an age outside the validated 1 to 5 years warns, from the
header; without an age, an image check fitted against an adult reference flags adult-looking films at a threshold set
on the pediatric films' out-of-fold scores. Synthetic "adult" films here are wider-chested phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.model.folder import ModelFolder
from cxr_core.safety.intended_use import VALIDATED_AGES
from cxr_core.safety.population import (PEDIATRIC_FALSE_ALARM_QUANTILE, AdultImageCheck, age_warning, fit_adult_check,
                                        fit_for_model, out_of_fold_scores)
from cxr_core.validation.metrics import safe_auc
from testkit.synthetic import phantom_cxr

SIZE = 48


@pytest.mark.parametrize("age, warns, shown", [(None, False, ""), (1.0, False, ""), (5.99, False, ""),
                                               (0.5, True, "6 months"), (6.0, True, "6 years"), (40, True, "40 years")])
def test_an_age_outside_the_validated_years_warns_naming_it(age, warns, shown):
    warning = age_warning(age)
    assert (warning is not None) == warns
    if warns:
        assert shown in warning and "children aged 1 to 5 years" in warning
    assert VALIDATED_AGES == (1.0, 6.0)


def _adult(rng: np.random.Generator) -> np.ndarray:
    """A chest phantom with wide, tall lungs and a narrow mediastinum: the layout an adult film differs by."""
    img = np.full((SIZE, SIZE), 0.75, np.float32)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    for cx in (0.27, 0.73):
        img[((xx - cx) / 0.22) ** 2 + ((yy - 0.5) / 0.42) ** 2 < 1] = 0.2
    return np.clip(img + 0.03 * rng.standard_normal((SIZE, SIZE)).astype(np.float32), 0, 1)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    pediatric = np.stack([phantom_cxr(SIZE, rng, i % 3) for i in range(60)])
    adult = np.stack([_adult(rng) for _ in range(30)])
    return fit_adult_check(pediatric, [f"p{i // 2}" for i in range(60)], adult, [f"a{i}" for i in range(30)],
                           folds=3, n_components=8, c=0.1)


def test_the_image_check_flags_adult_films_and_few_pediatric_ones(fitted):
    check, report = fitted
    rng = np.random.default_rng(9)
    new_pediatric = np.stack([phantom_cxr(SIZE, rng, i % 3) for i in range(30)])
    new_adult = np.stack([_adult(rng) for _ in range(10)])
    assert check.flags(new_adult).mean() >= 0.9
    assert check.flags(new_pediatric).mean() <= 0.1
    assert report["n_pediatric"] == 60 and report["n_adult"] == 30 and report["folds"] == 3
    assert report["cv_adult_detection_rate"] >= 0.9
    assert f"{PEDIATRIC_FALSE_ALARM_QUANTILE:.1%}" in report["threshold_rule"]


def test_the_check_round_trips_through_the_model_folder(fitted, tmp_path):
    check, _ = fitted
    path = ModelFolder(tmp_path).population_file
    assert AdultImageCheck.load(path) is None
    check.save(path)
    loaded = AdultImageCheck.load(path)
    films = np.stack([_adult(np.random.default_rng(1)), phantom_cxr(SIZE, np.random.default_rng(1))])
    assert loaded.threshold == check.threshold and np.allclose(loaded.scores(films), check.scores(films))


def test_without_the_adult_reference_no_check_is_fitted_and_the_report_says_why(tmp_path):
    check, report = fit_for_model(np.zeros((4, SIZE, SIZE)), ["a", "b", "c", "d"], lambda x: x, tmp_path / "none")
    assert check is None and report["fitted"] is False and "No adult reference set" in report["reason"]


def test_out_of_fold_scores_keep_a_patients_films_together():
    """Each patient has two identical films and the labels are noise: a check that saw a patient's other film
    would score it by memory (AUC near 1). Scored without the patient, it can do no better than chance."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((60, 200))
    x, y = np.repeat(rows, 2, axis=0), np.repeat(rng.permutation(np.r_[np.zeros(40), np.ones(20)]).astype(int), 2)
    groups = [f"p{i // 2}" for i in range(120)]
    oof = out_of_fold_scores(x, y, groups, folds=4, n_components=80, c=100.0)
    assert safe_auc(y, oof) < 0.75
