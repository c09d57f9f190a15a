"""A model's input guards, fitted together: the OOD detector (ood.npz), the chest-appearance autoencoder
(appearance.keras, appearance.npz) and the population check (population.npz). Training, the ensemble assembly
and `python -m cxr_core fit-ood` all call `fit_guards`.

Each guard is fitted on the model's training images and calibrated on held-out pediatric films (a single
model's validation split; for a cross-validated ensemble, the last fold, which the other members trained on,
so its feature thresholds are lower and its rates optimistic); the report the card stores gives each guard's rate on
those held-out films, measured with thresholds that did not see them (`held_out_flags`), and the rate of all guards
together. A site-adapted model inherits its parent's chest-appearance check: what a chest film looks like does not
change with the classifier, and a few hundred site films (already screened by that check) would fit a weaker one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..inputs.preprocess import Preprocess
from ..model.architecture import pooled_features
from ..model.folder import ModelFolder
from ..model.predict import Predictor
from ..safety.appearance import RULES as APPEARANCE_RULES
from ..safety.appearance import AppearanceCheck, AutoencoderRecipe, furthest
from ..safety.ood import (FEATURE_UNUSUAL, FEATURE_VERY_UNUSUAL, PIXEL_REFUSAL, OODDetector, cross_fitted_flags,
                          cross_fitted_thresholds, excess, fold_count)
from ..safety.overlap import write_training_hashes
from ..safety.intended_use import ChestCheck, chest_check_refusals, joint_excess
from ..safety.population import DEFAULT_ADULT_REFERENCE, AdultImageCheck, fit_for_model
from ..settings import current
from ..validation.dataset import held_out_split
from .appearance import fit_appearance


def fit_guards(model: Any, x_fit: np.ndarray, fit_patients: list[str], x_held_out: np.ndarray,
               held_out_patients: list[str], preprocess: Preprocess, out_dir: Path,
               adult_dir: str | Path = DEFAULT_ADULT_REFERENCE, recipe: AutoencoderRecipe = AutoencoderRecipe(),
               backup_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
               appearance_of: Predictor | None = None) -> dict[str, Any]:
    """Fit every guard on the training inputs `x_fit`, calibrate the image guards' thresholds on the held-out
    pediatric inputs `x_held_out`, save them into `out_dir`; the report the card stores. `backup_dir`: where the
    autoencoder's training keeps its state, so that an interrupted fit resumes. `appearance_of`: a parent model
    whose chest-appearance check is copied instead of fitted (site adaptation)."""
    folder = ModelFolder(out_dir)
    held_features = pooled_features(model, x_held_out)
    ood = OODDetector.fit(x_fit, pooled_features(model, x_fit), x_held_out, held_features)
    ood.save(folder.ood_file)
    if appearance_of is not None and appearance_of.appearance is not None:
        appearance = appearance_of.appearance
        shutil.copyfile(appearance_of.folder.appearance_file, folder.appearance_file)
        shutil.copyfile(appearance_of.folder.appearance_model_file, folder.appearance_model_file)
        appearance_record = {**appearance_of.card.appearance_check, "inherited_from": appearance_of.card.model_id}
    else:
        appearance = fit_appearance(x_fit, x_held_out, recipe, checkpoint_dir=backup_dir, log=log)
        appearance.save(folder.appearance_file, folder.appearance_model_file)
        appearance_record = appearance.describe(recipe)
    check, population = fit_for_model(x_fit, fit_patients, preprocess, adult_dir)
    if check is not None:
        check.save(folder.population_file)
    flags = held_out_flags(ood, appearance, check, x_held_out, held_features, held_out_patients)
    rates = {k: float(v.mean()) for k, v in flags.items()}
    if check is not None:
        population["val_pediatric_false_alarm_rate"] = rates["population"]
    return {"ood_pixel_threshold": ood.pixel_threshold, "ood_feature_threshold": ood.feature_threshold,
            "ood_feature_threshold_strong": ood.feature_threshold_strong,
            "appearance_check": appearance_record,
            "guard_calibration": {
                "held_out_images": int(len(x_held_out)),
                "rules": {"refused (pixel layout)": PIXEL_REFUSAL.describe(),
                          **{f"refused (chest appearance: {k})": rule.describe() for k, rule in APPEARANCE_RULES.items()},
                          "unusual (model features)": FEATURE_UNUSUAL.describe(),
                          "very unusual (model features)": FEATURE_VERY_UNUSUAL.describe()},
                "held_out_rates": rates,
                "note": "rates on held-out pediatric films, each judged by thresholds calibrated without its "
                        f"patient ({fold_count(held_out_patients)} patient-grouped folds); the population check "
                        "never saw these films"},
            "population_check": population}


def held_out_flags(ood: OODDetector, appearance: AppearanceCheck | None, check: AdultImageCheck | None,
                   x_held_out: np.ndarray, features: np.ndarray, patients: list[str]) -> dict[str, np.ndarray]:
    """Per held-out pediatric film, each guard's verdict with thresholds that did not see it: `refused` by the
    chest checks as the product decides (`refused_layout`, the pixel check; `refused_appearance`, the autoencoder),
    the graded warnings, the population check, and `flagged` (refused or any warning). bench/ood.py measures the
    same with this."""
    pixel, feature = ood.pixel_scores(x_held_out), ood.feature_scores(features)
    layout = excess(pixel, cross_fitted_thresholds(pixel, patients, PIXEL_REFUSAL))
    looks = None
    if appearance is not None:
        scores = appearance.scores(x_held_out)
        looks = furthest(scores, {k: cross_fitted_thresholds(scores[k], patients, rule)
                                  for k, rule in APPEARANCE_RULES.items()})
    out = {"refused_layout": layout > 1.0,
           "refused_appearance": looks > 1.0 if looks is not None else np.zeros(len(x_held_out), bool),
           "unusual": cross_fitted_flags(feature, patients, FEATURE_UNUSUAL),
           "very_unusual": cross_fitted_flags(feature, patients, FEATURE_VERY_UNUSUAL),
           "population": check.flags(x_held_out) if check is not None else np.zeros(len(x_held_out), bool)}
    out["refused"] = refused_by_chest_checks(layout, looks, out["population"])
    out["flagged"] = out["refused"] | out["unusual"] | out["very_unusual"] | out["population"]
    return out


def refused_by_chest_checks(layout: np.ndarray, appearance: np.ndarray | None,
                            outside_population: np.ndarray) -> np.ndarray:
    """Per film, whether the product refuses it (safety.intended_use.chest_check_refusals), from each chest check's
    excess (score over threshold, above 1: it refuses); `appearance` None: the model has no chest-appearance check."""
    looks = [None] * len(layout) if appearance is None else [_answer(a, "appearance") for a in appearance]
    return np.array([bool(chest_check_refusals(_answer(l, "layout"), a, bool(p)))
                     for l, a, p in zip(layout, looks, outside_population)], bool)


def joint_excesses(layout: np.ndarray, appearance: np.ndarray) -> np.ndarray:
    """Per film, the two chest checks' joint excess (safety.intended_use.joint_excess) from their excesses."""
    return np.array([joint_excess(_answer(l, "layout"), _answer(a, "appearance")) for l, a in zip(layout, appearance)])


