"""Metrics, thresholds and calibration on hand-checkable inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.model import decision as D
from cxr_core.validation import metrics as M


def test_binary_confusion_and_rates():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.8, 0.7])
    r = M.binary_at_threshold(y, p, 0.5)
    assert r["confusion_matrix"] == [[2, 1], [1, 3]]
    assert r["sensitivity"] == pytest.approx(3 / 4) and r["specificity"] == pytest.approx(2 / 3)
    assert r["ppv"] == pytest.approx(3 / 4) and r["npv"] == pytest.approx(2 / 3)


def test_three_class_decision_uses_the_threshold():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.2, 0.4], [0.1, 0.8, 0.1]])
    assert M.decide(probs).tolist() == [0, 0, 1]
    assert M.decide(probs, threshold=0.5).tolist() == [0, 2, 1]  # P(pneu)=0.6 >= 0.5: viral


def test_threshold_policies():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(500), np.ones(500)].astype(int)
    p = np.r_[rng.beta(2, 5, 500), rng.beta(5, 2, 500)]
    t95 = M.choose_threshold(y, p, "sensitivity", 0.95)
    assert M.binary_at_threshold(y, p, t95)["sensitivity"] >= 0.95
    assert M.binary_at_threshold(y, p, t95 + 0.02)["sensitivity"] < 0.96
    youden = M.choose_threshold(y, p, "youden")
    assert 0.3 < youden < 0.7
    assert not np.any(np.isclose(p, youden, atol=1e-9))  # never exactly on a validation score


def test_temperature_scaling_recovers_the_true_temperature_and_lowers_ece():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, (4000, 3))
    y = np.array([rng.choice(3, p=pr) for pr in D.softmax(true_logits)])
    overconfident = true_logits * 3.0
    t = D.fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.15)
    yb = (y > 0).astype(int)
    before = M.expected_calibration_error(yb, M.pneumonia_probability(D.softmax(overconfident)))
    after = M.expected_calibration_error(yb, M.pneumonia_probability(D.softmax(overconfident, t)))
    assert after < before and after < 0.03


def test_summary_has_every_field_and_cis_bracket_the_estimate():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    probs = D.softmax(np.eye(3)[y] * 2 + rng.normal(0, 1, (300, 3)))
    s = M.evaluation_summary(y, probs, 0.5, n_boot=200)
    b, t = s["binary"], s["three_class"]
    for key in ("accuracy", "auc", "sensitivity", "specificity", "threshold", "confusion_matrix", "accuracy_ci95", "auc_ci95"):
        assert key in b
    for key in ("accuracy", "macro_f1", "bacterial_vs_viral_auc", "confusion_matrix"):
        assert key in t
    assert b["accuracy_ci95"][0] <= b["accuracy"] <= b["accuracy_ci95"][1]
    assert b["auc_ci95"][0] <= b["auc"] <= b["auc_ci95"][1]
    assert np.sum(t["confusion_matrix"]) == 300
