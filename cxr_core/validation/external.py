"""External validation: a model scored on a labelled site it never trained on, recorded in its card.

Internal validation (held-out patients of the training hospital) could not rank recipes for the field: three
shipped models scored 0.995-0.998 internally and 0.951-0.972 on an external site, in the order the independent
held-out films later confirmed. So a model's card carries `external_validation` (written by
`python -m cxr_core validate-external`), every surface shows it beside the internal figures under one label
(`ModelCard.external_label`), and the operating threshold may be chosen on it (`adopt_external_threshold`, policy
`external_sensitivity`): the highest threshold whose sensitivity on the external films is at least the target.

The rules (`external_problem`): the model's training hash list must exist and hold none of the films, and each
binary class needs at least the site's minimum (CXR_SITE_MIN_PER_CLASS).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import CXRError
from ..formatting import ci, with_ci
from ..model.card import ModelCard
from ..model.decision import pneumonia_probability, subtype_margin
from ..settings import SitePointPolicy
from .metrics import choose_threshold, operating_point_evidence, three_class

EXTERNAL_POLICY = "external_sensitivity"  # the card's threshold_policy once the threshold is chosen on external films
DEFAULT_TARGET_SENSITIVITY = 0.95


def external_problem(summary: Mapping[str, Any], policy: SitePointPolicy) -> str | None:
    """Why an evaluation (cxr_core.validation.evaluation.EvalResult.summary) cannot be external validation, or None."""
    overlap = summary.get("overlap") or {}
    if overlap.get("same_folder"):
        return "this folder is the model's own training data"
    if overlap.get("images_in_training") is None:
        return ("the model has no training hash list (training_hashes.txt), so the folder cannot be shown to be "
                "external; run `python -m cxr_core fit-ood` on the model first")
    if overlap["images_in_training"]:
        return (f"{overlap['images_in_training']} of its {summary['n']} films are in the model's training data; "
                "external validation needs films the model never trained on")
    counts = summary.get("class_counts") or {}
    normal = int(counts.get("NORMAL", 0))
    pneumonia = int(summary["n"]) - normal
    if normal < policy.min_per_class or pneumonia < policy.min_per_class:
        return (f"too few films (NORMAL {normal}, PNEUMONIA {pneumonia}; at least {policy.min_per_class} of each "
                "are needed, CXR_SITE_MIN_PER_CLASS)")
    return None


def threshold_ci(y_binary: np.ndarray, p: np.ndarray, target: float, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % interval of the chosen threshold (resampling films, choosing again each time)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(n_boot):
        i = rng.integers(0, len(p), len(p))
        if 0 < y_binary[i].sum() < len(i):
            chosen.append(choose_threshold(y_binary[i], p[i], "sensitivity", target))
    return [float(np.quantile(chosen, 0.025)), float(np.quantile(chosen, 0.975))] if chosen else [float("nan")] * 2


def external_validation(summary: Mapping[str, Any], y: np.ndarray, probs: np.ndarray, card: ModelCard, site: str,
                        policy: SitePointPolicy, about: str = "", n_boot: int = 1000,
                        evaluation: str | None = None) -> dict[str, Any]:
    """The card's `external_validation` block from an evaluation of the model on an external folder (its summary,
    3-class labels and probabilities), or CXRError naming the rule it breaks."""
    if not site.strip():
        raise CXRError("External validation needs the site's name (--site), e.g. 'site A'.")
    problem = external_problem(summary, policy)
    if problem:
        raise CXRError(f"Refused: {problem}.")
    y, probs = np.asarray(y, dtype=int), np.asarray(probs, dtype=np.float64)
    yb, p = (y > 0).astype(int), pneumonia_probability(probs)
    target = card.threshold_evidence.target_sensitivity if card.threshold_evidence else DEFAULT_TARGET_SENSITIVITY
    chosen = choose_threshold(yb, p, "sensitivity", target)
    b, t = summary["binary"], summary["three_class"]
    return {
        "site": site.strip(), "about": about.strip(), "data": summary.get("data"),
        "data_fingerprint": summary.get("data_fingerprint"), "label_source": summary.get("label_source"),
        "evaluated": summary.get("evaluated"), "evaluation": evaluation, "n": int(summary["n"]),
        "class_counts": dict(summary["class_counts"]), "images_in_training": 0,
        "auc": b["auc"], "auc_ci95": b["auc_ci95"],
        "at_card_threshold": {**operating_point_evidence(yb, p, card.threshold), "accuracy": b["accuracy"],
                              "accuracy_ci95": b["accuracy_ci95"], "policy": card.threshold_policy},
        "at_target_sensitivity": {**operating_point_evidence(yb, p, chosen), "target_sensitivity": target,
                                  "accuracy": float(np.mean((p >= chosen) == yb)),
                                  "three_class_accuracy": three_class(y, probs, chosen)["accuracy"],
                                  "threshold_ci95": threshold_ci(yb, p, target, n_boot)},
        "three_class": {"accuracy": t["accuracy"], "accuracy_ci95": t["accuracy_ci95"],
                        "bacterial_vs_viral_auc": t["bacterial_vs_viral_auc"],
                        **_subtype_figures(y, probs, card.subtype_margin)},
        # validated again after its threshold was adopted: the internal threshold it replaced stays on record
        **({"internal_threshold": card.external_validation["internal_threshold"]}
           if card.threshold_policy == EXTERNAL_POLICY and (card.external_validation or {}).get("internal_threshold")
           else {}),
    }


def _subtype_figures(y: np.ndarray, probs: np.ndarray, margin: float | None) -> dict[str, Any]:
    """Among pneumonia films: the share whose subtype is stated (past the card's margin) and its precision."""
    pneumonia = y > 0
    if not pneumonia.any():
        return {}
    stated = subtype_margin(probs[pneumonia]) >= (margin or 0.0)
    right = np.where(probs[pneumonia, 2] > probs[pneumonia, 1], 2, 1) == y[pneumonia]
    return {"subtype_margin": margin, "subtype_stated_fraction": float(stated.mean()),
            "subtype_precision_stated": float(right[stated].mean()) if stated.any() else float("nan"),
            "subtype_precision_all": float(right.mean())}


def adopt_external_threshold(card: ModelCard) -> ModelCard:
    """The card with its operating threshold chosen on its external films (policy `external_sensitivity`); the
    internal threshold it replaces stays on record in the block."""
    block = dict(card.external_validation or {})
    if not block:
        raise CXRError(f"Model {card.model_id} has no external validation: run `validate-external` first.")
    chosen = block["at_target_sensitivity"]["threshold"]
    if card.threshold_policy != EXTERNAL_POLICY:
        block["internal_threshold"] = {"threshold": card.threshold, "policy": card.threshold_policy}
    return card.with_fields(threshold=chosen, threshold_policy=EXTERNAL_POLICY, external_validation=block)


def external_sentence(block: Mapping[str, Any]) -> str:
    """One line of the figures for the sidebar and the Dashboards."""
    at = block["at_target_sensitivity"]
    counts = block.get("class_counts") or {}
    return (f"n = {block['n']} films ({', '.join(f'{k} {v}' for k, v in counts.items())}; labels: "
            f"{block.get('label_source') or 'the folder names'}): AUC {with_ci(block['auc'], block.get('auc_ci95'))}; "
            f"at sensitivity >= {at['target_sensitivity']:.2f} (threshold {at['threshold']:.3f}) sensitivity "
            f"{at['sensitivity']:.3f} {ci(at['sensitivity_ci95'])}, specificity {at['specificity']:.3f} "
            f"{ci(at['specificity_ci95'])}, 3-class accuracy {at['three_class_accuracy']:.3f}.")
