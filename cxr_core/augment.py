"""Training augmentation as Keras preprocessing layers, built from an `AugmentConfig`.

Geometry (rotation, shift, zoom) and intensity (contrast, brightness) variation stand in for
differences between acquisition sites, which is what a model trained on one hospital's data
must survive. Applied in the tf.data pipeline, on batches, only during training.
"""

from __future__ import annotations

from typing import Any

from .config import AugmentConfig


def build_augmenter(config: AugmentConfig, seed: int = 0) -> Any | None:
    """A `keras.Sequential` of random layers, or None when augmentation is off."""
    import keras

    s = config.strength
    if s <= 0:
        return None
    L = keras.layers
    layers: list[Any] = []
    if config.horizontal_flip:
        layers.append(L.RandomFlip("horizontal", seed=seed))
    if config.rotation:
        layers.append(L.RandomRotation(min(0.5, config.rotation * s), fill_mode="constant", seed=seed + 1))
    if config.translate:
        t = min(0.5, config.translate * s)
        layers.append(L.RandomTranslation(t, t, fill_mode="constant", seed=seed + 2))
    if config.zoom:
        z = min(0.9, config.zoom * s)
        layers.append(L.RandomZoom((-z, z), fill_mode="constant", seed=seed + 3))
    if config.contrast:
        layers.append(L.RandomContrast(min(0.95, config.contrast * s), value_range=(0, 1), seed=seed + 4))
    if config.brightness:
        layers.append(L.RandomBrightness(min(0.9, config.brightness * s), value_range=(0, 1), seed=seed + 5))
    if config.blur:
        layers.append(L.RandomGaussianBlur(factor=min(1.0, config.blur * s), kernel_size=3, sigma=1.0,
                                           value_range=(0, 1), seed=seed + 6))
    if not layers:
        return None
    return keras.Sequential(layers, name="augment")
