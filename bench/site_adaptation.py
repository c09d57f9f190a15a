"""Site adaptation, measured on a real second site (`--site DIR`: the recipe is chosen here) and on simulated sites.

A real site (`--site ../shared/data/kermany-site-a`, saved as site_adaptation_site_a): the site's films are screened
by the parent and split into 5 patient-grouped folds, as `site-model adapt` splits them; each recipe variant is
cross-fitted (`train.site.cross_fit`), so every film gets an out-of-fold score from a model that never saw its
patient. Per variant: the epoch chosen by the pooled out-of-fold AUC, that AUC with its 95 % CI and its paired
difference from the parent on the same films, the highest specificity at sensitivity >= 0.95 (a ranking figure), the
sensitivity and specificity at the threshold the rule picks (in-sample, and judged on folds it did not see), and the
time of the 5 folds. The AUC at the last epoch shows what choosing the epoch adds.

    python bench/site_adaptation.py --site DIR [--model DIR_OR_ID] [--variants NAME,...] [--save]

A site: the model's held-out training patients (its card's validation split, never trained on) rendered by
another X-ray unit, i.e. every shift of the realistic acquisition family (cxr_core.inputs.shifts: soft
exposure, scatter glare, detector unsharpness, tone curve, annotations) at one severity. Each site's patients
are split in two halves (patient-grouped); `train.site.adapt` adapts the model on N films per class drawn from
one half (patients whole), and both the parent and the adapted model are scored on the other half, which the
adaptation never saw: AUC, and the highest specificity at sensitivity >= 0.95 (an oracle threshold, as a
ranking figure), and each at its own threshold. The wall time of each adaptation is reported.

    python bench/site_adaptation.py [--model DIR_OR_ID] [--severities 1,2,3] [--per-class 50,100,150] [--save]

(The saved simulated-site table, bench/results/site_adaptation.txt, was measured with the recipe before site A: a
60/40 split, head first, BatchNorm frozen, the parent's augmentation.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _common import SHARED_TRAIN, SITE_A, emit, save_as, use_temporary_home  # noqa: E402



def variants() -> dict[str, object]:
    """The recipes measured on a real site: the chosen one, then one change at a time, then the recipe before."""
    from train.site import Recipe

    chosen = Recipe()
    return {"chosen": chosen,
            "batchnorm frozen": Recipe(batchnorm="frozen"),
            "light augmentation": Recipe(augment="light"),
            "parent's augmentation": Recipe(augment="parent"),
            "head first (2 epochs)": Recipe(head_epochs=2),
            "learning rate 3e-4": Recipe(learning_rate=3e-4),
            "learning rate 3e-5": Recipe(learning_rate=3e-5),
            "12 epochs": Recipe(epochs=12),
            "label smoothing 0.1": Recipe(label_smoothing=0.1),
            "binary loss": Recipe(loss="binary"),
            "recipe before site A": Recipe(batchnorm="frozen", augment="parent", head_epochs=2, label_smoothing=0.1,
                                           epochs=12)}


def real_site(args: argparse.Namespace) -> None:
    """The variants cross-fitted on one real site's films (module docstring)."""
    from dataclasses import asdict

    from cxr_core.model.predict import Predictor
    from cxr_core.settings import current
    from cxr_core.site.films import films_from_folder, folds, screen
    from cxr_core.site.evidence import compare, site_threshold, threshold_cross_check
    from cxr_core.request import Request
    from cxr_core.site.models import quiet_store
    from cxr_core.model import decision as D
    from cxr_core.validation import metrics as M
    from train.site import cross_fit

    parent = Predictor(Request.resolve(quiet_store(), args.model).model_dir)
    screened = screen(films_from_folder(args.site), parent, current().site_min_per_class,
                      current().site_policy.sensitivity_floor)
    yb = screened.binary
    parts = folds(screened, 5, args.seed)
    p_parent = M.pneumonia_probability(screened.parent_probs)
    emit("parent", parent.card.model_id)
    emit("site_films", f"{len(yb)} films of {len(set(screened.groups))} patients ({int(yb.sum())} pneumonia, "
                       f"{int((1 - yb).sum())} normal); {len(parts)} patient-grouped folds, seed {args.seed}; counts "
                       f"{screened.counts}")
    at = M.binary_at_threshold(yb, p_parent, parent.card.threshold)
    emit("parent_on_site", f"AUC {M.safe_auc(yb, p_parent):.3f} spec@sens>=0.95 {spec_at_sensitivity(yb, p_parent):.3f} "
                           f"at its card's threshold {parent.card.threshold:.3f}: sens {at['sensitivity']:.3f} spec "
                           f"{at['specificity']:.3f} acc {at['accuracy']:.3f}")
    chosen = [v.strip() for v in args.variants.split(",")] if args.variants else list(variants())
    for name in chosen:
        recipe = variants()[name]
        t0 = time.time()
        fit = cross_fit(parent, screened, parts, recipe, args.seed)
        seconds = time.time() - t0
        epoch = fit.best_epoch(yb)
        p = M.pneumonia_probability(M.as_three_class(D.softmax(fit.logits[epoch - 1])))
        threshold = site_threshold(yb, p, 0.95)
        ev = compare(yb, p_parent, parent.card.threshold, p, threshold, seed=args.seed)
        check = threshold_cross_check(yb, p, parts, 0.95)
        a, d = ev["adapted"], ev["difference"]
        last = fit.auc_by_epoch(yb)[-1]
        emit(f"variant {name}",
             f"epoch {epoch}/{recipe.epochs} out-of-fold AUC {a['auc']:.3f} [{a['auc_ci95'][0]:.3f}, "
             f"{a['auc_ci95'][1]:.3f}] (last epoch {last:.3f}); vs parent {d['auc']:+.3f} [{d['auc_ci95'][0]:+.3f}, "
             f"{d['auc_ci95'][1]:+.3f}]; spec@sens>=0.95 {spec_at_sensitivity(yb, p):.3f}; rule threshold "
             f"{threshold:.3f}: sens {a['sensitivity']:.3f} (low {a['sensitivity_ci95'][0]:.3f}) spec "
             f"{a['specificity']:.3f}; cross-checked: sens {check['sensitivity']:.3f} spec {check['specificity']:.3f}; "
             f"{seconds:.0f} s; recipe {asdict(recipe)}")


