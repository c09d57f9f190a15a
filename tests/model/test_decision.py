"""The decision rule (cxr_core.model.decision) on hand-checkable probabilities: P(pneumonia) = 1 - P(NORMAL), NORMAL
below the threshold and the likelier subtype at or above it, a binary model's split unknown, the subtype stated only
with a clear margin, and the subtype's share within pneumonia."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.model.decision import (SUBTYPE_UNCERTAIN, as_three_class, decide, is_pneumonia, label,
                                     pneumonia_probability, stated_subtype, subtype_margin, within_pneumonia)

PROBS = np.array([[0.70, 0.20, 0.10],   # P(pneumonia) 0.30
                  [0.40, 0.15, 0.45],   # 0.60, viral likelier
                  [0.50, 0.30, 0.20],   # 0.50, bacterial likelier
                  [0.10, 0.45, 0.45]])  # 0.90, a tie: bacterial


def test_pneumonia_probability_is_one_minus_normal():
    assert pneumonia_probability(PROBS) == pytest.approx([0.30, 0.60, 0.50, 0.90])


@pytest.mark.parametrize("threshold, expected", [(0.5, [0, 2, 1, 1]), (0.6, [0, 2, 0, 1]), (0.95, [0, 0, 0, 0]),
                                                 (0.3, [1, 2, 1, 1]), (None, [0, 2, 0, 1])])
def test_decide_at_and_beside_the_threshold(threshold, expected):
    """At the threshold is PNEUMONIA (>=), just above it NORMAL; without a threshold, the argmax."""
    assert decide(PROBS, threshold).tolist() == expected


@pytest.mark.parametrize("threshold", [0.25, 0.5, 0.9])
def test_label_and_is_pneumonia_exactly_at_just_below_and_just_above_the_threshold(threshold):
    below, above = np.nextafter(threshold, 0.0), np.nextafter(threshold, 1.0)
    assert [label(p, threshold) for p in (below, threshold, above)] == ["NORMAL", "PNEUMONIA", "PNEUMONIA"]
    assert [is_pneumonia(p, threshold) for p in (below, threshold, above)] == [False, True, True]
    assert type(is_pneumonia(threshold, threshold)) is bool  # one value: a plain bool
    assert is_pneumonia(np.array([below, threshold, above]), threshold).tolist() == [False, True, True]


def test_label_and_is_pneumonia_are_the_same_rule_as_decide():
    for threshold in (0.3, 0.5, 0.6, 0.9):
        p = pneumonia_probability(PROBS)
        assert is_pneumonia(p, threshold).tolist() == (decide(PROBS, threshold) > 0).tolist()
        for row, one in zip(PROBS, p):
            assert (label(float(one), threshold) == "PNEUMONIA") == bool(decide(row[None], threshold)[0] > 0)


def test_a_binary_models_pneumonia_is_split_in_halves_and_decided_alike():
    binary = np.array([[0.8, 0.2], [0.3, 0.7]])
    three = as_three_class(binary)
    assert np.allclose(three, [[0.8, 0.1, 0.1], [0.3, 0.35, 0.35]])
    assert as_three_class(PROBS) is PROBS or np.array_equal(as_three_class(PROBS), PROBS)
    assert decide(binary, 0.5).tolist() == [0, 1]
    assert subtype_margin(binary).tolist() == pytest.approx([0.0, 0.0])  # a binary model has no subtype evidence


def test_subtype_margin_and_the_stated_subtype():
    assert subtype_margin(PROBS).tolist() == pytest.approx([1 / 3, 0.5, 0.2, 0.0])
    assert stated_subtype(PROBS[1], 0.5) == "VIRAL"  # exactly at the margin: stated
    assert stated_subtype(PROBS[1], 0.51) == SUBTYPE_UNCERTAIN
    assert stated_subtype(PROBS[2], 0.1) == "BACTERIAL"
    assert stated_subtype(PROBS[3], 0.0) == "BACTERIAL"  # a tie goes to bacterial, margin 0 >= 0
    assert stated_subtype(PROBS[3], None) == "BACTERIAL" and stated_subtype(PROBS[1], None) == "VIRAL"


def test_within_pneumonia_shares_and_when_there_are_none():
    assert within_pneumonia({"NORMAL": 0.4, "BACTERIAL": 0.15, "VIRAL": 0.45}) == pytest.approx(
        {"BACTERIAL": 0.25, "VIRAL": 0.75})
    assert within_pneumonia({"NORMAL": 1.0, "BACTERIAL": 0.0, "VIRAL": 0.0}) is None
    assert within_pneumonia({"NORMAL": 0.4, "BACTERIAL": None, "VIRAL": None}) is None