def _answer(over: float, name: str) -> ChestCheck:
    """A chest check's answer from its excess alone (above 1: it refuses, named `name`)."""
    return ChestCheck((name,) * bool(over > 1.0), float(over))


def refit_model_guards(model_dir: str | Path, data_dir: str | Path | None = None,
                       adult_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`fit-ood`: refit a registered model's guards on its own training split (from its card), calibrated on its
    held-out split, and list the pixel hashes of its training data (cxr_core.safety.overlap). The autoencoder's
    training state is kept under $CXR_HOME/runs/fit-ood/<model id>/ until it finishes: a rerun resumes."""
    model_dir = Path(model_dir)
    train, held = held_out_split(model_dir, data_dir)
    predictor = Predictor(model_dir)
    x_train = np.stack([predictor.preprocess.load(r.path) for r in train])
    x_held = np.stack([predictor.preprocess.load(r.path) for r in held])
    backup = current().layout.guard_refits(predictor.card.model_id)
    report = fit_guards(predictor.model, x_train, [r.patient for r in train], x_held, [r.patient for r in held],
                        predictor.preprocess, model_dir, adult_dir or DEFAULT_ADULT_REFERENCE, backup_dir=backup,
                        log=log)
    hashed = write_training_hashes(ModelFolder(model_dir).hashes_file, [r.path for r in train + held])  # every image the model was built on
    ModelFolder(model_dir).update_card(**report, ood_val_false_alarm_rate=None)  # the old rate is superseded
    return {"model": predictor.card.model_id, "n_train": len(train), "n_val": len(held),
            "training_hashes": hashed, **report}
