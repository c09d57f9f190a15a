"""What the Viewer's film component is sent (cxr_app.radiograph.film_data): the film at most DISPLAY_MAX px on the
long side, its grey values deep enough for window/level, and the evidence overlay that blends as the PDF's does."""

from __future__ import annotations

import base64
import zlib

import cv2
import numpy as np
import pytest

from cxr_app.radiograph import DISPLAY_MAX, film_data, window
from cxr_core.model.gradcam import overlay


def _grey(sent: dict) -> np.ndarray:
    values = np.frombuffer(zlib.decompress(base64.b64decode(sent["grey"])), dtype="<u2")
    return values.reshape(sent["height"], sent["width"]) / 65535


def _png(uri: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)


def test_a_large_film_is_sent_at_most_display_max_with_16_bit_grey_values():
    pixels = np.random.default_rng(0).random((2000, 1000), dtype=np.float32)
    sent = film_data(pixels, None)
    assert (sent["height"], sent["width"]) == (DISPLAY_MAX, DISPLAY_MAX // 2)
    shown = cv2.resize(pixels, (sent["width"], sent["height"]), interpolation=cv2.INTER_AREA)
    assert np.abs(_grey(sent) - shown).max() <= 0.5 / 65535 + 1e-6  # finer than 8 bits: window/level keeps detail
    assert sent["overlay"] is None and sent["legend"] is None


def test_a_small_film_keeps_its_size():
    sent = film_data(np.zeros((224, 200), np.float32), None)
    assert (sent["height"], sent["width"]) == (224, 200)


def test_the_overlay_over_the_film_blends_as_the_pdfs_overlay():
    rng = np.random.default_rng(1)
    pixels = rng.random((224, 224), dtype=np.float32)
    heat = rng.random((7, 7)).astype(np.float32)
    sent = film_data(pixels, heat, opacity=0.6, colormap="jet")
    bgra = _png(sent["overlay"]).astype(float)
    assert bgra.shape == (224, 224, 4)
    alpha = bgra[..., 3:] / 255
    film = np.repeat((pixels * 255).astype(np.uint8)[..., None], 3, axis=2)
    on_screen = bgra[..., 2::-1] * alpha + film * (1 - alpha)  # the browser's source-over, in RGB
    assert np.abs(on_screen - overlay(pixels, heat, alpha=0.6, colormap="jet")).max() <= 2
    assert len(sent["legend"]) == 11 and sent["legend"][0].endswith(",0.00)") and sent["legend"][-1].endswith(",1.00)")


def test_an_unknown_colour_map_is_refused():
    with pytest.raises(ValueError, match="colormap"):
        film_data(np.zeros((64, 64), np.float32), np.zeros((7, 7), np.float32), colormap="rainbow")


def test_window_level_maps_the_width_around_the_level_to_black_white():
    assert window(np.array([0.2, 0.5, 0.8]), 0.5, 0.4).tolist() == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(ValueError):
        window(np.zeros(1), 0.5, 0.0)
