"""Results out as DICOM, built with highdicom (validated at construction), for the source image's study:

- a Comprehensive SR with the finding (SNOMED CT 233604007 "Pneumonia": present / absent / undetermined when
  not assessed), the probabilities, the subtype, the threshold and whose it is, the model and the intended-use
  disclaimer, and a reference to the source image;
- a Secondary Capture of the Grad-CAM overlay with a burned-in "research use only" caption (assessed
  images only: an image outside the intended use gets no heatmap).

Both get their own Series and SOP Instance UIDs, derived from the source image's SOP Instance UID and the model
id (`result_uid`): the result of one model on one image has one identity, so sending it again replaces it on the
PACS instead of adding a duplicate, and `pacs analyse` can tell a study already holds it. The patient and study
modules are copied from the source.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from .. import CLASSES, INTENDED_USE
from ..model.card import ModelCard
from ..errors import CXRError, plain_cause
from ..fileio import write_atomic
from ..model.predict import Prediction
from ..model.decision import SUBTYPE_UNCERTAIN
from ..model.operating_point import threshold_wording

MANUFACTURER = "CXR pneumonia assistant (research use only)"
CAPTION = ("RESEARCH USE ONLY - NOT FOR DIAGNOSIS", "Grad-CAM: regions behind the model's answer")
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902  # high numbers keep the AI series after the acquisition's

_SCHEME = "99CXRAI"  # this product's private coding scheme for concepts no standard code names
REPORT = Code("18748-4", "LN", "Diagnostic imaging report")
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
PRESENT, ABSENT, UNDETERMINED = Code("52101004", "SCT", "Present"), Code("2667000", "SCT", "Absent"), \
    Code("373068000", "SCT", "Undetermined")
SOURCE_IMAGE = Code("121112", "DCM", "Source of Measurement")
ALGORITHM_NAME, ALGORITHM_VERSION = Code("111001", "DCM", "Algorithm Name"), Code("111003", "DCM", "Algorithm Version")
MODEL_ID = Code("MODEL_ID", _SCHEME, "Model identifier")
PROBABILITY = {"PNEUMONIA": Code("P_PNEUMONIA", _SCHEME, "Probability of pneumonia"),
               **{c: Code(f"P_{c}", _SCHEME, f"Probability of class {c}") for c in CLASSES}}
SUBTYPE = Code("SUBTYPE", _SCHEME, "Likelier pneumonia subtype")
THRESHOLD = Code("THRESHOLD", _SCHEME, "Operating threshold on the probability of pneumonia")
THRESHOLD_SOURCE = Code("THRESHOLD_SOURCE", _SCHEME, "Source of the operating threshold")
NOT_ASSESSED = Code("NOT_ASSESSED", _SCHEME, "Reason not assessed")
WARNING = Code("WARNING", _SCHEME, "Warning")
DISCLAIMER = Code("INTENDED_USE", _SCHEME, "Intended use")
NO_UNITS = Code("1", "UCUM", "no units")
# Patient and study attributes the results copy from the source; DICOM requires them present, even empty.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName")


def read_source(data: bytes | Path | Dataset) -> Dataset:
    """The source's header as a new pydicom Dataset (its pixels are not needed), with the patient and study
    attributes the results copy present."""
    if isinstance(data, Dataset):
        ds = Dataset()
        ds.update({tag: elem for tag, elem in data.items() if tag < 0x7FE00010})  # a copy without the pixels
    else:
        try:
            ds = pydicom.dcmread(io.BytesIO(data) if isinstance(data, bytes) else str(data), force=True,
                                 stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many kinds on damaged files
            raise CXRError(f"Not a readable DICOM file ({plain_cause(exc)}).") from None
    missing = [k for k in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID") if not ds.get(k)]
    if missing:
        raise CXRError(f"The DICOM file lacks {', '.join(missing)}: results cannot be placed in its study.")
    for keyword in _TYPE2_COPIED:  # copied into the results: present (possibly empty) as DICOM requires
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def result_uid(source_sop_uid: str, model_id: str, what: str) -> str:
    """The UID of one result object ("SR series", "SR", "SC series", "SC") of `model_id` on one source image:
    the same inputs always give the same UID (pydicom's generate_uid over them, under its UID root)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(source_sop_uid), str(model_id), what]))


def result_sr(source: Dataset, pred: Prediction, card: ModelCard, instance_number: int = 1) -> hd.sr.ComprehensiveSR:
    """The structured report of one prediction, in the source's study."""
    if pred.error:
        raise CXRError(f"No result to report: {pred.error}")
    finding = UNDETERMINED if not pred.assessed else (PRESENT if pred.label == "PNEUMONIA" else ABSENT)
    items: list[Any] = [hd.sr.CodeContentItem(PNEUMONIA, finding, relationship_type="CONTAINS")]
    if pred.assessed:
        items.append(hd.sr.NumContentItem(PROBABILITY["PNEUMONIA"], float(pred.pneumonia_probability), NO_UNITS,
                                          relationship_type="CONTAINS"))
        items += [hd.sr.NumContentItem(PROBABILITY[c], float(pred.class_probabilities[c]), NO_UNITS,
                                       relationship_type="CONTAINS") for c in CLASSES]
        if pred.subtype:
            items.append(hd.sr.TextContentItem(SUBTYPE, "uncertain (margin below the model's stated one)"
                                               if pred.subtype == SUBTYPE_UNCERTAIN else pred.subtype,
                                               relationship_type="CONTAINS"))
    items += [hd.sr.TextContentItem(NOT_ASSESSED, r[:1024], relationship_type="CONTAINS") for r in pred.not_assessed_reasons]
    items += [
        hd.sr.NumContentItem(THRESHOLD, float(pred.threshold), NO_UNITS, relationship_type="CONTAINS"),
        hd.sr.TextContentItem(THRESHOLD_SOURCE, threshold_wording(pred.threshold_source), relationship_type="CONTAINS"),
        hd.sr.TextContentItem(ALGORITHM_NAME, card.name, relationship_type="CONTAINS"),
        hd.sr.TextContentItem(ALGORITHM_VERSION, card.version, relationship_type="CONTAINS"),
        hd.sr.TextContentItem(MODEL_ID, card.model_id, relationship_type="CONTAINS"),
        hd.sr.TextContentItem(DISCLAIMER, INTENDED_USE[:1024], relationship_type="CONTAINS"),
    ]
    items += [hd.sr.TextContentItem(WARNING, w[:1024], relationship_type="CONTAINS") for w in pred.warnings]
    items.append(hd.sr.ImageContentItem(SOURCE_IMAGE, source.SOPClassUID, source.SOPInstanceUID,
                                        relationship_type="CONTAINS"))
    root = hd.sr.ContainerContentItem(REPORT)
    root.ContentSequence = hd.sr.ContentSequence(items)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=root, series_number=SR_SERIES_NUMBER, instance_number=instance_number,
        series_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "SR series"),
        sop_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "SR"), manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description="CXR AI result (research use only)")
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]  # declares 99CXRAI, as PS3.3 C.12.1.1.4 asks
    return sr


