"""The case store: every analysed image kept as a case, with readers' reviews and an audit trail.

A case holds a de-identified PNG copy of the pixels (in the database's `pictures` table, no metadata), the result
(label or not assessed, probabilities, warnings), the model id, threshold and CAM settings, a content
hash (the same image is one case per model) and, for DICOM, the study/series/SOP UIDs. Patient names and IDs
and file names are stored only where the deployment opts in (`CXR_STORE_IDENTIFIERS=1`).

Crash safety: the case, its pictures and its audit event commit in one transaction; a kill at any point leaves
the case complete or absent. Every workstation on the same database sees the case and its pictures. The CLI and
the app call these functions, never SQL of their own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from .db import (AuditEvent, Case, Picture, Review, SiteOperatingPoint, adopt_picture_files, database_url,
                     open_engine)
from ..validation.dataset import kaggle_name, write_label_source
from ..errors import CXRError, StorageError
from ..fileio import os_message, write_atomic
from ..inputs.imaging import LoadedImage
from ..model.operating_point import valid_threshold
from ..model.predict import Prediction
from ..settings import current
from ..readers import UNSIGNED, named, signed
import json

REVIEW_LABELS = ("NORMAL", "BACTERIAL", "VIRAL", "OTHER", "UNREADABLE")
# "subtype": the reader agrees there is pneumonia but not with the likelier subtype (a recorded disagreement)
DECISIONS = ("agree", "disagree", "subtype")
DECISION_WORDS = {"agree": "agrees with the model", "disagree": "disagrees", "subtype": "disagrees on the subtype only"}
STATUSES = ("new", "reviewed", "disagreed", "contradictory")  # contradictory: a review from before the rule that
# contradicts itself (review_problem); shown as such, and left out of exports and site adaptation
EXPORTABLE = ("NORMAL", "BACTERIAL", "VIRAL")  # OTHER, UNREADABLE and an uncertain subtype have no folder


def store_identifiers() -> bool:
    """The deployment's opt-in to keep file names and patient identifiers with cases."""
    return current().store_identifiers


