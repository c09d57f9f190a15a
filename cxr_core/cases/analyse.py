"""Analyse an image and keep it as a case: the one path every surface takes (the CLI's `predict --save`, the
Viewer, `pacs analyse` and the C-STORE listener), so a case always carries the same model identity, actor and
error wording, whichever surface made it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import StorageError, plain_cause
from ..model.operating_point import OperatingPoint
from ..model.predict import Prediction, Predictor
from .store import CaseStore
from ..readers import UNSIGNED


@dataclass(frozen=True)
class Analysis:
    prediction: Prediction
    case_id: int | None = None  # None: not kept (no case store, or the input could not be read)
    new: bool = False  # False when this image was already a case of this model: the first result stands


def keep_case(pred: Prediction, data: bytes, predictor: Predictor, store: CaseStore | None, actor: str = UNSIGNED,
              cam_settings: dict[str, Any] | None = None) -> Analysis:
    """Store a decoded prediction as a case of `predictor`'s model; a read error is not a case. A store that
    cannot write (lost connection, full disk) raises StorageError, which names no patient or file."""
    from sqlalchemy.exc import SQLAlchemyError  # lazy: heavy

    if store is None or pred.error is not None:
        return Analysis(pred)
    try:
        case_id, new = store.add(pred, data, predictor.card.model_id, actor=actor,
                                 cam_settings=cam_settings)
    except SQLAlchemyError as exc:
        raise StorageError(f"The case could not be kept: the case database failed ({plain_cause(exc)}).") from None
    return Analysis(pred, case_id, new)


def analyse_and_store(data: bytes, name: str, predictor: Predictor, point: OperatingPoint, store: CaseStore | None = None,
                      actor: str = UNSIGNED, cam_settings: dict[str, Any] | None = None) -> Analysis:
    """Predict `data` at `point` (the intended-use rule included) and keep it as a case when a store is given."""
    return keep_case(predictor.predict(data, name=name, point=point), data, predictor, store, actor, cam_settings)
