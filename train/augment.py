"""Training augmentation as Keras preprocessing layers, built from an `AugmentConfig`.

Geometry (rotation, shift, zoom) and intensity (contrast, brightness) variation stand in for
differences between acquisition sites, which is what a model trained on one hospital's data
must survive. Collimation bands and burned-in text (side markers, annotation lines) are content a
film from another site carries that says nothing about the lungs: seeing them in training keeps the
model from reading them as evidence. Applied in the tf.data pipeline, on batches of model inputs
(after preprocessing), only during training.
"""

from __future__ import annotations

from typing import Any

import cv2
import keras
import numpy as np

from cxr_core.config import AugmentConfig

_TEXT_WORDS = ("PORTABLE", "AP", "PA", "SUPINE", "ERECT", "SEMI-ERECT", "CHEST", "mAs 2.5", "kVp 70", "GRID",
               "INSP", "LAT DEC", "PEDS", "BEDSIDE", "TRAUMA", "ROOM 4", "Dr", "ID")
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX)


def build_augmenter(config: AugmentConfig, seed: int = 0) -> Any | None:
    """A `keras.Sequential` of random layers, or None when augmentation is off."""
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
        # sigma 1.0 keeps the original fixed 3 x 3 kernel; a larger one draws sigma per image up to it.
        sigma: Any = 1.0 if config.blur_sigma == 1.0 else (0.3, config.blur_sigma)
        kernel = 3 if config.blur_sigma == 1.0 else 2 * int(np.ceil(2 * config.blur_sigma)) + 1
        layers.append(L.RandomGaussianBlur(factor=min(1.0, config.blur * s), kernel_size=kernel, sigma=sigma,
                                           value_range=(0, 1), seed=seed + 6))
    if config.borders:
        layers.append(RandomBands(min(1.0, config.borders * s), seed=seed + 7))
    if config.burned_in_text:
        layers.append(RandomBurnedInText(min(1.0, config.burned_in_text * s), seed=seed + 8))
    if not layers:
        return None
    return keras.Sequential(layers, name="augment")


def text_masks(size: int, count: int, seed: int) -> np.ndarray:
    """`count` random (size, size) masks in [0, 1] of burned-in text: a side marker and annotation lines."""
    rng = np.random.default_rng(seed)
    scale = size / 224.0
    masks = np.zeros((count, size, size), np.float32)
    for mask in masks:
        canvas = np.zeros((size, size), np.uint8)
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        if rng.random() < 0.8:  # side marker in a corner, sometimes boxed
            x = int(rng.uniform(0.02, 0.12) * size) if rng.random() < 0.5 else int(rng.uniform(0.8, 0.92) * size)
            y = int(rng.uniform(0.08, 0.18) * size) if rng.random() < 0.7 else int(rng.uniform(0.85, 0.95) * size)
            fs, th = rng.uniform(0.5, 1.3) * scale, max(1, int(round(rng.uniform(1, 3) * scale)))
            cv2.putText(canvas, "L" if rng.random() < 0.5 else "R", (x, y), font, fs, 255, th, cv2.LINE_AA)
            if rng.random() < 0.3:
                (w, h), _ = cv2.getTextSize("L", font, fs, th)
                cv2.rectangle(canvas, (x - 3, y - h - 3), (x + w + 3, y + 3), 255, max(1, th - 1))
        for _ in range(int(rng.integers(0, 4))):  # annotation lines near the top or bottom edge
            words = rng.choice(_TEXT_WORDS, size=int(rng.integers(1, 4)))
            text = " ".join(words) + (f" {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}" if rng.random() < 0.4 else "")
            x = int(rng.uniform(0.0, 0.5) * size)
            y = int(rng.uniform(0.04, 0.2) * size) if rng.random() < 0.5 else int(rng.uniform(0.82, 0.98) * size)
            cv2.putText(canvas, text, (x, y), font, rng.uniform(0.3, 0.7) * scale,
                        255, max(1, int(round(rng.uniform(1, 2) * scale))), cv2.LINE_AA)
        mask[:] = canvas / 255.0
    return masks


class RandomBands(keras.layers.Layer):
    """Collimation bands: on each image with probability `rate`, black (70 %) or white bands on random sides,
    each up to `max_fraction` of the side."""

    def __init__(self, rate: float, max_fraction: float = 0.15, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate, self.max_fraction, self.seed = float(rate), float(max_fraction), int(seed)

    def call(self, x: Any, training: bool = True) -> Any:
        import tensorflow as tf  # lazy: heavy

        if not training:
            return x
        n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        u = tf.random.uniform((n, 7), seed=self.seed)
        on = (u[:, 0] < self.rate)[:, None, None]
        sides = tf.random.uniform((n, 4), seed=self.seed + 1) < 0.6  # top, bottom, left, right
        widths = tf.cast(u[:, 1:5] * self.max_fraction * tf.cast(tf.stack([h, h, w, w]), tf.float32)[None], tf.int32)
        widths = tf.where(sides, widths, 0)
        rows, cols = tf.range(h)[None, :], tf.range(w)[None, :]
        band_rows = (rows < widths[:, 0:1]) | (rows >= h - widths[:, 1:2])
        band_cols = (cols < widths[:, 2:3]) | (cols >= w - widths[:, 3:4])
        band = (band_rows[:, :, None] | band_cols[:, None, :]) & on
        value = tf.cast(u[:, 5] >= 0.7, x.dtype)[:, None, None, None]
        return tf.where(band[..., None], value, x)


class RandomBurnedInText(keras.layers.Layer):
    """Burned-in text: on each image with probability `rate`, one of a bank of random text masks
    (`text_masks`, drawn once per input size) is burned in at a bright grey level."""

    def __init__(self, rate: float, bank_size: int = 64, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate, self.bank_size, self.seed = float(rate), int(bank_size), int(seed)
        self._banks: dict[int, Any] = {}

    def call(self, x: Any, training: bool = True) -> Any:
        import tensorflow as tf  # lazy: heavy

        if not training:
            return x
        size = int(x.shape[1])
        if size not in self._banks:  # numpy, not a tensor: each traced graph makes its own constant
            self._banks[size] = text_masks(size, self.bank_size, self.seed)[..., None]
        bank = tf.constant(self._banks[size])
        n = tf.shape(x)[0]
        u = tf.random.uniform((n, 2), seed=self.seed)
        pick = tf.random.uniform((n,), maxval=self.bank_size, dtype=tf.int32, seed=self.seed + 1)
        level = (0.75 + 0.25 * u[:, 1]) * tf.cast(u[:, 0] < self.rate, tf.float32)
        mask = tf.gather(bank, pick) * tf.cast(level, x.dtype)[:, None, None, None]
        return tf.maximum(x, mask)
