"""The product's decision rule, one home for every surface: P(pneumonia) = 1 - P(NORMAL); NORMAL below the
operating threshold, else PNEUMONIA with the likelier subtype, stated only when its margin is clear. The
statistics that judge it (AUC, calibration, bootstrap CIs) live in metrics.py.
"""

from __future__ import annotations

from typing import overload

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax as _scipy_softmax

from .. import BINARY_CLASSES


def pneumonia_probability(probs: np.ndarray) -> np.ndarray:
    return 1.0 - np.asarray(probs)[:, 0]


@overload
def is_pneumonia(p: float, threshold: float) -> bool: ...
@overload
def is_pneumonia(p: np.ndarray, threshold: float) -> np.ndarray: ...
def is_pneumonia(p: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """The rule itself: PNEUMONIA where P(pneumonia) is at or above the threshold (a film exactly at it is read as
    PNEUMONIA). One value gives a bool, an array a boolean array."""
    decided = np.asarray(p) >= threshold
    return decided if decided.ndim else bool(decided)


def label(p: float, threshold: float) -> str:
    """NORMAL or PNEUMONIA for one P(pneumonia) at `threshold`: `is_pneumonia` in words."""
    return BINARY_CLASSES[is_pneumonia(p, threshold)]


def as_three_class(probs: np.ndarray) -> np.ndarray:
    """Binary-model probabilities [P(normal), P(pneumonia)] as 3 columns, the subtype split unknown (halves)."""
    probs = np.asarray(probs)
    if probs.shape[1] == 3:
        return probs
    return np.stack([probs[:, 0], probs[:, 1] / 2, probs[:, 1] / 2], axis=1)


SUBTYPE_UNCERTAIN = "UNCERTAIN"  # a PNEUMONIA whose bacterial-vs-viral margin is below the model's stated one


def subtype_margin(probs: np.ndarray) -> np.ndarray:
    """How clearly the likelier subtype wins: |P(bacterial) - P(viral)| / (P(bacterial) + P(viral)), in [0, 1]."""
    probs = as_three_class(np.asarray(probs, dtype=float))
    b, v = probs[:, 1], probs[:, 2]
    return np.abs(b - v) / np.maximum(b + v, 1e-12)


def stated_subtype(probs_row: np.ndarray, margin: float | None) -> str:
    """BACTERIAL or VIRAL for a PNEUMONIA result, or SUBTYPE_UNCERTAIN when its margin is below the model's
    (`None`: a model without one states every subtype)."""
    row = as_three_class(np.asarray(probs_row, dtype=float)[None])
    call = "VIRAL" if row[0, 2] > row[0, 1] else "BACTERIAL"
    return call if margin is None or subtype_margin(row)[0] >= margin else SUBTYPE_UNCERTAIN


def decide(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The product's decision, the one rule every surface uses: NORMAL (0) when P(pneumonia) is below
    the threshold, else the likelier subtype (1 BACTERIAL, 2 VIRAL). Without a threshold: argmax."""
    probs = as_three_class(np.asarray(probs))
    if threshold is None:
        return probs.argmax(axis=1)
    subtype = np.where(probs[:, 2] > probs[:, 1], 2, 1)
    return np.where(is_pneumonia(pneumonia_probability(probs), threshold), subtype, 0)


def within_pneumonia(class_probabilities: dict[str, float | None]) -> dict[str, float] | None:
    """P(bacterial) and P(viral) as shares of P(pneumonia): what the subtype split means (it says nothing about
    NORMAL vs PNEUMONIA). None for a model without a subtype split or without pneumonia probability."""
    b, v = class_probabilities.get("BACTERIAL"), class_probabilities.get("VIRAL")
    if b is None or v is None or b + v <= 0:
        return None
    return {"BACTERIAL": b / (b + v), "VIRAL": v / (b + v)}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return _scipy_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising validation NLL of softmax(z/T)."""
    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))
