"""Grad-CAM localises; the fast CAM path equals the reference Grad-CAM; the product's map is the fused
last-layer CAM and LayerCAM, on a fixed scale, drawn by default for PNEUMONIA only."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.config import ModelConfig
from cxr_core.model.gradcam import (cam_from_features, evidence_weights, fuse, gradcam_reference, overlay, shown_by_default,
                               to_display, upsample)
from cxr_core.model.architecture import has_linear_head
from cxr_core.model.architecture import build_model
from testkit.synthetic import blob_image

SIZE = 96


@pytest.fixture(scope="module")
def blob_model():
    """A tiny CNN trained to say whether a bright blob is present (class 1) or not (class 0)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(400):
        img, _ = blob_image(SIZE, rng, with_blob=bool(i % 2))
        xs.append(img[..., None])
        ys.append(i % 2)
    model = build_model(ModelConfig(backbone="cxrnet", num_classes=2, filters=[8, 16], dropout=0.0), SIZE)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.stack(xs), np.array(ys), epochs=8, batch_size=32, verbose=0)
    return model


def peak_location(heatmap: np.ndarray, shape: tuple[int, int]) -> tuple[int, int]:
    """(row, col) of the heatmap's maximum, in the coordinates of an image of `shape`."""
    up = upsample(to_display(heatmap[None], None)[0], shape)  # upsample draws [0, 1] maps
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
        r, c = peak_location(gradcam_reference(blob_model, img[..., None], np.array([-1.0, 1.0])), (SIZE, SIZE))
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
    logits = np.asarray(keras.Model(blob_model.inputs, blob_model.get_layer("logits").output)(batch))
    for weights in (evidence_weights(logits), np.tile([1.0, 0.0], (len(batch), 1))):  # the evidence; one class
        fast = cam_from_features(features, kernel, weights)
        for i in range(len(batch)):
            np.testing.assert_allclose(fast[i], gradcam_reference(blob_model, batch[i], weights[i]), atol=1e-4)


def _layercam_reference(model, image, layer, weights):
    """LayerCAM by GradientTape for one image: ReLU(sum_k ReLU(dS/dA_k) * A_k), S = logits @ weights."""
    import keras
    import tensorflow as tf

    graph = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer("logits").output])
    with tf.GradientTape() as tape:
        feats, logits = graph(tf.convert_to_tensor(image[None].astype(np.float32)), training=False)
        tape.watch(feats)
        score = tf.reduce_sum(logits[0] * weights)
    grads = tape.gradient(score, feats)[0]
    return np.maximum(np.asarray(tf.reduce_sum(tf.nn.relu(grads) * feats[0], axis=-1)), 0.0)


def test_the_products_map_fuses_the_last_layers_cam_with_layercam_at_twice_the_resolution(tiny_predictor):
    import keras

    from cxr_core.model.decision import softmax

    from testkit.synthetic import phantom_cxr

    rng = np.random.default_rng(3)
    size = tiny_predictor.image_size
    batch = np.stack([phantom_cxr(size, rng, i % 3)[..., None] for i in range(4)])
    probs, heat, _ = tiny_predictor.forward(batch)
    ref_probs = np.asarray(tiny_predictor.model(batch))
    np.testing.assert_allclose(probs, softmax(
        np.log(np.clip(ref_probs, 1e-30, None)), tiny_predictor.card.temperature), atol=1e-4)
    model, layer = tiny_predictor.model, tiny_predictor.cam_layer
    assert layer.endswith("b_relu")  # the feature map before the last pooling
    logits = np.asarray(keras.Model(model.inputs, model.get_layer("logits").output)(batch))
    weights = evidence_weights(logits)
    raw = tiny_predictor.raw_heatmaps(batch)
    last = np.stack([gradcam_reference(model, b, w) for b, w in zip(batch, weights)])
    assert raw.shape[1] == 2 * last.shape[1]  # twice the last layer's resolution
    detail = np.stack([_layercam_reference(model, b, layer, w.astype(np.float32)) for b, w in zip(batch, weights)])
    np.testing.assert_allclose(raw, fuse(last, detail), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(heat, to_display(raw, tiny_predictor.card.cam_scale), atol=1e-6)


def test_a_fixed_scale_keeps_a_weak_map_weak():
    strong, weak = np.full((1, 4, 4), 2.0), np.full((1, 4, 4), 0.2)
    assert to_display(weak, 2.0).max() == pytest.approx(0.1) and to_display(strong, 2.0).max() == 1.0
    assert to_display(weak, None).max() == 1.0  # per-map peak: what the product did before, and why it misled


@pytest.mark.parametrize("label, assessed, shown", [("PNEUMONIA", True, True), ("NORMAL", True, False),
                                                    (None, False, False)])
def test_the_heatmap_is_drawn_by_default_for_pneumonia_only(label, assessed, shown):
    from cxr_core.model.predict import Prediction

    pred = Prediction(file="x", label=label, assessed=assessed, heatmap=np.zeros((2, 2)))
    assert shown_by_default(pred) is shown


def test_overlay_leaves_the_film_untinted_where_there_is_no_evidence():
    gray = np.full((10, 10), 0.5, np.float32)
    heat = np.zeros((10, 10), np.float32)
    heat[:5] = 1.0
    out = overlay(gray, heat, alpha=0.5, colormap="inferno")
    assert (out[7:] == 127).all() and not (out[:3] == 127).all()  # 0.5 -> 127: untinted below


def test_overlay_shape_and_validation():
    gray = np.random.rand(40, 50).astype(np.float32)
    out = overlay(gray, np.random.rand(5, 5), alpha=0.5, colormap="inferno")
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="colormap"):
        overlay(gray, np.ones((5, 5)), colormap="rainbow-unicorn")
