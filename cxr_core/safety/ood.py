"""Image-based input guards: "is this a chest radiograph at all?" and "how unusual is it for this model?".

Two scores, both fitted on the model's own training images:
- pixel structure (refuses): reconstruction error of a 32x32 thumbnail by a PCA of the training
  thumbnails. Chest radiographs share a strong layout (dark lungs either side of a bright
  mediastinum); a CT slice, a photograph or a document does not.
- model features (warns, graded): Mahalanobis distance of the pooled last-conv features (Ledoit-Wolf
  covariance). A film the model finds unusual is still a chest radiograph: it is assessed, with an
  "unusual" or "very unusual" warning. Sick children with tubes and leads land here, and must be read.

Every threshold is calibrated on held-out pediatric films, which the guard was not fitted on and, for a
single model, the network did not train on (`ThresholdRule.calibrate`): quantiles of the training images' own scores understate what new
films do. `cross_fitted_flags` measures a rule's false-alarm rate on films its threshold did not see.
Stored as `ood.npz` beside the model, loaded with allow_pickle=False.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..fileio import read_npz, write_npz_atomic
from .intended_use import ChestCheck

THUMB = 32

PIXEL_REASON = ("This image does not look like a frontal chest radiograph (its layout is unlike any chest X-ray "
                "the model was built on).")
UNUSUAL_WARNING = ("Unusual for this model: the film differs from the chest radiographs it was trained on (model "
                   "features at the edge of their range). Read the result with care.")
VERY_UNUSUAL_WARNING = ("Very unusual for this model: the film is far from every chest radiograph it was trained or "
                        "validated on (model features out of range). The result may not be reliable; read the film "
                        "yourself.")


@dataclass(frozen=True)
class ThresholdRule:
    """A guard threshold from held-out scores: `margin` x their `quantile` (higher score = more unusual)."""

    quantile: float
    margin: float = 1.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.quantile <= 1.0:
            raise ValueError(f"quantile = {self.quantile!r}: expected a number from 0.5 to 1")
        if self.margin < 1.0:
            raise ValueError(f"margin = {self.margin!r}: expected a number >= 1")

    def calibrate(self, held_out_scores: np.ndarray) -> float:
        scores = np.asarray(held_out_scores, np.float64)
        if scores.size == 0:
            raise ValueError("no held-out scores: a guard needs held-out films to be calibrated on")
        return float(np.quantile(scores, self.quantile)) * self.margin

    def describe(self) -> str:
        margin = f"{self.margin:g} x " if self.margin != 1.0 else ""
        where = "the maximum" if self.quantile == 1.0 else f"the {self.quantile:.1%} quantile"
        return f"{margin}{where} of held-out pediatric scores"

# Refuse only what is clearly not a chest radiograph; warn, in two grades, for the merely unusual.
PIXEL_REFUSAL = ThresholdRule(0.999, 1.1)  # held-out refusals ~0.2 % (cross-fitted), no training film
FEATURE_UNUSUAL = ThresholdRule(0.995)
FEATURE_VERY_UNUSUAL = ThresholdRule(1.0, 1.25)


def excess(scores: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Each score over its threshold: above 1 where the threshold flags it (a zero threshold: infinite over a
    positive score, else 0), how far outside its guard places a film."""
    scores = np.asarray(scores, np.float64)
    thresholds = np.broadcast_to(np.asarray(thresholds, np.float64), scores.shape)
    return np.divide(scores, thresholds, out=np.where(scores > thresholds, np.inf, 0.0), where=thresholds > 0)


def cross_fitted_thresholds(scores: np.ndarray, groups: Sequence[str], rule: ThresholdRule,
                            folds: int = 5) -> np.ndarray:
    """Per held-out film, `rule`'s threshold calibrated on the other patient-grouped folds' scores: what a new film
    of its kind would be judged by."""
    from sklearn.model_selection import GroupKFold  # lazy: heavy

    scores = np.asarray(scores, np.float64)
    if len(set(groups)) < 2:  # one patient: nothing to hold out from it (the card says how many folds were used)
        return np.full(len(scores), rule.calibrate(scores))
    thresholds = np.zeros(len(scores))
    for fit, check in GroupKFold(fold_count(groups, folds)).split(scores, groups=list(groups)):
        thresholds[check] = rule.calibrate(scores[fit])
    return thresholds