@dataclass
class CaseStore:
    engine: Any

    @classmethod
    def open(cls, url: str | None = None) -> "CaseStore":
        from sqlalchemy.engine import make_url  # lazy: heavy
        from sqlalchemy.exc import SQLAlchemyError  # lazy: heavy

        try:
            store = cls(open_engine(url))
            store._adopt_local_picture_files()
            return store
        except (SQLAlchemyError, OSError) as exc:
            where = make_url(url or database_url()).render_as_string(hide_password=True)
            raise CXRError(f"The case database {where} is unavailable ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]}).") from None

    def _adopt_local_picture_files(self) -> None:
        """Pre-0004 picture files of this workstation move into the database, then leave the disk."""
        folder = current().layout.legacy_images
        if not folder.is_dir():
            return
        with self.engine.begin() as connection:
            adopted = adopt_picture_files(connection, folder)
            stored = set(connection.scalars(select(Picture.sha256)).all())
        for path in [*adopted, *folder.glob("*.png")]:  # files the migration adopted are still on disk
            if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() in stored:
                path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()

    # ---- writing
    def add(self, pred: Prediction, data: bytes, model_id: str, actor: str = UNSIGNED,
            cam_settings: dict[str, Any] | None = None, _retrying: bool = False) -> tuple[int, bool]:
        """Store one decoded prediction; (case id, True) when new, (existing id, False) when this image was
        already analysed by this model (the first result stands)."""
        actor = signed(actor)
        if pred.error or pred.image is None:
            raise CXRError("Only a decoded image can become a case (this input failed to load).")
        digest = hashlib.sha256(data).hexdigest()
        existing = self._id_for(digest, model_id)
        if existing is not None:
            self._restore_if_deleted(existing, actor)
            return existing, False
        pictures = {"image": _png_bytes(pred.image.pixels)}
        if pred.assessed and pred.heatmap is not None:
            pictures["heatmap"] = _png_bytes(pred.heatmap)
        keys = {kind: hashlib.sha256(data).hexdigest() for kind, data in pictures.items()}
        meta = pred.image.metadata
        identifiers = {"file_name": pred.file, **pred.image.identifiers} if store_identifiers() else None
        case = Case(image_hash=digest, image_sha256=keys["image"], heatmap_sha256=keys.get("heatmap"),
                    source_format=pred.image.format,
                    assessed=pred.assessed, label=pred.label, subtype=pred.subtype,
                    pneumonia_probability=pred.pneumonia_probability,
                    class_probabilities=dict(pred.class_probabilities), threshold=float(pred.threshold or 0.0),
                    threshold_source=pred.threshold_source, warnings=list(pred.warnings),
                    not_assessed_reasons=list(pred.not_assessed_reasons), model_id=model_id,
                    cam_settings=dict(cam_settings or {}), image_metadata=_jsonable(meta),
                    study_uid=meta.get("StudyInstanceUID"), series_uid=meta.get("SeriesInstanceUID"),
                    sop_uid=meta.get("SOPInstanceUID"), identifiers=identifiers, deleted=False)
        try:
            with Session(self.engine) as session, session.begin():
                for kind, data in pictures.items():  # a picture another case already holds is stored once
                    if session.get(Picture, keys[kind]) is None:
                        session.add(Picture(sha256=keys[kind], data=data))
                session.flush()
                session.add(case)
                session.flush()
                session.add(AuditEvent(actor=actor, action="create", case_id=case.id, model_id=model_id,
                                       details={"label": pred.label, "assessed": pred.assessed}))
                return case.id, True
        except IntegrityError:  # another session stored the same image (or picture) a moment ago
            existing = self._id_for(digest, model_id)
            if existing is None and not _retrying:
                return self.add(pred, data, model_id, actor, cam_settings, _retrying=True)
            if existing is None:
                raise
            return existing, False

    def review(self, case_id: int, decision: str, label: str, reader: str, comment: str = "") -> None:
        """Record a reader's verdict (the latest counts; earlier ones stay, and the audit says what changed)."""
        if decision not in DECISIONS:
            raise CXRError(f"decision {decision!r} is invalid: expected one of {DECISIONS}.")
        if label not in REVIEW_LABELS:
            raise CXRError(f"label {label!r} is invalid: expected one of {REVIEW_LABELS}.")
        if decision == "subtype" and label not in ("BACTERIAL", "VIRAL"):
            raise CXRError(f"A subtype-only disagreement needs the subtype as its label (BACTERIAL or VIRAL), not {label!r}.")
        reader = named(reader, "A review needs the reader's name.")
        with Session(self.engine) as session, session.begin():
            case = self._case(session, case_id)
            problem = _contradiction(case, decision, label)
            if problem:
                raise CXRError(f"Refused: {problem}")
            previous = case.reviews[-1] if case.reviews else None
            session.add(Review(case_id=case.id, decision=decision, label=label, reader=reader, comment=comment))
            details = {"decision": decision, "label": label, "comment": comment}
            if previous is not None:
                details["previous"] = {"decision": previous.decision, "label": previous.label, "reader": previous.reader}
            session.add(AuditEvent(actor=reader, action="change" if previous else "review", case_id=case.id,
                                   model_id=case.model_id, details=details))

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

    def get(self, case_id: int) -> dict[str, Any]:
        """One case's JSON object (as in `list`)."""
        with Session(self.engine) as session:
            return case_json(self._case(session, case_id))

    def picture(self, case_id: int, kind: str = "image") -> bytes | None:
        """The case's de-identified image or heatmap as PNG bytes (None: an unassessed case has no heatmap);
        a picture that is not in the database is a one-line CXRError."""
        if kind not in ("image", "heatmap"):
            raise CXRError(f"picture kind {kind!r} is invalid: expected 'image' or 'heatmap'.")
        with Session(self.engine) as session:
            return _picture_bytes(session, self._case(session, case_id), kind)

    def prediction(self, case_id: int) -> Prediction:
        """The stored result rebuilt for display and reports: the de-identified pixels, the stored heatmap,
        the result as it was decided (never re-predicted). Identifiers only where the deployment keeps them."""
        with Session(self.engine) as session:
            case = self._case(session, case_id)  # one read of the case and its pictures
            image_png, heat_png = _picture_bytes(session, case, "image"), _picture_bytes(session, case, "heatmap")
            pixels = _decode_png(image_png, case_id)
            heat = _decode_png(heat_png, case_id) if heat_png is not None else np.zeros((7, 7), np.float32)
            ids = dict(case.identifiers or {})
            name = ids.pop("file_name", None) or f"Case {case.id}"
            image = LoadedImage(pixels=pixels, format=case.source_format, metadata=dict(case.image_metadata or {}),
                                identifiers={k: str(v) for k, v in ids.items()})
            return Prediction(file=name, model_id=case.model_id, label=case.label, pneumonia_probability=case.pneumonia_probability,
                              subtype=case.subtype, class_probabilities=dict(case.class_probabilities),
                              threshold=case.threshold, threshold_source=case.threshold_source,
                              warnings=list(case.warnings), assessed=case.assessed,
                              not_assessed_reasons=list(case.not_assessed_reasons), heatmap=heat, image=image)

    # ---- the site operating point (never in the model card)
    def record_site_point(self, model_id: str, threshold: float | None, author: str,
                          evidence: dict[str, Any] | None = None) -> None:
        """Record the site's threshold for `model_id` with its evidence, audited; None reverts to the model's own
        threshold. Only `cxr_core.validation.site_point` calls this, after the deployment's rules have passed."""
        if threshold is not None:
            threshold = valid_threshold(threshold)
        author = named(author, "A site operating point needs its author's name.")
        with Session(self.engine) as session, session.begin():
            session.add(SiteOperatingPoint(model_id=model_id, threshold=None if threshold is None else float(threshold),
                                           author=author, evidence=_jsonable(evidence or {})))
            session.add(AuditEvent(actor=author, action="site-threshold", case_id=None, model_id=model_id,
                                   details={"threshold": threshold, **_jsonable(evidence or {})}))

    def site_threshold(self, model_id: str) -> dict[str, Any] | None:
        """The site's current operating point for `model_id`: {threshold, author, created, evidence}, or None."""
        with Session(self.engine) as session:
            row = session.scalars(select(SiteOperatingPoint).where(SiteOperatingPoint.model_id == model_id)
                                  .order_by(SiteOperatingPoint.id.desc()).limit(1)).first()
            if row is None or row.threshold is None:
                return None
            return {"threshold": row.threshold, "author": row.author, "created": row.created.isoformat(),
                    "evidence": row.evidence}

    def audit(self, case_id: int | None = None) -> list[dict[str, Any]]:
        """The audit trail, oldest first; `case_id`: one case's events only."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if case_id is not None:
            query = query.where(AuditEvent.case_id == case_id)
        with Session(self.engine) as session:
            events = session.scalars(query).all()
            return [{"time": e.time.isoformat(), "actor": e.actor, "action": e.action, "case_id": e.case_id,
                     "model_id": e.model_id, "details": e.details} for e in events]

    def export(self, folder: str | Path, reviewed_only: bool = False, actor: str = UNSIGNED) -> dict[str, int]:
        """A Kaggle-layout folder (NORMAL/, PNEUMONIA/) that `evaluate` reads: readers' labels where reviewed,
        else the model's (skipped with `reviewed_only`, which local validation needs); OTHER, UNREADABLE and
        unassessed unreviewed cases are left out, and so are reviews that contradict themselves (counted apart). A relative `folder` goes under $CXR_HOME/exports
        (`paths.Home.export_folder`); the folder says where its labels came from (`dataset.write_label_source`).
        A folder that cannot be written is a StorageError in plain words."""

        folder, actor = current().layout.export_folder(folder), signed(actor)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(os_message(exc, folder)) from None
        counts = {"NORMAL": 0, "PNEUMONIA": 0, "left out": 0, "contradictory": 0}
        exported: set[str] = set()  # an image analysed by two models is two cases but one exported file
        for row in self.list():
            if row["image_hash"] in exported:
                continue
            review = row["review"]
            if review and review["contradiction"]:  # its label says nothing reliable: never exported
                counts["contradictory"] += 1
                continue
            label = review["label"] if review else (None if reviewed_only else _model_class(row))
            if label not in EXPORTABLE:
                counts["left out"] += 1
                continue
            sub, name = kaggle_name(label, row["case_id"])  # the names `evaluate` parses the labels back from
            (folder / sub).mkdir(parents=True, exist_ok=True)
            write_atomic(folder / sub / name, self.picture(row["case_id"]))
            exported.add(row["image_hash"])
            counts[sub] += 1
        write_label_source(folder, "reviews" if reviewed_only else "reviews and model")
        with Session(self.engine) as session, session.begin():
            session.add(AuditEvent(actor=actor, action="export", case_id=None, model_id=None,
                                   details={"reviewed_only": reviewed_only, **counts}))
        return counts

    # ----
    def _id_for(self, digest: str, model_id: str) -> int | None:
        with Session(self.engine) as session:
            return session.scalar(select(Case.id).where(Case.image_hash == digest, Case.model_id == model_id))

    def _restore_if_deleted(self, case_id: int, actor: str) -> None:
        """A removed case whose image comes back returns to the worklist (audited)."""
        with Session(self.engine) as session, session.begin():
            case = session.get(Case, case_id)
            if case is not None and case.deleted:
                case.deleted = False
                session.add(AuditEvent(actor=actor, action="restore", case_id=case.id, model_id=case.model_id, details={}))

    @staticmethod
    def _case(session: Session, case_id: int) -> Case:
        case = session.get(Case, case_id)
        if case is None or case.deleted:
            raise CXRError(f"No case {case_id!r} in the case store.")
        return case


def _picture_bytes(session: Session, case: Case, kind: str) -> bytes | None:
    """`CaseStore.picture` within an open session."""
    key, legacy = ((case.image_sha256, case.image_file) if kind == "image" else (case.heatmap_sha256, case.heatmap_file))
    if key is None and legacy is None:
        if kind == "image":
            raise CXRError(f"Case {case.id}'s image is missing from the case database.")
        return None
    picture = session.get(Picture, key) if key else None
    if picture is None:
        raise CXRError(f"Case {case.id}'s {kind} is not in the case database yet: it was made on a workstation "
                       "from before version 0004 whose picture files have not moved in. Open the app or run "
                       "`python -m cxr_core cases list` once on that workstation.")
    return picture.data


def _png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a [0, 1] array: pixels only, no metadata."""
    ok, encoded = cv2.imencode(".png", (np.clip(array, 0, 1) * 255).round().astype(np.uint8))
    if not ok:
        raise CXRError("The image could not be encoded for the case store.")
    return encoded.tobytes()


