"""The shift stress suite: re-score labelled images under acquisition shifts (cxr_core.inputs.shifts).

The same functions serve `python -m cxr_core stress` (a registered model on a labelled folder)
and training (an ensemble's out-of-fold images, each scored by the member that never saw it).
A condition is "clean" or "<shift>:<severity>"; every condition reports AUC and sensitivity,
specificity and accuracy at the operating threshold, and `worst_case` names the weakest. The results are a
`StressReport` (cxr_core.model.evidence: the model card holds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..model.decision import pneumonia_probability
from ..model.evidence import CLEAN, STRESS_METRICS, Extreme, StressCondition, StressReport, WorstCase
from ..model.operating_point import OperatingPoint
from ..model.predict import Predictor
from .metrics import binary_at_threshold, safe_auc
from ..inputs.preprocess import Preprocess
from ..inputs.shifts import SEVERITIES, SEVERITY_NAMES, SHIFTS, image_rng
from ..config import config_from_dict
from ..errors import CXRError, InputImageError
from ..inputs.imaging import load_image
from .dataset import index_dataset


def conditions(shifts: Sequence[str] | None = None, severities: Sequence[int] = SEVERITIES) -> list[str]:
    """Condition keys, "clean" first; bad shift names or severities fail quoting the value."""
    names = list(shifts) if shifts else sorted(SHIFTS)
    for name in names:
        if name not in SHIFTS:
            raise ValueError(f"shift {name!r} is unknown; expected one of {sorted(SHIFTS)}")
    for s in severities:
        if s not in SEVERITIES:
            raise ValueError(f"severity {s!r} is invalid; expected one of {SEVERITIES}")
    return [CLEAN] + [f"{n}:{s}" for n in names for s in severities]


def parse_condition(key: str) -> tuple[str, int]:
    """("clean", 0) or (shift name, severity)."""
    if key == CLEAN:
        return CLEAN, 0
    name, _, severity = key.partition(":")
    return name, int(severity)


def shifted_inputs(images: Sequence[np.ndarray], preprocess: Preprocess, condition: str,
                   first_index: int = 0) -> np.ndarray:
    """Model inputs (n, s, s, 1) of decoded images under one condition (deterministic per image)."""
    name, severity = parse_condition(condition)
    out = []
    for i, gray in enumerate(images):
        shifted = gray if name == CLEAN else SHIFTS[name](gray, severity, image_rng(name, severity, first_index + i))
        out.append(preprocess(shifted))
    return np.stack(out)


def score_conditions(images: Sequence[np.ndarray], preprocess: Preprocess, score: Callable[[np.ndarray], np.ndarray],
                     keys: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """{condition: score(batch) concatenated over the images} for every condition key."""
    out: dict[str, np.ndarray] = {}
    for key in keys:
        parts = [score(shifted_inputs(images[i:i + batch_size], preprocess, key, first_index=i))
                 for i in range(0, len(images), batch_size)]
        out[key] = np.concatenate(parts)
    return out


def stress_table(y_binary: np.ndarray, p_by_condition: dict[str, np.ndarray], threshold: float,
                 augment: Any = None) -> list[StressCondition]:
    """One row per condition: AUC, sensitivity, specificity and accuracy at `threshold`, and whether the
    model's training augmentation (`augment`: an AugmentConfig; None = unknown) varied it."""
    rows = []
    y_binary = np.asarray(y_binary, int)
    for key, p in p_by_condition.items():
        name, severity = parse_condition(key)
        b = binary_at_threshold(y_binary, np.asarray(p), threshold)
        rows.append(StressCondition(
            condition=key, shift=name, severity=severity, severity_name=SEVERITY_NAMES.get(severity, "none"),
            in_training_augmentation=(SHIFTS[name].in_training_augmentation(augment)
                                      if name in SHIFTS and augment is not None else None),
            n=int(len(p)), auc=safe_auc(y_binary, np.asarray(p)), sensitivity=b["sensitivity"],
            specificity=b["specificity"], accuracy=b["accuracy"]))
    return rows


def worst_case(rows: Sequence[StressCondition], max_severity: int = 3) -> WorstCase:
    """The lowest AUC, sensitivity, specificity and accuracy over conditions up to `max_severity`, with where."""
    kept = [r for r in rows if r.severity <= max_severity]

    def lowest(metric: str) -> Extreme:
        row = min(kept, key=lambda r: np.nan_to_num(getattr(r, metric), nan=np.inf))
        return Extreme(value=getattr(row, metric), condition=row.condition)

    return WorstCase(max_severity=max_severity, **{metric: lowest(metric) for metric in STRESS_METRICS})


def stress_report(rows: Sequence[StressCondition], note: str | None = None, acquisition: bool = False) -> StressReport:
    """The report of a stress table: the worst cases over every shift and, with `acquisition`, over the realistic
    acquisition family alone (the card's block from training; `note`: which images were scored)."""
    family = [r for r in rows if r.severity == 0 or (r.shift in SHIFTS and SHIFTS[r.shift].family == "acquisition")]
    return StressReport(conditions=tuple(rows), worst_moderate=worst_case(rows, 2), worst_severe=worst_case(rows, 3),
                        worst_acquisition_moderate=worst_case(family, 2) if acquisition else None,
                        worst_acquisition_severe=worst_case(family, 3) if acquisition else None, note=note)


@dataclass(frozen=True)
class StressRun:
    """`stress_folder`'s result: the report and what it was measured on; `to_dict` is the CLI's JSON."""

    model: str
    data: str
    n: int
    threshold: float
    threshold_source: str
    report: StressReport
    failed: list[dict[str, str]]  # {"file", "error"} of each unreadable image

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "n": self.n, "threshold": self.threshold,
                "threshold_source": self.threshold_source, **self.report.to_dict(), "failed": self.failed}


def stress_folder(predictor: Predictor, data_dir: str | Path, shifts: Sequence[str] | None = None,
                  severities: Sequence[int] = SEVERITIES, progress: Callable[[str], None] | None = None,
                  point: OperatingPoint | None = None) -> StressRun:
    """Stress a registered model on a labelled folder (Kaggle layout) at `point` (default: the model's
    threshold); unreadable files are listed."""

    records = index_dataset(data_dir)
    images, labels, failed = [], [], []
    for r in records:
        try:
            images.append(load_image(r.path).pixels)
            labels.append(r.binary)
        except InputImageError as exc:
            failed.append({"file": f"{r.path.parent.name}/{r.path.name}", "error": str(exc)})
    if not images:
        raise CXRError(f"None of the {len(records)} images in {str(data_dir)!r} could be read.")
    keys = conditions(shifts, severities)

    def score(batch: np.ndarray) -> np.ndarray:
        return pneumonia_probability(predictor.score_many(batch).probabilities)

    p_by = {}
    for key in keys:
        if progress:
            progress(key)
        p_by.update(score_conditions(images, predictor.preprocess, score, [key]))
    card_augment = predictor.card.config.get("augment")
    augment = config_from_dict({"augment": card_augment}).augment if card_augment is not None else None
    point = point or predictor.model_point
    rows = stress_table(np.array(labels), p_by, point.threshold, augment)
    return StressRun(model=predictor.card.model_id, data=str(data_dir), n=len(images), threshold=point.threshold,
                     threshold_source=point.source, report=stress_report(rows), failed=failed)
