"""Evaluate a model on a labelled folder and keep the per-image scores for the dashboards.

Scores are saved outside the model folder (a registered model never changes), under
`$CXR_HOME/evaluations/<model id>/<folder>-<data fingerprint>/{scores.csv, summary.json}`. The
internal-validation scores written at training time use the same CSV format (`validation_scores.csv`
in the model folder), so every chart can be redrawn later without the images.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import CLASSES
from .dataset import fingerprint, index_dataset, split_for
from .errors import CXRError, RegistryError
from .paths import evaluations_dir
from .fileio import write_atomic, write_json_atomic

SCORES_HEADER = "file,label,p_normal,p_bacterial,p_viral"


@dataclass
class EvalResult:
    summary: dict[str, Any]
    files: list[str]
    labels: np.ndarray
    probs: np.ndarray
    saved_to: Path | None


def write_scores(path: Path, files: list[str], labels: np.ndarray, probs: np.ndarray) -> None:
    rows = [SCORES_HEADER]
    rows += [f"{f},{CLASSES[int(y)]},{p[0]!r},{p[1]!r},{p[2]!r}" for f, y, p in zip(files, labels, map(lambda q: [float(v) for v in q], probs))]
    write_atomic(Path(path), ("\n".join(rows) + "\n").encode())


def read_scores(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(files, 3-class labels, N x 3 probabilities) from a scores CSV."""
    lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    if not lines or lines[0] != SCORES_HEADER:
        raise CXRError(f"{str(path)!r} is not a scores file (expected header {SCORES_HEADER!r}).")
    files, labels, probs = [], [], []
    for line in lines[1:]:
        f, lab, *ps = line.rsplit(",", 4)
        files.append(f)
        labels.append(CLASSES.index(lab))
        probs.append([float(v) for v in ps])
    return files, np.array(labels, dtype=int), np.array(probs, dtype=np.float64).reshape(-1, 3)


def saved_evaluations(model_dir: str | Path, model_id: str | None = None) -> dict[str, Path]:
    """Name -> scores.csv of every saved evaluation, internal validation first, then the newest first.
    A saved evaluation is named by its folder, date and size: "chest_xray/test (2026-11-22 14:05 UTC, n = 624)"."""
    model_dir = Path(model_dir)
    out: dict[str, Path] = {}
    if (model_dir / "validation_scores.csv").is_file():
        out["internal validation"] = model_dir / "validation_scores.csv"
    saved = []
    for scores in evaluations_dir(model_id or model_dir.name).glob("*/scores.csv"):
        try:
            s = json.loads((scores.parent / "summary.json").read_text(encoding="utf-8"))
            saved.append((s["evaluated"], f"{s['data']} ({s['evaluated'][:16].replace('T', ' ')} UTC, n = {s['n']})", scores))
        except (OSError, ValueError, KeyError):
            continue  # a half-written or foreign folder: not listed
    for _, name, scores in sorted(saved, reverse=True):
        out[name] = scores
    return out


def evaluate_folder(model_dir: str | Path, data_dir: str | Path, n_boot: int = 1000,
                    progress: Callable[[int], Any] | None = None, save: bool = True,
                    predictor: Any | None = None) -> EvalResult:
    """Predict every labelled image of `data_dir` and summarise. Unreadable files are listed, not fatal."""
    from .metrics import evaluation_summary
    from .predict import Predictor

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CXRError(f"{str(data_dir)!r} is not a folder.")
    records = index_dataset(data_dir)
    predictor = predictor or Predictor(model_dir)
    bar = progress(len(records)) if progress else None
    files, labels, probs, failed = [], [], [], []
    items = [(f"{r.path.parent.name}/{r.path.name}", r.path) for r in records]
    for rec, pred in zip(records, predictor.predict_many(items, progress=bar)):
        if pred.error:
            failed.append({"file": pred.file, "error": pred.error})
            continue
        files.append(pred.file)
        labels.append(rec.label)
        cp = pred.class_probabilities
        probs.append([cp["NORMAL"], cp["BACTERIAL"] or 0.0, cp["VIRAL"] or 0.0])
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    if not files:
        raise CXRError(f"None of the {len(records)} images in {str(data_dir)!r} could be read.")
    y, P = np.array(labels), np.array(probs)
    summary = evaluation_summary(y, P, predictor.threshold, n_boot=n_boot)
    summary.update(model=predictor.card.get("model_id", Path(model_dir).name), data=str(data_dir.resolve()),
                   data_fingerprint=fingerprint(records), failed=failed,
                   evaluated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    saved_to = None
    if save:
        folder = evaluations_dir(summary["model"]) / f"{data_dir.name}-{summary['data_fingerprint']}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_scores(folder / "scores.csv", files, y, P)
            write_json_atomic(folder / "summary.json", summary)
            saved_to = folder
        except (OSError, RegistryError):
            saved_to = None  # an unwritable $CXR_HOME: the summary is still printed
    return EvalResult(summary, files, y, P, saved_to)


def fit_ood_for_model(model_dir: str | Path, data_dir: str | Path | None = None,
                      adult_dir: str | Path | None = None) -> dict[str, Any]:
    """Fit the OOD detector and the population check on the model's own training split (plus the adult
    reference set); report the internal-validation false-alarm rate and the check's cross-validated rates."""
    from .ood import OODDetector
    from .population import DEFAULT_ADULT_REFERENCE, fit_for_model
    from .predict import Predictor

    model_dir = Path(model_dir)
    card = json.loads((model_dir / "model_card.json").read_text())
    d = card["data"]
    tr, va = split_for(index_dataset(Path(data_dir or d["root"])), d)
    predictor = Predictor(model_dir)

    def arrays(records: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([predictor.preprocess.load(r.path) for r in records])
        pooled = np.concatenate([predictor.forward(x[i:i + 64])[2] for i in range(0, len(x), 64)])
        return x, pooled

    x_tr, f_tr = arrays(tr)
    detector = OODDetector.fit(x_tr, f_tr)
    check, population = fit_for_model(x_tr, [r.patient for r in tr], predictor.preprocess,
                                      adult_dir or DEFAULT_ADULT_REFERENCE)
    x_va, f_va = arrays(va)
    false_alarm = float(detector.flags(x_va, f_va).mean())
    detector.save(model_dir)
    if check is not None:
        population["val_pediatric_false_alarm_rate"] = float(check.flags(x_va).mean())
        check.save(model_dir)
    return {"model": card.get("model_id"), "n_train": len(tr), "n_val": len(va),
            "val_false_alarm_rate": false_alarm, "pixel_threshold": detector.pixel_threshold,
            "feature_threshold": detector.feature_threshold, "population_check": population}
