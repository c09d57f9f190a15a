"""The input guards of a model, measured: held-out pediatric films, the hard pediatric check set, the adult
reference set (cross-validated by patient) and synthetic inputs that are not chest radiographs.

- Held-out pediatric films: the model's own held-out split (from its card), each film judged by guard
  thresholds calibrated without its patient (cxr_core.safety.guards.held_out_flags): refused, warned "unusual",
  "very unusual", flagged adult, and flagged by any guard, with Wilson 95 % intervals.
- Check set (bench/checksets/hard_pediatric.txt): training-split films with tubes, leads, rotation, markers...,
  picked by eye. Predicted as a user would; none may be refused.
- Adults: the population check refitted here with patient-grouped cross-validation (its out-of-fold verdict
  per film), or-ed with the image guards (never fitted on adults).

    python bench/ood.py [--model DIR_OR_ID] [--per-kind 40] [--save]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _common import ROOT, SHARED_TRAIN, emit  # noqa: E402

CHECK_SET = ROOT / "bench" / "checksets" / "hard_pediatric.txt"


def rate(name: str, flags: np.ndarray) -> None:
    from cxr_core.validation.metrics import wilson_interval

    low, high = wilson_interval(int(flags.sum()), len(flags))
    emit(name, f"{flags.mean():.4f} [{low:.4f}, {high:.4f}] ({int(flags.sum())}/{len(flags)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder or registered id (default: the active model)")
    ap.add_argument("--per-kind", type=int, default=40)
    args = ap.parse_args()
    from cxr_core.cli import resolve_model_dir
    from cxr_core.safety.guards import held_out_flags, held_out_split
    from cxr_core.safety.ood import ThresholdRule, cross_fitted_flags
    from cxr_core.safety.population import DEFAULT_ADULT_REFERENCE, PEDIATRIC_FALSE_ALARM_QUANTILE
    from cxr_core.safety.population import cross_validated_scores, load_adult_reference
    from cxr_core.model.predict import Predictor
    from tests.synthetic import NON_XRAY_KINDS, non_xray

    model_dir = resolve_model_dir(args.model)
    predictor = Predictor(model_dir)
    if predictor.ood is None:
        raise SystemExit("the model has no (current) OOD detector; run python -m cxr_core fit-ood")
    emit("model", predictor.card.model_id)

    def features(x: np.ndarray) -> np.ndarray:
        return np.concatenate([predictor.forward(x[i:i + 64], heatmaps=False)[2] for i in range(0, len(x), 64)])

    if not SHARED_TRAIN.is_dir():
        emit("held_out_pediatric", f"skipped: {SHARED_TRAIN} not found")
    else:
        train, held = held_out_split(model_dir, SHARED_TRAIN)
        x = np.stack([predictor.preprocess.load(r.path) for r in held])
        flags = held_out_flags(predictor.ood, predictor.adult_check, x, features(x), [r.patient for r in held])
        emit("held_out_pediatric_films", str(len(x)))
        for key in ("refused", "unusual", "very_unusual", "population", "flagged"):
            rate(f"held_out_{key}_rate", flags[key])
        check_set(predictor, {r.path.relative_to(SHARED_TRAIN).as_posix() for r in held})
        if DEFAULT_ADULT_REFERENCE.is_dir():
            x_train = np.stack([predictor.preprocess.load(r.path) for r in train])
            adults, groups = load_adult_reference(DEFAULT_ADULT_REFERENCE, predictor.preprocess)
            _, y, oof = cross_validated_scores(x_train, [r.patient for r in train], adults, groups)
            cut = np.quantile(oof[y == 0], PEDIATRIC_FALSE_ALARM_QUANTILE)
            # The pediatric rate with a threshold that did not see the film's patient (the quantile sets it otherwise).
            rate("population_check_cv_pediatric_false_alarm_rate", cross_fitted_flags(
                oof[y == 0], [r.patient for r in train], ThresholdRule(PEDIATRIC_FALSE_ALARM_QUANTILE)))
            rate("population_check_cv_adult_detection_rate", oof[y == 1] > cut)
            found = predictor.ood.findings(adults, features(adults))
            guards = found["refused"] | found["unusual"]
            rate("adult_films_refused_or_warned_by_image_guards", guards)
            rate("adult_films_flagged_by_any_guard_cv", guards | (oof[y == 1] > cut))
        else:
            emit("adults", f"skipped: {DEFAULT_ADULT_REFERENCE} not found")
    rng = np.random.default_rng(0)
    refused, flagged = [], []
    for kind in NON_XRAY_KINDS:  # each through Predictor.predict, as a PNG file: the product's own decision
        preds = [predictor.predict(cv2.imencode(".png", (non_xray(kind, 256, rng) * 255).astype(np.uint8))[1].tobytes())
                 for _ in range(args.per_kind)]
        refused.append(np.array([not p.assessed for p in preds]))
        flagged.append(np.array([not p.assessed or p.out_of_distribution for p in preds]))
        rate(f"non_xray_{kind}_refused_rate", refused[-1])
    rate("non_xray_all_refused_rate", np.concatenate(refused))
    rate("non_xray_all_refused_or_warned_rate", np.concatenate(flagged))


def check_set(predictor, held_out_names: set[str]) -> None:
    """Predict every film of the hard pediatric check set; none may be refused."""
    names = [line.split("\t")[0] for line in CHECK_SET.read_text().splitlines() if line and not line.startswith("#")]
    refused, warned, in_held_out = [], [], 0
    for name in names:
        pred = predictor.predict(SHARED_TRAIN / name)
        in_held_out += name in held_out_names
        if not pred.assessed:
            refused.append(name)
        elif any("nusual" in w or "adult" in w for w in pred.warnings):
            warned.append(name)
    emit("check_set_films", f"{len(names)} ({in_held_out} in the model's held-out split)")
    emit("check_set_refused", f"{len(refused)} {refused}")
    emit("check_set_warned", f"{len(warned)} {warned}")


if __name__ == "__main__":
    main()
