"""The population check: is this chest radiograph outside the validated population (intended_use.VALIDATED_AGES)?

- DICOM: from the age (PatientAge, else PatientBirthDate and StudyDate).
- Any input without an age: an image-based adult detector. Deliberately simple so that it carries
  over to other hospitals: contrast-normalised 32x32 thumbnails of the model input -> PCA ->
  standardise -> strongly regularised logistic regression (pediatric training images against the
  adult reference set). Its threshold is the 99.5th percentile of the pediatric out-of-fold scores,
  so about 0.5 % of pediatric films are flagged. Stored as `population.npz` beside the model
  (allow_pickle=False), refitted by `python -m cxr_core fit-ood`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import PROJECT_ROOT
from ..fileio import read_npz, write_npz_atomic
from ..inputs.imaging import load_image
from ..inputs.preprocess import Preprocess
from .intended_use import OUTSIDE_POPULATION, VALIDATED_AGES
from .ood import ThresholdRule, cross_fitted_flags, thumbnails
from ..errors import CXRError

DEFAULT_ADULT_REFERENCE = PROJECT_ROOT.parent / "shared" / "data" / "adult-cxr-reference"
PEDIATRIC_FALSE_ALARM_QUANTILE = 0.995
ADULT_IMAGE_REASON = (f"{OUTSIDE_POPULATION}: this image looks like an adult chest radiograph. The model was not "
                      "validated on adults.")


def age_warning(age_years: float | None) -> str | None:
    """The warning for a known age outside the validated population, else None."""
    if age_years is None or VALIDATED_AGES[0] <= age_years < VALIDATED_AGES[1]:
        return None
    shown = f"{age_years:.0f} years" if age_years >= 2 else f"{age_years * 12:.0f} months"
    return (f"{OUTSIDE_POPULATION}: the DICOM header gives an age of {shown}. "
            "The model was not validated for this age.")


@dataclass
class AdultImageCheck:
    pca_mean: np.ndarray
    pca_components: np.ndarray
    scale_mean: np.ndarray
    scale_std: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Higher = more adult-like; `images` are model inputs (n, s, s[, 1]) or one (s, s)."""
        z = (thumbnails(images) - self.pca_mean) @ self.pca_components.T
        return ((z - self.scale_mean) / self.scale_std) @ self.coef + self.intercept

    def flags(self, images: np.ndarray) -> np.ndarray:
        return self.scores(images) > self.threshold

    def save(self, path: Path) -> Path:
        return write_npz_atomic(path, pca_mean=self.pca_mean,
                                pca_components=self.pca_components, scale_mean=self.scale_mean, scale_std=self.scale_std,
                                coef=self.coef, intercept=self.intercept, threshold=self.threshold)

    @classmethod
    def load(cls, path: Path) -> "AdultImageCheck | None":
        z = read_npz(path)
        if z is None:
            return None
        return cls(z["pca_mean"], z["pca_components"], z["scale_mean"], z["scale_std"], z["coef"],
                   float(z["intercept"]), float(z["threshold"]))


def fit_pipeline(x: np.ndarray, y: np.ndarray, n_components: int = 32, c: float = 0.01) -> Any:
    """The check's classifier (PCA -> standardise -> logistic regression) on rows of features `x`, labels `y`
    (0 pediatric / 1 adult)."""
    from sklearn.decomposition import PCA  # lazy: heavy
    from sklearn.linear_model import LogisticRegression  # lazy: heavy
    from sklearn.pipeline import make_pipeline  # lazy: heavy
    from sklearn.preprocessing import StandardScaler  # lazy: heavy

    return make_pipeline(PCA(n_components, random_state=0), StandardScaler(),
                         LogisticRegression(C=c, class_weight="balanced", max_iter=5000)).fit(x, y)


