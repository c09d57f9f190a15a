"""The one preprocessing path shared by training, evaluation, prediction, the OOD fit and bench.

A `Preprocess` is built from a model card's `input` block (or a training config), so every caller
feeds a model exactly what it was trained on: optional padding to square, resize to
`(size, size)`, then the intensity policy, as `(size, size, 1)` float32 in [0, 1].

Intensity policies:
- "none": pixels as decoded (models trained before the policy existed);
- "percentile": a per-image linear stretch of the 0.5th..99.5th percentiles to [0, 1]. Any
  monotone-linear rescaling of the input (an 8-bit JPEG, a DICOM stretched over its own range, a
  16-bit PNG) then gives the same model input, and exposure or window-width changes largely cancel.
- "equalize": per-image histogram equalisation (each pixel becomes its rank, in [0, 1]). Any strictly
  increasing tone curve (a vendor look-up table, a soft or flattened grey scale, gamma) keeps every
  pixel's rank, so a film and its re-toned copy give the same model input up to 8-bit quantisation.
- "clahe": the percentile stretch, then contrast-limited adaptive equalisation (OpenCV CLAHE, clip 2,
  8 x 8 tiles): evens out local contrast as well, but does not cancel a tone curve exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from .imaging import load_image

INTENSITY_POLICIES = ("none", "percentile", "equalize", "clahe")
PERCENTILES = (0.5, 99.5)
IMAGE_SIZES = (16, 1024)  # the model input sizes a config or a card may ask for (inclusive)


def pad_to_square(gray: np.ndarray) -> np.ndarray:
    """Centre the image on a black square canvas (keeps the aspect ratio)."""
    h, w = gray.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(gray, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing), linear when enlarging."""
    interp = cv2.INTER_AREA if min(gray.shape) > size else cv2.INTER_LINEAR
    return cv2.resize(gray.astype(np.float32), (size, size), interpolation=interp)


def stretch_percentiles(gray: np.ndarray, low: float = PERCENTILES[0], high: float = PERCENTILES[1]) -> np.ndarray:
    """Linear stretch of the [low, high] percentiles to [0, 1] (a flat image stays flat at 0)."""
    lo, hi = np.percentile(gray, [low, high])
    if hi - lo < 1e-6:
        return np.zeros_like(gray, dtype=np.float32)
    return ((gray - lo) / (hi - lo)).astype(np.float32)


def equalize(gray: np.ndarray) -> np.ndarray:
    """Histogram equalisation on the float pixels: each value -> the mid-rank of its level, in [0, 1].

    Ties share one value, so an 8-bit film and the same film through any strictly increasing curve map to
    the same output wherever the curve keeps its levels apart (a flat image stays flat at 0)."""
    values, inverse, counts = np.unique(np.asarray(gray, np.float32), return_inverse=True, return_counts=True)
    if len(values) < 2:
        return np.zeros_like(gray, dtype=np.float32)
    mid_rank = np.cumsum(counts) - 0.5 * counts
    return (mid_rank / gray.size).astype(np.float32)[inverse.reshape(gray.shape)]


def clahe(gray: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Percentile stretch, then OpenCV's CLAHE on 16-bit levels, back to [0, 1]."""
    levels = (np.clip(stretch_percentiles(gray), 0.0, 1.0) * 65535).round().astype(np.uint16)
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(levels).astype(np.float32) / 65535.0


_INTENSITY = {"none": lambda img: img, "percentile": stretch_percentiles, "equalize": equalize, "clahe": clahe}


@dataclass(frozen=True)
class Preprocess:
    """Decoded HxW float gray in [0, 1] -> `(size, size, 1)` float32 model input."""

    size: int
    pad: bool = False
    intensity: str = "percentile"

    def __post_init__(self) -> None:
        low, high = IMAGE_SIZES
        if not isinstance(self.size, int) or not low <= self.size <= high:
            raise ValueError(f"size = {self.size!r}: expected an integer from {low} to {high}")
        if self.intensity not in INTENSITY_POLICIES:
            raise ValueError(f"intensity = {self.intensity!r}: expected one of {INTENSITY_POLICIES}")

    @classmethod
    def from_card_input(cls, spec: Mapping[str, Any]) -> "Preprocess":
        """From a model card's `input` block (ModelCard.preprocess); cards without an intensity policy predate it
        ("none")."""
        return cls(int(spec["image_size"]), bool(spec.get("pad_to_square", False)), spec.get("intensity", "none"))

    def card_input(self) -> dict[str, Any]:
        """The `input` block a model card stores (the inverse of `from_card_input`)."""
        return {"image_size": self.size, "pad_to_square": self.pad, "intensity": self.intensity,
                "channels": 1, "range": [0.0, 1.0]}

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        if gray.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
        img = resize(pad_to_square(gray) if self.pad else gray, self.size)
        img = _INTENSITY[self.intensity](img)
        return np.clip(img, 0.0, 1.0)[..., None]

    def load(self, source: str | Path | bytes) -> np.ndarray:
        """Read a file (any supported format) straight to model input."""
        return self(load_image(source).pixels)
