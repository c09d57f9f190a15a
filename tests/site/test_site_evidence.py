"""The site evidence's arithmetic (cxr_core.site.evidence), on scores each test chooses: the bootstrap AUCs, the
paired difference, the threshold rule and its cross-check, and the fewest pneumonia films the floor needs."""

from __future__ import annotations

import numpy as np
import pytest


def _scores(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.6).astype(int)
    return y, np.clip(0.5 * y + rng.normal(0.25, 0.2, n), 0, 1).round(2)  # rounded: ties, counted as halves


def test_each_bootstrap_auc_is_the_auc_of_its_resample():
    from sklearn.metrics import roc_auc_score

    from cxr_core.site.evidence import bootstrap_aucs

    y, p = _scores()
    draws = np.random.default_rng(1).integers(0, len(y), (40, len(y)))
    draws[0] = np.flatnonzero(y == 1)[0]  # one resample of a single class: no AUC
    aucs = bootstrap_aucs(y, p, draws)
    assert np.isnan(aucs[0])
    assert aucs[1:] == pytest.approx([roc_auc_score(y[d], p[d]) for d in draws[1:]])


def test_the_difference_is_paired_on_the_same_resamples():
    from cxr_core.site.evidence import bootstrap_aucs, compare

    y, p = _scores()
    same = compare(y, p, 0.5, p, 0.5, n_boot=200)
    assert same["difference"] == {"auc": 0.0, "auc_ci95": [0.0, 0.0]}  # unpaired resamples would spread it
    better = np.where(y == 1, np.minimum(1, p + 0.1), p)
    ev = compare(y, p, 0.5, better, 0.4, n_boot=200, seed=3)
    draws = np.random.default_rng(3).integers(0, len(y), (200, len(y)))
    diffs = bootstrap_aucs(y, better, draws) - bootstrap_aucs(y, p, draws)
    assert ev["difference"]["auc"] == pytest.approx(ev["adapted"]["auc"] - ev["parent"]["auc"])
    assert ev["difference"]["auc_ci95"] == pytest.approx(np.quantile(diffs[~np.isnan(diffs)], [0.025, 0.975]))
    assert ev["adapted"]["threshold"] == 0.4 and ev["parent"]["threshold"] == 0.5
    assert (ev["n"], ev["n_positive"]) == (len(y), int(y.sum()))


def test_the_threshold_rule_is_the_highest_with_the_target_sensitivity():
    from cxr_core.model.decision import is_pneumonia
    from cxr_core.site.evidence import site_threshold

    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    p = np.array([.1, .2, .75, .3, .4, .5, .6, .61, .62, .63, .64, .65, .66, .67, .68, .69, .7, .71, .72, .73, .74])
    t = site_threshold(y, p, 0.90)  # 18 pneumonia films: 17 found (0.944) is the fewest at >= 0.90 (16: 0.889)
    found = is_pneumonia(p[y == 1], t)
    assert found.sum() == 17 and 0.3 < t <= 0.4
    assert is_pneumonia(np.array([0.75]), t)[0]  # the normal film at 0.75 is a false alarm at any such threshold


def test_the_cross_check_judges_each_fold_by_the_other_folds_threshold():
    from cxr_core.site.evidence import site_threshold, threshold_cross_check

    y, p = _scores(80, seed=4)
    parts = [np.arange(i, 80, 4) for i in range(4)]
    check = threshold_cross_check(y, p, parts, 0.95)
    expected = []
    for held in parts:
        rest = np.setdiff1d(np.arange(80), held)
        expected.append(site_threshold(y[rest], p[rest], 0.95))
    assert check["fold_thresholds"] == pytest.approx(expected)
    decided = np.zeros(80, int)
    for held, t in zip(parts, expected):
        decided[held] = p[held] >= t
    assert check["sensitivity"] == pytest.approx(decided[y == 1].mean())
    assert check["specificity"] == pytest.approx(1 - decided[y == 0].mean())


@pytest.mark.parametrize("floor, needed", [(0.90, 35), (0.95, 73), (0.5, 4)])
def test_the_fewest_pneumonia_films_for_the_floor(floor, needed):
    from cxr_core.site.evidence import pneumonia_films_needed
    from cxr_core.validation.metrics import wilson_interval

    assert pneumonia_films_needed(floor) == needed
    assert wilson_interval(needed, needed)[0] >= floor > wilson_interval(needed - 1, needed - 1)[0]
