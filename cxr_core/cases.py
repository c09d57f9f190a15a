"""The case store: every analysed image kept as a case, with readers' reviews and an audit trail.

A case holds a de-identified PNG copy of the pixels (under $CXR_HOME/images/, no metadata), the result
(label or not assessed, probabilities, warnings), the model id, threshold and CAM settings, a content
hash (the same image is stored once) and, for DICOM, the study/series/SOP UIDs. Patient names and IDs
and file names are stored only where the deployment opts in (`CXR_STORE_IDENTIFIERS=1`).

Crash safety: the PNG is written atomically first, then the case and its audit event commit in one
transaction; a kill at any point leaves the case complete or absent. The CLI and the app call these
functions, never SQL of their own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from .casedb import AuditEvent, Case, Review, open_engine
from .errors import CXRError
from .fileio import write_atomic
from .paths import app_home
from .predict import Prediction

REVIEW_LABELS = ("NORMAL", "BACTERIAL", "VIRAL", "OTHER", "UNREADABLE")
DECISIONS = ("agree", "disagree")
STATUSES = ("new", "reviewed", "disagreed")
EXPORT_FOLDERS = {"NORMAL": "NORMAL", "BACTERIAL": "PNEUMONIA", "VIRAL": "PNEUMONIA"}


def store_identifiers() -> bool:
    """The deployment's opt-in to keep file names and patient identifiers with cases."""
    return os.environ.get("CXR_STORE_IDENTIFIERS", "") == "1"


