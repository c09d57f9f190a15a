"""Grad-CAM (Selvaraju et al. 2017), after the keras-io example, plus the fast equivalent.

- `gradcam_reference`: the textbook version: gradient of a class logit with respect to the last
  conv feature map, channel weights = spatially averaged gradients, ReLU of the weighted sum.
- `cam_from_features`: for a head that is global-average-pooling then one linear layer, those
  gradients are constant (W[:, c] / HW), so Grad-CAM equals classic CAM: features @ W[:, c].
  No backward pass; the prediction and the heatmap come from one forward pass (see predict.py).
Both return a heatmap in [0, 1] at feature-map resolution; `upsample` and `overlay` draw it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .models import CAM_LAYER, LOGITS_LAYER

COLORMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
             "turbo": cv2.COLORMAP_TURBO, "hot": cv2.COLORMAP_HOT}


def gradcam_reference(model: Any, image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of `class_index`'s logit for one `(H, W, 1)` image, by GradientTape."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer(CAM_LAYER).output, model.get_layer(LOGITS_LAYER).output])
    x = tf.convert_to_tensor(image[None].astype(np.float32))
    with tf.GradientTape() as tape:
        features, logits = grad_model(x, training=False)
        score = logits[:, class_index]
    grads = tape.gradient(score, features)[0]
    weights = tf.reduce_mean(grads, axis=(0, 1))
    cam = tf.reduce_sum(features[0] * weights, axis=-1)
    return normalise(np.asarray(cam))


def cam_from_features(features: np.ndarray, dense_kernel: np.ndarray, class_index: int | np.ndarray) -> np.ndarray:
    """Classic CAM: ReLU(features @ W[:, c]), normalised; `features` is (h, w, k) or (n, h, w, k)."""
    if features.ndim == 3:
        return normalise(features @ dense_kernel[:, int(class_index)])
    idx = np.asarray(class_index).reshape(-1)
    cams = np.einsum("nhwk,kn->nhw", features, dense_kernel[:, idx])
    return np.stack([normalise(c) for c in cams])


def normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(cam.max())
    return cam / peak if peak > 0 else cam


def upsample(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a heatmap to an image's (height, width)."""
    return np.clip(cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR), 0, 1)


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """RGB uint8 picture: the grayscale image with the coloured heatmap blended at `alpha`."""
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap {colormap!r} is not one of {sorted(COLORMAPS)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha!r} must be in [0, 1]")
    base = np.repeat((np.clip(gray, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    heat = upsample(heatmap, gray.shape[:2])
    colour = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(colour, alpha, base, 1.0 - alpha, 0.0)