def _decode_png(data: bytes | None, case_id: int) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if arr is None:
        raise CXRError(f"Case {case_id}'s stored picture is unreadable.")
    return arr.astype(np.float32) / 255.0


def review_problem(decision: str, label: str, model_label: str | None, model_subtype: str | None) -> str | None:
    """Why a review contradicts itself (None: it does not). The one rule for the CLI, the app and what reviews feed:
    "agree" records the model's own finding (and its subtype, where it stated one); "disagree" needs another finding;
    "subtype" the same finding, pneumonia, and the subtype the model did not state."""
    finding = "PNEUMONIA" if label in ("BACTERIAL", "VIRAL") else label
    said = model_label or "no finding (not assessed)"
    model_subtype = model_subtype if model_subtype in ("BACTERIAL", "VIRAL") else None  # "UNCERTAIN": none stated
    if decision == "agree":
        if finding != model_label:
            return f"An agreement records the model's own finding ({said}), not {label}: choose Disagree."
        if model_subtype and label != model_subtype:
            return (f"The model said {model_subtype}: agreeing records {model_subtype}, not {label} (choose "
                    "'subtype only' to disagree on the subtype).")
    elif decision == "disagree" and finding == model_label:
        return (f"A disagreement needs another finding than the model's ({said}): "
                + ("choose 'subtype only' to disagree on the subtype." if finding == "PNEUMONIA" else "choose Agree."))
    elif decision == "subtype":
        if model_label != "PNEUMONIA" or not model_subtype:
            return (f"A subtype-only disagreement needs a pneumonia result with a stated subtype; the model said "
                    f"{said}{'' if model_subtype else ' with no stated subtype'}.")
        if label == model_subtype:
            return f"A subtype-only disagreement needs the other subtype than the model's {model_subtype}."
    return None


