"""Realistic acquisition shifts for the stress suite: small named callables on decoded images.

Each `Shift` maps a decoded HxW float32 gray image in [0, 1] (before preprocessing, at its own
resolution) and a per-image random generator to a shifted image, at severity 1 (mild), 2 (moderate)
or 3 (severe). Sizes are relative to the image, so a 224-px and a 2,000-px film get the same shift.

`augmented_by` names the `AugmentConfig` fields that vary the same property in training
(cxr_core.augment); `in_training_augmentation` says whether a given config does. The kinds that
it does not are the stress suite's generalisation test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .config import AugmentConfig

SEVERITIES = (1, 2, 3)
SEVERITY_NAMES = {1: "mild", 2: "moderate", 3: "severe"}


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    levels: tuple[float, float, float]  # the parameter at severity 1, 2, 3
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    augmented_by: tuple[str, ...] = ()

    def in_training_augmentation(self, augment: AugmentConfig) -> bool:
        """Whether training with `augment` varies this property."""
        return augment.strength > 0 and any(getattr(augment, f) > 0 for f in self.augmented_by)

    def __call__(self, gray: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        if severity not in SEVERITIES:
            raise ValueError(f"severity = {severity!r}: expected one of {SEVERITIES}")
        out = self.apply(np.asarray(gray, np.float32), self.levels[severity - 1], rng)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def _scale(gray: np.ndarray) -> float:
    return min(gray.shape) / 224.0


def _gamma(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Under- or over-exposure: gamma level or 1/level, chosen per image.
    return np.power(g, level if rng.random() < 0.5 else 1.0 / level)


def _window(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # A narrower or wider display window around a shifted centre.
    centre = 0.5 + rng.uniform(-0.1, 0.1) * level
    width = 1.0 / (1.0 + level) if rng.random() < 0.5 else 1.0 + level
    return (g - centre) / width + 0.5


def _blur(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(g, (0, 0), level * _scale(g))


def _sharpen(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Unsharp masking, as detector post-processing ("edge enhancement") does.
    soft = cv2.GaussianBlur(g, (0, 0), 2.0 * _scale(g))
    return g + level * (g - soft)


def _noise(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Quantum-like noise: stronger in darker (lower-dose) regions.
    return g + rng.standard_normal(g.shape).astype(np.float32) * level * (1.2 - 0.4 * g)


def _low_resolution(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    h, w = g.shape
    side = max(8, int(round(min(h, w) * level)))
    small = cv2.resize(g, (max(8, int(round(w * side / min(h, w)))), max(8, int(round(h * side / min(h, w))))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", (g * 255).round().astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(level)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def _geometry(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Small rotation (degrees = 5 x level), scale and off-centre crop, filled with black.
    h, w = g.shape
    angle = rng.uniform(-5, 5) * level
    scale = 1.0 + rng.uniform(-0.08, 0.12) * level
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * level * np.array([w, h])
    return cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _border(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Collimation: black (or white, as some exports are) bands on two or more sides.
    h, w = g.shape
    out = g.copy()
    value = 0.0 if rng.random() < 0.7 else 1.0
    for side in rng.choice(4, size=int(rng.integers(2, 5)), replace=False):
        k = int(level * (h if side < 2 else w) * rng.uniform(0.6, 1.0))
        if side == 0:
            out[:k] = value
        elif side == 1:
            out[h - k:] = value
        elif side == 2:
            out[:, :k] = value
        else:
            out[:, w - k:] = value
    return out


def _text(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Burned-in annotations: a side marker and lines of text near the edges, as exported films carry.
    h, w = g.shape
    img = (g * 255).astype(np.uint8)
    font_scale = level * _scale(g)
    thickness = max(1, int(round(font_scale * 2)))
    y_top, y_bottom = int(0.1 * h), int(0.95 * h)
    cv2.putText(img, "L" if rng.random() < 0.5 else "R", (int(0.05 * w), y_top), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale * 1.5, 255, thickness + 1)
    for i in range(int(level * 2)):
        x = int(rng.uniform(0.05, 0.4) * w)
        y = y_bottom - i * int(25 * font_scale) if rng.random() < 0.5 else y_top + (i + 1) * int(25 * font_scale)
        cv2.putText(img, f"PORTABLE AP {rng.integers(10, 99)}:{rng.integers(10, 59)}", (x, y),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale * 0.6, 255, thickness)
    return img.astype(np.float32) / 255.0


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("gamma", "exposure: gamma 1.15 / 1.35 / 1.6, or its inverse", (1.15, 1.35, 1.6), _gamma),
    Shift("window", "contrast: window width x/÷ 1.25 / 1.5 / 2, centre moved", (0.25, 0.5, 1.0), _window,
          ("contrast", "brightness")),
    Shift("blur", "Gaussian blur, sigma 0.7 / 1.4 / 2.5 px at 224 px", (0.7, 1.4, 2.5), _blur, ("blur",)),
    Shift("sharpen", "edge enhancement (unsharp mask), amount 0.5 / 1 / 2", (0.5, 1.0, 2.0), _sharpen),
    Shift("noise", "dose noise, std 0.02 / 0.04 / 0.08", (0.02, 0.04, 0.08), _noise),
    Shift("low_resolution", "resampled through 60 % / 40 % / 25 % of the resolution", (0.6, 0.4, 0.25), _low_resolution),
    Shift("jpeg", "JPEG re-compression, quality 40 / 20 / 10", (40, 20, 10), _jpeg),
    Shift("geometry", "rotation up to 5 / 10 / 15 degrees, scale and off-centre crop", (1.0, 2.0, 3.0), _geometry,
          ("rotation", "translate", "zoom")),
    Shift("border", "collimation bands on 2-4 sides, up to 5 % / 10 % / 18 % each", (0.05, 0.10, 0.18), _border,
          ("borders",)),
    Shift("text", "burned-in side marker and annotation lines", (0.5, 0.8, 1.2), _text, ("burned_in_text",)),
)}


def image_rng(shift: str, severity: int, index: int) -> np.random.Generator:
    """The per-image generator: the same image, shift and severity always get the same draw."""
    return np.random.default_rng([index, severity, sorted(SHIFTS).index(shift)])
