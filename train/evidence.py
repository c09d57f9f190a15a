"""The operating threshold and the stress section of a model card, from held-out scores.

The single-split pipeline (validation images) and the cross-validated ensemble (out-of-fold images)
both call these, so a policy means the same thing whichever recipe made the model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from cxr_core.validation import metrics as M
from cxr_core.config import STRESS_POLICIES, TrainConfig
from cxr_core.inputs.shifts import SHIFTS
from cxr_core.model.evidence import StressReport, ThresholdEvidence
from cxr_core.validation.stress import CLEAN, conditions, score_conditions, stress_report, stress_table


def needs_stress(config: TrainConfig) -> bool:
    """Whether the config's threshold policy is chosen on stress-suite scores."""
    return config.train.threshold_policy in STRESS_POLICIES


def held_out_shifts(config: TrainConfig) -> list[str]:
    """The shift kinds the config's training augmentation never varies."""
    return sorted(name for name, shift in SHIFTS.items() if not shift.in_training_augmentation(config.augment))


def stress_logits(images: Sequence[np.ndarray], config: TrainConfig,
                  logits: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Logits of decoded held-out images under every shifted condition (not "clean")."""
    keys = [k for k in conditions() if k != CLEAN]
    return score_conditions(images, config.data.preprocess(), logits, keys)


def operating_point(config: TrainConfig, y_binary: np.ndarray, p: dict[str, np.ndarray]) -> tuple[float, ThresholdEvidence]:
    """(threshold, policy evidence) by the config's policy; `p` maps conditions to P(pneumonia) ("clean" at least)."""
    t = config.train
    if t.threshold_policy == "robust_sensitivity":
        threshold, policy = M.robust_threshold(y_binary, p, t.target_sensitivity, max_severity=2)
    elif t.threshold_policy == "sensitivity_then_specificity":
        threshold, policy = M.shift_aware_threshold(y_binary, p, t.target_sensitivity, t.shifted_sensitivity_floor,
                                                    held_out_shifts(config), max_severity=2)
    else:
        threshold = M.choose_threshold(y_binary, p[CLEAN], t.threshold_policy, t.target_sensitivity)
        policy = ThresholdEvidence(name=t.threshold_policy, target_sensitivity=t.target_sensitivity)
    youden = M.choose_threshold(y_binary, p[CLEAN], "youden")
    at_youden = M.binary_at_threshold(y_binary, p[CLEAN], youden)
    return threshold, replace(policy, youden_threshold_for_comparison=youden,
                              at_youden={k: at_youden[k] for k in ("sensitivity", "specificity")})


def stress_section(config: TrainConfig, y_binary: np.ndarray, p: dict[str, np.ndarray], threshold: float,
                   note: str) -> StressReport:
    """The card's stress report: one row per condition, the worst cases over every shift and over the acquisition
    family (whose rows say whether augmentation varied them)."""
    return stress_report(stress_table(y_binary, p, threshold, config.augment), note=note, acquisition=True)
