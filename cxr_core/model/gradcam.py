"""The heatmap: where the model found evidence for pneumonia, on a scale fixed per model.

What it explains: the pneumonia-against-normal evidence, logit(likelier subtype) - logit(NORMAL), for every film
(so a NORMAL result, whose heatmap is off by default, shows how little evidence it holds, not its own class).

How, at which resolution: a combination of two layers (`fuse`), the geometric mean of
- classic CAM on the last layer (`cam_from_features`; for a GAP + linear head Grad-CAM equals CAM there), and
- LayerCAM (Jiang et al. 2021) on the feature map before the last pooling (`layer_cam_model`; 14 x 14 at
  224 px for cxrnet, twice the last layer's 7 x 7): ReLU(sum_k ReLU(dS/dA_k) * A_k), one backward pass per batch.
bench/gradcam.py measured it as faithful as the last layer alone by a deletion test, at twice the resolution;
LayerCAM alone was less faithful. Backbones without such a layer draw the last layer's CAM;
`gradcam_reference` is the textbook GradientTape version.

On what scale: `to_display` divides by the model's card value `gradcam.scale` (the 99th percentile of the map
over held-out pneumonia films, `fit-presentation`), so a weak map looks weak on every film; a model without one
falls back to each map's own peak.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .architecture import CAM_LAYER, LOGITS_LAYER, POOL_LAYER

COLORMAPS = {"inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS,
             "turbo": cv2.COLORMAP_TURBO, "hot": cv2.COLORMAP_HOT}


def evidence_weights(logits: np.ndarray) -> np.ndarray:
    """(n, classes) weights w such that logits @ w is each film's pneumonia-against-normal evidence:
    +1 on the likelier subtype (or PNEUMONIA for a 2-class model), -1 on NORMAL."""
    logits = np.asarray(logits)
    w = np.zeros_like(logits, dtype=np.float32)
    rows = np.arange(len(logits))
    w[rows, 0] = -1.0
    w[rows, 1 if logits.shape[1] == 2 else np.where(logits[:, 2] > logits[:, 1], 2, 1)] = 1.0
    return w


def detail_layer(model: Any) -> str | None:
    """The feature map LayerCAM reads: the input of the last pooling before the CAM layer (cxrnet's
    `stage{n-1}b_relu`), or None where the backbone has none (then the last layer's CAM is drawn)."""
    names = [layer.name for layer in model.layers]
    if CAM_LAYER not in names:
        return None
    pools = [layer for layer in model.layers[:names.index(CAM_LAYER)] if layer.name.endswith("_pool")]
    if not pools:
        return None
    return pools[-1].input._keras_history.operation.name  # the layer whose output the pool reads


def layer_cam_model(model: Any, layer: str) -> Any:
    """A tf.function: batch -> (raw LayerCAM maps at `layer` n x h x w, the last layer's features, logits,
    pooled last-layer features)."""
    import keras  # lazy: heavy
    import tensorflow as tf  # lazy: heavy

    graph = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer(CAM_LAYER).output,
                                       model.get_layer(LOGITS_LAYER).output, model.get_layer(POOL_LAYER).output])

    def run(x: Any) -> tuple[Any, Any, Any, Any]:
        with tf.GradientTape() as tape:
            feats, last, logits, pooled = graph(x, training=False)
            tape.watch(feats)
            score = tf.reduce_sum(logits * tf.stop_gradient(_evidence_weights_tf(logits)), axis=1)
        grads = tape.gradient(score, feats)
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * feats, axis=-1)), last, logits, pooled

    return tf.function(run, reduce_retracing=True)


def fuse(last_layer: np.ndarray, detail: np.ndarray) -> np.ndarray:
    """The geometric mean of the last layer's map (upsampled) and the earlier layer's, at the latter's size."""
    h, w = detail.shape[1:]
    up = np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for m in last_layer])
    return np.sqrt(np.maximum(up, 0.0) * np.maximum(detail, 0.0))


