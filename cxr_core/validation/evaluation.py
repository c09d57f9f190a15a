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

from .. import CLASSES
from .dataset import fingerprint, index_dataset, label_source
from ..errors import CXRError, StorageError, plain_cause
from ..settings import current
from ..model.folder import ModelFolder
from ..fileio import write_atomic, write_json_atomic
from ..model.operating_point import OperatingPoint
from ..model.predict import Predictor
from ..safety.overlap import overlap_report, pixel_hash
from .metrics import evaluation_summary

SCORES_HEADER = "file,label,p_normal,p_bacterial,p_viral"


class EvaluationFolder:
    """A saved evaluation's folder ($CXR_HOME/evaluations/<model id>/<folder name>-<data fingerprint>/), its layout
    owned here: scores.csv (per-image scores, `read_scores`) and summary.json (the figures, the data, the overlap)."""

    SCORES = "scores.csv"
    SUMMARY = "summary.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    scores_file = property(lambda self: self.path / self.SCORES)
    summary_file = property(lambda self: self.path / self.SUMMARY)

    def summary(self) -> dict[str, Any]:
        """The saved summary; {} when there is none (internal validation) or it cannot be read."""
        try:
            return json.loads(self.summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}


@dataclass
class EvalResult:
    summary: dict[str, Any]
    files: list[str]
    labels: np.ndarray
    probs: np.ndarray
    saved_to: Path | None


def write_scores(path: Path, files: list[str], labels: np.ndarray, probs: np.ndarray) -> None:
    """Per-image scores at full float precision (pandas writes the shortest exact repr)."""
    import pandas as pd  # lazy: heavy

    probs = np.asarray(probs, dtype=np.float64).reshape(-1, 3)
    frame = pd.DataFrame({"file": files, "label": [CLASSES[int(y)] for y in labels], "p_normal": probs[:, 0],
                          "p_bacterial": probs[:, 1], "p_viral": probs[:, 2]})
    write_atomic(Path(path), frame.to_csv(index=False, lineterminator="\n").encode())


def read_scores(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(files, 3-class labels, N x 3 probabilities) from a scores CSV."""
    import pandas as pd  # lazy: heavy

    try:
        frame = pd.read_csv(path, dtype={"file": str, "label": str}, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise CXRError(f"{str(path)!r} cannot be read as a scores file ({plain_cause(exc)}).") from None
    if ",".join(frame.columns) != SCORES_HEADER or not frame["label"].isin(CLASSES).all():
        raise CXRError(f"{str(path)!r} is not a scores file (expected header {SCORES_HEADER!r}).")
    labels = frame["label"].map(CLASSES.index).to_numpy(dtype=int)
    return frame["file"].tolist(), labels, frame[["p_normal", "p_bacterial", "p_viral"]].to_numpy(dtype=np.float64)


def saved_evaluations(model_dir: str | Path, model_id: str | None = None) -> dict[str, Path]:
    """Name -> scores.csv of every saved evaluation, internal validation first, then the newest first.
    A saved evaluation is named by its folder, date and size: "chest_xray/test (2026-11-22 14:05 UTC, n = 624)"."""
    model_dir = Path(model_dir)
    out: dict[str, Path] = {}
    if ModelFolder(model_dir).scores_file.is_file():
        out["internal validation"] = ModelFolder(model_dir).scores_file
    saved = []
    for scores in current().layout.evaluations(model_id or ModelFolder(model_dir).card().model_id).glob(f"*/{EvaluationFolder.SCORES}"):
        s = EvaluationFolder(scores.parent).summary()
        try:
            saved.append((s["evaluated"], f"{s['data']} ({s['evaluated'][:16].replace('T', ' ')} UTC, n = {s['n']})", scores))
        except (OSError, ValueError, KeyError):
            continue  # a half-written or foreign folder: not listed
    for _, name, scores in sorted(saved, reverse=True):
        out[name] = scores
    return out


def evaluate_folder(model_dir: str | Path, data_dir: str | Path, n_boot: int = 1000,
                    progress: Callable[[int], Any] | None = None, save: bool = True,
                    predictor: Predictor | None = None, point: OperatingPoint | None = None) -> EvalResult:
    """Score every labelled image of `data_dir` (`Predictor.score_many`: full-precision probabilities, no heatmaps)
    and summarise at `point` (default: the model's threshold). Unreadable files are listed, not fatal."""

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CXRError(f"{str(data_dir)!r} is not a folder.")
    records = index_dataset(data_dir)
    predictor = predictor or Predictor(model_dir)
    point = point or predictor.model_point
    bar = progress(len(records)) if progress else None
    files, labels, probs, failed, hashes = [], [], [], [], []
    items = [(f"{r.path.parent.name}/{r.path.name}", r.path) for r in records]
    done = 0
    for decoded in predictor.decode_many(items):
        ok = [(records[done + i], d) for i, d in enumerate(decoded) if d.error is None]
        failed += [{"file": d.name, "error": d.error} for d in decoded if d.error is not None]
        if ok:
            probs.append(predictor.score_many(np.stack([d.model_input for _, d in ok])).probabilities)
            hashes += [pixel_hash(d.image.pixels) for _, d in ok]  # for the training-overlap check
            files += [d.name for _, d in ok]
            labels += [rec.label for rec, _ in ok]
        done += len(decoded)
        if bar is not None:
            bar(done)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    if not files:
        raise CXRError(f"None of the {len(records)} images in {str(data_dir)!r} could be read.")
    y, P = np.array(labels), np.concatenate(probs).astype(np.float64)
    summary = evaluation_summary(y, P, point.threshold, n_boot=n_boot)
    summary.update(threshold_source=point.source, model=predictor.card.model_id, data=str(data_dir.resolve()),
                   data_fingerprint=fingerprint(records), failed=failed, label_source=label_source(data_dir),
                   overlap=overlap_report(predictor.card.data.get("fingerprint"), predictor.folder.hashes_file,
                                          fingerprint(records), hashes),
                   evaluated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    saved_to = None
    if save:
        folder = current().layout.evaluations(summary["model"]) / f"{data_dir.name}-{summary['data_fingerprint']}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_scores(EvaluationFolder(folder).scores_file, files, y, P)
            write_json_atomic(EvaluationFolder(folder).summary_file, summary)
            saved_to = folder
        except (OSError, StorageError):
            saved_to = None  # an unwritable $CXR_HOME: the summary is still printed
    return EvalResult(summary, files, y, P, saved_to)
