"""Results out as DICOM, built with highdicom (validated at construction), for the source image's study, as the
IHE AI Results (AIR) profile sends them:

- a **TID 1500 Measurement Report** (Comprehensive SR): the observation context names the model as a device; one
  measurement group (TID 1501) per finding, each with the algorithm (TID 4019: name, version, parameters), the source
  image and its finding type: "Pneumonia" with the qualitative evaluation present / absent / undetermined (not
  assessed, with the reasons), its probability, the operating threshold (its source among the algorithm's
  parameters) and the etiology (bacteria, virus, or undetermined when the subtype margin is below the model's),
  then "Bacterial pneumonia" and "Viral pneumonia" with their probabilities; the warnings and the intended use;
- a **Parametric Map** of the Grad-CAM heatmap (float, on the model's fixed scale, with its real-world value
  mapping), the source's size and pixel grid, referencing the source image and naming the decision it explains;
- a **Secondary Capture** of the overlay with the decision and a "research use only" caption burned in, for
  viewers that show only pictures.
The map and the capture are made for assessed images only: an image outside the intended use gets no heatmap.

Codes are standard (SNOMED CT, DICOM, UCUM) wherever one exists; `PRIVATE_CODES` are the three concepts none
names, declared in the SR's Coding Scheme Identification Sequence.

Every object gets Series and SOP Instance UIDs derived from the source image's SOP Instance UID, the model id and
the object's kind (`result_uid`): the result of one model on one image has one identity, so sending it again
replaces it on the PACS instead of adding a duplicate, and `pacs analyse` can tell a study already holds it. The
patient and study modules are copied from the source.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import cv2
import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import ParametricMapStorage

from ..model.card import ModelCard
from ..errors import CXRError, plain_cause
from ..fileio import write_atomic
from ..model.predict import Prediction
from ..model.decision import SUBTYPE_UNCERTAIN
from ..safety.intended_use import INTENDED_USE, RESEARCH_USE_ONLY
from ..model.operating_point import threshold_wording
from ..model.gradcam import on_image, overlay

MANUFACTURER = f"CXR pneumonia assistant ({RESEARCH_USE_ONLY})"
CAPTION = (f"{RESEARCH_USE_ONLY.upper()} - NOT FOR DIAGNOSIS", "Grad-CAM: regions behind the model's answer")
# High numbers keep the AI series after the acquisition's.
SR_SERIES_NUMBER, SC_SERIES_NUMBER, PM_SERIES_NUMBER = 9901, 9902, 9903

# Standard codes (PS3.16 and SNOMED CT).
PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")
DEVICE = Code("121007", "DCM", "Device")
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
SUBTYPE_FINDINGS = {"BACTERIAL": Code("53084003", "SCT", "Bacterial pneumonia"),
                    "VIRAL": Code("75570004", "SCT", "Viral pneumonia")}
PRESENT, ABSENT, UNDETERMINED = Code("52101004", "SCT", "Present"), Code("2667000", "SCT", "Absent"), \
    Code("373068000", "SCT", "Undetermined")
ETIOLOGY = Code("134198009", "SCT", "Etiology")
CAUSES = {"BACTERIAL": Code("409822003", "SCT", "Bacteria"), "VIRAL": Code("49872002", "SCT", "Virus")}
LUNG = Code("39607008", "SCT", "Lung")
PROBABILITY = Code("122157", "DCM", "Probability")
THRESHOLD = Code("122411", "DCM", "Threshold Value")
GRADCAM = Code("130403", "DCM", "Gradient-weighted class activation")
NO_UNITS = Code("1", "UCUM", "no units")
# This product's private scheme, for the concepts no standard code names (README, "Connecting to a PACS").
_SCHEME = "99CXRAI"
WARNING = Code("WARNING", _SCHEME, "Warning")
NOT_ASSESSED = Code("NOT_ASSESSED", _SCHEME, "Reason not assessed")
DISCLAIMER = Code("INTENDED_USE", _SCHEME, "Intended use")
PRIVATE_CODES = (WARNING, NOT_ASSESSED, DISCLAIMER)
# Patient and study attributes the results copy from the source; DICOM requires them present, even empty.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName")
# Study-level attributes every result carries exactly as its source does: a PACS's study list reads them from any of
# the study's instances, so a result without them (a Secondary Capture had no StudyDescription) blanks the study.
STUDY_ATTRIBUTES = ("StudyDescription", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                    "ReferringPhysicianName", "PatientAge", "PatientSize", "PatientWeight")
KINDS = ("SR", "PM", "SC")  # the result objects, in the order result_objects builds them


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


def in_source_study(result: Dataset, source: Dataset) -> Dataset:
    """`result` with the source's study-level attributes (STUDY_ATTRIBUTES), whichever builder made it."""
    for keyword in STUDY_ATTRIBUTES:
        if keyword in source:
            setattr(result, keyword, source.data_element(keyword).value)
    return result


