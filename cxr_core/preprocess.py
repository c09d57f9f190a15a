"""The one preprocessing path shared by training, evaluation, prediction, the OOD fit and bench.

A `Preprocess` is built from a model card's `input` block (or a training config), so every caller
feeds a model exactly what it was trained on: optional padding to square, resize to
`(size, size)`, then the intensity policy, as `(size, size, 1)` float32 in [0, 1].

Intensity policies:
- "none": pixels as decoded (models trained before the policy existed);
- "percentile": a per-image linear stretch of the 0.5th..99.5th percentiles to [0, 1]. Any
  monotone-linear rescaling of the input (an 8-bit JPEG, a DICOM stretched over its own range, a
  16-bit PNG) then gives the same model input, and exposure or window-width changes largely cancel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .imaging import load_image

INTENSITY_POLICIES = ("none", "percentile")
PERCENTILES = (0.5, 99.5)


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


@dataclass(frozen=True)
class Preprocess:
    """Decoded HxW float gray in [0, 1] -> `(size, size, 1)` float32 model input."""

    size: int
    pad: bool = False
    intensity: str = "percentile"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 16 <= self.size <= 1024:
            raise ValueError(f"size = {self.size!r}: expected an integer from 16 to 1024")
        if self.intensity not in INTENSITY_POLICIES:
            raise ValueError(f"intensity = {self.intensity!r}: expected one of {INTENSITY_POLICIES}")

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "Preprocess":
        """From a model card's `input` block; cards without an intensity policy predate it ("none")."""
        spec = card["input"]
        return cls(int(spec["image_size"]), bool(spec.get("pad_to_square", False)), spec.get("intensity", "none"))

    def card_input(self) -> dict[str, Any]:
        """The `input` block a model card stores (the inverse of `from_card`)."""
        return {"image_size": self.size, "pad_to_square": self.pad, "intensity": self.intensity,
                "channels": 1, "range": [0.0, 1.0]}

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        if gray.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
        img = resize(pad_to_square(gray) if self.pad else gray, self.size)
        if self.intensity == "percentile":
            img = stretch_percentiles(img)
        return np.clip(img, 0.0, 1.0)[..., None]

    def load(self, source: str | Path | bytes) -> np.ndarray:
        """Read a file (any supported format) straight to model input."""
        return self(load_image(source).pixels)
