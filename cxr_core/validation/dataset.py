"""Index a Kaggle-layout CXR folder (NORMAL/, PNEUMONIA/) and split it by patient.

File names carry the labels and the patient:
    NORMAL/IM-0115-0001.jpeg, NORMAL/NORMAL2-IM-1427-0001.jpeg   -> NORMAL, patient IM-0115 / N2-1427
    PNEUMONIA/person1000_bacteria_2931.jpeg                       -> BACTERIAL, patient P1000
    PNEUMONIA/person1000_virus_1681.jpeg                          -> VIRAL, patient P1000
Splits and folds keep every patient's images on one side (no leakage) and are stratified by the
3-class label as far as grouping allows.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import CLASSES
from ..errors import CXRError
from ..inputs.imaging import IMAGE_SUFFIXES
from ..model.folder import ModelFolder
from ..fileio import write_atomic
import json

_NORMAL_RE = re.compile(r"^(NORMAL2-)?IM-(\d+)-\d+", re.IGNORECASE)
_PNEUMONIA_RE = re.compile(r"^person(\d+)_(bacteria|virus)_\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    path: Path
    label: int  # index into CLASSES
    patient: str

    @property
    def binary(self) -> int:
        return int(self.label > 0)


def parse_name(folder: str, filename: str) -> tuple[int, str] | None:
    """(3-class label, patient id) from the folder and file name, or None if it does not parse."""
    stem = Path(filename).stem
    if folder.upper() == "NORMAL":
        m = _NORMAL_RE.match(stem)
        if m:
            return 0, ("N2-" if m.group(1) else "IM-") + m.group(2)
        return 0, "NORMAL:" + stem  # unknown naming: its own patient
    if folder.upper() == "PNEUMONIA":
        m = _PNEUMONIA_RE.match(stem)
        if m:
            return (1 if m.group(2).lower() == "bacteria" else 2), "P" + m.group(1)
        return None  # pneumonia without a cause in the name: no 3-class truth
    return None


def kaggle_name(label: str, patient: int) -> tuple[str, str]:
    """(folder, file name) under which `parse_name` reads back `label` (NORMAL, BACTERIAL or VIRAL) for
    `patient`: what the case store's export writes, so that `evaluate` gets the readers' labels back."""
    if label == "NORMAL":
        return "NORMAL", f"IM-{patient:06d}-0001.png"
    if label in ("BACTERIAL", "VIRAL"):
        return "PNEUMONIA", f"person{patient}_{'bacteria' if label == 'BACTERIAL' else 'virus'}_1.png"
    raise CXRError(f"label {label!r} has no Kaggle-layout name: expected NORMAL, BACTERIAL or VIRAL.")

# Where a labelled folder's labels came from: the case store's export writes this file beside NORMAL/ and
# PNEUMONIA/, and `evaluate` keeps what it says with the evaluation (the site's figures quote it).
LABEL_SOURCE_FILE = "label_source.json"
LABEL_SOURCES = {
    "folder": "labels as given by the folder (its NORMAL/ and PNEUMONIA/ sub-folders)",
    "reviews": "labels from readers' reviews of worklist cases; the readers saw the model's answer, so these "
               "figures may flatter it",
    "reviews and model": "labels from readers' reviews and, for unreviewed cases, the model's own answers",
}
CIRCULAR_SOURCES = ("reviews and model",)  # figures against the model's own answers say nothing


def write_label_source(root: str | Path, source: str) -> None:
    """Record where the labels of the folder `root` came from (one of LABEL_SOURCES)."""

    if source not in LABEL_SOURCES:
        raise CXRError(f"label source {source!r} is invalid: expected one of {tuple(LABEL_SOURCES)}.")
    write_atomic(Path(root) / LABEL_SOURCE_FILE, json.dumps({"labels": source}).encode())


def label_source(root: str | Path) -> str:
    """Where the labels of the folder `root` came from: what its label_source.json says, else "folder"."""

    try:
        source = json.loads((Path(root) / LABEL_SOURCE_FILE).read_text(encoding="utf-8")).get("labels")
    except (OSError, ValueError, AttributeError):
        return "folder"
    return source if source in LABEL_SOURCES else "folder"


def index_dataset(root: str | Path) -> list[Record]:
    """All images under root/NORMAL and root/PNEUMONIA with labels and patient ids, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise CXRError(f"Data folder {str(root)!r} does not exist.")
    records: list[Record] = []
    for folder in ("NORMAL", "PNEUMONIA"):
        sub = root / folder
        if not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            parsed = parse_name(folder, path.name)
            if parsed is not None:
                records.append(Record(path, parsed[0], parsed[1]))
    if not records:
        raise CXRError(f"No labelled images in {str(root)!r}: expected NORMAL/ and PNEUMONIA/ subfolders (Kaggle layout).")
    return records


