"""Parent and adapted model side by side on the same local-validation films of the site: the evidence a reader
activates a site-adapted model on, and the card keeps.

Each model is judged at its own threshold: the parent at its card's, the adapted model at the one its parent's
threshold policy chose on these scores. AUC with a percentile bootstrap 95 % CI (the same resamples for both
models), sensitivity and specificity with Wilson 95 % CIs, and the ROC points for the overlay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model.decision import is_pneumonia
from ..validation.metrics import operating_point_evidence, roc_points, safe_auc


def model_evidence(y_binary: np.ndarray, p: np.ndarray, threshold: float, draws: np.ndarray) -> dict[str, Any]:
    """One model's figures on the local-validation films; `draws` are the shared bootstrap resamples."""
    from scipy.stats import rankdata  # lazy: heavy

    ev = operating_point_evidence(y_binary, p, threshold)
    labels = y_binary[draws]
    positives = labels.sum(axis=1)
    both = (positives > 0) & (positives < len(y_binary))
    ranks = rankdata(p[draws[both]], axis=1)
    pos, neg = positives[both], len(y_binary) - positives[both]
    aucs = (np.sum(ranks * labels[both], axis=1) - pos * (pos + 1) / 2) / (pos * neg)
    roc = roc_points(y_binary, p)
    return {"auc": safe_auc(y_binary, p), "auc_ci95": [float(np.quantile(aucs, 0.025)), float(np.quantile(aucs, 0.975))],
            "threshold": float(threshold), "sensitivity": ev["sensitivity"], "sensitivity_ci95": ev["sensitivity_ci95"],
            "specificity": ev["specificity"], "specificity_ci95": ev["specificity_ci95"],
            "accuracy": float(np.mean(is_pneumonia(p, threshold).astype(int) == y_binary)),
            "roc": roc}


def compare(y_binary: np.ndarray, p_parent: np.ndarray, parent_threshold: float, p_adapted: np.ndarray,
            adapted_threshold: float, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """{n, n_positive, n_negative, parent: {...}, adapted: {...}} on the same films."""
    y_binary = np.asarray(y_binary, dtype=int)
    draws = np.random.default_rng(seed).integers(0, len(y_binary), (n_boot, len(y_binary)))
    return {"n": int(len(y_binary)), "n_positive": int(y_binary.sum()), "n_negative": int((1 - y_binary).sum()),
            "parent": model_evidence(y_binary, np.asarray(p_parent, float), parent_threshold, draws),
            "adapted": model_evidence(y_binary, np.asarray(p_adapted, float), adapted_threshold, draws)}
