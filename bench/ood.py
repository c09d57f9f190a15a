"""The input guards of a model, measured: what each refuses or warns on, with Wilson 95 % intervals, on

- the foreign-input set (testkit/foreign.py: text pages, screenshots, charts, tables, drawings, a CT head phantom,
  textures, photographs, CT and MR slices, other body parts), per kind, each file through Predictor.predict;
- the model's held-out pediatric films, each judged by thresholds calibrated without its patient
  (cxr_core.fitting.guards.held_out_flags);
- the hard pediatric check set (bench/checksets/hard_pediatric.txt: tubes, leads, rotation, markers, picked by
  eye; most are training films), predicted as a user would;
- site A's films (`../shared/data/kermany-site-a`, children of another period), predicted as a user would;
- the adult reference films: the image guards with the model's thresholds (never fitted on adults), the
  population check by patient-grouped cross-validation (its out-of-fold verdict per film);
- the held-out pediatric films under each realistic acquisition shift at severity 2 (cxr_core.inputs.shifts),
  judged, like the clean ones, by thresholds calibrated on other patients' clean films.

Columns: `layout` (pixel PCA, refuses), `appearance` (the chest-appearance autoencoder, refuses), `features`
(model features, warns unusual / very unusual), `adult` (population check, warns), then the product's answer:
`refused` (not assessed) and `flagged` (refused or any guard warning). Then what the appearance check adds:
what it refuses that every other rule left assessed, and what it costs on pediatric films.

    python bench/ood.py [--model DIR_OR_ID] [--per-kind 24] [--save]
"""

from __future__ import annotations

import argparse

import numpy as np  # noqa: E402
from _common import ROOT, SHARED_TRAIN, SITE_A, cell, emit  # noqa: E402

CHECK_SET = ROOT / "bench" / "checksets" / "hard_pediatric.txt"
COLUMNS = ("layout", "appearance", "features", "adult", "refused", "flagged")


def row(name: str, flags: dict[str, np.ndarray | None]) -> None:
    emit(f"{name:28s}", " | ".join(f"{cell(flags.get(c)):>24s}" for c in COLUMNS))


def cross_fitted_excess(reference: np.ndarray, target: np.ndarray, groups: list[str], rule) -> np.ndarray:
    """`target[i]` over `rule`'s threshold calibrated on the `reference` scores of the other patient-grouped folds
    (above 1: over it; reference = target gives cxr_core.safety.ood.cross_fitted_flags)."""
    from cxr_core.safety.ood import cross_fitted_thresholds, excess

    return excess(target, cross_fitted_thresholds(reference, groups, rule))


