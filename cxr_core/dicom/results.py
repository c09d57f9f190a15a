"""Results out as DICOM, for the source image's study, as the IHE AI Results (AIR) profile sends them: one module
per object, each with one public builder, as highdicom lays them out:

- `sr.result_sr`: the TID 1500 Measurement Report (Comprehensive SR);
- `pm.heatmap_pm`: the Grad-CAM heatmap as a Parametric Map;
- `sc.overlay_sc`: the overlay as a Secondary Capture with the decision burned in;
- `codes`: the codes they use; `source`: what each takes from the source image (header, study, identities).

`result_objects` is what every surface sends (the Viewer's downloads, `export-dicom`, PACS, the listener), and
`file_name` how each names the files: the same objects, byte for byte, for the same case.
"""

from __future__ import annotations

import io
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ParametricMapStorage

from ..fileio import write_atomic
from ..model.card import ModelCard
from ..model.predict import Prediction
from .pm import heatmap_pm
from .sc import overlay_sc
from .source import read_source, result_uid
from .sr import result_sr

KINDS = ("SR", "PM", "SC")  # the result objects, in the order result_objects builds them


def result_kinds(pred: Prediction) -> tuple[str, ...]:
    """The objects a prediction gets: the SR always; the map and the capture for an assessed image only."""
    return KINDS if pred.assessed and pred.image is not None and pred.heatmap is not None else ("SR",)


def result_object(source: Dataset, pred: Prediction, card: ModelCard, which: str) -> Dataset:
    """One result object ("SR", "PM" or "SC") of `pred` in the study of `source` (a `read_source` header)."""
    if which == "SR":
        return result_sr(source, pred, card)
    if which == "PM":
        return heatmap_pm(source, pred, card)
    if which == "SC":
        return overlay_sc(source, pred, card.model_id)
    raise ValueError(f"unknown result kind {which!r}: expected one of {KINDS}")


def result_objects(source: bytes | Path | Dataset, pred: Prediction, card: ModelCard) -> list[Dataset]:
    """[SR] for an unassessed image; [SR, Parametric Map, SC of the default Grad-CAM overlay] for an assessed one."""
    ds = read_source(source)
    return [result_object(ds, pred, card, which) for which in result_kinds(pred)]


def planned_file_name(source_sop_uid: str, model_id: str, which: str) -> str:
    """`file_name` of a result object before it is built (its SOP Instance UID is derived, `result_uid`)."""
    return f"{which}-{result_uid(source_sop_uid, model_id, which)}.dcm"


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


def file_name(ds: Dataset) -> str:
    """How every surface names a result object's file: `<SR|PM|SC>-<SOP Instance UID>.dcm` (no patient data)."""
    return f"{kind(ds)}-{ds.SOPInstanceUID}.dcm"


def write_objects(objects: list[Dataset], out_dir: str | Path) -> list[Path]:
    """Each object as its `file_name`, atomically."""
    out = Path(out_dir)
    paths = []
    for ds in objects:
        path = out / file_name(ds)
        write_atomic(path, to_bytes(ds))
        paths.append(path)
    return paths
