"""A model's own figures in words, the same on every surface that quotes them (the sidebar, the PDF report): its
internal validation (same hospital as its training films), or, for a site-adapted model, this site's out-of-fold
local validation; with 95 % CIs, the threshold they were taken at, and what makes them optimistic."""

from __future__ import annotations

from dataclasses import dataclass

from ..formatting import ci, with_ci
from ..model.card import ModelCard
from .metrics import wilson_interval


@dataclass(frozen=True)
class OwnFigures:
    heading: str  # where the figures come from
    sentence: str  # the figures, the threshold, what they are and why they flatter


def own_figures(card: ModelCard) -> OwnFigures:
    """The card's own figures: a site-adapted model's are this site's (out-of-fold), any other model's internal."""
    b, t = card.binary_metrics, card.three_class_metrics
    local = bool(card.site_adaptation)
    adapted = ((card.site_adaptation or {}).get("local_validation") or {}).get("adapted") or {}
    auc_ci = b.get("auc_ci95") or (adapted.get("auc_ci95") if local else None)  # a site model's bootstrap CI
    parts = []
    if b.get("auc") is not None:
        parts.append(f"AUC {with_ci(b['auc'], auc_ci)}")
    cm = b.get("confusion_matrix")
    if cm:  # [[TN, FP], [FN, TP]]
        (tn, fp), (fn, tp) = cm
        parts.append(f"sensitivity {tp / max(1, tp + fn):.3f} {ci(wilson_interval(tp, tp + fn))}")
        parts.append(f"specificity {tn / max(1, tn + fp):.3f} {ci(wilson_interval(tn, tn + fp))}")
    if t.get("accuracy") is not None:
        parts.append(f"3-class accuracy {t['accuracy']:.3f}")
    kind = card.internal_validation_kind
    where = ("The threshold was chosen on these same scores, so they are slightly optimistic." if local else
             "Same hospital and period as the training films: expect lower figures elsewhere.")
    cis = " (95 % CIs)" if cm or auc_ci else ""
    return OwnFigures("At this site (out-of-fold local validation)" if local else "Internal (same hospital as training)",
                      (", ".join(parts) or "No figures recorded") + f" at threshold {b.get('threshold', card.threshold):.3f}; "
                      f"{kind[0].lower() + kind[1:]}{cis}. {where}")
