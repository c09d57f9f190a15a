"""Does an evaluation folder overlap the model's training data? Figures on seen images flatter.

Two checks: the folder's data fingerprint equals the card's (the very same folder), and pixel hashes:
the SHA-256 of an image's decoded 8-bit pixels, so a training JPEG re-saved as PNG (a case exported from
the worklist) still matches. `training_hashes.txt` beside the model lists its training images' hashes;
`python -m cxr_core fit-ood` writes it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..fileio import write_atomic
from ..inputs.imaging import load_image

HASH_CHARS = 16  # 64 bits: collisions are negligible for datasets of this size


def pixel_hash(pixels: np.ndarray) -> str:
    """The hash of an image's decoded pixels at 8 bits (the same for a JPEG and its lossless PNG copy)."""
    arr = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()[:HASH_CHARS]


def write_training_hashes(hashes_file: Path, paths: Iterable[str | Path]) -> int:
    """Hash every training image into the model folder's hash list (ModelFolder.hashes_file); the number written."""
    hashes = sorted({pixel_hash(load_image(p).pixels) for p in paths})
    write_atomic(hashes_file, ("\n".join(hashes) + "\n").encode())
    return len(hashes)


def training_hashes(path: Path) -> set[str] | None:
    """The hash list of a model folder (ModelFolder.hashes_file); None when it has none."""
    return set(path.read_text().split()) if path.is_file() else None


def overlap_report(training_fingerprint: str | None, hashes_file: Path, data_fingerprint: str,
                   hashes: list[str]) -> dict[str, Any]:
    """{same_folder, images_in_training (None when the model has no hash list), warning (None when clean)}."""
    same = data_fingerprint == training_fingerprint
    known = training_hashes(hashes_file)
    seen = None if known is None else sum(h in known for h in hashes)
    warning = None
    if same:
        warning = "This folder is the model's own training data: these figures are not an independent evaluation."
    elif seen:
        warning = (f"{seen} of {len(hashes)} images are in the model's training data: these figures flatter the model; "
                   "evaluate on images it has never seen.")
    return {"same_folder": same, "images_in_training": seen, "warning": warning}
