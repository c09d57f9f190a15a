"""The intensity standardisation: a film and the same film through another unit's tone curve give the same
model input under "equalize" (tolerance 0.03 on a [0, 1] scale, from 8-bit quantisation and resampling)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxr_core.inputs.preprocess import INTENSITY_POLICIES, Preprocess
from cxr_core.inputs.shifts import SHIFTS, image_rng

TOLERANCE = 0.03  # |difference| of model inputs, on the [0, 1] scale


def _film(size: int = 300) -> np.ndarray:
    """An 8-bit film-like image: smooth anatomy-sized structure plus fine texture, as a JPEG stores it."""
    rng = np.random.default_rng(0)
    coarse = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), size / 12)
    fine = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.5)
    g = 0.7 * (coarse - coarse.min()) / np.ptp(coarse) + 0.3 * (fine - fine.min()) / np.ptp(fine)
    return np.round(g * 255) / 255.0


CURVES = {
    "gamma 0.6": lambda g: g ** 0.6,
    "gamma 1.6": lambda g: g ** 1.6,
    "S-shaped LUT": lambda g: SHIFTS["tone_curve"](g, 2, image_rng("tone_curve", 2, 0)),
    "flattened LUT": lambda g: SHIFTS["tone_curve"](g, 2, image_rng("tone_curve", 2, 1)),
    "soft exposure": lambda g: SHIFTS["soft"](g, 1, image_rng("soft", 1, 0)),
}


@pytest.mark.parametrize("curve", sorted(CURVES))
@pytest.mark.parametrize("size", [224, 160])
def test_equalize_gives_the_same_model_input_for_a_film_and_its_re_toned_copy(curve, size):
    film = _film()
    toned = np.round(np.clip(CURVES[curve](film), 0, 1) * 255) / 255.0  # stored again at 8 bits
    equalize, percentile = Preprocess(size, intensity="equalize"), Preprocess(size, intensity="percentile")
    diff = np.abs(equalize(film) - equalize(toned))
    assert np.percentile(diff, 99) <= TOLERANCE and diff.mean() <= TOLERANCE / 3, (curve, diff.max())
    # The linear stretch does not undo a curve: the standardisation is what removes it.
    assert np.abs(percentile(film) - percentile(toned)).mean() > diff.mean() * 3


def test_every_policy_gives_a_bounded_model_input_and_a_flat_image_stays_flat():
    film = _film(120)
    for policy in INTENSITY_POLICIES:
        x = Preprocess(64, intensity=policy)(film)
        assert x.shape == (64, 64, 1) and x.dtype == np.float32 and 0.0 <= x.min() <= x.max() <= 1.0
    assert np.all(Preprocess(64, intensity="equalize")(np.full((80, 80), 0.3, np.float32)) == 0.0)


def test_equalize_ranks_the_pixels():
    x = Preprocess(16, intensity="equalize")(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16))[..., 0]
    assert np.all(np.diff(x.ravel()) > 0) and x.min() < 0.01 and x.max() > 0.99


def test_an_unknown_policy_is_refused_quoting_it():
    with pytest.raises(ValueError, match="'hist'"):
        Preprocess(64, intensity="hist")
