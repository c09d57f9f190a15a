"""The site operating point, governed: set only from a local evaluation that passes the deployment's rules
(`operating_point.govern_site_point`), by a named reader, audited, and always revertible. The Dashboards page
and `python -m cxr_core site-point` both call these functions; nothing else writes a site point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..model.card import ModelCard
from ..model.folder import ModelFolder
from ..errors import CXRError
from .evaluation import read_scores
from .metrics import pneumonia_probability
from ..model.operating_point import SitePointPolicy, govern_site_point, valid_threshold
from ..paths import evaluations_dir


def find_evaluation(model_id: str, path_or_id: str) -> Path:
    """The scores.csv of a saved local evaluation of `model_id`: its id (the folder name under
    $CXR_HOME/evaluations/<model id>/), its folder, or its scores.csv."""
    given = Path(path_or_id).expanduser()
    for candidate in (given, given / "scores.csv", evaluations_dir(model_id) / path_or_id / "scores.csv"):
        if candidate.is_file() and candidate.name == "scores.csv":
            return candidate
    if given.name == ModelFolder.SCORES:
        raise CXRError("The internal validation is not a local evaluation: a site point needs the site's own images.")
    known = sorted(p.parent.name for p in evaluations_dir(model_id).glob("*/scores.csv"))
    raise CXRError(f"No saved evaluation {path_or_id!r} of model {model_id}. Saved: {', '.join(known) or 'none'} "
                   "(run `python -m cxr_core evaluate FOLDER` first).")


def set_site_point(store: Any, card: ModelCard, threshold: float, scores: Path, reader: str,
                   policy: SitePointPolicy) -> dict[str, Any]:
    """Check the proposed point on the evaluation behind `scores` and save it for every user of the model;
    the evidence saved. Raises CXRError naming the failed rule."""
    if not reader.strip():
        raise CXRError("A site operating point needs the name of the reader who sets it.")
    threshold = valid_threshold(threshold)
    _, y, probs = read_scores(scores)
    evidence = govern_site_point(threshold, (y > 0).astype(int), pneumonia_probability(probs), policy)
    summary = _summary(scores)
    evidence.update(evaluation=scores.parent.name, data=summary.get("data"), evaluated=summary.get("evaluated"),
                    data_fingerprint=summary.get("data_fingerprint"),
                    overlap_warning=(summary.get("overlap") or {}).get("warning"),
                    rules={"min_per_class": policy.min_per_class, "sensitivity_floor": policy.sensitivity_floor})
    store.record_site_point(card.model_id, threshold, reader.strip(), evidence)
    return evidence


def revert_site_point(store: Any, card: ModelCard, reader: str) -> float | None:
    """Return every user of the model to its own threshold (audited); the site threshold that was in use."""
    if not reader.strip():
        raise CXRError("Reverting the site operating point needs the reader's name.")
    current = store.site_threshold(card.model_id)
    store.record_site_point(card.model_id, None, reader.strip(),
                            {"reverted_from": current["threshold"] if current else None})
    return current["threshold"] if current else None


def _summary(scores: Path) -> dict[str, Any]:
    try:
        return json.loads((scores.parent / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