def fit_adult_check(pediatric: np.ndarray, pediatric_groups: list[str], adult: np.ndarray, adult_groups: list[str],
                    folds: int = 5, n_components: int = 32, c: float = 0.01) -> tuple[AdultImageCheck, dict[str, Any]]:
    """Fit on all images; threshold and the reported rates from patient-grouped cross-validation."""
    x, y, oof = cross_validated_scores(pediatric, pediatric_groups, adult, adult_groups, folds, n_components, c)
    threshold = float(np.quantile(oof[y == 0], PEDIATRIC_FALSE_ALARM_QUANTILE))
    pipe = fit_pipeline(x, y, min(n_components, len(x) - 1), c)
    pca, scaler, lr = pipe.steps[0][1], pipe.steps[1][1], pipe.steps[2][1]
    check = AdultImageCheck(pca.mean_.astype(np.float32), pca.components_.astype(np.float32), scaler.mean_,
                            scaler.scale_, lr.coef_[0], float(lr.intercept_[0]), threshold)
    report = {"folds": folds, "n_pediatric": int((y == 0).sum()), "n_adult": int((y == 1).sum()),
              "adult_patients": len(set(adult_groups)),
              "cv_adult_detection_rate": float((oof[y == 1] > threshold).mean()),
              # each pediatric film judged by a threshold set without its patient (the quantile fixes it otherwise)
              "cv_pediatric_false_alarm_rate": float(cross_fitted_flags(
                  oof[y == 0], pediatric_groups, ThresholdRule(PEDIATRIC_FALSE_ALARM_QUANTILE)).mean()),
              "threshold_rule": f"{PEDIATRIC_FALSE_ALARM_QUANTILE:.1%} quantile of pediatric out-of-fold scores"}
    return check, report


def cross_validated_scores(pediatric: np.ndarray, pediatric_groups: list[str], adult: np.ndarray,
                           adult_groups: list[str], folds: int = 5, n_components: int = 32,
                           c: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thumbnails, labels 0 pediatric / 1 adult, out-of-fold scores) of model inputs."""
    x = np.concatenate([thumbnails(pediatric), thumbnails(adult)])
    y = np.r_[np.zeros(len(pediatric)), np.ones(len(adult))].astype(int)
    groups = [f"P:{g}" for g in pediatric_groups] + [f"A:{g}" for g in adult_groups]
    return x, y, out_of_fold_scores(x, y, groups, folds, n_components, c)


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5, n_components: int = 32,
                       c: float = 0.01) -> np.ndarray:
    """Each film's score from a check fitted without its patient (stratified, patient-grouped folds); `x` holds
    one row of features per film (thumbnails in the product; bench/population.py measures others)."""
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: heavy

    oof = np.zeros(len(y))
    for tr, te in StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(x, y, np.asarray(groups)):
        oof[te] = fit_pipeline(x[tr], y[tr], min(n_components, len(x) - 1), c).decision_function(x[te])
    return oof


def load_adult_reference(folder: str | Path, preprocess: Preprocess) -> tuple[np.ndarray, list[str]]:
    """Model inputs and patient groups of the adult reference set (metadata.csv: file, patientid).
    A trailing a/b/c on the patient id marks films of one patient (the set's README)."""

    folder = Path(folder)
    meta = folder / "metadata.csv"
    if not meta.is_file():
        raise CXRError(f"No adult reference set at {str(folder)!r} (metadata.csv expected); pass --adult-data.")
    images, groups = [], []
    with open(meta, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            images.append(preprocess(load_image(folder / "images" / row["file"]).pixels))
            groups.append(re.sub(r"[a-z]$", "", row["patientid"]))
    return np.stack(images), groups


def fit_for_model(pediatric_inputs: np.ndarray, pediatric_patients: list[str], preprocess: Preprocess,
                  adult_folder: str | Path = DEFAULT_ADULT_REFERENCE) -> tuple[AdultImageCheck | None, dict[str, Any]]:
    """Fit the adult check on a model's pediatric training inputs and the adult reference set.

    Without the reference set the check is not fitted (None) and the report says why; the predictor
    then warns on every result that adult films are not flagged."""

    try:
        adult, adult_groups = load_adult_reference(adult_folder, preprocess)
    except CXRError as exc:
        return None, {"fitted": False, "reason": str(exc)}
    check, report = fit_adult_check(pediatric_inputs, pediatric_patients, adult, adult_groups)
    return check, {"fitted": True, **report}