def cross_fitted_flags(scores: np.ndarray, groups: Sequence[str], rule: ThresholdRule, folds: int = 5) -> np.ndarray:
    """Per held-out film: over `rule`'s threshold when that threshold comes from the other patient-grouped
    folds. Their mean is the false-alarm rate new films will see, not the rate the quantile was set to."""
    return np.asarray(scores, np.float64) > cross_fitted_thresholds(scores, groups, rule, folds)


def fold_count(groups: Sequence[str], folds: int = 5) -> int:
    """How many patient-grouped folds `cross_fitted_flags` uses for these groups (1: none, in-sample)."""
    return max(1, min(folds, len(set(groups))))


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
    pixel_threshold: float  # above: refused
    feat_mean: np.ndarray
    feat_precision: np.ndarray
    feature_threshold: float  # above: "unusual"
    feature_threshold_strong: float  # above: "very unusual"

    @classmethod
    def fit(cls, fit_images: np.ndarray, fit_features: np.ndarray, held_out_images: np.ndarray,
            held_out_features: np.ndarray, n_components: int = 24) -> "OODDetector":
        """Fit the PCA and the feature distribution on training inputs; calibrate every threshold on held-out ones."""
        from sklearn.covariance import LedoitWolf  # lazy: heavy
        from sklearn.decomposition import PCA  # lazy: heavy

        thumbs = thumbnails(fit_images)
        pca = PCA(n_components=min(n_components, len(thumbs) - 1, thumbs.shape[1])).fit(thumbs)
        lw = LedoitWolf().fit(np.asarray(fit_features, np.float64))
        det = cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float32), 0.0, lw.location_, lw.precision_,
                  0.0, 0.0)
        pixel, feature = det.pixel_scores(held_out_images), det.feature_scores(held_out_features)
        det.pixel_threshold = PIXEL_REFUSAL.calibrate(pixel)
        det.feature_threshold = FEATURE_UNUSUAL.calibrate(feature)
        det.feature_threshold_strong = max(FEATURE_VERY_UNUSUAL.calibrate(feature), det.feature_threshold)
        return det

    def pixel_scores(self, images: np.ndarray) -> np.ndarray:
        t = thumbnails(images) - self.pca_mean
        recon = (t @ self.pca_components.T) @ self.pca_components
        return np.sqrt(np.mean((t - recon) ** 2, axis=1))

    def feature_scores(self, features: np.ndarray) -> np.ndarray:
        d = np.asarray(features, np.float64).reshape(len(np.atleast_2d(features)), -1) - self.feat_mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.feat_precision, d), 0.0))

    def findings(self, images: np.ndarray, features: np.ndarray) -> dict[str, np.ndarray]:
        """Per image: refused (pixel layout, as `check` refuses), unusual and very_unusual (model features), as
        boolean arrays."""
        feature = self.feature_scores(features)
        return {"refused": self.layout_excess(images) > 1.0,
                "unusual": feature > self.feature_threshold,
                "very_unusual": feature > self.feature_threshold_strong}

    def layout_excess(self, images: np.ndarray) -> np.ndarray:
        """Per image, its layout score over the refusal threshold (above 1: refused)."""
        return excess(self.pixel_scores(images), self.pixel_threshold)

    def check(self, image: np.ndarray, features: np.ndarray) -> tuple[ChestCheck, list[str]]:
        """(the layout check's answer, graded warnings) for one model-input image; the layout passes and the warnings
        are empty when it looks like the training films."""
        over = float(self.layout_excess(image[None])[0])
        feature = float(self.feature_scores(np.asarray(features)[None])[0])
        layout = ChestCheck((PIXEL_REASON,) if over > 1.0 else (), over)
        warnings = ([VERY_UNUSUAL_WARNING] if feature > self.feature_threshold_strong
                    else [UNUSUAL_WARNING] if feature > self.feature_threshold else [])
        return layout, warnings

    def save(self, path: Path) -> Path:
        return write_npz_atomic(path, pca_mean=self.pca_mean, pca_components=self.pca_components,
                                pixel_threshold=self.pixel_threshold, feat_mean=self.feat_mean,
                                feat_precision=self.feat_precision, feature_threshold=self.feature_threshold,
                                feature_threshold_strong=self.feature_threshold_strong)

    @classmethod
    def load(cls, path: Path) -> "OODDetector | None":
        """None when the model has no detector, or one from before graded warnings (refit it with fit-ood)."""
        z = read_npz(path)
        if z is None or "feature_threshold_strong" not in z:
            return None
        return cls(z["pca_mean"], z["pca_components"], float(z["pixel_threshold"]), z["feat_mean"],
                   z["feat_precision"], float(z["feature_threshold"]), float(z["feature_threshold_strong"]))
