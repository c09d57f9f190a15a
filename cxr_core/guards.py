"""A model's input guards, fitted together: the OOD detector (ood.npz) and the population check
(population.npz). Training, the ensemble assembly and `python -m cxr_core fit-ood` all call `fit_guards`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .models import pooled_features
from .ood import OODDetector
from .overlap import write_training_hashes
from .population import DEFAULT_ADULT_REFERENCE, fit_for_model


def fit_guards(model: Any, x_fit: np.ndarray, fit_patients: list[str], x_check: np.ndarray, preprocess: Any,
               out_dir: Path, adult_dir: str | Path = DEFAULT_ADULT_REFERENCE) -> dict[str, Any]:
    """Fit both guards on the model inputs `x_fit` (training images), count their false alarms on the
    held-out pediatric inputs `x_check`, save them into `out_dir`; the report the card stores."""
    ood = OODDetector.fit(x_fit, pooled_features(model, x_fit))
    ood.save(out_dir)
    check, population = fit_for_model(x_fit, fit_patients, preprocess, adult_dir)
    if check is not None:
        population["val_pediatric_false_alarm_rate"] = float(check.flags(x_check).mean())
        check.save(out_dir)
    return {"ood_val_false_alarm_rate": float(ood.flags(x_check, pooled_features(model, x_check)).mean()),
            "ood_pixel_threshold": ood.pixel_threshold, "ood_feature_threshold": ood.feature_threshold,
            "population_check": population}


def refit_model_guards(model_dir: str | Path, data_dir: str | Path | None = None,
                       adult_dir: str | Path | None = None) -> dict[str, Any]:
    """`fit-ood`: refit a registered model's guards on its own training split (from its card), and list the
    pixel hashes of its training data (cxr_core.overlap)."""
    from .dataset import index_dataset, split_for
    from .predict import Predictor

    model_dir = Path(model_dir)
    card = json.loads((model_dir / "model_card.json").read_text())
    train, val = split_for(index_dataset(Path(data_dir or card["data"]["root"])), card["data"])
    predictor = Predictor(model_dir)
    x_train = np.stack([predictor.preprocess.load(r.path) for r in train])
    x_val = np.stack([predictor.preprocess.load(r.path) for r in val])
    report = fit_guards(predictor.model, x_train, [r.patient for r in train], x_val, predictor.preprocess, model_dir,
                        adult_dir or DEFAULT_ADULT_REFERENCE)
    hashed = write_training_hashes(model_dir, [r.path for r in train + val])  # every image the model was built on
    return {"model": card.get("model_id"), "n_train": len(train), "n_val": len(val), "training_hashes": hashed, **report}