def class_counts(records: list[Record]) -> dict[str, int]:
    counts = np.bincount([r.label for r in records], minlength=len(CLASSES))
    return {name: int(c) for name, c in zip(CLASSES, counts)}


def fingerprint(records: list[Record]) -> str:
    """Hash of (relative name, size, label) of every record, in any order: identifies the exact data used
    (a training run's train + validation records and `evaluate` on the same folder give the same value)."""
    lines = sorted(f"{r.path.parent.name}/{r.path.name}:{r.path.stat().st_size}:{r.label}\n" for r in records)
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16]


def grouped_folds(records: list[Record], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k patient-grouped, label-stratified (train_idx, val_idx) folds."""
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: heavy

    if k < 2:
        raise CXRError(f"k = {k!r}: cross-validation needs at least 2 folds.")
    labels = np.array([r.label for r in records])
    groups = np.array([r.patient for r in records])
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(records)), labels, groups)]


def grouped_split(records: list[Record], val_fraction: float, seed: int, folds: int = 0,
                  fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A run's patient-grouped, stratified (train_idx, val_idx): fold `fold` of `folds`, or with
    folds = 0 the first of round(1 / val_fraction) folds. Training, `fit-ood` and bench all call this."""
    k = folds if folds >= 2 else max(2, round(1.0 / val_fraction))
    return grouped_folds(records, k, seed)[fold if folds >= 2 else 0]


def split_for(records: list[Record], data: dict[str, Any]) -> tuple[list[Record], list[Record]]:
    """(train, validation) records of a run from its data section (a config's or a model card's)."""
    records = subset(records, data.get("subset_fraction", 1.0), data["split_seed"])
    tr, va = grouped_split(records, data["val_fraction"], data["split_seed"], data.get("folds", 0), data.get("fold", 0))
    return [records[i] for i in tr], [records[i] for i in va]


def subset(records: list[Record], fraction: float, seed: int) -> list[Record]:
    """A patient-grouped random subset (whole patients kept), for reduced-budget runs."""
    if fraction >= 1.0:
        return records
    patients = sorted({r.patient for r in records})
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(patients, size=max(1, int(round(len(patients) * fraction))), replace=False))
    return [r for r in records if r.patient in keep]


def balanced_indices(labels: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Indices of one training epoch under a balancing case (seed 000's cases 1-5).

    none: each image once. augment_x2 / x4: every image 2 or 4 times (each copy augmented
    differently). balanced / balanced_strong: minority classes repeated up to the majority count
    (balanced_strong also gets stronger augmentation, see train.pipeline).
    """
    rng = np.random.default_rng(seed)
    idx = np.arange(len(labels))
    if mode == "none":
        return idx
    if mode in ("augment_x2", "augment_x4"):
        return np.tile(idx, 2 if mode == "augment_x2" else 4)
    if mode in ("balanced", "balanced_strong"):
        counts = np.bincount(labels)
        target = counts.max()
        parts = []
        for c in range(len(counts)):
            members = idx[labels == c]
            if len(members) == 0:
                continue
            extra = rng.choice(members, size=target - len(members), replace=True) if target > len(members) else []
            parts.append(np.concatenate([members, np.asarray(extra, dtype=int)]))
        return np.concatenate(parts)
    raise CXRError(f"Unknown balancing mode {mode!r}.")


def held_out_split(model_dir: str | Path, data_dir: str | Path | None = None) -> tuple[list[Record], list[Record]]:
    """(training records, held-out records) of a model from its card: a single model's validation split, or an
    ensemble's guard fold (its card's data.fold)."""
    card = ModelFolder(model_dir).card()
    return split_for(index_dataset(Path(data_dir or card.data_root)), dict(card.data))