def result_uid(source_sop_uid: str, model_id: str, what: str) -> str:
    """The UID of one result object ("SR series", "SR", "PM series", "PM", "SC series", "SC") or of an identity
    inside one ("tracking Pneumonia") of `model_id` on one source image: the same inputs always give the same UID
    (pydicom's generate_uid over them, under its UID root)."""
    from pydicom.uid import generate_uid  # lazy: heavy

    return str(generate_uid(entropy_srcs=[str(source_sop_uid), str(model_id), what]))


def device_uid(model_id: str) -> str:
    """The Device Observer UID of a model: one per model id, in every report it makes."""
    from pydicom.uid import generate_uid  # lazy: heavy

    return str(generate_uid(entropy_srcs=["device observer", str(model_id)]))


def _algorithm(pred: Prediction, card: ModelCard) -> hd.sr.AlgorithmIdentification:
    """TID 4019: the model's name and version; its id and the operating threshold (with whose it is) as parameters."""
    return hd.sr.AlgorithmIdentification(
        name=card.name, version=card.version, manufacturer=MANUFACTURER,
        parameters=[f"model id: {card.model_id}",
                    f"operating threshold on the probability of pneumonia: {pred.threshold:.4f} "
                    f"({threshold_wording(pred.threshold_source)})"])


def _group(source: Dataset, pred: Prediction, card: ModelCard, finding: Code, measurements: list[Any],
           evaluations: list[Any], texts: list[tuple[Code, str]] = (), sites: list[Any] = ()) -> Any:
    """One TID 1501 measurement group about the whole source image; `texts` are TEXT qualitative evaluations
    (row 12: a coded question with a text answer), which highdicom's class does not take itself."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=result_uid(source.SOPInstanceUID, card.model_id, f"tracking {finding.meaning}"),
            identifier=f"{finding.meaning} ({card.name})"),
        finding_type=finding, algorithm_id=_algorithm(pred, card), finding_sites=list(sites) or None,
        measurements=measurements or None, qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)])
    for name, text in texts:
        group[0].ContentSequence.append(hd.sr.TextContentItem(name, text, relationship_type="CONTAINS"))
    return group


def _probability(value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=PROBABILITY, value=float(value), unit=NO_UNITS)


def finding_code(pred: Prediction) -> Code:
    """The SR's answer for "Pneumonia": present, absent, or undetermined for an image not assessed."""
    return UNDETERMINED if not pred.assessed else (PRESENT if pred.label == "PNEUMONIA" else ABSENT)


def result_sr(source: Dataset, pred: Prediction, card: ModelCard, instance_number: int = 1) -> hd.sr.ComprehensiveSR:
    """The TID 1500 Measurement Report of one prediction, in the source's study."""
    if pred.error:
        raise CXRError(f"No result to report: {pred.error}")
    evaluations = [hd.sr.QualitativeEvaluation(PNEUMONIA, finding_code(pred))]
    measurements = []
    if pred.assessed:
        measurements = [_probability(pred.pneumonia_probability),
                        hd.sr.Measurement(name=THRESHOLD, value=float(pred.threshold), unit=NO_UNITS)]
        if pred.subtype:
            evaluations.append(hd.sr.QualitativeEvaluation(
                ETIOLOGY, UNDETERMINED if pred.subtype == SUBTYPE_UNCERTAIN else CAUSES[pred.subtype]))
    texts = [(NOT_ASSESSED, r) for r in pred.not_assessed_reasons] + [(WARNING, w) for w in pred.warnings]
    texts.append((DISCLAIMER, INTENDED_USE))
    groups = [_group(source, pred, card, PNEUMONIA, measurements, evaluations, texts, sites=[hd.sr.FindingSite(LUNG)])]
    if pred.assessed:
        groups += [_group(source, pred, card, finding, [_probability(pred.class_probabilities[c])], [])
                   for c, finding in SUBTYPE_FINDINGS.items() if pred.class_probabilities.get(c) is not None]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(card.model_id), name=card.model_id, manufacturer_name=MANUFACTURER, model_name=card.name)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
            observer_type=DEVICE, observer_identifying_attributes=device)),
        procedure_reported=PROCEDURE, imaging_measurements=groups)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_number=SR_SERIES_NUMBER,
        instance_number=instance_number,
        series_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "SR series"),
        sop_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "SR"), manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description=f"CXR AI result ({RESEARCH_USE_ONLY})")
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]  # declares 99CXRAI, as PS3.3 C.12.1.1.4 asks
    return in_source_study(sr, source)


def _private_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = _SCHEME
    item.CodingSchemeName = "CXR pneumonia assistant private concepts"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    item.CodingSchemeVersion = "1"
    return item


def map_decision(pred: Prediction) -> str:
    """The decision a Parametric Map names (its Content Description, 64 characters at most): the label, the
    probability and the threshold that decided it, and whose threshold that is."""
    return (f"{pred.label}: P(pneumonia) {pred.pneumonia_probability:.3f}, threshold {pred.threshold:.3f} "
            f"({pred.threshold_source})")


