"""One received DICOM instance through the product: predict (the intended-use rule included), store the case,
build the SR, Parametric Map and Secondary Capture. Shared by `pacs analyse` (DICOMweb) and `listen` (C-STORE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from ..cases.analyse import analyse_and_store
from .results import kind, result_objects, to_bytes
from .source import MANUFACTURER
from ..model.operating_point import OperatingPoint
from ..cases.store import CaseStore
from ..model.predict import Prediction, Predictor
from ..readers import UNSIGNED


@dataclass
class AnalysedInstance:
    sop_uid: str
    prediction: Prediction | None = None  # None: skipped (not an image, or our own result)
    skipped: str | None = None
    case_id: int | None = None
    results: list[Dataset] = field(default_factory=list)  # SR (+ PM and SC) to send back

    @property
    def status(self) -> str:
        """"skipped", "failed", "analysed" or "not assessed": how the CLI counts and every surface words it."""
        if self.skipped:
            return "skipped"
        return "failed" if self.prediction.error else ("analysed" if self.prediction.assessed else "not assessed")

    @property
    def outcome(self) -> str:
        """One short phrase: "skipped (why)", the read error, the label, or "not assessed"."""
        if self.status == "skipped":
            return f"skipped ({self.skipped})"
        if self.status == "failed":
            return self.prediction.error
        return self.prediction.label if self.status == "analysed" else self.status

    def to_json(self) -> dict[str, Any]:
        """What `pacs analyse --json` prints: `predict --json`'s object plus the instance and case."""
        base = self.prediction.to_json() if self.prediction else {"file": f"instance {self.sop_uid}"}
        return {**base, "sop_instance_uid": self.sop_uid, "skipped": self.skipped, "case_id": self.case_id,
                "results": [f"{kind(d)} {d.SOPInstanceUID}" for d in self.results]}


def skip_reason(ds: Dataset) -> str | None:
    """Why an instance is not analysed at all, or None: non-image objects and this product's own results."""
    if ds.get("Manufacturer") == MANUFACTURER:
        return "this assistant's own result"
    if "PixelData" not in ds:
        return f"not an image (Modality {ds.get('Modality', '?')}, SOP class {ds.get('SOPClassUID', '?')})"
    return None


def analyse_instance(ds: Dataset, predictor: Predictor, point: OperatingPoint, store: CaseStore | None = None,
                     actor: str = UNSIGNED) -> AnalysedInstance:
    """Predict one instance at `point`, store it as a case (when a store is given), and build its results."""
    out = AnalysedInstance(sop_uid=str(ds.get("SOPInstanceUID", "?")))
    out.skipped = skip_reason(ds)
    if out.skipped:
        return out
    analysis = analyse_and_store(to_bytes(ds), f"instance {out.sop_uid}", predictor, point, store, actor)
    out.prediction, out.case_id = analysis.prediction, analysis.case_id
    if out.prediction.error:
        return out
    out.results = result_objects(ds, out.prediction, predictor.card)
    return out