def _evidence_weights_tf(logits: Any) -> Any:
    """`evidence_weights` in TensorFlow, inside the compiled forward pass."""
    import tensorflow as tf  # lazy: heavy

    classes = logits.shape[-1]
    if classes == 2:
        return tf.ones_like(logits) * tf.constant([-1.0, 1.0])
    subtype = tf.where(logits[:, 2] > logits[:, 1], 2, 1)
    return tf.one_hot(subtype, classes) - tf.one_hot(tf.zeros_like(subtype), classes)


def cam_from_features(features: np.ndarray, dense_kernel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Classic CAM of the evidence `weights` (n, classes): ReLU(features @ W @ w), raw (unscaled), (n, h, w)."""
    return np.maximum(np.einsum("nhwk,kc,nc->nhw", features, dense_kernel, weights), 0.0)


def gradcam_reference(model: Any, image: np.ndarray, weights: np.ndarray, layer: str = CAM_LAYER) -> np.ndarray:
    """Textbook Grad-CAM of the evidence logits @ `weights` at `layer` for one (H, W, 1) image, by
    GradientTape; raw (unscaled). Channel weights are the spatially summed gradients (the paper averages: a
    constant factor h x w), so that for a GAP + linear head it equals `cam_from_features` exactly."""
    import keras  # lazy: heavy
    import tensorflow as tf  # lazy: heavy

    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer(LOGITS_LAYER).output])
    x = tf.convert_to_tensor(image[None].astype(np.float32))
    with tf.GradientTape() as tape:
        features, logits = grad_model(x, training=False)
        score = tf.reduce_sum(logits[0] * tf.constant(np.asarray(weights, np.float32)))
    grads = tape.gradient(score, features)[0]
    cam = tf.reduce_sum(features[0] * tf.reduce_sum(grads, axis=(0, 1)), axis=-1)
    return np.maximum(np.asarray(cam), 0.0)


def to_display(raw: np.ndarray, scale: float | None) -> np.ndarray:
    """Raw maps (n, h, w) in [0, 1] for drawing: divided by the model's fixed `scale` and clipped, or, for a
    model without one, each divided by its own peak."""
    raw = np.maximum(np.asarray(raw, dtype=np.float32), 0.0)
    if scale:
        return np.clip(raw / float(scale), 0.0, 1.0)
    peaks = raw.reshape(len(raw), -1).max(axis=1).reshape(-1, *([1] * (raw.ndim - 1)))
    return np.where(peaks > 0, raw / np.maximum(peaks, 1e-12), raw)


def upsample(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a heatmap to an image's (height, width)."""
    return np.clip(cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR), 0, 1)


def on_image(heatmap: np.ndarray, shape: tuple[int, int], padded: bool = False) -> np.ndarray:
    """A heatmap on the source image's own pixel grid (height, width), for a DICOM map that must match the source
    pixel for pixel: where the model saw the image padded to a square (Preprocess.pad), the padding is cut away."""
    if not padded:
        return upsample(heatmap, shape)
    h, w = shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return upsample(heatmap, (side, side))[top:top + h, left:left + w]


def shown_by_default(pred: Any) -> bool:
    """The one rule every surface follows: the heatmap is drawn by default for a PNEUMONIA result only (for a
    NORMAL one a reader may ask for it; an unassessed input has none)."""
    return bool(pred.assessed and pred.label == "PNEUMONIA" and pred.heatmap is not None)


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = "inferno") -> np.ndarray:
    """RGB uint8 picture: the grayscale image with the coloured heatmap blended in, at `alpha` where the map
    is 1 and not at all where it is 0 (weak evidence leaves the film untinted)."""
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap {colormap!r} is not one of {sorted(COLORMAPS)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha!r} must be in [0, 1]")
    base = np.repeat((np.clip(gray, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    heat = upsample(heatmap, gray.shape[:2])
    colour = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
    weight = (alpha * heat)[..., None]
    return np.clip(colour * weight + base * (1.0 - weight), 0, 255).round().astype(np.uint8)
