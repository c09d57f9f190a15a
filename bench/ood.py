"""Out-of-distribution detector of the active model: false alarms on internal-validation X-rays and
detection of inputs that are not chest radiographs.

    python bench/ood.py [--per-kind 40]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from _common import SHARED_TRAIN, emit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-kind", type=int, default=40)
    args = ap.parse_args()
    from cxr_core.dataset import index_dataset, split_for
    from cxr_core.population import DEFAULT_ADULT_REFERENCE as ADULT_REFERENCE
    from cxr_core.population import load_adult_reference
    from cxr_core.predict import Predictor
    from cxr_core.registry import Registry
    from tests.synthetic import NON_XRAY_KINDS, non_xray

    entry = Registry().active()
    predictor = Predictor(entry.path)
    if predictor.ood is None:
        raise SystemExit("the active model has no OOD detector; run python -m cxr_core fit-ood")
    emit("model", entry.model_id)

    def flags(batch: np.ndarray) -> np.ndarray:
        _, _, pooled = predictor.forward(batch)
        return predictor.ood.flags(batch, pooled)

    if SHARED_TRAIN.is_dir():
        _, va = split_for(index_dataset(SHARED_TRAIN), entry.card["data"])
        x = np.stack([predictor.preprocess.load(r.path) for r in va])
        fa = np.concatenate([flags(x[i:i + 64]) for i in range(0, len(x), 64)])
        emit("false_alarm_rate_internal_validation_xrays", float(fa.mean()))
        emit("internal_validation_images", str(len(x)))
        if predictor.adult_check is not None:
            emit("population_check_false_alarm_rate_internal_validation_xrays", float(predictor.adult_check.flags(x).mean()))
    else:
        emit("false_alarm_rate_internal_validation_xrays", "skipped: ../shared data not found")
    if ADULT_REFERENCE.is_dir() and predictor.adult_check is not None:
        # The check was fitted on these films: this in-sample rate flatters; the model card holds the
        # patient-grouped cross-validated rate, which is the one to quote.
        adults, _ = load_adult_reference(ADULT_REFERENCE, predictor.preprocess)
        emit("population_check_adult_detection_in_sample", float(predictor.adult_check.flags(adults).mean()))
    pop = entry.card.get("population_check") or {}
    if pop.get("fitted"):
        emit("population_check_cv_adult_detection_rate", float(pop["cv_adult_detection_rate"]))
        emit("population_check_cv_pediatric_false_alarm_rate", float(pop["cv_pediatric_false_alarm_rate"]))
    rng = np.random.default_rng(0)
    total, caught = 0, 0
    for kind in NON_XRAY_KINDS:
        batch = np.stack([predictor.preprocess(non_xray(kind, 256, rng)) for _ in range(args.per_kind)])
        f = flags(batch)
        emit(f"detection_rate_{kind}", float(f.mean()))
        total, caught = total + len(f), caught + int(f.sum())
    emit("detection_rate_all_non_xrays", caught / total)


if __name__ == "__main__":
    main()
