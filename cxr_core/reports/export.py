"""Rows that leave the app (the results table and its CSV, the JSON download): one function each.

By default an export carries no original file name (file names often hold patient names): a row is
named by its case number and a short content hash. `include_file_name=True` is the opt-in. Every
export carries the model id and a UTC timestamp.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..model.predict import Prediction

FILE_NAME_NOTE = "File names can contain patient names or IDs (PHI): include them only where that is allowed."


def content_hash(data: bytes) -> str:
    """The short content hash that names an input in exports and de-duplicates repeated uploads."""
    return hashlib.sha256(data).hexdigest()[:12]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def result_row(pred: Prediction, case: int, digest: str, model_id: str, exported: str,
               include_file_name: bool = False) -> dict[str, Any]:
    """One input's row: the same fields and wording in the app's table, its CSV and its JSON."""
    if pred.error:
        outcome = "ERROR"
    elif not pred.assessed:
        outcome = "not assessed"
    else:
        outcome = pred.label
    row: dict[str, Any] = {"case": case, "image_hash": digest}
    if include_file_name:
        row["file"] = pred.file
    row.update({
        "label": outcome, "assessed": pred.assessed, "subtype": pred.subtype,
        "P(pneumonia)": pred.pneumonia_probability,
        "P(normal)": pred.class_probabilities.get("NORMAL") if pred.assessed else None,
        "P(bacterial)": pred.class_probabilities.get("BACTERIAL") if pred.assessed else None,
        "P(viral)": pred.class_probabilities.get("VIRAL") if pred.assessed else None,
        "threshold": pred.threshold, "threshold_source": pred.threshold_source,
        "not assessed because": "; ".join(pred.not_assessed_reasons) or None,
        "warnings": pred.error or "; ".join(pred.warnings) or None,
        "model_id": model_id, "exported_utc": exported,
    })
    return row
