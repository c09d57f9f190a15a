"""What every result object takes from its source image: its header (`read_source`), its study-level attributes
(`in_source_study`), and identities derived from it and the model (`result_uid`, `device_uid`): the result of one
model on one image has one identity, so sending it again replaces it on the PACS instead of adding a duplicate."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from ..errors import CXRError, plain_cause
from ..safety.intended_use import RESEARCH_USE_ONLY

MANUFACTURER = f"CXR pneumonia assistant ({RESEARCH_USE_ONLY})"
# High numbers keep the AI series after the acquisition's.
SR_SERIES_NUMBER, SC_SERIES_NUMBER, PM_SERIES_NUMBER = 9901, 9902, 9903
# Patient and study attributes the results copy from the source; DICOM requires them present, even empty.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName")
# Study-level attributes every result carries exactly as its source does: a PACS's study list reads them from any of
# the study's instances, so a result without them (a Secondary Capture had no StudyDescription) blanks the study.
STUDY_ATTRIBUTES = ("StudyDescription", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                    "ReferringPhysicianName", "PatientAge", "PatientSize", "PatientWeight")


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
