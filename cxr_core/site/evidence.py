"""Parent and adapted model side by side on the same site films: the evidence a reader activates a site-adapted
model on, and the card keeps.

The adapted model's scores are out-of-fold (cross-fitting, train/site.py): each film is scored by a model fine-tuned
without its patient, so every site film is evidence. Each model is judged at its own threshold: the parent at its
card's, the adapted model at the one `site_threshold` picks from the out-of-fold scores. AUC with a percentile
bootstrap 95 % CI, and the paired AUC difference (adapted - parent) with its CI from the same resamples;
sensitivity and specificity with Wilson 95 % CIs; the ROC points for the overlay. `threshold_cross_check` says how
optimistic choosing the threshold on the same scores is; `pneumonia_films_needed` refuses, before any training, a
set whose sensitivity bound could never reach the site's floor.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..model.decision import is_pneumonia
from ..validation.metrics import choose_threshold, operating_point_evidence, roc_points, safe_auc, wilson_interval

NON_INFERIORITY_MARGIN = 0.01  # the paired AUC difference's lower 95 % bound may not fall below -margin


def bootstrap_aucs(y_binary: np.ndarray, p: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The AUC of each bootstrap resample (rows of `draws`, film indices); NaN where a resample holds one class.
    Mann-Whitney form with mid-ranks, so ties count a half, as roc_auc_score does."""
    from scipy.stats import rankdata  # lazy: heavy

    labels = y_binary[draws]
    positives = labels.sum(axis=1)
    aucs = np.full(len(draws), np.nan)
    both = (positives > 0) & (positives < draws.shape[1])
    ranks = rankdata(p[draws[both]], axis=1)
    pos, neg = positives[both], draws.shape[1] - positives[both]
    aucs[both] = (np.sum(ranks * labels[both], axis=1) - pos * (pos + 1) / 2) / (pos * neg)
    return aucs


def _ci(values: np.ndarray) -> list[float]:
    values = values[~np.isnan(values)]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


def model_evidence(y_binary: np.ndarray, p: np.ndarray, threshold: float, aucs: np.ndarray) -> dict[str, Any]:
    """One model's figures on the site films; `aucs` are its AUCs on the shared bootstrap resamples."""
    ev = operating_point_evidence(y_binary, p, threshold)
    return {"auc": safe_auc(y_binary, p), "auc_ci95": _ci(aucs),
            "threshold": float(threshold), "sensitivity": ev["sensitivity"], "sensitivity_ci95": ev["sensitivity_ci95"],
            "specificity": ev["specificity"], "specificity_ci95": ev["specificity_ci95"],
            "accuracy": float(np.mean(is_pneumonia(p, threshold).astype(int) == y_binary)),
            "roc": roc_points(y_binary, p)}


def compare(y_binary: np.ndarray, p_parent: np.ndarray, parent_threshold: float, p_adapted: np.ndarray,
            adapted_threshold: float, n_boot: int = 1000, seed: int = 0,
            names: tuple[str, str] = ("parent", "adapted")) -> dict[str, Any]:
    """{n, n_positive, n_negative, parent: {...}, adapted: {...}, difference: {auc, auc_ci95}} on the same films
    (`names`: the two models' keys, e.g. ("current", "candidate") for an activation). The difference is paired:
    both models' AUCs on the same resamples, second minus first."""
    y_binary = np.asarray(y_binary, dtype=int)
    p_parent, p_adapted = np.asarray(p_parent, float), np.asarray(p_adapted, float)
    draws = np.random.default_rng(seed).integers(0, len(y_binary), (n_boot, len(y_binary)))
    a_parent, a_adapted = bootstrap_aucs(y_binary, p_parent, draws), bootstrap_aucs(y_binary, p_adapted, draws)
    parent = model_evidence(y_binary, p_parent, parent_threshold, a_parent)
    adapted = model_evidence(y_binary, p_adapted, adapted_threshold, a_adapted)
    return {"n": int(len(y_binary)), "n_positive": int(y_binary.sum()), "n_negative": int((1 - y_binary).sum()),
            names[0]: parent, names[1]: adapted,
            "difference": {"auc": adapted["auc"] - parent["auc"], "auc_ci95": _ci(a_adapted - a_parent)}}


def site_threshold(y_binary: np.ndarray, p: np.ndarray, target_sensitivity: float) -> float:
    """The one stated rule: the highest threshold whose sensitivity on these scores is at least the target."""
    return choose_threshold(np.asarray(y_binary, int), np.asarray(p, float), "sensitivity", target_sensitivity)


def threshold_cross_check(y_binary: np.ndarray, p: np.ndarray, folds: Sequence[np.ndarray],
                          target_sensitivity: float) -> dict[str, Any]:
    """How optimistic the threshold rule is on the scores it was chosen on: each fold judged at the threshold the
    rule picks from the other folds' scores, pooled. Set beside the in-sample figures, the gap is the optimism."""
    y_binary, p = np.asarray(y_binary, int), np.asarray(p, float)
    decided = np.zeros(len(y_binary), dtype=int)
    thresholds = []
    for held in folds:
        rest = np.setdiff1d(np.arange(len(y_binary)), held)
        t = site_threshold(y_binary[rest], p[rest], target_sensitivity)
        thresholds.append(t)
        decided[held] = is_pneumonia(p[held], t).astype(int)
    tp = int(((decided == 1) & (y_binary == 1)).sum())
    tn = int(((decided == 0) & (y_binary == 0)).sum())
    pos, neg = int(y_binary.sum()), int((1 - y_binary).sum())
    return {"rule": f"the highest threshold with sensitivity >= {target_sensitivity:.2f} on the out-of-fold scores",
            "fold_thresholds": [float(t) for t in thresholds],
            "sensitivity": tp / pos if pos else float("nan"), "sensitivity_ci95": wilson_interval(tp, pos),
            "specificity": tn / neg if neg else float("nan"), "specificity_ci95": wilson_interval(tn, neg)}


def pneumonia_films_needed(floor: float, limit: int = 10_000) -> int:
    """The fewest pneumonia films whose Wilson lower 95 % bound of sensitivity reaches `floor` even when every one
    is found (35 for a floor of 0.90): a site with fewer can never pass the gate, so it is refused before training."""
    n = 1
    while n < limit and not wilson_interval(n, n)[0] >= floor:
        n += 1
    return n
