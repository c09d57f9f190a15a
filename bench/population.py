"""The population check's features, measured: does adding the model's own features find more adults?

The product's image-based adult check (cxr_core.safety.population) reads contrast-normalised thumbnails only. This
bench fits the same classifier and threshold rule on three feature sets and prints, each with a Wilson 95 %
interval:

- `adults found`: the adult reference films, each scored by a check fitted without its patient (patient-grouped
  cross-validation against the model's training films);
- `held-out children flagged`: the model's held-out pediatric films (internal), scored by the check fitted on all
  its training films and the adults;
- `site A children flagged`: site A's films (external pediatric), the same way.

The threshold is the product's: the PEDIATRIC_FALSE_ALARM_QUANTILE of the training films' out-of-fold scores. The
first row is the product's check; bench/ood.py measures it in place.

    python bench/population.py [--model DIR_OR_ID] [--save]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import SHARED_TRAIN, SITE_A, cell, emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder or registered id (default: the active model)")
    args = ap.parse_args()
    from cxr_core.model.predict import Predictor
    from cxr_core.request import Request
    from cxr_core.safety.ood import thumbnails
    from cxr_core.safety.population import (DEFAULT_ADULT_REFERENCE, PEDIATRIC_FALSE_ALARM_QUANTILE, fit_pipeline,
                                            load_adult_reference, out_of_fold_scores)
    from cxr_core.site.models import quiet_store
    from cxr_core.validation.dataset import held_out_split, index_dataset

    for needed in (SHARED_TRAIN, SITE_A, DEFAULT_ADULT_REFERENCE):
        if not needed.is_dir():
            raise SystemExit(f"skipped: {needed} not found")
    predictor = Predictor(Request.resolve(quiet_store(), args.model).model_dir)
    emit("model", predictor.card.model_id)

    def rows(x: np.ndarray) -> dict[str, np.ndarray]:
        pooled = np.concatenate([predictor.forward(x[i:i + 64], heatmaps=False)[2] for i in range(0, len(x), 64)])
        return {"thumbnails": thumbnails(x), "features": pooled}

    train, held = held_out_split(predictor.model_dir, SHARED_TRAIN)
    films = {name: rows(np.stack([predictor.preprocess.load(r.path) for r in records]))
             for name, records in (("train", train), ("held", held), ("site", index_dataset(SITE_A)))}
    adults, adult_groups = load_adult_reference(DEFAULT_ADULT_REFERENCE, predictor.preprocess)
    films["adult"] = rows(adults)
    # the model features on the thumbnails' scale: standardised by the training films
    mean, std = films["train"]["features"].mean(0), films["train"]["features"].std(0) + 1e-6
    for sets in films.values():
        sets["features"] = (sets["features"] - mean) / std
        sets["both"] = np.concatenate([sets["thumbnails"], sets["features"]], axis=1)

    y = np.r_[np.zeros(len(train)), np.ones(len(adults))].astype(int)
    groups = [f"P:{r.patient}" for r in train] + [f"A:{g}" for g in adult_groups]
    emit("columns", "features | adults found (CV) | held-out children flagged | site A children flagged")
    for kind, label in (("thumbnails", "thumbnails (the product)"), ("features", "model features"),
                        ("both", "thumbnails + model features")):
        x = np.concatenate([films["train"][kind], films["adult"][kind]])
        oof = out_of_fold_scores(x, y, groups)
        threshold = np.quantile(oof[y == 0], PEDIATRIC_FALSE_ALARM_QUANTILE)
        check = fit_pipeline(x, y)
        emit(f"{label:28s}", " | ".join(cell(flags) for flags in (
            oof[y == 1] > threshold, check.decision_function(films["held"][kind]) > threshold,
            check.decision_function(films["site"][kind]) > threshold)))


if __name__ == "__main__":
    main()