def spec_at_sensitivity(y: np.ndarray, p: np.ndarray, target: float = 0.95) -> float:
    from cxr_core.validation.metrics import _skm

    fpr, tpr, _ = _skm().roc_curve(y, p)
    ok = tpr >= target
    return float(1 - fpr[ok].min()) if ok.any() else 0.0


def render_site(records: list, severity: int) -> list[tuple[str, bytes, object]]:
    """(Kaggle name, PNG bytes, record) of each film under the whole acquisition family at `severity`."""
    from cxr_core.inputs.imaging import load_image
    from cxr_core.inputs.shifts import ACQUISITION, SHIFTS, image_rng

    out = []
    for i, r in enumerate(records):
        gray = load_image(r.path).pixels
        for name in ACQUISITION:
            gray = SHIFTS[name](gray, severity, image_rng(name, severity, i))
        ok, png = cv2.imencode(".png", (np.clip(gray, 0, 1) * 255).round().astype(np.uint8))
        out.append((f"{r.path.parent.name}/{r.path.name.rsplit('.', 1)[0]}.png", png.tobytes(), r))
    return out


def halves(records: list, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.array([r.label for r in records])
    g = np.array([r.patient for r in records])
    a, b = next(StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, g))
    return a, b


def draw(records: list, idx: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Whole patients of `idx`, shuffled, until each binary class has `per_class` films (or none are left)."""
    rng = np.random.default_rng(seed)
    patients = sorted({records[i].patient for i in idx})
    rng.shuffle(patients)
    by_patient: dict[str, list[int]] = {}
    for i in idx:
        by_patient.setdefault(records[i].patient, []).append(int(i))
    chosen, counts = [], [0, 0]
    for p in patients:
        films = by_patient[p]
        cls = records[films[0]].binary
        if counts[cls] >= per_class:
            continue
        chosen += films
        counts[cls] += len(films)
    return np.array(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="the parent: a model folder or id (default: the active model)")
    ap.add_argument("--severities", default="1,2,3")
    ap.add_argument("--per-class", default="50,100,150")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--site", help="a real site's labelled folder: measure the recipe variants on it")
    ap.add_argument("--variants", help="with --site: only these variants (comma-separated names)")
    args = ap.parse_args()
    if args.site:
        if not Path(args.site).is_dir():
            raise SystemExit(f"No site films at {args.site}: this mode needs them (e.g. {SITE_A}).")
        save_as("site_adaptation_site_a")
        use_temporary_home("cxr-bench-site-")
        real_site(args)
        return
    if not SHARED_TRAIN.is_dir():
        raise SystemExit(f"The training data is not at {SHARED_TRAIN}: this bench needs it.")
    use_temporary_home("cxr-bench-site-")
    from cxr_core.request import Request
    from cxr_core.site.models import quiet_store
    from cxr_core.model.predict import Predictor
    from cxr_core.validation.dataset import held_out_split
    from cxr_core.site.films import SiteFilm
    from cxr_core.validation.dataset import parse_name
    from cxr_core.validation.metrics import binary_at_threshold, safe_auc
    from train.site import adapt

    parent_dir = Request.resolve(quiet_store(), args.model).model_dir
    parent = Predictor(parent_dir)
    _, held = held_out_split(parent_dir)
    emit("parent", parent.card.model_id)
    emit("held_out_patients_films", f"{len(held)} films of {len({r.patient for r in held})} patients")
    first, second = halves(held, args.seed)
    emit("sites", "the held-out films under every acquisition shift at one severity; adapt on half A, score half B")
    times = []
    for severity in [int(s) for s in args.severities.split(",")]:
        site = render_site(held, severity)
        test_bytes = [(name, data) for name, data, _ in (site[i] for i in second)]
        yb = np.array([held[i].binary for i in second])

        def score(predictor: Predictor) -> np.ndarray:
            preds = list(predictor.predict_many(test_bytes, batch_size=32))
            return np.array([p.raw_pneumonia_probability for p in preds])

        p_parent = score(parent)
        at_parent = binary_at_threshold(yb, p_parent, parent.card.threshold)
        emit(f"site_severity{severity}_parent",
             f"n={len(yb)} AUC {safe_auc(yb, p_parent):.3f} spec@sens>=0.95 {spec_at_sensitivity(yb, p_parent):.3f} "
             f"at own threshold: sens {at_parent['sensitivity']:.3f} spec {at_parent['specificity']:.3f} "
             f"acc {at_parent['accuracy']:.3f}")
        for per_class in [int(n) for n in args.per_class.split(",")]:
            idx = draw(held, first, per_class, args.seed)
            films = []
            for i in idx:
                name, data, r = site[i]
                folder, file = name.split("/")
                parsed = parse_name(folder, file)
                films.append(SiteFilm(data, r.binary, r.label, "name-" + parsed[1], True))
            t0 = time.time()
            result = adapt(parent_dir, films, "bench", "folder", seed=args.seed,
                           min_per_class=min(25, per_class))
            seconds = time.time() - t0
            times.append(seconds)
            adapted = Predictor(result["model_dir"])
            p_adapted = score(adapted)
            at = binary_at_threshold(yb, p_adapted, adapted.card.threshold)
            emit(f"site_severity{severity}_adapted_{per_class}_per_class",
                 f"films {len(films)} AUC {safe_auc(yb, p_adapted):.3f} spec@sens>=0.95 "
                 f"{spec_at_sensitivity(yb, p_adapted):.3f} at own threshold: sens {at['sensitivity']:.3f} spec "
                 f"{at['specificity']:.3f} acc {at['accuracy']:.3f}; local-validation gate "
                 f"{'passed' if result['passed_gate'] else 'refused'}; {seconds:.0f} s")
    emit("adaptation_wall_time_s", f"{np.mean(times):.1f} mean, {np.max(times):.1f} max (2 CPU cores)")


if __name__ == "__main__":
    main()