def _private_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = _SCHEME
    item.CodingSchemeName = "CXR pneumonia assistant private concepts"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    item.CodingSchemeVersion = "1"
    return item


def result_line(pred: Prediction) -> str:
    """The decision the Secondary Capture burns in beside the research-use caption."""
    return (f"{pred.label}  P(pneumonia) {pred.pneumonia_probability:.2f}  threshold {pred.threshold:.2f} "
            f"({threshold_wording(pred.threshold_source)})")


def captioned(overlay_rgb: np.ndarray, lines: tuple[str, ...] = CAPTION, min_width: int = 768) -> np.ndarray:
    """The overlay (upscaled to at least `min_width` so the text stays legible) with `lines` burned into a
    black band below it, each line scaled to fit the width."""
    h, w = overlay_rgb.shape[:2]
    if w < min_width:
        h, w = round(h * min_width / w), min_width
        overlay_rgb = cv2.resize(overlay_rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, w // 600)
    (tw, th), _ = cv2.getTextSize(max(lines, key=len), font, 1.0, thickness)
    scale = 0.92 * w / tw
    line = int(th * scale * 1.8)
    out = np.zeros((h + line * len(lines) + line // 2, w, 3), np.uint8)
    out[:h] = overlay_rgb
    for i, text in enumerate(lines):
        cv2.putText(out, text, (int(0.04 * w), h + line * (i + 1)), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def overlay_sc(source: Dataset, overlay_rgb: np.ndarray, pred: Prediction, model_id: str,
               instance_number: int = 1) -> hd.sc.SCImage:
    """The Grad-CAM overlay as a Secondary Capture in the source's study, with the decision (label, P(pneumonia),
    threshold and its source) and the research-use caption burned in."""
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=captioned(overlay_rgb, (result_line(pred), *CAPTION)),
        photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_number=SC_SERIES_NUMBER, instance_number=instance_number,
        series_instance_uid=result_uid(source.SOPInstanceUID, model_id, "SC series"),
        sop_instance_uid=result_uid(source.SOPInstanceUID, model_id, "SC"), manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"), series_description="CXR AI Grad-CAM (research use only)")
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = "CHEST"  # unpaired: General Series' Laterality (type 2C) is then rightly absent
    return sc


def result_objects(source: bytes | Path | Dataset, pred: Prediction, card: ModelCard) -> list[Dataset]:
    """[SR] for an unassessed image, [SR, SC of the default Grad-CAM overlay] for an assessed one."""
    from ..model.gradcam import overlay

    ds = read_source(source)
    objects: list[Dataset] = [result_sr(ds, pred, card)]
    if pred.assessed and pred.image is not None and pred.heatmap is not None:
        objects.append(overlay_sc(ds, overlay(pred.image.pixels, pred.heatmap), pred, card.model_id))
    return objects


def to_bytes(ds: Dataset) -> bytes:
    """A dataset as a DICOM file's bytes: with preamble and file meta where it has a transfer syntax (every
    object built here, and received instances), else as the bare dataset."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=ds.get("file_meta") is not None and "TransferSyntaxUID" in ds.file_meta)
    return buf.getvalue()


def kind(ds: Dataset) -> str:
    """"SR" or "SC": which of the two result objects `ds` is."""
    return "SR" if ds.Modality == "SR" else "SC"


def write_objects(objects: list[Dataset], out_dir: str | Path) -> list[Path]:
    """Each object as `<SR|SC>-<SOP Instance UID>.dcm` (no patient data in the name), atomically."""
    out = Path(out_dir)
    paths = []
    for ds in objects:
        path = out / f"{kind(ds)}-{ds.SOPInstanceUID}.dcm"
        write_atomic(path, to_bytes(ds))
        paths.append(path)
    return paths
