"""Read any supported input (JPEG, PNG, DICOM; by content, never by extension) into one form:
a 2-D float32 grayscale array in [0, 1], plus non-identifying metadata and warnings.

Every failure is an `InputImageError` with a sentence a clinician can read. The pixel count is
checked from the header before any decoding, so a decompression bomb never allocates.
"""

from __future__ import annotations

import io
import re
import warnings as _warnings
from datetime import date
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputImageError, plain_cause
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000  # ~7000 x 7000; larger than any radiograph detector
MAX_BYTES = 200 * 1024 * 1024
MIN_SIDE = 64  # below this a file cannot be a usable radiograph
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".dicom")

# DICOM tags shown to the user, and the identifying ones kept apart (never exported or logged).
DICOM_DISPLAY_TAGS = ("Modality", "SOPClassUID", "ViewPosition", "BodyPartExamined", "StudyDate",
                      "PhotometricInterpretation", "Manufacturer", "Rows", "Columns",
                      "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")  # the UIDs: for the case store and PACS
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
DICOM_IDENTIFYING_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                          "AccessionNumber", "InstitutionName", "ReferringPhysicianName", "OtherPatientIDs")


@dataclass
class LoadedImage:
    """A decoded input. `pixels` is HxW float32 in [0, 1], 0 = black (air), MONOCHROME2 sense."""

    pixels: np.ndarray
    format: str  # "JPEG", "PNG", "DICOM", ...
    metadata: dict[str, Any] = field(default_factory=dict)  # safe to show and export
    identifiers: dict[str, str] = field(default_factory=dict)  # DICOM patient tags: display only
    warnings: list[str] = field(default_factory=list)


def sniff_format(data: bytes) -> str | None:
    """Return "DICOM", "PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP" from magic bytes, else None."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    for magic, name in ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
                        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP")):
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if _looks_like_bare_dicom_start(data) and _looks_like_raw_dicom(data):
        return "DICOM"
    return None


def _looks_like_bare_dicom_start(data: bytes) -> bool:
    """Whether the bytes may open a DICOM dataset written without preamble: a little-endian data element of an
    even group below 0x0030 (file meta, identification, patient, acquisition...)."""
    if len(data) < 8:
        return False
    group = int.from_bytes(data[:2], "little")
    return group % 2 == 0 and group < 0x0030


def load_image(source: str | Path | bytes) -> LoadedImage:
    """Load a path or raw bytes. Raises InputImageError (only) for anything unreadable."""
    data = _read_bytes(source)
    if not data:
        raise InputImageError("The file is empty (0 bytes).")
    if len(data) > MAX_BYTES:
        raise InputImageError(f"The file is too large ({len(data) / 1e6:.0f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB).")
    kind = sniff_format(data)
    if kind is None:
        raise InputImageError("The file is not an image this tool can read (JPEG, PNG or DICOM expected).")
    try:
        image = _load_dicom(data) if kind == "DICOM" else _load_raster(data, kind)
    except InputImageError:
        raise
    except MemoryError:
        raise InputImageError("The image is too large to decode in memory.") from None
    except Exception as exc:  # any decoder failure on hostile bytes becomes our own error
        raise InputImageError(f"The {kind} file is damaged or truncated and cannot be decoded ({plain_cause(exc)}).") from None
    _check_usable(image)
    return image

# --------------------------------------------------------------------------------------------
def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputImageError(f"The file is too large ({path.stat().st_size / 1e6:.0f} MB).")
        return path.read_bytes()
    except IsADirectoryError:
        raise InputImageError("This is a folder, not an image file.") from None
    except FileNotFoundError:
        raise InputImageError("The file does not exist.") from None
    except PermissionError:
        raise InputImageError("The file cannot be read (permission denied).") from None
    except OSError as exc:
        raise InputImageError(f"The file cannot be read ({plain_cause(exc)}).") from None


def dicom_age_years(patient_age: str | None, birth_date: str | None, study_date: str | None) -> float | None:
    """Age in years from DICOM PatientAge ("034Y", "010M", "003W", "020D"), else from the birth and study
    dates (YYYYMMDD); None when neither gives a plausible age."""
    m = _AGE_RE.match(patient_age or "")
    if m:
        return int(m.group(1)) * _UNIT_YEARS[m.group(2).upper()]
    try:
        born = date(int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:8]))  # type: ignore[index]
        seen = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    years = (seen - born).days / 365.25
    return years if 0 <= years < 130 else None


def _check_pixel_count(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InputImageError("The image has no pixels.")
    if width * height > MAX_PIXELS:
        raise InputImageError(
            f"The image is {width} x {height} pixels, larger than any radiograph ({MAX_PIXELS / 1e6:.0f} megapixels at most); "
            "it was not decoded (it may be a decompression bomb)."
        )


def _load_raster(data: bytes, kind: str) -> LoadedImage:
    if kind not in ("PNG", "JPEG"):
        raise InputImageError(f"{kind} images are not supported; export the radiograph as PNG, JPEG or DICOM.")
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise InputImageError("The image header claims an enormous size; it was not decoded (it may be a "
                                  "decompression bomb).") from None
        _check_pixel_count(*img.size)  # header only: nothing decoded yet
        warnings: list[str] = []
        if getattr(img, "n_frames", 1) > 1:
            warnings.append(f"Animated image with {img.n_frames} frames: only the first frame was analysed.")
        img.load()
        img = ImageOps.exif_transpose(img) or img
        pixels = _pil_to_gray(img, warnings)
    return LoadedImage(pixels=pixels, format=kind, metadata={"width": pixels.shape[1], "height": pixels.shape[0],
                                                             "mode": img.mode, "colourfulness": colourfulness(img)},
                       warnings=warnings)


def _pil_to_gray(img: Any, warnings: list[str]) -> np.ndarray:
    """Any PIL mode to float32 gray in [0, 1]. 8-bit scales by 255; deeper data by its own range."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        return _rescale(arr, warnings)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = _pil().new("RGBA", img.size, (0, 0, 0, 255))
        img = _pil().alpha_composite(background, img)
    if mode == "CMYK":
        img = img.convert("RGB")
    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return gray