@dataclass
class CaseStore:
    engine: Any
    images_dir: Path

    @classmethod
    def open(cls, url: str | None = None) -> "CaseStore":
        images = app_home() / "images"
        images.mkdir(parents=True, exist_ok=True)
        return cls(open_engine(url), images)

    # ---- writing
    def add(self, pred: Prediction, data: bytes, model_id: str, actor: str = "system",
            cam_settings: dict[str, Any] | None = None) -> tuple[int, bool]:
        """Store one decoded prediction; (case id, True) when new, (existing id, False) for known content."""
        if pred.error or pred.image is None:
            raise CXRError("Only a decoded image can become a case (this input failed to load).")
        digest = hashlib.sha256(data).hexdigest()
        existing = self._id_for_hash(digest)
        if existing is not None:
            return existing, False
        png = f"{digest}.png"
        ok, encoded = cv2.imencode(".png", (np.clip(pred.image.pixels, 0, 1) * 255).round().astype(np.uint8))
        if not ok:
            raise CXRError("The image could not be encoded for the case store.")
        write_atomic(self.images_dir / png, encoded.tobytes())  # first: a case never points to a missing file
        meta = pred.image.metadata
        identifiers = {"file_name": pred.file, **pred.image.identifiers} if store_identifiers() else None
        case = Case(image_hash=digest, image_file=png, source_format=pred.image.format, assessed=pred.assessed,
                    label=pred.label, subtype=pred.subtype, pneumonia_probability=pred.pneumonia_probability,
                    class_probabilities=dict(pred.class_probabilities), threshold=float(pred.threshold or 0.0),
                    threshold_source="model", warnings=list(pred.warnings),
                    not_assessed_reasons=list(pred.not_assessed_reasons), model_id=model_id,
                    cam_settings=dict(cam_settings or {}), study_uid=meta.get("StudyInstanceUID"),
                    series_uid=meta.get("SeriesInstanceUID"), sop_uid=meta.get("SOPInstanceUID"),
                    identifiers=identifiers, deleted=False)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(case)
                session.flush()
                session.add(AuditEvent(actor=actor, action="create", case_id=case.id, model_id=model_id,
                                       details={"label": pred.label, "assessed": pred.assessed}))
                return case.id, True
        except IntegrityError:  # another session stored the same image a moment ago
            existing = self._id_for_hash(digest)
            if existing is None:
                raise
            return existing, False

    def review(self, case_id: int, decision: str, label: str, reader: str, comment: str = "") -> None:
        if decision not in DECISIONS:
            raise CXRError(f"decision {decision!r} is invalid: expected one of {DECISIONS}.")
        if label not in REVIEW_LABELS:
            raise CXRError(f"label {label!r} is invalid: expected one of {REVIEW_LABELS}.")
        if not reader.strip():
            raise CXRError("A review needs the reader's name.")
        with Session(self.engine) as session, session.begin():
            case = self._case(session, case_id)
            session.add(Review(case_id=case.id, decision=decision, label=label, reader=reader.strip(), comment=comment))
            session.add(AuditEvent(actor=reader.strip(), action="review", case_id=case.id, model_id=case.model_id,
                                   details={"decision": decision, "label": label, "comment": comment}))

    def delete(self, case_id: int, actor: str) -> None:
        """Soft delete: the case leaves the worklist; its row, image and audit trail stay."""
        with Session(self.engine) as session, session.begin():
            case = self._case(session, case_id)
            case.deleted = True
            session.add(AuditEvent(actor=actor, action="delete", case_id=case.id, model_id=case.model_id, details={}))

    # ---- reading
    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every case not deleted, newest first, as the JSON objects `cases list --json` prints."""
        if status is not None and status not in STATUSES:
            raise CXRError(f"status {status!r} is invalid: expected one of {STATUSES}.")
        with Session(self.engine) as session:
            cases = session.scalars(select(Case).where(Case.deleted.is_(False)).options(selectinload(Case.reviews))
                                    .order_by(Case.created.desc(), Case.id.desc())).all()
            rows = [case_json(c) for c in cases]
        return [r for r in rows if status is None or r["status"] == status]

    def image_path(self, case_id: int) -> Path:
        with Session(self.engine) as session:
            return self.images_dir / self._case(session, case_id).image_file

    def audit(self) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
            return [{"time": e.time.isoformat(), "actor": e.actor, "action": e.action, "case_id": e.case_id,
                     "model_id": e.model_id, "details": e.details} for e in events]

    def export(self, folder: str | Path, reviewed_only: bool = False, actor: str = "system") -> dict[str, int]:
        """A Kaggle-layout folder (NORMAL/, PNEUMONIA/) that `evaluate` reads: readers' labels where reviewed,
        else the model's (skipped with `reviewed_only`, which local validation needs); OTHER, UNREADABLE and
        unassessed unreviewed cases are left out."""
        folder = Path(folder)
        counts = {"NORMAL": 0, "PNEUMONIA": 0, "left out": 0}
        for row in self.list():
            review = row["review"]
            label = review["label"] if review else (None if reviewed_only else _model_class(row))
            if label not in EXPORT_FOLDERS:
                counts["left out"] += 1
                continue
            sub = EXPORT_FOLDERS[label]
            name = (f"IM-{row['case_id']:06d}-0001.png" if label == "NORMAL"
                    else f"person{row['case_id']}_{'bacteria' if label == 'BACTERIAL' else 'virus'}_1.png")
            (folder / sub).mkdir(parents=True, exist_ok=True)
            write_atomic(folder / sub / name, self.image_path(row["case_id"]).read_bytes())
            counts[sub] += 1
        with Session(self.engine) as session, session.begin():
            session.add(AuditEvent(actor=actor, action="export", case_id=None, model_id=None,
                                   details={"reviewed_only": reviewed_only, **counts}))
        return counts

    # ----
    def _id_for_hash(self, digest: str) -> int | None:
        with Session(self.engine) as session:
            return session.scalar(select(Case.id).where(Case.image_hash == digest))

    @staticmethod
    def _case(session: Session, case_id: int) -> Case:
        case = session.get(Case, case_id)
        if case is None or case.deleted:
            raise CXRError(f"No case {case_id!r} in the case store.")
        return case


def case_json(case: Case) -> dict[str, Any]:
    latest = case.reviews[-1] if case.reviews else None
    status = "new" if latest is None else ("disagreed" if latest.decision == "disagree" else "reviewed")
    return {"case_id": case.id, "created": case.created.isoformat(), "label": case.label, "assessed": case.assessed,
            "subtype": case.subtype, "pneumonia_probability": case.pneumonia_probability, "model_id": case.model_id,
            "threshold": case.threshold, "threshold_source": case.threshold_source, "status": status,
            "warnings": case.warnings, "not_assessed_reasons": case.not_assessed_reasons,
            "review": None if latest is None else {"decision": latest.decision, "label": latest.label,
                                                   "reader": latest.reader, "comment": latest.comment,
                                                   "time": latest.time.isoformat()}}


def _model_class(row: dict[str, Any]) -> str | None:
    if not row["assessed"]:
        return None
    if row["label"] == "PNEUMONIA":
        return row["subtype"]  # BACTERIAL or VIRAL (None for a binary model: left out)
    return row["label"]
