"""The operating point: the threshold on P(pneumonia) that turns a probability into NORMAL or PNEUMONIA, and where
it comes from. One frozen object, resolved once per request (from the model card and the site's store) and passed
explicitly to everything that decides or reports: predict, evaluate, stress, the PDF, the exports, the SR and the
listener. Nothing shared between users holds it, so one user's choice can never reach another's results.

A site point is governed (`govern_site_point`): it may only be set from a local evaluation with enough images of
each class, and the lower 95 % bound of sensitivity at it must stay at or above the site's floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CXRError

DEFAULT_THRESHOLD = 0.5  # a card without a threshold (never a shipped or trained model)
SOURCES = ("model", "site")


def valid_threshold(value: Any) -> float:
    """The one validity check: a probability strictly between 0 and 1."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise CXRError(f"threshold {value!r} is invalid: expected a probability strictly between 0 and 1.") from None
    if not 0.0 < threshold < 1.0:
        raise CXRError(f"threshold {value!r} is invalid: expected a probability strictly between 0 and 1.")
    return threshold


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    source: str = "model"  # "model" (the card's threshold) or "site" (a governed site point)
    set_by: str | None = None  # a site point's reader
    set_on: str | None = None  # ISO time
    evidence: tuple[tuple[str, Any], ...] = field(default=(), repr=False)  # n, sensitivity with CIs, evaluation id

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", valid_threshold(self.threshold))
        if self.source not in SOURCES:
            raise CXRError(f"operating point source {self.source!r} is invalid: expected one of {SOURCES}.")

    @classmethod
    def of_model(cls, card: Any) -> "OperatingPoint":
        """The model's own threshold, as its card (cxr_core.model.card.ModelCard) states it."""
        return cls(card.threshold, "model")

    @property
    def wording(self) -> str:
        """How every surface names it."""
        return threshold_wording(self.source)

    @property
    def evidence_dict(self) -> dict[str, Any]:
        return dict(self.evidence)


def threshold_wording(source: str) -> str:
    """How every surface names the threshold that decided a result."""
    return "the site's operating point" if source == "site" else "the model's threshold"


def resolve(card: Any, store: Any | None) -> OperatingPoint:
    """The point that decides now for this model (a ModelCard): the site's governed point when one is set, else
    the card's."""
    point = store.site_threshold(card.model_id) if store is not None else None
    if not point:
        return OperatingPoint.of_model(card)
    return OperatingPoint(point["threshold"], "site", set_by=point["author"], set_on=point["created"],
                          evidence=tuple(sorted((point.get("evidence") or {}).items())))


@dataclass(frozen=True)
class SitePointPolicy:
    """The deployment's rules for a site operating point."""

    min_per_class: int = 50
    sensitivity_floor: float = 0.90

    def __post_init__(self) -> None:
        if not 1 <= int(self.min_per_class) <= 100_000:
            raise CXRError(f"min_per_class {self.min_per_class!r} is invalid: expected a whole number from 1.")
        if not 0.0 < float(self.sensitivity_floor) < 1.0:
            raise CXRError(f"sensitivity floor {self.sensitivity_floor!r} is invalid: expected a number in (0, 1).")


def local_evaluation_problem(n_positive: int, n_negative: int, policy: SitePointPolicy,
                             overlap_warning: str | None = None, purpose: str = "to rely on") -> str | None:
    """The one check of the rules a local evaluation must meet before anything is based on it (a site operating
    point, the site's figures): enough films of each class, and none of the model's training films. None when it
    meets them, else why not, in plain words."""
    if n_positive < policy.min_per_class or n_negative < policy.min_per_class:
        return f"too few local films {purpose} (n = {n_positive + n_negative}; {policy.min_per_class} per class needed)"
    if overlap_warning:
        return f"this evaluation includes the model's training films, so it says nothing about this site. {overlap_warning}"
    return None


def govern_site_point(threshold: float, y_binary: np.ndarray, p: np.ndarray, policy: SitePointPolicy,
                      overlap_warning: str | None = None) -> dict[str, Any]:
    """The evidence for a proposed site point on a local evaluation, or a CXRError saying in plain words which
    rule fails, with its numbers. Every surface (Dashboards, CLI) calls this one function before saving."""
    from ..validation.metrics import operating_point_evidence

    threshold = valid_threshold(threshold)
    ev = operating_point_evidence(y_binary, p, threshold)
    problem = local_evaluation_problem(ev["n_positive"], ev["n_negative"], policy, overlap_warning,
                                       "for a site operating point")
    if problem:
        raise CXRError(f"Refused: {problem}. This evaluation has {ev['n_positive']} pneumonia and "
                       f"{ev['n_negative']} normal.")
    low = ev["sensitivity_ci95"][0]
    if not low >= policy.sensitivity_floor:
        raise CXRError(f"Refused: the sensitivity is too uncertain. At {threshold:.3f} it is {ev['sensitivity']:.3f} "
                       f"(95 % CI {low:.3f} to {ev['sensitivity_ci95'][1]:.3f}, n = {ev['n_positive']} pneumonia); "
                       f"the site's floor for its lower bound is {policy.sensitivity_floor:.2f}.")
    return ev


def reading_now(assessed: bool, probability: float | None, label: str | None, model_id: str,
                point: OperatingPoint, current_model_id: str) -> str | None:
    """What a stored result would read now, said plainly, or None when nothing has changed. A stored case keeps
    the decision it was given (for the audit); the Viewer, the Worklist and the PDF all say this sentence."""
    if model_id != current_model_id:
        return (f"This film was read by model {model_id}; the model in use now is {current_model_id}. "
                "Analyse the film again to see its reading.")
    if not assessed or probability is None:
        return None
    from .decision import binary_label

    now = binary_label(probability, point.threshold)
    if now == label:
        return None
    where = "the site's current point" if point.source == "site" else "the model's own threshold"
    return f"At {where} ({point.threshold:.3f}) this film reads {now}."