def colourfulness(img: Any) -> float:
    """Mean channel disagreement in [0, 1] of a PIL image (0 for gray content, even stored as RGB)."""
    if img.mode not in ("RGB", "RGBA", "CMYK", "P", "YCbCr"):
        return 0.0
    small = img.convert("RGB")
    small.thumbnail((128, 128))
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    return float(np.mean(np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])) / 2)


def _pil() -> Any:
    return Image


def _rescale(arr: np.ndarray, warnings: list[str]) -> np.ndarray:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InputImageError("The image contains invalid (non-finite) pixel values.")
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def _looks_like_raw_dicom(data: bytes) -> bool:
    """DICOM without the 128-byte preamble: try a header-only parse."""
    try:
        import pydicom  # lazy: heavy

        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        return "SOPClassUID" in ds or "Modality" in ds
    except Exception:
        return False


def _load_dicom(data: bytes) -> LoadedImage:
    import pydicom  # lazy: heavy
    from pydicom.pixels import apply_modality_lut, apply_voi_lut  # lazy: heavy

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:
        raise InputImageError("The DICOM file is damaged and its header cannot be read.") from None
    _ensure_transfer_syntax(ds)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputImageError("The DICOM file contains no image (no pixel data): it may be a report or structured document.")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_pixel_count(cols, rows)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames * rows * cols > 4 * MAX_PIXELS:
        raise InputImageError(f"The DICOM file holds {frames} frames of {cols} x {rows}: too large to decode.")
    warnings: list[str] = []
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise InputImageError(_dicom_decode_message(ds, exc)) from None
    if frames > 1 or arr.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        warnings.append(f"Multi-frame DICOM ({frames} frames): only the first frame was analysed.")
        arr = arr[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if arr.ndim == 3:  # colour DICOM (RGB / YBR already converted to RGB by pydicom)
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        values = _rescale(arr, warnings)
    else:
        values = apply_modality_lut(arr, ds)
        has_window = "WindowCenter" in ds and "WindowWidth" in ds or "VOILUTSequence" in ds
        if has_window:
            values = apply_voi_lut(values, ds, index=0)
        else:
            warnings.append("DICOM without a display window (VOI LUT): the full pixel range was used.")
        values = _rescale(np.asarray(values, dtype=np.float64), warnings)
        if photometric == "MONOCHROME1":  # 0 = white: invert to the usual sense
            values = 1.0 - values
    metadata = {tag: str(ds.get(tag)) for tag in DICOM_DISPLAY_TAGS if tag in ds and ds.get(tag) not in (None, "")}
    identifiers = {tag: str(ds.get(tag)) for tag in DICOM_IDENTIFYING_TAGS if tag in ds and str(ds.get(tag))}
    age = dicom_age_years(str(ds.get("PatientAge", "") or ""), str(ds.get("PatientBirthDate", "") or ""),
                          str(ds.get("StudyDate", "") or ""))
    if age is not None:  # not an identifier below 90 (HIPAA Safe Harbor); capped above
        metadata["age_years"] = round(min(age, 90.0), 1)
    return LoadedImage(pixels=values.astype(np.float32), format="DICOM", metadata=metadata,
                       identifiers=identifiers, warnings=warnings)


def _ensure_transfer_syntax(ds: Any) -> None:
    """A dataset written without file meta (no preamble, no transfer syntax): take the encoding the
    parser detected, so that its pixels decode (uncompressed data only)."""
    from pydicom.dataset import FileMetaDataset  # lazy: heavy
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian  # lazy: heavy

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    ds.file_meta = meta if meta is not None else FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian) if little \
        else ExplicitVRBigEndian


def _dicom_decode_message(ds: Any, exc: Exception) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(syntax, "name", str(syntax)) if syntax else "unknown"
    text = str(exc)
    if "plugin" in text.lower() or "missing required dependencies" in text.lower() or "no pixel data handler" in text.lower():
        return (f"The DICOM pixel data is compressed ({name}) and no installed decoder can read it. "
                "Install pylibjpeg with pylibjpeg-libjpeg (JPEG) and pylibjpeg-openjpeg (JPEG 2000).")
    return f"The DICOM pixel data ({name}) is damaged or inconsistent with its header and cannot be decoded."


def _check_usable(image: LoadedImage) -> None:
    h, w = image.pixels.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputImageError(f"The image is only {w} x {h} pixels: too small to be a radiograph (at least {MIN_SIDE} px per side).")
    ratio = max(h, w) / min(h, w)
    if ratio > 3.0:
        image.warnings.append(f"Unusual shape ({w} x {h}, aspect ratio {ratio:.1f}): not the shape of a chest radiograph.")
