"""The one preprocessing path shared by training, prediction and the app.

`to_model_input` turns any decoded grayscale array into what every model takes: a
`(size, size, 1)` float32 array in [0, 1]. Training, the CLI and the app all call it, so a
change here changes all three together.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .imaging import load_image


def pad_to_square(gray: np.ndarray) -> np.ndarray:
    """Centre the image on a black square canvas (keeps the aspect ratio)."""
    h, w = gray.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=gray.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = gray
    return out


def to_model_input(gray: np.ndarray, size: int, pad: bool = False) -> np.ndarray:
    """Resize a HxW float [0,1] image to `(size, size, 1)` float32; optionally pad to square first.

    Area interpolation when shrinking (no aliasing), linear when enlarging.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    img = pad_to_square(gray) if pad else gray
    interp = cv2.INTER_AREA if min(img.shape) > size else cv2.INTER_LINEAR
    resized = cv2.resize(img.astype(np.float32), (size, size), interpolation=interp)
    return np.clip(resized, 0.0, 1.0)[..., None]


def load_for_model(path: str | Path | bytes, size: int, pad: bool = False) -> np.ndarray:
    """Read a file (any supported format) straight to model input."""
    return to_model_input(load_image(path).pixels, size, pad)
