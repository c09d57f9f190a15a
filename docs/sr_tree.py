"""Regenerate docs/dicom/sr_tree.txt, the TID 1500 tree the README's PACS section shows: dcmtk's `dsrdump` of the
structured report this product writes for one real training film (the first, by name, of
../shared/data/kermany-cxr-224/train/PNEUMONIA), analysed by the shipped model at its own threshold. The film is
wrapped in a DX header with fixed UIDs and no real patient, so the tree is the same on every run.

    python docs/sr_tree.py          # rewrite docs/dicom/sr_tree.txt (then: python docs/update_readme.py)
    python docs/sr_tree.py --check  # exit 1 if the code now writes another tree (the measured numbers aside)

Needs dcmtk (`dsrdump`) and the shared training data.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TREE = ROOT / "docs" / "dicom" / "sr_tree.txt"
FILMS = ROOT.parent / "shared" / "data" / "kermany-cxr-224" / "train" / "PNEUMONIA"
DSRDUMP = ("dsrdump", "-Ph", "+Pc", "+Pt", "+Pl")  # no header (dates), all codes, template ids, whole values


def example_dicom(film: Path) -> bytes:
    """The film as a DX chest PA image with UIDs fixed by its name and a made-up patient."""
    import cv2
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = cv2.imread(str(film), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 16
    uid = lambda what: generate_uid(entropy_srcs=["cxr docs example", film.name, what])  # noqa: E731
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid("image")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PatientName, ds.PatientID, ds.StudyDate, ds.StudyTime = "Example^Patient", "EXAMPLE-1", "20260101", "120000"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def tree() -> str:
    """dsrdump's tree of the report the shipped model's result makes for the example film."""
    from cxr_core.dicom.results import to_bytes
    from cxr_core.dicom.source import read_source
    from cxr_core.dicom.sr import result_sr
    from cxr_core.model.predict import Predictor
    from cxr_core.model.registry import Registry

    if not shutil.which(DSRDUMP[0]):
        raise SystemExit("dsrdump is not installed (Debian: apt-get install dcmtk).")
    films = sorted(FILMS.glob("*.jpeg")) if FILMS.is_dir() else []
    if not films:
        raise SystemExit(f"No training films under {FILMS}.")
    data = example_dicom(films[0])
    predictor = Predictor(Registry(ROOT / "assets" / "models").active().path)
    pred = predictor.predict(data, name="example.dcm")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sr.dcm"
        path.write_bytes(to_bytes(result_sr(read_source(data), pred, predictor.card)))
        out = subprocess.run([*DSRDUMP, str(path)], capture_output=True, text=True, check=True, timeout=60).stdout
    return out.strip("\n") + "\n"


def unmeasured(text: str) -> str:
    """The tree with the model's measured numbers blanked (a CPU's last digit may differ), for --check."""
    return re.sub(r'(<contains NUM:\([^)]*\)=)"[^"]*"', r'\1"#"', text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    new = tree()
    if args.check:
        same = TREE.is_file() and unmeasured(TREE.read_text()) == unmeasured(new)
        print(f"{TREE.relative_to(ROOT)} is up to date." if same else
              f"{TREE.relative_to(ROOT)} is out of date: run python docs/sr_tree.py, then python docs/update_readme.py")
        return 0 if same else 1
    TREE.parent.mkdir(exist_ok=True)
    TREE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