class _ProjectionParametricMap(hd.pm.ParametricMap):
    """highdicom's ParametricMap, made to work for the single frame of a projection radiograph: the frame's
    dimension index (its Frame Label) is written where highdicom 0.28 indexes by it but leaves it out."""

    def _build_luts(self) -> None:
        for item in self.PerFrameFunctionalGroupsSequence:
            content = item.FrameContentSequence[0]
            if not content.get("DimensionIndexValues"):
                content.DimensionIndexValues = [1]
        super()._build_luts()


def _with_geometry(source: Dataset) -> Dataset:
    """The source's header with the plane geometry a Parametric Map needs. A source with its own frame of reference
    and plane keeps them (the map lies in the source's frame of reference). A projection radiograph has none: it
    gets a frame of reference of its own (one UID per source image) whose plane is the source's pixel matrix
    (origin at the first pixel, rows along x, columns along y, its pixel spacing or 1 mm); the map's per-frame
    reference to the source, with Spatial Locations Preserved, says it matches the source pixel for pixel."""
    if all(source.get(k) for k in ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                                     "PixelSpacing")):
        return source
    geo = copy.deepcopy(source)
    geo.FrameOfReferenceUID = result_uid(source.SOPInstanceUID, "", "frame of reference")
    geo.PositionReferenceIndicator = ""
    geo.ImagePositionPatient = [0.0, 0.0, 0.0]
    geo.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1.0, 1.0]
    geo.PixelSpacing = [float(v) for v in spacing]
    geo.SliceThickness = 1.0
    return geo


def heatmap_pm(source: Dataset, pred: Prediction, card: ModelCard, instance_number: int = 1) -> hd.pm.ParametricMap:
    """The Grad-CAM heatmap as a Parametric Map in the source's study: float32, the source's rows and columns, on
    the model's fixed scale (0 = no evidence, 1 = the card's `gradcam.scale`; a model without one: each map's own
    peak), with its real-world value mapping, referencing the source image and naming the decision it explains."""

    if not pred.assessed or pred.heatmap is None:
        raise CXRError("No heatmap to map: the image was not assessed.")
    scale = "1 = the model's fixed Grad-CAM scale" if card.cam_scale else "1 = this map's own peak"
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="GRADCAM", lut_explanation=f"Pneumonia evidence, {scale}"[:64], unit=NO_UNITS,
        value_range=(0.0, 1.0), slope=1.0, intercept=0.0, quantity_definition=GRADCAM)
    values = on_image(pred.heatmap, (int(source.Rows), int(source.Columns)), card.preprocess.pad)
    pm = _ProjectionParametricMap(
        source_images=[_with_geometry(source)], pixel_array=values.astype(np.float32),
        series_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "PM series"),
        series_number=PM_SERIES_NUMBER, instance_number=instance_number,
        sop_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "PM"), manufacturer=MANUFACTURER,
        manufacturer_model_name=card.name, software_versions=card.version, device_serial_number=card.model_id,
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="GRADCAM", content_description=map_decision(pred)[:64],
        series_description=f"CXR AI Grad-CAM map ({RESEARCH_USE_ONLY})")
    pm.BodyPartExamined = "CHEST"  # unpaired: General Series' Laterality (type 2C) is then rightly absent
    return in_source_study(pm, source)


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
        patient_orientation=("L", "F"), series_description=f"CXR AI Grad-CAM ({RESEARCH_USE_ONLY})")
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = "CHEST"  # unpaired: General Series' Laterality (type 2C) is then rightly absent
    return in_source_study(sc, source)


def result_objects(source: bytes | Path | Dataset, pred: Prediction, card: ModelCard) -> list[Dataset]:
    """[SR] for an unassessed image; [SR, Parametric Map, SC of the default Grad-CAM overlay] for an assessed one."""

    ds = read_source(source)
    pictures: list[Dataset] = []
    if pred.assessed and pred.image is not None and pred.heatmap is not None:
        pictures = [heatmap_pm(ds, pred, card), overlay_sc(ds, overlay(pred.image.pixels, pred.heatmap), pred,
                                                            card.model_id)]
    return [result_sr(ds, pred, card), *pictures]


def to_bytes(ds: Dataset) -> bytes:
    """A dataset as a DICOM file's bytes: with preamble and file meta where it has a transfer syntax (every
    object built here, and received instances), else as the bare dataset."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=ds.get("file_meta") is not None and "TransferSyntaxUID" in ds.file_meta)
    return buf.getvalue()


def kind(ds: Dataset) -> str:
    """"SR", "PM" or "SC": which of the result objects `ds` is."""
    if ds.Modality == "SR":
        return "SR"
    return "PM" if ds.SOPClassUID == ParametricMapStorage else "SC"


def write_objects(objects: list[Dataset], out_dir: str | Path) -> list[Path]:
    """Each object as `<SR|PM|SC>-<SOP Instance UID>.dcm` (no patient data in the name), atomically."""
    out = Path(out_dir)
    paths = []
    for ds in objects:
        path = out / f"{kind(ds)}-{ds.SOPInstanceUID}.dcm"
        write_atomic(path, to_bytes(ds))
        paths.append(path)
    return paths
