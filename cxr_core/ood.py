"""Out-of-distribution warning: "this does not look like the frontal chest X-rays the model knows".

Two scores, both fitted on the model's own training images (never on validation or test data):
- pixel structure: reconstruction error of a 32x32 thumbnail by a PCA of the training thumbnails
  (chest radiographs share a strong layout: dark lungs either side of a bright mediastinum);
- model features: Mahalanobis distance of the pooled last-conv features (Ledoit-Wolf covariance).
Each threshold is a high quantile of the training scores; the false-alarm rate is then measured
on internal validation (bench/ood.py). Stored as `ood.npz` beside the model, loaded with
allow_pickle=False.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .fileio import read_npz, write_npz_atomic

OOD_FILE = "ood.npz"
THUMB = 32
MIN_STD = 0.02

PIXEL_REASON = "This image does not look like a frontal chest radiograph (its layout is unlike the training X-rays); the result is not reliable."
FEATURE_REASON = "This image is unlike the chest radiographs the model was trained on (model features out of range); the result is not reliable."
BLANK_REASON = "The image is almost uniform (blank or failed exposure); the result is not reliable."


def thumbnails(images: np.ndarray) -> np.ndarray:
    """(n, H, W[, 1]) images in [0,1] -> (n, 32*32) contrast-normalised thumbnails."""
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    if images.ndim == 2:
        images = images[None]
    out = np.stack([cv2.resize(im, (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel() for im in images])
    mean, std = out.mean(1, keepdims=True), out.std(1, keepdims=True)
    return (out - mean) / np.maximum(std, 1e-3)


@dataclass
class OODDetector:
    pca_mean: np.ndarray
    pca_components: np.ndarray
    pixel_threshold: float
    feat_mean: np.ndarray
    feat_precision: np.ndarray
    feature_threshold: float

    @classmethod
    def fit(cls, train_images: np.ndarray, train_features: np.ndarray, n_components: int = 24,
            quantile: float = 0.995) -> "OODDetector":
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        thumbs = thumbnails(train_images)
        pca = PCA(n_components=min(n_components, len(thumbs) - 1, thumbs.shape[1])).fit(thumbs)
        lw = LedoitWolf().fit(np.asarray(train_features, np.float64))
        det = cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float32), 0.0,
                  lw.location_, lw.precision_, 0.0)
        det.pixel_threshold = float(np.quantile(det.pixel_scores(train_images), quantile))
        det.feature_threshold = float(np.quantile(det.feature_scores(train_features), quantile))
        return det

    def pixel_scores(self, images: np.ndarray) -> np.ndarray:
        t = thumbnails(images) - self.pca_mean
        recon = (t @ self.pca_components.T) @ self.pca_components
        return np.sqrt(np.mean((t - recon) ** 2, axis=1))

    def feature_scores(self, features: np.ndarray) -> np.ndarray:
        d = np.asarray(features, np.float64).reshape(len(np.atleast_2d(features)), -1) - self.feat_mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.feat_precision, d), 0.0))

    def flags(self, images: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Boolean per image: out of distribution by any criterion."""
        images = np.asarray(images, np.float32)
        stds = images.reshape(len(images), -1).std(1)
        return (stds < MIN_STD) | (self.pixel_scores(images) > self.pixel_threshold) | \
            (self.feature_scores(features) > self.feature_threshold)

    def check(self, image: np.ndarray, features: np.ndarray) -> list[str]:
        """Warnings (empty when the image looks in-distribution) for one model-input image."""
        reasons = []
        if float(np.std(image)) < MIN_STD:
            return [BLANK_REASON]
        if self.pixel_scores(image[None])[0] > self.pixel_threshold:
            reasons.append(PIXEL_REASON)
        if self.feature_scores(np.asarray(features)[None])[0] > self.feature_threshold:
            reasons.append(FEATURE_REASON)
        return reasons

    def save(self, model_dir: str | Path) -> Path:
        return write_npz_atomic(Path(model_dir) / OOD_FILE, pca_mean=self.pca_mean, pca_components=self.pca_components,
                                pixel_threshold=self.pixel_threshold, feat_mean=self.feat_mean,
                                feat_precision=self.feat_precision, feature_threshold=self.feature_threshold)

    @classmethod
    def load(cls, model_dir: str | Path) -> "OODDetector | None":
        z = read_npz(Path(model_dir) / OOD_FILE)
        if z is None:
            return None
        return cls(z["pca_mean"], z["pca_components"], float(z["pixel_threshold"]), z["feat_mean"],
                   z["feat_precision"], float(z["feature_threshold"]))
