"""The site's active model, changed under governance: a model earns the site's place on the site's own films.

Activation of any model (shipped, user-trained, site-adapted) is one action, `activate_model`, and its rule one
function, `activation_refusals`, which every surface (CLI, Training page, site adaptation) calls:
- a reduced-budget run never becomes the site's model, whatever its figures, nor a model that failed its own gate;
- evidence on this site's own films is needed, never internal figures alone: the candidate and the site's current
  model scored on the same labelled local films, which neither trained on (`local_comparison`), or, for a
  site-adapted model, its cross-fitted comparison with its parent (`adaptation_evidence`);
- the evidence is paired: the AUC difference (candidate - current) must be at least 0 with a lower 95 % bound of at
  least -NON_INFERIORITY_MARGIN, and the lower 95 % bound of the candidate's sensitivity at its own threshold at
  least the site's floor, on at least the site's minimum of films per class.
`revert_active_model` needs no evidence: it returns the site to the model it used before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..cases.store import CaseStore
from ..errors import CXRError
from ..model.card import ModelCard
from ..model.operating_point import resolve
from ..model.registry import ModelEntry, Registry
from ..settings import SitePointPolicy
from ..validation.evaluation import evaluate_folder
from ..validation.metrics import pneumonia_probability
from .evidence import NON_INFERIORITY_MARGIN, bootstrap_aucs, compare, model_evidence
from .models import ActiveChoice, active_choice, model_for, record_choice, store_model
from ..readers import named

CROSS_FITTED = "cross-fitted site adaptation"  # a site-adapted model's own evidence: screened by its adaptation
EVIDENCE_HINT = ("compare it with the site's model on a labelled folder of this site's films (NORMAL/ and "
                 "PNEUMONIA/, or a reviewed worklist export): `python -m cxr_core models --activate ID --reader NAME "
                 "--evidence DATA_DIR`, or 'Compare on local films' on the Training page")


def adaptation_evidence(card: ModelCard) -> dict[str, Any] | None:
    """A site-adapted model's own evidence: its out-of-fold comparison with its parent on the site's films, in
    the activation evidence's shape (None for any other model)."""
    lv = (card.site_adaptation or {}).get("local_validation")
    if not lv:
        return None
    return {"n": lv.get("n"), "n_positive": lv.get("n_positive"), "n_negative": lv.get("n_negative"),
            "current": {**lv["parent"], "model_id": card.parent_model_id}, "difference": lv.get("difference") or {},
            "candidate": {**lv["adapted"], "model_id": card.model_id}, "source": CROSS_FITTED}


def evidence_refusals(evidence: Mapping[str, Any], policy: SitePointPolicy) -> list[str]:
    """What the local evidence fails of the rule (empty: it passes)."""
    reasons = []
    pos, neg = int(evidence.get("n_positive") or 0), int(evidence.get("n_negative") or 0)
    if evidence.get("source") != CROSS_FITTED and min(pos, neg) < policy.min_per_class:
        reasons.append(f"Too few local films: {pos} pneumonia and {neg} normal; the site needs at least "
                       f"{policy.min_per_class} of each (CXR_SITE_MIN_PER_CLASS).")
    difference = evidence.get("difference") or {}
    if difference:
        point, low = difference.get("auc", float("nan")), (difference.get("auc_ci95") or [float("nan")])[0]
        if not (point >= 0.0 and low >= -NON_INFERIORITY_MARGIN):
            reasons.append(f"On the same local films its AUC is not shown to be at least the site model's "
                           f"({evidence['current'].get('model_id')}): the paired difference is {point:+.3f}, lower 95 % "
                           f"bound {low:+.3f} (needed: at least 0, with a lower bound of at least "
                           f"-{NON_INFERIORITY_MARGIN:.2f}).")
    candidate = evidence.get("candidate") or {}
    low = (candidate.get("sensitivity_ci95") or [0.0])[0]
    if not low >= policy.sensitivity_floor:
        reasons.append(f"At its own threshold ({candidate.get('threshold', float('nan')):.3f}) the lower 95 % bound "
                       f"of its sensitivity on the local films is {low:.3f}, below the site's floor "
                       f"({policy.sensitivity_floor:.2f}).")
    return reasons


def standing_refusals(card: ModelCard) -> list[str]:
    """What no local evidence can make up for: a reduced-budget run, a model that failed its own gate."""
    reasons = []
    if card.reduced_budget:
        reasons.append(f"It is a reduced-budget run ({card.reduced_budget}): never the site's model, whatever its "
                       "figures.")
    if not card.passed_gate:
        reasons.append("It failed its own validation gate: it stays an experiment.")
    return reasons


