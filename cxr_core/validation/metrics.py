"""Metrics from per-image scores (scikit-learn underneath), thresholds and calibration.

Everything works from two arrays: `y` (3-class truth, 0 NORMAL / 1 BACTERIAL / 2 VIRAL) and
`probs` (N x 3 softmax probabilities). The binary view is NORMAL vs PNEUMONIA with
P(pneumonia) = 1 - P(normal). The same functions serve training, `evaluate` and the dashboards.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import CLASSES
from ..model.decision import as_three_class, decide, is_pneumonia, pneumonia_probability, subtype_margin
from ..model.evidence import ThresholdEvidence


def _skm() -> Any:
    """scikit-learn's metrics, imported on first use: prediction needs none of them, and importing them
    costs about a second of a cold start (bench/inference.py)."""
    from sklearn import metrics  # lazy: heavy

    return metrics


def binary_at_threshold(y_binary: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity, PPV, NPV and confusion matrix [[TN, FP], [FN, TP]]."""
    pred = is_pneumonia(p, threshold).astype(int)
    cm = _skm().confusion_matrix(y_binary, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    div = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
    return {
        "threshold": float(threshold),
        "accuracy": div(tp + tn, tn + fp + fn + tp),
        "sensitivity": div(tp, tp + fn),
        "specificity": div(tn, tn + fp),
        "ppv": div(tp, tp + fp),
        "npv": div(tn, tn + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "confusion_matrix": cm.tolist(),
    }


def operating_point_evidence(y_binary: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity at `threshold` with Wilson 95 % intervals (scipy), and their n: the
    evidence a site operating point is saved with."""
    y_binary, pred = np.asarray(y_binary), is_pneumonia(np.asarray(p), threshold).astype(int)
    out: dict[str, Any] = {"threshold": float(threshold), "n": int(len(y_binary))}
    for name, cls in (("sensitivity", 1), ("specificity", 0)):
        n = int((y_binary == cls).sum())
        k = int(((pred == cls) & (y_binary == cls)).sum())
        out[name] = k / n if n else float("nan")
        out[f"{name}_ci95"] = wilson_interval(k, n)
        out[f"n_{'positive' if cls else 'negative'}"] = n
    return out


def wilson_interval(k: int, n: int) -> list[float]:
    """The Wilson 95 % interval of a proportion k / n (scipy); NaNs when n is 0."""
    from scipy.stats import binomtest  # lazy: heavy

    if not n:
        return [float("nan")] * 2
    ci = binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return [float(ci.low), float(ci.high)]


def safe_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(_skm().roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def three_class(y: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """3-class accuracy, macro-F1, per-class recall, confusion matrix and bacterial-vs-viral AUC.

    With a threshold, the class is NORMAL when P(pneumonia) < threshold, else the likelier of
    BACTERIAL / VIRAL: the same decision the product shows.
    """
    pred = decide(probs, threshold)
    cm = _skm().confusion_matrix(y, pred, labels=[0, 1, 2])
    recall = _skm().recall_score(y, pred, labels=[0, 1, 2], average=None, zero_division=0)
    pneu = y > 0
    bv_auc = safe_auc((y[pneu] == 2).astype(int), probs[pneu, 2] / np.clip(probs[pneu, 1] + probs[pneu, 2], 1e-12, None)) \
        if pneu.any() else float("nan")
    return {
        "accuracy": float(_skm().accuracy_score(y, pred)),
        "macro_f1": float(_skm().f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)),
        "recall": {c: float(r) for c, r in zip(CLASSES, recall)},
        "bacterial_vs_viral_auc": bv_auc,
        "confusion_matrix": cm.tolist(),
    }

SUBTYPE_PRECISION_TARGET = 0.85


def choose_subtype_margin(y3: np.ndarray, probs: np.ndarray, precision: float = SUBTYPE_PRECISION_TARGET,
                          min_stated: int = 20) -> dict[str, Any]:
    """The smallest margin above which the subtype call is right at least `precision` of the time on held-out
    pneumonia films (at least `min_stated` of them stated), and what it costs: the share of pneumonia films whose
    subtype is then stated. No such margin: 1.0 (the subtype is never stated)."""
    y3, probs = np.asarray(y3), as_three_class(np.asarray(probs, dtype=float))
    pneumonia = y3 > 0
    margin = subtype_margin(probs[pneumonia])
    right = np.where(probs[pneumonia, 2] > probs[pneumonia, 1], 2, 1) == y3[pneumonia]
    chosen, achieved, stated = 1.0, float("nan"), 0
    for m in np.unique(margin):  # ascending: the first that meets the target states the most
        keep = margin >= m
        if keep.sum() >= min_stated and right[keep].mean() >= precision:
            chosen, achieved, stated = float(m), float(right[keep].mean()), int(keep.sum())
            break
    return {"margin": chosen, "precision_target": precision, "precision": achieved,
            "stated_fraction": stated / max(1, int(pneumonia.sum())), "n_pneumonia": int(pneumonia.sum()),
            "precision_all": float(right.mean()) if right.size else float("nan")}


def choose_threshold(y_binary: np.ndarray, p: np.ndarray, policy: str = "youden",
                     target_sensitivity: float = 0.95) -> float:
    """Operating threshold from validation scores only.

    youden: maximises sensitivity + specificity - 1. sensitivity: the highest threshold whose
    sensitivity is still >= target (the fewest false alarms at that sensitivity).
    The threshold is placed halfway between the chosen score and the next lower one: the same
    decisions on validation, without an image sitting exactly on the threshold (where rounding of
    a saved score, or float noise in another preprocessing run, would flip it).
    """
    fpr, tpr, thr = _skm().roc_curve(y_binary, p, drop_intermediate=False)  # every score: the exact highest one
    thr = np.clip(thr, 0.0, 1.0)
    if policy == "youden":
        best = int(np.argmax(tpr - fpr))
    elif policy == "sensitivity":
        ok = np.flatnonzero(tpr >= target_sensitivity)
        best = int(ok[0]) if len(ok) else len(thr) - 1
    else:
        raise ValueError(f"unknown threshold policy {policy!r}")
    chosen = float(thr[best])
    below = np.asarray(p)[np.asarray(p) < chosen]
    return (chosen + float(below.max())) / 2 if len(below) else chosen


def robust_threshold(y_binary: np.ndarray, p_by_condition: dict[str, np.ndarray], target_sensitivity: float = 0.95,
                     max_severity: int = 2) -> tuple[float, ThresholdEvidence]:
    """The "robust_sensitivity" policy: the highest threshold that keeps sensitivity >= target on the
    clean scores and under every shift up to `max_severity` (keys "clean" or "<shift>:<severity>").

    Returns (threshold, evidence): each condition's own sensitivity-target threshold and the one that binds.
    """
    per_condition = {}
    for key, p in p_by_condition.items():
        severity = 0 if key == "clean" else int(key.rpartition(":")[2])
        if severity <= max_severity:
            per_condition[key] = choose_threshold(y_binary, np.asarray(p), "sensitivity", target_sensitivity)
    if not per_condition:
        raise ValueError(f"no condition up to severity {max_severity!r} among {sorted(p_by_condition)}")
    binding = min(per_condition, key=per_condition.get)
    evidence = ThresholdEvidence(name="robust_sensitivity", target_sensitivity=target_sensitivity,
                                 max_severity=max_severity, binding_condition=binding,
                                 per_condition_thresholds=per_condition)
    return per_condition[binding], evidence


def shift_aware_threshold(y_binary: np.ndarray, p_by_condition: dict[str, np.ndarray], target_sensitivity: float = 0.95,
                          shifted_sensitivity_floor: float = 0.90, held_out: Sequence[str] = (),
                          max_severity: int = 2) -> tuple[float, ThresholdEvidence]:
    """The "sensitivity_then_specificity" policy, chosen on held-out (out-of-fold) scores.

    1. Sensitivity >= `target_sensitivity` on the clean held-out scores.
    2. Sensitivity >= `shifted_sensitivity_floor` under every held-out shift kind (`held_out`: shift names
       the training augmentation never varied) up to `max_severity`.
    Within those, specificity only rises with the threshold, so the highest feasible threshold maximises the
    worst-case specificity under the same shifts. The evidence states what the floor costs: sensitivity and
    specificity at the chosen threshold on clean and on every considered condition, the clean-only threshold
    and the worst-case specificity given up relative to it.
    """
    yb = np.asarray(y_binary, int)
    considered = {k: np.asarray(p) for k, p in p_by_condition.items()
                  if k == "clean" or (k.partition(":")[0] in held_out and int(k.rpartition(":")[2]) <= max_severity)}
    if "clean" not in considered:
        raise ValueError(f"the clean condition is missing from {sorted(p_by_condition)}")
    limits = {k: choose_threshold(yb, p, "sensitivity", target_sensitivity if k == "clean" else shifted_sensitivity_floor)
              for k, p in considered.items()}
    binding = min(limits, key=lambda k: (limits[k], k != "clean"))  # on a tie the clean target binds
    threshold = limits[binding]

    def at(t: float) -> dict[str, dict[str, float]]:
        return {k: {m: binary_at_threshold(yb, p, t)[m] for m in ("sensitivity", "specificity")}
                for k, p in considered.items()}

    chosen, clean_only = at(threshold), at(limits["clean"])
    worst = lambda table: min(v["specificity"] for v in table.values())  # noqa: E731
    cost = worst(clean_only) - worst(chosen)
    evidence = ThresholdEvidence(
        name="sensitivity_then_specificity", target_sensitivity=target_sensitivity,
        shifted_sensitivity_floor=shifted_sensitivity_floor, max_severity=max_severity,
        held_out_shifts=tuple(sorted(held_out)), binding_condition=binding, per_condition_thresholds=limits,
        at_threshold=chosen, clean_only_threshold=limits["clean"], worst_specificity=worst(chosen),
        worst_specificity_at_clean_only=worst(clean_only), specificity_cost_of_shift_floor=cost,
        trade=(f"The shift floor lowers the threshold from {limits['clean']:.3f} to {threshold:.3f} "
               f"({binding} binds) and costs {cost:.3f} of worst-case specificity."
               if binding != "clean" else "The clean sensitivity target binds; the shift floor costs nothing."))
    return threshold, evidence


def expected_calibration_error(y_binary: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE of P(pneumonia): the bin-weighted gap between mean confidence and observed frequency."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y_binary[m].mean())
    return float(ece)


def reliability_curve(y_binary: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    from sklearn.calibration import calibration_curve  # lazy: heavy

    frac, mean = calibration_curve(y_binary, p, n_bins=bins, strategy="uniform")
    return {"mean_predicted": mean.tolist(), "fraction_positive": frac.tolist()}


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, threshold: float, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> dict[str, list[float]]:
    """Percentile bootstrap 95 % CIs (resampling images) for binary accuracy and AUC and 3-class accuracy.

    One shared set of resamples for all three (scipy.stats.bootstrap draws per statistic and fails on the
    resamples that hold one class only, where AUC is undefined; those are skipped here). The resamples are
    scored together, in chunks: AUC as the Mann-Whitney statistic on average ranks, which equals roc_auc_score."""
    from scipy.stats import rankdata  # lazy: heavy

    rng = np.random.default_rng(seed)
    yb = (y > 0).astype(int)
    p = pneumonia_probability(probs)
    pred_b = is_pneumonia(p, threshold).astype(int)
    pred_3 = decide(probs, threshold)
    n = len(y)
    draws = rng.integers(0, n, (n_boot, n))  # the same stream as n_boot draws of n, one after another
    acc, auc, acc3 = [], [], []
    for i in np.array_split(draws, max(1, n_boot * n // 2_000_000)):
        acc.append(np.mean(pred_b[i] == yb[i], axis=1))
        acc3.append(np.mean(pred_3[i] == y[i], axis=1))
        labels = yb[i]
        positives = labels.sum(axis=1)
        both = (positives > 0) & (positives < n)
        ranks = rankdata(p[i[both]], axis=1)
        pos, neg = positives[both], n - positives[both]
        auc.append((np.sum(ranks * labels[both], axis=1) - pos * (pos + 1) / 2) / (pos * neg))
    acc, auc, acc3 = (np.concatenate(v) for v in (acc, auc, acc3))
    q = lambda v: [float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))] if len(v) else [float("nan")] * 2  # noqa: E731
    return {"binary_accuracy": q(acc), "binary_auc": q(auc), "three_class_accuracy": q(acc3)}


def evaluation_summary(y: np.ndarray, probs: np.ndarray, threshold: float, n_boot: int = 1000) -> dict[str, Any]:
    """The full report `evaluate --json` prints and the model card stores."""
    y = np.asarray(y, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    yb = (y > 0).astype(int)
    p = pneumonia_probability(probs)
    binary = binary_at_threshold(yb, p, threshold)
    binary["auc"] = safe_auc(yb, p)
    binary["ece"] = expected_calibration_error(yb, p)
    ci = bootstrap_ci(y, probs, threshold, n_boot=n_boot)
    binary["accuracy_ci95"], binary["auc_ci95"] = ci["binary_accuracy"], ci["binary_auc"]
    three = three_class(y, probs, threshold)
    three["accuracy_ci95"] = ci["three_class_accuracy"]
    return {"n": int(len(y)), "class_counts": {c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
            "binary": binary, "three_class": three}


def roc_points(y_binary: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    fpr, tpr, thr = _skm().roc_curve(y_binary, p)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": np.clip(thr, 0, 1).tolist()}


def pr_points(y_binary: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    prec, rec, thr = _skm().precision_recall_curve(y_binary, p)
    return {"precision": prec.tolist(), "recall": rec.tolist(), "threshold": thr.tolist()}


def classification_report(y: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    return _skm().classification_report(y, decide(probs, threshold), labels=[0, 1, 2],
                                     target_names=list(CLASSES), output_dict=True, zero_division=0)
