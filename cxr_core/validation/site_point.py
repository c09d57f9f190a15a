"""The site operating point, governed: set only from a local evaluation that passes the deployment's rules
(`govern_site_point`), by a named reader, audited, and always revertible. The Dashboards page
and `python -m cxr_core site-point` both call these functions; nothing else writes a site point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import CXRError
from ..formatting import with_ci
from ..model.card import ModelCard
from ..model.folder import ModelFolder
from ..model.operating_point import OperatingPoint, SitePoints, valid_threshold
from ..settings import SitePointPolicy, current
from .dataset import CIRCULAR_SOURCES, LABEL_SOURCES
from .evaluation import EvaluationFolder, read_scores
from .metrics import operating_point_evidence, pneumonia_probability, safe_auc
from ..readers import named


class SitePointStore(SitePoints, Protocol):
    """What governing a site point needs of the case store (cxr_core.cases.store.CaseStore, a later layer)."""

    def record_site_point(self, model_id: str, threshold: float | None, author: str,
                          evidence: dict[str, Any] | None = None) -> None: ...


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


def find_evaluation(model_id: str, path_or_id: str) -> Path:
    """The scores.csv of a saved local evaluation of `model_id`: its id (the folder name under
    $CXR_HOME/evaluations/<model id>/), its folder, or its scores.csv."""
    given = Path(path_or_id).expanduser()
    for candidate in (given, EvaluationFolder(given).scores_file,
                      EvaluationFolder(current().layout.evaluations(model_id) / path_or_id).scores_file):
        if candidate.is_file() and candidate.name == EvaluationFolder.SCORES:
            return candidate
    if given.name == ModelFolder.SCORES:
        raise CXRError("The internal validation is not a local evaluation: a site point needs the site's own images.")
    known = sorted(p.parent.name for p in current().layout.evaluations(model_id).glob("*/scores.csv"))
    raise CXRError(f"No saved evaluation {path_or_id!r} of model {model_id}. Saved: {', '.join(known) or 'none'} "
                   "(run `python -m cxr_core evaluate FOLDER` first).")


def set_site_point(store: SitePointStore, card: ModelCard, threshold: float, scores: Path, reader: str,
                   policy: SitePointPolicy) -> dict[str, Any]:
    """Check the proposed point on the evaluation behind `scores` and save it for every user of the model;
    the evidence saved. Raises CXRError naming the failed rule."""
    reader = named(reader, "A site operating point needs the name of the reader who sets it.")
    threshold = valid_threshold(threshold)
    _, y, probs = read_scores(scores)
    summary = _summary(scores)
    evidence = govern_site_point(threshold, (y > 0).astype(int), pneumonia_probability(probs), policy,
                                 (summary.get("overlap") or {}).get("warning"))
    evidence.update(evaluation=scores.parent.name, data=summary.get("data"), evaluated=summary.get("evaluated"),
                    data_fingerprint=summary.get("data_fingerprint"),
                    overlap_warning=(summary.get("overlap") or {}).get("warning"),
                    rules={"min_per_class": policy.min_per_class, "sensitivity_floor": policy.sensitivity_floor})
    store.record_site_point(card.model_id, threshold, reader, evidence)
    return evidence


def revert_site_point(store: SitePointStore, card: ModelCard, reader: str) -> float | None:
    """Return every user of the model to its own threshold (audited); the site threshold that was in use."""
    reader = named(reader, "Reverting the site operating point needs the reader's name.")
    current = store.site_threshold(card.model_id)
    store.record_site_point(card.model_id, None, reader,
                            {"reverted_from": current["threshold"] if current else None})
    return current["threshold"] if current else None


def _summary(scores: Path) -> dict[str, Any]:
    return EvaluationFolder(scores.parent).summary()


@dataclass(frozen=True)
class SiteFigures:
    """The site's own figures for a model, from one saved local evaluation, at the operating point in use; or,
    where that evaluation does not meet the site-point rules, why none are reported (`problem`)."""

    evaluation: str
    evaluated: str
    n_positive: int
    n_negative: int
    label_source: str  # a key of dataset.LABEL_SOURCES
    threshold: float
    problem: str | None = None
    auc: float | None = None
    auc_ci95: tuple[float, float] | None = None
    sensitivity: float | None = None
    sensitivity_ci95: tuple[float, float] | None = None
    specificity: float | None = None
    specificity_ci95: tuple[float, float] | None = None

    @property
    def n(self) -> int:
        return self.n_positive + self.n_negative

    @property
    def reportable(self) -> bool:
        return self.problem is None

    @property
    def labels(self) -> str:
        """Where the labels came from, in words."""
        return LABEL_SOURCES[self.label_source]

    def sentence(self) -> str:
        """The figures in one sentence (the sidebar's and the PDF's), or why there are none."""
        if not self.reportable:
            return f"At this site: {self.problem}."
        auc = f", AUC {with_ci(self.auc, self.auc_ci95)}" if self.auc is not None else ""
        return (f"At this site (local evaluation of {self.n} films, {self.n_positive} pneumonia and {self.n_negative} "
                f"normal, {self.evaluated[:10]}; {self.labels}): at {self.threshold:.3f}, sensitivity "
                f"{with_ci(self.sensitivity, self.sensitivity_ci95)}, specificity "
                f"{with_ci(self.specificity, self.specificity_ci95)}{auc} (95 % CIs).")


def site_figures(model_id: str, point: OperatingPoint, policy: SitePointPolicy) -> SiteFigures | None:
    """The site's figures for `model_id` at `point`: from the evaluation behind the site's operating point, else
    the newest saved local evaluation that meets the site-point rules (`local_evaluation_problem`, the one check
    the site point itself passes), else the newest one with the reason it is not reported. None: no local
    evaluation at all."""

    folders = sorted((EvaluationFolder(p.parent) for p in current().layout.evaluations(model_id).glob(f"*/{EvaluationFolder.SCORES}")),
                     key=lambda f: f.summary().get("evaluated", ""), reverse=True)
    behind = point.evidence_dict.get("evaluation") if point.source == "site" else None
    if behind:
        folders.sort(key=lambda f: f.path.name != behind)  # stable: the site point's own evaluation first
    found = [figures for f in folders if (figures := _figures(f.scores_file, point, policy)) is not None]
    return next((f for f in found if f.reportable), found[0] if found else None)


def _figures(scores: Path, point: OperatingPoint, policy: SitePointPolicy) -> SiteFigures | None:
    summary = _summary(scores)
    try:
        _, y, probs = read_scores(scores)
    except CXRError:
        return None  # a damaged or foreign folder: not a local evaluation
    yb, p = (y > 0).astype(int), pneumonia_probability(probs)
    source = summary.get("label_source") if summary.get("label_source") in LABEL_SOURCES else "folder"
    n_pos, n_neg = int(yb.sum()), int(len(yb) - yb.sum())
    base = dict(evaluation=scores.parent.name, evaluated=str(summary.get("evaluated") or ""), n_positive=n_pos,
                n_negative=n_neg, label_source=source, threshold=point.threshold)
    problem = local_evaluation_problem(n_pos, n_neg, policy, (summary.get("overlap") or {}).get("warning"), "to report")
    if problem is None and source in CIRCULAR_SOURCES:
        problem = "its labels include the model's own answers, so it cannot judge the model"
    if problem:
        return SiteFigures(**base, problem=problem)
    ev = operating_point_evidence(yb, p, point.threshold)
    b = summary.get("binary") or {}
    ci = b.get("auc_ci95")
    return SiteFigures(**base, auc=safe_auc(yb, p), auc_ci95=tuple(ci) if ci else None,
                       sensitivity=ev["sensitivity"], sensitivity_ci95=tuple(ev["sensitivity_ci95"]),
                       specificity=ev["specificity"], specificity_ci95=tuple(ev["specificity_ci95"]))
