"""The operating point: the threshold on P(pneumonia) that turns a probability into NORMAL or PNEUMONIA, and where
it comes from. One frozen object, resolved once per request (from the model card and the site's store) and passed
explicitly to everything that decides or reports: predict, evaluate, stress, the PDF, the exports, the SR and the
listener. Nothing shared between users holds it, so one user's choice can never reach another's results.

A site point is governed by `validation.site_point.govern_site_point`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


from ..errors import CXRError
from . import decision



class CardThreshold(Protocol):
    """What a point needs of a model's card (cxr_core.model.card.ModelCard, which imports this module)."""
    model_id: str
    threshold: float


class SitePoints(Protocol):
    """What a point needs of the case store (cxr_core.cases.store.CaseStore, a later layer): the site's point."""
    def site_threshold(self, model_id: str) -> dict[str, Any] | None: ...


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
    def of_model(cls, card: CardThreshold) -> OperatingPoint:
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


def resolve(card: CardThreshold, store: SitePoints | None) -> OperatingPoint:
    """The point that decides now for this model (a ModelCard): the site's governed point when one is set, else
    the card's."""
    point = store.site_threshold(card.model_id) if store is not None else None
    if not point:
        return OperatingPoint.of_model(card)
    return OperatingPoint(point["threshold"], "site", set_by=point["author"], set_on=point["created"],
                          evidence=tuple(sorted((point.get("evidence") or {}).items())))


def reading_now(assessed: bool, probability: float | None, label: str | None, model_id: str,
                point: OperatingPoint, current_model_id: str) -> str | None:
    """What a stored result would read now, said plainly, or None when nothing has changed. A stored case keeps
    the decision it was given (for the audit); the Viewer, the Worklist and the PDF all say this sentence."""
    if model_id != current_model_id:
        return (f"This film was read by model {model_id}; the model in use now is {current_model_id}. "
                "Analyse the film again to see its reading.")
    if not assessed or probability is None:
        return None

    now = decision.label(probability, point.threshold)
    if now == label:
        return None
    where = "the site's current point" if point.source == "site" else "the model's own threshold"
    return f"At {where} ({point.threshold:.3f}) this film reads {now}."
