"""Choosing the shipped default on an external site: each candidate model scored on a labelled site it never trained
on, with its internal figures beside, and the mean of every group of two or more candidates (an ensemble of their
class probabilities); every other single candidate's AUC minus the first's (put the current default first), paired
on the same films. Ranked by external AUC, then by the specificity at the highest threshold with sensitivity
>= 0.95 on the site; internal validation is shown, not used (it ranked the project's shipped models in reverse).

    python bench/external_choice.py [--site DIR] CANDIDATE ... [--save]
        [--record-into MODEL_DIR --chosen NAME --reason TEXT]

`--record-into` writes this run's table, the choice and its reason into that model's card (`selection`, rendered
in MODEL_CARD.md and the README's shipped-model section): how the shipped default's card records why it ships.

A CANDIDATE is a model folder or REV:PATH, a model folder in the project's git history (e.g.
`ccb7b4d:assets/models/cxrnet-shipped-20261122-031100-e803ba214b`), extracted to a temporary folder. Saved as
bench/results/external_choice_site_a.txt; bench/update_readme.py renders it as a table.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, SITE_A, emit, save_as, use_temporary_home  # noqa: E402



def extract(candidate: str) -> Path:
    """A model folder: as given, or REV:PATH checked out of git into a temporary folder."""
    if Path(candidate).is_dir():
        return Path(candidate)
    rev, _, path = candidate.partition(":")
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, path], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    if not files:
        raise SystemExit(f"{candidate!r} is neither a folder nor REV:PATH of a model folder in git.")
    out = Path(tempfile.mkdtemp(prefix="cxr_candidate_")) / Path(path).name
    out.mkdir()
    for name in files:
        blob = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, check=True).stdout
        (out / Path(name).name).write_bytes(blob)
    return out


def figures(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """External AUC with its CI; at the highest threshold with sensitivity >= 0.95: sensitivity, specificity and
    3-class accuracy."""
    from cxr_core.validation.metrics import (bootstrap_ci, choose_threshold, operating_point_evidence, safe_auc,
                                             three_class)

    yb, p = (y > 0).astype(int), 1.0 - probs[:, 0]
    threshold = choose_threshold(yb, p, "sensitivity", 0.95)
    at = operating_point_evidence(yb, p, threshold)
    return {"auc": safe_auc(yb, p), "auc_ci": bootstrap_ci(y, probs, threshold)["binary_auc"], "threshold": threshold,
            "sens": at["sensitivity"], "spec": at["specificity"], "acc3": three_class(y, probs, threshold)["accuracy"]}


def internal_of_mean(folders: list[Path]) -> str:
    """The internal AUC [95 % CI] (n) of the mean of these candidates where each was validated on the same held-out
    films (their validation_scores.csv), else why it is not given."""
    from cxr_core.formatting import ci
    from cxr_core.model.folder import ModelFolder
    from cxr_core.validation.evaluation import read_scores

    read = []
    for folder in folders:
        if not ModelFolder(folder).scores_file.is_file():
            return "n/a (a candidate has no validation scores)"
        files, y, probs = read_scores(ModelFolder(folder).scores_file)
        order = np.argsort(files)
        read.append((np.asarray(files)[order], y[order], probs[order]))
    if any(not np.array_equal(files, read[0][0]) for files, _, _ in read):
        return "n/a (validated on different films)"
    f = figures(read[0][1], np.mean([probs for _, _, probs in read], 0))
    return f"{f['auc']:.3f} {ci(f['auc_ci'])} (n {len(read[0][1])})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidates", nargs="+")
    ap.add_argument("--site", default=str(SITE_A))
    ap.add_argument("--record-into", help="a model folder whose card records this table and the choice")
    ap.add_argument("--chosen", help="with --record-into: the candidate chosen (one of the table's names)")
    ap.add_argument("--reason", help="with --record-into: why, in a sentence or two")
    args = ap.parse_args()
    if args.record_into and not (args.chosen and args.reason):
        raise SystemExit("--record-into needs --chosen and --reason.")
    if not Path(args.site).is_dir():
        raise SystemExit(f"No site folder at {args.site}: this bench needs a labelled external site "
                         "(../shared/data/kermany-site-a).")
    save_as("external_choice_site_a")
    use_temporary_home("cxr_bench_external_")
    from cxr_core.formatting import ci
    from cxr_core.model.predict import Predictor
    from cxr_core.site.evidence import compare
    from cxr_core.validation.evaluation import evaluate_folder

    scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    folders: dict[str, Path] = {}
    emit("site", f"{Path(args.site).name} ({Path(args.site).resolve()})")
    rows = []
    for candidate in args.candidates:
        folder = extract(candidate)
        predictor = Predictor(folder)
        card = predictor.card
        result = evaluate_folder(folder, args.site, n_boot=0, save=False, predictor=predictor,
                                 point=predictor.model_point)
        order = np.argsort(result.files)
        y, probs = result.labels[order], result.probs[order]
        scored[card.model_id], folders[card.model_id] = (y, probs), folder
        b = card.binary_metrics
        internal = f"{b.get('auc', float('nan')):.3f} {ci(b.get('auc_ci95'))} (n {card.internal_validation.get('n')})"
        rows.append((card.model_id, internal, figures(y, probs), result.summary["overlap"]["images_in_training"],
                     card.input.get("image_size")))
    names = list(scored)
    for k in range(2, len(names) + 1):
        for group in itertools.combinations(names, k):
            y = scored[group[0]][0]
            if any(not np.array_equal(scored[g][0], y) for g in group):
                continue  # a film failed for one member: not the same films
            rows.append((" + ".join(group), internal_of_mean([folders[g] for g in group]),
                         figures(y, np.mean([scored[g][1] for g in group], 0)), None, None))
    for name, internal, f, in_training, size in rows:
        emit(f"candidate {name}", f"internal AUC {internal}; external AUC {f['auc']:.3f} {ci(f['auc_ci'])}; "
             f"spec@sens>=0.95 {f['spec']:.3f} (threshold {f['threshold']:.3f}, sens {f['sens']:.3f}); "
             f"3-class acc {f['acc3']:.3f}; films in training {'n/a' if in_training is None else in_training}")
    first, y = names[0], (scored[names[0]][0] > 0).astype(int)
    for name in names[1:]:
        if np.array_equal(scored[name][0], scored[first][0]):
            d = compare(y, 1.0 - scored[first][1][:, 0], 0.5, 1.0 - scored[name][1][:, 0], 0.5)["difference"]
            emit(f"paired {name} - {first}", f"AUC difference {d['auc']:+.3f} {ci(d['auc_ci95'])} (the same films, "
                                             "1000 paired resamples)")
    best = max(rows, key=lambda r: (round(r[2]["auc"], 3), r[2]["spec"]))
    emit("best on the site", f"{best[0]} (highest external AUC, then specificity at sensitivity >= 0.95)")
    if args.record_into:
        command = " ".join(["python bench/external_choice.py", *args.candidates,
                            *([] if args.site == str(SITE_A) else ["--site", args.site])])
        record(Path(args.record_into), Path(args.site).name, rows, args.chosen, args.reason, command)


def record(model_dir: Path, site: str, rows: list, chosen: str, reason: str, command: str) -> None:
    """The card's `selection`: this run's candidates on the site, the choice and its reason."""
    import time

    from cxr_core.formatting import ci
    from cxr_core.model.folder import ModelFolder

    if chosen not in [r[0] for r in rows]:
        raise SystemExit(f"--chosen {chosen!r} is not one of the candidates.")
    table = [{"candidate": name, "internal": internal, "external_auc": f"{f['auc']:.3f} {ci(f['auc_ci'])}",
              "spec_at_sens": f"{f['spec']:.3f} ({f['threshold']:.3f}, {f['sens']:.3f})",
              "three_class": f"{f['acc3']:.3f}"} for name, internal, f, _, _ in rows]
    ModelFolder(model_dir).update_card(selection={
        "site": site, "rows": table, "chosen": chosen, "reason": reason, "command": command,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"Recorded the choice in {model_dir}'s card.")


if __name__ == "__main__":
    main()
