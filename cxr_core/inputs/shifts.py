"""Realistic acquisition shifts for the stress suite: small named callables on decoded images.

Each `Shift` maps a decoded HxW float32 gray image in [0, 1] (before preprocessing, at its own
resolution) and a per-image random generator to a shifted image, at severity 1 (mild), 2 (moderate)
or 3 (severe). Sizes are relative to the image, so a 224-px and a 2,000-px film get the same shift.

`augmented_by` names the `AugmentConfig` (cxr_core.config) fields that vary the same property in training
(train/augment.py); `in_training_augmentation` says whether a given config does. The kinds that
it does not are the stress suite's generalisation test.

The "acquisition" family models how another X-ray unit, exposure or processing chain renders the
same child's film: a soft, low-contrast grey scale, scatter / veiling glare, detector unsharpness,
a vendor tone curve, and small equipment annotations in the corners. None of them is implemented by
the training augmentation, but Gaussian blur and burned-in text augmentation vary the same properties
as `unsharp` and `annotation`, so those two say so. The severities stay readable by a radiologist
(bench/stress_grid.py draws a grid to check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import cv2
import numpy as np


SEVERITIES = (1, 2, 3)
SEVERITY_NAMES = {1: "mild", 2: "moderate", 3: "severe"}


class Augmentation(Protocol):
    """What a shift asks of a training augmentation config (cxr_core.config.AugmentConfig): its overall strength;
    the fields a shift names in `augmented_by` are read by name."""

    strength: float


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    levels: tuple[float, float, float]  # the parameter at severity 1, 2, 3
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    augmented_by: tuple[str, ...] = ()
    family: str = "generic"  # "acquisition": the realistic other-unit family (held out of augmentation)

    def in_training_augmentation(self, augment: Augmentation) -> bool:
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


def _soft(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Soft, low-contrast exposure: the grey scale squeezed toward mid-grey along a log-like curve (lifted
    # blacks, dimmed whites) and stored again at 8 bits, so close levels merge as on a flat film.
    lo, hi = 0.5 * level, 1.0 - 0.35 * level
    k = 10.0 * level
    curved = np.log1p(k * g) / np.log1p(k)
    return np.round((lo + (hi - lo) * curved) * 255.0) / 255.0


def _glare(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Scatter / veiling glare: a low-frequency haze (the film blurred over a quarter of its width plus a
    # uniform veil) mixed over the film, as without a grid or with a thick patient.
    haze = cv2.GaussianBlur(g, (0, 0), 0.25 * min(g.shape)) * 0.6 + 0.4 * float(g.mean()) + 0.1
    return (1.0 - level) * g + level * haze


def _unsharp(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Detector unsharpness: a sharp core plus a long tail of spread light (a CR phosphor / screen's PSF),
    # not the narrow Gaussian the augmentation uses.
    s = _scale(g)
    core = cv2.GaussianBlur(g, (0, 0), 0.8 * level * s)
    tail = cv2.GaussianBlur(g, (0, 0), 6.0 * level * s)
    return 0.65 * core + 0.35 * tail


def _tone_curve(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # A vendor look-up table: an S-shaped curve (more mid-tone contrast, crushed ends) or a flattened one
    # (its inverse: mid-tones squeezed together), chosen per image.
    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-level * (x - 0.5)))

    lo, hi = sigmoid(np.float32(0.0)), sigmoid(np.float32(1.0))
    if rng.random() < 0.5:
        return (sigmoid(g) - lo) / (hi - lo)
    y = lo + np.clip(g, 0.0, 1.0) * (hi - lo)
    return 0.5 + np.log(y / (1.0 - y)) / level


def _annotation(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Equipment annotations in small type in 1-3 corners: kV, mAs, a clock time, a unit name.
    h, w = g.shape
    img = (g * 255).astype(np.uint8)
    font_scale = 0.3 * _scale(g) * (1.0 + 0.25 * level)
    line = max(6, int(round(30 * font_scale)))
    texts = [f"{rng.integers(55, 90)} kV", f"{rng.uniform(0.8, 4.0):.1f} mAs",
             f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}",
             f"DR{rng.integers(1, 9)} SID {rng.integers(100, 180)}"]
    corners = rng.choice(4, size=int(level), replace=False)
    for corner in corners:
        top = corner < 2
        x0 = int(0.03 * w) if corner % 2 == 0 else int(0.62 * w)
        for i, text in enumerate(texts[: 1 + int(level)]):
            y = int(0.05 * h) + (i + 1) * line if top else int(0.97 * h) - i * line
            cv2.putText(img, text, (x0, y), cv2.FONT_HERSHEY_PLAIN, font_scale * 2.2, 235, 1, cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


def _devices(g: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    # Monitoring and support devices of a sick child: ECG electrodes (bright discs) with their wires, then a
    # midline tube (endotracheal / nasogastric), then a central line. Radio-opaque, so drawn bright.
    h, w = g.shape
    s = min(h, w)
    out = g.copy()
    thick = max(1, int(round(0.008 * s)))

    def wire(p0: tuple[float, float], p1: tuple[float, float], value: float) -> None:
        bend = rng.uniform(-0.15, 0.15, 2) * s
        ts = np.linspace(0.0, 1.0, 24)[:, None]
        a, b = np.array(p0) * (w, h), np.array(p1) * (w, h)
        pts = (1 - ts) ** 2 * a + 2 * ts * (1 - ts) * ((a + b) / 2 + bend) + ts ** 2 * b
        cv2.polylines(out, [pts.round().astype(np.int32)], False, value, thick, cv2.LINE_AA)

    for _ in range(int(1 + level)):  # electrodes on the chest wall and shoulders, wires off the film
        centre = (rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.75))
        wire(centre, (rng.choice([-0.05, 1.05]), rng.uniform(0.3, 1.1)), float(rng.uniform(0.7, 0.9)))
        c = (int(centre[0] * w), int(centre[1] * h))
        cv2.circle(out, c, int(0.035 * s), 0.95, -1, cv2.LINE_AA)
        cv2.circle(out, c, int(0.015 * s), 0.75, -1, cv2.LINE_AA)
    if level >= 2:  # a tube down the midline into the trachea / stomach
        x = rng.uniform(0.46, 0.54)
        wire((x, -0.02), (x + rng.uniform(-0.04, 0.04), rng.uniform(0.45, 0.9)), 0.92)
    if level >= 3:  # a central line from the neck or arm into the upper mediastinum
        wire((rng.choice([0.05, 0.95]), rng.uniform(0.0, 0.2)), (rng.uniform(0.45, 0.55), rng.uniform(0.3, 0.4)), 0.9)
    return out


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
    Shift("devices", "ECG electrodes and wires (2 / 3 / 4), + a midline tube (2, 3), + a central line (3)",
          (1.0, 2.0, 3.0), _devices),
    Shift("soft", "soft exposure: grey scale squeezed toward mid-grey (blacks lifted 0.1 / 0.2 / 0.3, 8-bit)",
          (0.2, 0.4, 0.6), _soft, family="acquisition"),
    Shift("glare", "scatter / veiling glare: 15 % / 25 % / 35 % low-frequency haze", (0.15, 0.25, 0.35), _glare,
          family="acquisition"),
    Shift("unsharp", "detector unsharpness: sharp core + long scatter tail, x1 / x1.6 / x2.4", (1.0, 1.6, 2.4),
          _unsharp, ("blur",), family="acquisition"),
    Shift("tone_curve", "vendor look-up table: S-shaped or flattened, gain 4 / 6 / 9", (4.0, 6.0, 9.0), _tone_curve,
          family="acquisition"),
    Shift("annotation", "equipment annotations (kV, mAs, clock time) in small type in 1 / 2 / 3 corners",
          (1.0, 2.0, 3.0), _annotation, ("burned_in_text",), family="acquisition"),
)}
ACQUISITION = tuple(name for name, shift in SHIFTS.items() if shift.family == "acquisition")


def image_rng(shift: str, severity: int, index: int) -> np.random.Generator:
    """The per-image generator: the same image, shift and severity always get the same draw."""
    return np.random.default_rng([index, severity, sorted(SHIFTS).index(shift)])
