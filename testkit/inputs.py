"""Builders of tiny test inputs, as bytes: every image variant the loaders must handle."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from .synthetic import phantom_cxr

SIZE = 64


def gray(seed: int = 0, size: int = SIZE) -> np.ndarray:
    return phantom_cxr(size, np.random.default_rng(seed), 0)


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_gray() -> bytes:
    return pil_bytes(Image.fromarray((gray() * 255).astype(np.uint8), "L"), "JPEG")


def jpeg_rgb() -> bytes:
    return pil_bytes(Image.fromarray((gray() * 255).astype(np.uint8), "L").convert("RGB"), "JPEG")


def jpeg_cmyk() -> bytes:
    return pil_bytes(Image.fromarray((gray() * 255).astype(np.uint8), "L").convert("CMYK"), "JPEG")


def png_gray8(seed: int = 0) -> bytes:
    return pil_bytes(Image.fromarray((gray(seed) * 255).astype(np.uint8), "L"), "PNG")


def png_gray16() -> bytes:
    arr = (gray() * 4095).astype(np.uint16)  # 12-bit data in a 16-bit container
    return pil_bytes(Image.fromarray(arr), "PNG")


def png_rgb() -> bytes:
    return pil_bytes(Image.fromarray((gray() * 255).astype(np.uint8), "L").convert("RGB"), "PNG")


def png_rgba() -> bytes:
    img = Image.fromarray((gray() * 255).astype(np.uint8), "L").convert("RGBA")
    return pil_bytes(img, "PNG")


def png_palette() -> bytes:
    return pil_bytes(Image.fromarray((gray() * 255).astype(np.uint8), "L").convert("P"), "PNG")


def jpeg_exif_rotated() -> tuple[bytes, tuple[int, int]]:
    """A 96x64 (w x h) JPEG with EXIF orientation 6 (rotate 90): loads as 64 wide, 96 high."""
    img = Image.fromarray((gray(size=96)[:64] * 255).astype(np.uint8), "L")
    exif = Image.Exif()
    exif[0x0112] = 6
    return pil_bytes(img, "JPEG", exif=exif), (96, 64)


def png_animated() -> bytes:
    frames = [Image.fromarray((gray(s) * 255).astype(np.uint8), "L") for s in range(3)]
    return pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])


def photo_like() -> bytes:
    """A colour JPEG with smooth shapes, like a photograph."""
    rng = np.random.default_rng(5)
    img = np.zeros((120, 160, 3), np.uint8)
    img[..., 0] = np.linspace(30, 220, 160)[None, :]
    img[..., 1] = np.linspace(200, 40, 120)[:, None]
    img[..., 2] = rng.integers(60, 120)
    return pil_bytes(Image.fromarray(img, "RGB"), "JPEG")


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the body is tiny): a decompression-bomb shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def dicom(photometric: str = "MONOCHROME2", window: tuple[float, float] | None = (2048.0, 4096.0), frames: int = 1,
          pixels: bool = True, slope: float = 1.0, intercept: float = 0.0, compress: str | None = None,
          patient: str = "Doe^Jane", array: np.ndarray | None = None, modality: str = "DX",
          sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1", view: str = "PA", body_part: str = "CHEST",
          age: str | None = None, file_meta: bool = True) -> bytes:
    """A minimal DICOM file (default: DX chest PA) with 12-bit pixels (or `array`, uint16) and identifying
    tags. `file_meta=False` writes the bare dataset: no preamble, no file meta (implicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = (gray() * 4095).astype(np.uint16) if array is None else np.asarray(array, np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.StudyDate = modality, body_part, view, "20240102"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient, "ID-12345", "20200101"
    if age is not None:
        ds.PatientAge = age
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "101500", "1", 1, 1
    ds.StudyDescription, ds.AccessionNumber, ds.ReferringPhysicianName = "XR CHEST PA", "ACC-778", "Ref^Doctor"
    if pixels:
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        data = np.stack([arr] * frames) if frames > 1 else arr
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = data.tobytes()
        if compress:
            ds.compress(compress, data)
    buf = io.BytesIO()
    if file_meta:
        ds.save_as(buf, enforce_file_format=True)
    else:
        from pydicom.filebase import DicomFileLike
        from pydicom.filewriter import write_dataset

        del ds.file_meta
        fp = DicomFileLike(buf)
        fp.is_little_endian, fp.is_implicit_VR = True, True  # as written without file meta
        write_dataset(fp, ds)
    return buf.getvalue()


def training_like(data_dir, i: int) -> bytes:
    """The bytes of film `i` of a Kaggle-layout folder (even: NORMAL, odd: PNEUMONIA): a film the tiny model assesses."""
    from pathlib import Path

    folder = "NORMAL" if i % 2 == 0 else "PNEUMONIA"
    return sorted((Path(data_dir) / folder).iterdir())[i // 2].read_bytes()