def activation_refusals(card: ModelCard, policy: SitePointPolicy,
                        evidence: Mapping[str, Any] | None = None) -> list[str]:
    """Why this model may not become the site's active model (empty: it may). `evidence`: a `local_comparison`;
    a site-adapted model brings its own. The one rule every surface calls."""
    reasons = standing_refusals(card)
    evidence = evidence if evidence is not None else adaptation_evidence(card)
    if evidence is None:
        reasons.append(f"There is no evidence on this site's own films, and internal figures alone never suffice: "
                       f"{EVIDENCE_HINT}.")
    else:
        reasons += evidence_refusals(evidence, policy)
    return reasons


def local_comparison(store: CaseStore | None, registry: Registry, candidate: ModelEntry, data_dir: str | Path,
                     n_boot: int = 1000) -> dict[str, Any]:
    """The candidate and the site's current model scored on the same labelled local films, each at the point it
    would decide with: the paired evidence `activation_refusals` judges. CXRError where the films cannot be
    evidence (either model trained on any of them, or cannot say it did not)."""
    current = model_for(None, store, registry)
    if current is not None and current.model_id == candidate.model_id:
        raise CXRError(f"{candidate.model_id} is already the site's model.")
    scored = {}
    for role, entry in (("candidate", candidate), ("current", current)):
        if entry is None:
            continue
        point = resolve(entry.card, store)
        result = evaluate_folder(entry.path, data_dir, n_boot=0, point=point)
        seen = result.summary["overlap"]["images_in_training"]
        if result.summary["overlap"]["same_folder"] or seen:
            raise CXRError(f"These films cannot be evidence: {seen or 'all'} of them are in the training data of "
                           f"{entry.model_id}. Compare on films neither model trained on.")
        if seen is None:
            raise CXRError(f"These films cannot be shown to be new to {entry.model_id}: it has no training hash list "
                           "(training_hashes.txt; `python -m cxr_core fit-ood` writes it).")
        order = np.argsort(result.files)
        scored[role] = (np.asarray(result.files)[order], result.labels[order], result.probs[order], point, entry,
                        result.summary)
    files, y, probs, point, _, summary = scored["candidate"]
    yb = (y > 0).astype(int)
    if "current" in scored:
        other_files, _, other_probs, other_point, other, _ = scored["current"]
        if not np.array_equal(files, other_files):
            raise CXRError("The two models could not read the same films; compare on a folder both can read.")
        ev = compare(yb, pneumonia_probability(other_probs), other_point.threshold, pneumonia_probability(probs),
                     point.threshold, n_boot=n_boot, names=("current", "candidate"))
        ev["current"]["model_id"] = other.model_id
    else:  # a registry without a default: the candidate's own figures only
        p = pneumonia_probability(probs)
        draws = np.random.default_rng(0).integers(0, len(yb), (n_boot, len(yb)))
        ev = {"n": int(len(yb)), "n_positive": int(yb.sum()), "n_negative": int((1 - yb).sum()),
              "candidate": model_evidence(yb, p, point.threshold, bootstrap_aucs(yb, p, draws))}
    ev["candidate"]["model_id"] = candidate.model_id
    ev.update(source="local films", data=summary["data"], data_fingerprint=summary["data_fingerprint"],
              label_source=summary.get("label_source"), evaluated=summary["evaluated"])
    return ev


def activate_model(store: CaseStore, registry: Registry, model_id: str, reader: str, policy: SitePointPolicy,
                   evidence: Mapping[str, Any] | None = None) -> ActiveChoice:
    """Make `model_id` the site's active model for every user and workstation: refused (CXRError naming the
    rule and its numbers) without a reader or past the rule; the model's files and the evidence go into the
    database; audited."""
    reader = named(reader, "Changing the site's active model needs the name of the reader who does it.")
    entry = model_for(model_id, store, registry)
    refusals = activation_refusals(entry.card, policy, evidence)
    if refusals:
        raise CXRError(f"{model_id} cannot be the site's active model: " + " ".join(refusals))
    store_model(store, entry.path, reader)
    before = active_choice(store)
    kept = {k: ({m: v for m, v in value.items() if m != "roc"} if isinstance(value, dict) else value)
            for k, value in dict(evidence or adaptation_evidence(entry.card) or {}).items()}
    return record_choice(store, model_id, reader, {"previous_model_id": before.model_id if before else None,
                                                   "action": "activate", "evidence": kept,
                                                   "parent_model_id": entry.card.parent_model_id})


def revert_active_model(store: CaseStore, registry: Registry, reader: str) -> ActiveChoice:
    """Undo the latest activation: a site-adapted model gives way to its parent; any other model to the model
    that was active before it (or the registry's default). Audited."""
    reader = named(reader, "Reverting the site's active model needs the reader's name.")
    choice = active_choice(store)
    if choice is None or choice.model_id is None:
        raise CXRError("The site uses the registry's default model: there is no activation to revert.")
    entry = model_for(choice.model_id, store, registry)
    target = entry.card.parent_model_id or choice.details.get("previous_model_id")
    return record_choice(store, target, reader, {"previous_model_id": choice.model_id, "action": "revert"})
