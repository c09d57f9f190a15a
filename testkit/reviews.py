"""Cases and reviews that tests write: a case stored as the Viewer stores one, the decision that records a given
label without contradicting the model (cxr_core.cases.store.review_problem), and the labels that agree or disagree
with a stored case."""

from __future__ import annotations

from typing import Any

from cxr_core.cases.store import DECISIONS, CaseStore, review_problem

from . import inputs


def own_label(case: dict[str, Any]) -> str:
    """The label an agreement records for this case (a PNEUMONIA result without a stated subtype: BACTERIAL)."""
    stated = case["subtype"] if case["subtype"] in ("BACTERIAL", "VIRAL") else None  # not "UNCERTAIN"
    return "NORMAL" if case["label"] == "NORMAL" else (stated or "BACTERIAL")


def other_label(case: dict[str, Any]) -> str:
    """A label of another finding than the model's."""
    return "VIRAL" if case["label"] == "NORMAL" else "NORMAL"


def consistent_decision(case: dict[str, Any], label: str) -> str:
    """The one decision that records `label` for this case (a stored case's JSON) without contradicting the model."""
    model = case["label"] if case["assessed"] else None
    return next(d for d in DECISIONS if review_problem(d, label, model, case["subtype"]) is None)


def review_as(store: CaseStore, case_id: int, label: str, reader: str, comment: str = "") -> str:
    """Record `label` for the case with the decision that does not contradict the model; that decision."""
    decision = consistent_decision(store.get(case_id), label)
    store.review(case_id, decision, label, reader, comment)
    return decision


def stored_result(store: CaseStore, label: str | None, subtype: str | None = None, seed: int = 0) -> int:
    """A case whose model result the test chooses (label None: not assessed), stored without a model; its id."""
    import numpy as np

    from cxr_core.inputs.imaging import LoadedImage
    from cxr_core.model.predict import Prediction

    rng = np.random.default_rng(seed)
    p = {"NORMAL": 0.2, "PNEUMONIA": 0.9, None: 0.5}[label]
    pred = Prediction(file="chosen.png", label=label, pneumonia_probability=p if label else None, subtype=subtype,
                      class_probabilities={"NORMAL": 1 - p, "BACTERIAL": p * 0.6, "VIRAL": p * 0.4}, threshold=0.5,
                      assessed=label is not None, not_assessed_reasons=[] if label else ["not a chest film"],
                      heatmap=rng.uniform(size=(7, 7)).astype(np.float32) if label else None,
                      image=LoadedImage(pixels=rng.uniform(size=(32, 32)).astype(np.float32), format="PNG",
                                        metadata={}, identifiers={}))
    case_id, _ = store.add(pred, f"chosen {label} {subtype} {seed}".encode(), "chosen-model")
    return case_id


def stored_case(store: CaseStore, predictor: Any, seed: int, label: str | None = None, p: float | None = None) -> int:
    """A synthetic film analysed by `predictor` and stored as the Viewer stores one; `label` / `p` force its result
    (a case that sorts where the test needs it). Its id."""
    data = inputs.png_gray8(seed=seed)
    pred = predictor.predict(data, name="x.png")
    if label is not None:
        pred.label, pred.pneumonia_probability, pred.assessed, pred.subtype = label, p, True, None
    return store.add(pred, data, predictor.card.model_id, actor="Dr Test")[0]
