"""The Viewer's radiograph as the browser gets it (pixels only, no identifier): the film's grey values, deep enough
for window/level there, and the Grad-CAM evidence as a colour image with the legend of its colours. The film
component (cxr_app/film_component.py) draws them and does window/level, zoom and pan in the browser."""

from __future__ import annotations

import base64
import zlib

import cv2
import numpy as np

from cxr_core.model.gradcam import COLORMAPS, upsample

DISPLAY_MAX = 768  # pixels on the long side sent to the browser: enough on screen, light on the wire
GREY_LEVELS = 65535  # the film's grey values are sent as 16-bit integers
LEGEND_STOPS = 11  # colours of the legend's gradient, from no evidence to strong


def window(pixels: np.ndarray, level: float, width: float) -> np.ndarray:
    """Window/level on [0, 1] pixels: `level` is the centre, `width` the range mapped to black..white. The film
    component's JavaScript applies this rule in the browser; the browser tests check that it does."""
    if not 0.0 < width <= 1.0:
        raise ValueError(f"window width {width!r} must be in (0, 1]")
    low = level - width / 2
    return np.clip((pixels - low) / width, 0.0, 1.0)


def _display_size(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    scale = min(1.0, DISPLAY_MAX / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def png_data_uri(image: np.ndarray) -> str:
    """An 8-bit image (grey, BGR or BGRA) as a PNG data URI."""
    ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("the image could not be encoded for display")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def grey_values(pixels: np.ndarray) -> str:
    """[0, 1] pixels as 16-bit little-endian integers, deflated (zlib) and base64-encoded. Window/level runs in the
    browser on these values: an 8-bit PNG (or any PNG, which a canvas decodes to 8 bits) would leave a narrow window
    on a 12-bit DICOM film a few grey steps, banded. Deflate keeps them small on the wire, and browsers inflate it
    natively (DecompressionStream), with no library."""
    values = (np.clip(pixels, 0.0, 1.0) * GREY_LEVELS).round().astype("<u2")
    return base64.b64encode(zlib.compress(values.tobytes(), 1)).decode("ascii")


def overlay_rgba(heatmap: np.ndarray, shape: tuple[int, int], opacity: float, colormap: str) -> np.ndarray:
    """The Grad-CAM map as a BGRA image of `shape` (height, width) on the fixed 0..1 scale: the colour map's
    colour, its alpha `opacity` x the evidence, so no evidence leaves the film untinted. Drawn over the film it
    blends as the PDF's overlay does (cxr_core.model.gradcam.overlay)."""
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap {colormap!r} is not one of {sorted(COLORMAPS)}")
    heat = upsample(heatmap, shape)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), COLORMAPS[colormap])  # as the PDF indexes it
    alpha = (heat * opacity * 255).round().astype(np.uint8)
    return np.dstack([colour, alpha])


def legend(colormap: str) -> list[str]:
    """The legend's gradient, from no evidence (transparent) to strong (opaque), as CSS colours."""
    values = np.linspace(0.0, 1.0, LEGEND_STOPS)
    bgr = cv2.applyColorMap((values * 255).round().astype(np.uint8)[:, None], COLORMAPS[colormap])[:, 0]
    return [f"rgba({r},{g},{b},{v:.2f})" for (b, g, r), v in zip(bgr.tolist(), values)]


def film_data(pixels: np.ndarray, heatmap: np.ndarray | None, opacity: float = 0.5,
              colormap: str = "inferno") -> dict:
    """What the film component is sent for one film: its size (at most DISPLAY_MAX on the long side), its grey
    values (grey_values) and, when `heatmap` is given, the evidence overlay (a PNG data URI) and its legend."""
    h, w = _display_size(pixels.shape[:2])
    shown = cv2.resize(pixels.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    data: dict = {"width": w, "height": h, "grey": grey_values(shown), "overlay": None, "legend": None}
    if heatmap is not None:
        data["overlay"] = png_data_uri(overlay_rgba(heatmap, (h, w), opacity, colormap))
        data["legend"] = legend(colormap)
    return data
