"""Grad-CAM localises, and the fast CAM path equals the reference Grad-CAM."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.config import ModelConfig
from cxr_core.gradcam import cam_from_features, gradcam_reference, overlay, upsample
from cxr_core.models import has_linear_head
from cxr_core.models import build_model
from .synthetic import blob_image

SIZE = 96


@pytest.fixture(scope="module")
def blob_model():
    """A tiny CNN trained to say whether a bright blob is present (class 1) or not (class 0)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(800):
        img, _ = blob_image(SIZE, rng, with_blob=bool(i % 2))
        xs.append(img[..., None])
        ys.append(i % 2)
    model = build_model(ModelConfig(backbone="cxrnet", num_classes=2, filters=[8, 16], dropout=0.0), SIZE)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.stack(xs), np.array(ys), epochs=8, batch_size=32, verbose=0)
    return model


def peak_location(heatmap: np.ndarray, shape: tuple[int, int]) -> tuple[int, int]:
    """(row, col) of the heatmap's maximum, in the coordinates of an image of `shape`."""
    up = upsample(heatmap, shape)
    r, c = np.unravel_index(int(np.argmax(up)), up.shape)
    return int(r), int(c)


def test_heatmap_peak_falls_on_the_blob(blob_model):
    """The peak is near the blob (within a fifth of the image: a random peak lands there ~14 % of the
    time) and nearer to it than to its mirror image: the heatmap follows the blob wherever it is."""
    rng = np.random.default_rng(123)
    near, follows, trials = 0, 0, 20
    for _ in range(trials):
        img, (cy, cx) = blob_image(SIZE, rng, with_blob=True)
        assert np.asarray(blob_model(img[None, ..., None]))[0, 1] > 0.5, "the model must detect the blob"
        r, c = peak_location(gradcam_reference(blob_model, img[..., None], 1), (SIZE, SIZE))
        near += np.hypot(r - cy, c - cx) <= SIZE / 5
        follows += np.hypot(r - cy, c - cx) < np.hypot(r - (SIZE - 1 - cy), c - (SIZE - 1 - cx))
    assert near >= 0.85 * trials
    assert follows >= 0.9 * trials


def test_fast_cam_equals_reference_gradcam(blob_model):
    import keras

    assert has_linear_head(blob_model)
    rng = np.random.default_rng(7)
    batch = np.stack([blob_image(SIZE, rng, with_blob=bool(i % 2))[0][..., None] for i in range(6)])
    features = np.asarray(keras.Model(blob_model.inputs, blob_model.get_layer("cam_features").output)(batch))
    kernel = np.asarray(blob_model.get_layer("logits").kernel)
    for cls in (0, 1):
        fast = cam_from_features(features, kernel, np.full(len(batch), cls))
        for i in range(len(batch)):
            np.testing.assert_allclose(fast[i], gradcam_reference(blob_model, batch[i], cls), atol=1e-4)


def test_predictor_fast_path_matches_reference(tiny_predictor):
    rng = np.random.default_rng(3)
    from .synthetic import phantom_cxr

    size = tiny_predictor.image_size
    batch = np.stack([phantom_cxr(size, rng, i % 3)[..., None] for i in range(4)])
    probs, heat, _ = tiny_predictor.forward(batch)
    ref_probs = np.asarray(tiny_predictor.model(batch))
    np.testing.assert_allclose(probs, __import__("cxr_core.metrics").metrics.softmax(
        np.log(np.clip(ref_probs, 1e-30, None)), tiny_predictor.temperature), atol=1e-4)
    cls = __import__("cxr_core.metrics").metrics.decide(probs, tiny_predictor.model_point.threshold)
    for i in range(len(batch)):
        np.testing.assert_allclose(heat[i], gradcam_reference(tiny_predictor.model, batch[i], int(cls[i])), atol=1e-4)


def test_overlay_shape_and_validation():
    gray = np.random.rand(40, 50).astype(np.float32)
    out = overlay(gray, np.random.rand(5, 5), alpha=0.5, colormap="inferno")
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="colormap"):
        overlay(gray, np.ones((5, 5)), colormap="rainbow-unicorn")