def _contradiction(case: Case, decision: str, label: str) -> str | None:
    """`review_problem` for a stored case: its model answer as the rule reads it (no finding when not assessed)."""
    return review_problem(decision, label, case.label if case.assessed else None, case.subtype)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Metadata values as JSON-safe scalars (DICOM values can be pydicom types)."""

    return json.loads(json.dumps(d, default=str))


def case_json(case: Case) -> dict[str, Any]:
    latest = case.reviews[-1] if case.reviews else None
    contradiction = None if latest is None else _contradiction(case, latest.decision, latest.label)
    status = ("new" if latest is None else "contradictory" if contradiction else
              "reviewed" if latest.decision == "agree" else "disagreed")
    return {"case_id": case.id, "created": case.created.isoformat(), "image_hash": case.image_hash,
            "label": case.label, "assessed": case.assessed,
            "subtype": case.subtype, "pneumonia_probability": case.pneumonia_probability, "model_id": case.model_id,
            "threshold": case.threshold, "threshold_source": case.threshold_source, "status": status,
            "view": (case.image_metadata or {}).get("ViewPosition"), "study_date": (case.image_metadata or {}).get("StudyDate"),
            "study_uid": case.study_uid, "series_uid": case.series_uid, "sop_uid": case.sop_uid,
            # an identifier: stored, and shown, only where the deployment opts in (CXR_STORE_IDENTIFIERS=1)
            "accession": (case.identifiers or {}).get("AccessionNumber") if current().store_identifiers else None,
            "warnings": case.warnings, "not_assessed_reasons": case.not_assessed_reasons,
            "review": None if latest is None else {"decision": latest.decision, "label": latest.label,
                                                   "reader": latest.reader, "comment": latest.comment,
                                                   "time": latest.time.isoformat(),
                                                   "contradiction": contradiction}}


def export_sentence(counts: dict[str, int], folder: Path) -> str:
    """What an export did, said the same way by the CLI and the Worklist page."""
    contradictory = counts.get("contradictory", 0)
    return (f"Exported {counts['NORMAL']} NORMAL and {counts['PNEUMONIA']} PNEUMONIA image(s) to {folder} "
            f"({counts['left out']} left out"
            + (f"; {contradictory} with a review that contradicts itself" if contradictory else "") + ")")


def _model_class(row: dict[str, Any]) -> str | None:
    if not row["assessed"]:
        return None
    if row["label"] == "PNEUMONIA":
        return row["subtype"]  # BACTERIAL or VIRAL (None for a binary model: left out)
    return row["label"]