def appearance_excess(predictor, x: np.ndarray) -> np.ndarray:
    """Per model input, the chest-appearance check's excess (cxr_core.safety.appearance.AppearanceCheck.checks)."""
    return np.array([c.excess for c in predictor.appearance.checks(x)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder or registered id (default: the active model)")
    ap.add_argument("--per-kind", type=int, default=24, help="foreign images of each kind")
    args = ap.parse_args()
    from cxr_core.request import Request
    from cxr_core.site.models import quiet_store
    from cxr_core.model.predict import Predictor

    predictor = Predictor(Request.resolve(quiet_store(), args.model).model_dir)
    if predictor.ood is None or predictor.appearance is None:
        raise SystemExit("the model lacks its image guards; run python -m cxr_core fit-ood")
    emit("model", predictor.card.model_id)
    emit("columns", "set | " + " | ".join(COLUMNS) + "   (each: k/n rate [Wilson 95 %])")
    adds = foreign(predictor, args.per_kind)
    if not SHARED_TRAIN.is_dir():
        emit("pediatric_and_adult_films", f"skipped: {SHARED_TRAIN} not found")
    else:
        adds += pediatric_and_adults(predictor)
    for line in adds:
        emit(*line)


def foreign(predictor, per_kind: int) -> list[tuple[str, str]]:
    """Per kind: each guard on the model input, and the product's answer through Predictor.predict; of the images
    the population check calls adult, how far both chest checks place them outside (the adult rule's measure)."""
    from cxr_core.inputs.imaging import load_image
    from cxr_core.fitting.guards import joint_excesses
    from cxr_core.safety.intended_use import ADULT_FOREIGN_MARGIN
    from cxr_core.safety.ood import PIXEL_REASON
    from cxr_core.safety.appearance import REASON
    from testkit.foreign import FOREIGN_KINDS, foreign_set

    new = REASON.split("(")[0]
    alone, without, total, joint = [], [], [], []
    for kind in FOREIGN_KINDS:
        items = [data for _, data in foreign_set(per_kind, seed=0, kinds=(kind,))]
        x = np.stack([predictor.preprocess(load_image(data).pixels) for data in items])
        preds = [predictor.predict(data) for data in items]
        pooled = predictor.forward(x, heatmaps=False)[2]
        found, looks = predictor.ood.findings(x, pooled), appearance_excess(predictor, x)  # the autoencoder once
        others = np.array([any(not r.startswith(new) for r in p.not_assessed_reasons) for p in preds])
        flags = {"layout": found["refused"], "appearance": looks > 1,
                 "features": found["unusual"] | found["very_unusual"],
                 "adult": predictor.adult_check.flags(x) if predictor.adult_check is not None else None,
                 "refused": np.array([not p.assessed for p in preds]),
                 "flagged": np.array([not p.assessed or bool(p.warnings) for p in preds])}
        row(f"foreign: {kind}", flags)
        if flags["adult"] is not None:  # what the adult rule weighs: both chest checks' excess, on the adult-looking
            both = joint_excesses(predictor.ood.layout_excess(x), looks)
            elsewhere = np.array([any(not r.startswith(new) and r != PIXEL_REASON for r in p.not_assessed_reasons)
                                  for p in preds])  # refused before the chest checks (colour, blank)
            joint.append(both[flags["adult"] & ~elsewhere])
        alone.append(flags["refused"] & ~others)
        without.append(others)
        total.append(flags["refused"])
    refused, without_it, only = (np.concatenate(v) for v in (total, without, alone))
    row("foreign: all kinds", {"refused": refused})
    return [("foreign_refused_with_the_appearance_check", cell(refused)),
            ("foreign_refused_without_it (colour, blank and layout rules alone)", cell(without_it)),
            ("foreign_refused_by_the_appearance_check_alone", cell(only)),
            ("foreign_called_adult_refused_by_both_chest_checks: lowest product of their excesses "
             f"(ADULT_FOREIGN_MARGIN {ADULT_FOREIGN_MARGIN:g})", extreme(np.concatenate(joint or [np.zeros(0)])))]


def extreme(values: np.ndarray, pick=np.min) -> str:
    """The lowest (or, with pick=np.max, highest) joint excess of the films where both chest checks refuse (> 0)."""
    values = values[values > 0]
    return f"{pick(values):.2f} (n {len(values)})" if len(values) else "none (n 0)"


def pediatric_and_adults(predictor) -> list[tuple[str, str]]:
    from cxr_core.inputs.imaging import load_image
    from cxr_core.safety.appearance import RULES, furthest
    from cxr_core.fitting.guards import held_out_flags, joint_excesses, refused_by_chest_checks
    from cxr_core.validation.dataset import held_out_split
    from cxr_core.safety.ood import FEATURE_UNUSUAL, FEATURE_VERY_UNUSUAL, PIXEL_REFUSAL, cross_fitted_thresholds
    from cxr_core.safety.population import DEFAULT_ADULT_REFERENCE, PEDIATRIC_FALSE_ALARM_QUANTILE
    from cxr_core.safety.population import cross_validated_scores, load_adult_reference
    from cxr_core.inputs.shifts import ACQUISITION, SHIFTS, image_rng

    def features(x: np.ndarray) -> np.ndarray:
        return np.concatenate([predictor.forward(x[i:i + 64], heatmaps=False)[2] for i in range(0, len(x), 64)])

    def scores(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"pixel": predictor.ood.pixel_scores(x), "feature": predictor.ood.feature_scores(features(x)),
                **predictor.appearance.scores(x)}

    model_dir = predictor.model_dir
    train, held = held_out_split(model_dir, SHARED_TRAIN)
    patients = [r.patient for r in held]
    gray = [load_image(r.path).pixels for r in held]
    x = np.stack([predictor.preprocess(g) for g in gray])
    flags = held_out_flags(predictor.ood, predictor.appearance, predictor.adult_check, x, features(x), patients)
    row("held-out pediatric", {"layout": flags["refused_layout"], "appearance": flags["refused_appearance"],
                               "features": flags["unusual"] | flags["very_unusual"], "adult": flags["population"],
                               "refused": flags["refused"], "flagged": flags["flagged"]})
    out = [("held_out_pediatric_refused_by_the_appearance_check_alone",
            cell(flags["refused_appearance"] & ~flags["refused_layout"]))]

    check_set(predictor, {r.path.relative_to(SHARED_TRAIN).as_posix() for r in held})
    external_site(predictor)

    clean = scores(x)
    for name in ACQUISITION:
        shifted = np.stack([predictor.preprocess(SHIFTS[name](g, 2, image_rng(name, 2, i))) for i, g in enumerate(gray)])
        s = scores(shifted)
        beyond = {k: cross_fitted_excess(clean[key], s[key], patients, rule) for k, key, rule in (
            ("pixel", "pixel", PIXEL_REFUSAL), ("unusual", "feature", FEATURE_UNUSUAL),
            ("very", "feature", FEATURE_VERY_UNUSUAL))}
        over = {k: v > 1 for k, v in beyond.items()}
        looks = furthest(s, {k: cross_fitted_thresholds(clean[k], patients, rule) for k, rule in RULES.items()})
        adult = predictor.adult_check.flags(shifted) if predictor.adult_check is not None else np.zeros(len(x), bool)
        refused = refused_by_chest_checks(beyond["pixel"], looks, adult)
        row(f"held-out pediatric, {name}:2", {"layout": over["pixel"], "appearance": looks > 1,
                                              "features": over["unusual"] | over["very"], "adult": adult,
                                              "refused": refused,
                                              "flagged": refused | over["unusual"] | over["very"] | adult})

    if not DEFAULT_ADULT_REFERENCE.is_dir():
        return out + [("adults", f"skipped: {DEFAULT_ADULT_REFERENCE} not found")]
    x_train = np.stack([predictor.preprocess.load(r.path) for r in train])
    adults, groups = load_adult_reference(DEFAULT_ADULT_REFERENCE, predictor.preprocess)
    _, y, oof = cross_validated_scores(x_train, [r.patient for r in train], adults, groups)
    population = oof[y == 1] > np.quantile(oof[y == 0], PEDIATRIC_FALSE_ALARM_QUANTILE)
    found = predictor.ood.findings(adults, features(adults))
    layout, looks = predictor.ood.layout_excess(adults), appearance_excess(predictor, adults)
    refused = refused_by_chest_checks(layout, looks, population)  # the product's rule, CV population
    warned = found["unusual"] | found["very_unusual"]
    row("adult reference (CV)", {"layout": found["refused"], "appearance": looks > 1, "features": warned,
                                 "adult": population, "refused": refused, "flagged": refused | warned | population})
    return out + [("adult_films_refused (chest films: a cost, not a catch; refused only where both chest checks "
                   "refuse a film the population check calls adult, together by ADULT_FOREIGN_MARGIN)", cell(refused)),
                  ("adult_films_refused_by_both_chest_checks: highest product of their excesses",
                   extreme(joint_excesses(layout, looks), np.max))]


def check_set(predictor, held_out_names: set[str]) -> None:
    """Predict every film of the hard pediatric check set, as a user would; none may be refused."""
    names = [line.split("\t")[0] for line in CHECK_SET.read_text().splitlines() if line and not line.startswith("#")]
    flags, preds = as_a_user_would(predictor, [SHARED_TRAIN / name for name in names])
    row(f"hard check set ({sum(n in held_out_names for n in names)} held out)", flags)
    emit("check_set_refused", str([n for n, p in zip(names, preds) if not p.assessed]))


def external_site(predictor) -> None:
    """Every film of site A (pediatric, another period's patients), as a user would: the population check's
    false alarms on children the model never saw, and the guards' on another site."""
    from cxr_core.validation.dataset import index_dataset

    if not SITE_A.is_dir():
        emit("site_a", f"skipped: {SITE_A} not found")
        return
    files = [r.path for r in index_dataset(SITE_A)]
    flags, _ = as_a_user_would(predictor, files)
    row("site A (external pediatric)", flags)
    emit("site_a_flagged_adult", ", ".join(f"{f.parent.name}/{f.name}" for f, a in zip(files, flags["adult"]) if a))


def as_a_user_would(predictor, paths: list) -> tuple[dict[str, np.ndarray], list]:
    """Each film through Predictor.predict; each guard's finding on it (the model's layout and feature checks on
    its input, the others from the answer)."""
    from cxr_core.safety.appearance import REASON

    preds = [predictor.predict(path) for path in paths]
    x = np.stack([predictor.preprocess.load(path) for path in paths])
    found = predictor.ood.findings(x, np.concatenate([predictor.forward(x[i:i + 64], heatmaps=False)[2]
                                                      for i in range(0, len(x), 64)]))
    new = REASON.split("(")[0]
    return {"layout": found["refused"],
            "appearance": np.array([any(r.startswith(new) for r in p.not_assessed_reasons) for p in preds]),
            "features": found["unusual"] | found["very_unusual"],
            "adult": np.array([any("adult" in w for w in p.warnings) for p in preds]),
            "refused": np.array([not p.assessed for p in preds]),
            "flagged": np.array([not p.assessed or any("nusual" in w or "adult" in w for w in p.warnings)
                                 for p in preds])}, preds

if __name__ == "__main__":
    main()
