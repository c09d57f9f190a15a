"""The site's labelled films for adaptation: where they come from, the checks each must pass, and the split.

Sources: a labelled folder in the evaluation layout (NORMAL/ and PNEUMONIA/; 3-class truth from Kaggle file
names where they carry it, binary otherwise), or the worklist's reviewed cases with the reader's label.

Checks, in order: the film decodes; the intended-use rule (`intended_use.assess`, through the parent's
Predictor) accepts it; its pixels are not among the parent's training films (training_hashes.txt); it is not a
duplicate of another film (counted once). Then at least `min_per_class` films of each class must remain.
A refusal is a `CXRError` that names the rule and its numbers (the CLI exits 2).

Patients stay in one cross-fitting fold: a DICOM PatientID (hashed, never kept), else the Kaggle file-name
patient, else a stored case's study, else one group per film (said in a warning).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..cases.store import CaseStore
from ..errors import CXRError
from ..inputs.imaging import load_image
from ..model.predict import Predictor
from ..safety.overlap import pixel_hash, training_hashes
from ..validation.dataset import parse_name
from .evidence import pneumonia_films_needed

LABELS = ("NORMAL", "BACTERIAL", "VIRAL")


@dataclass(frozen=True)
class SiteFilm:
    """One labelled film of the site. `label3` is None for pneumonia without a subtype (binary truth only)."""

    data: bytes
    binary: int
    label3: int | None
    group: str  # the patient (hashed) or a stand-in; never an identifier
    grouped: bool  # False: no patient was known, so the film is its own group


@dataclass
class ScreenedFilms:
    """The films that passed every check, decoded and preprocessed for the parent, with the parent's scores."""

    films: list[SiteFilm]
    x: np.ndarray  # preprocessed model inputs (n, s, s, 1)
    parent_probs: np.ndarray  # the parent's calibrated 3-class probabilities
    hashes: list[str]  # pixel hashes (the manifest's content key)
    counts: dict[str, int]  # given, unreadable, outside the intended use, in the parent's training, duplicates, kept
    warnings: list[str] = field(default_factory=list)

    @property
    def binary(self) -> np.ndarray:
        return np.array([f.binary for f in self.films], dtype=int)

    @property
    def groups(self) -> list[str]:
        return [f.group for f in self.films]


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def films_from_folder(data_dir: str | Path) -> list[SiteFilm]:
    """Every file under DATA_DIR/NORMAL and DATA_DIR/PNEUMONIA (any format `load_image` reads)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise CXRError(f"{str(data_dir)!r} is not a folder: expected NORMAL/ and PNEUMONIA/ inside it.")
    films = []
    for folder, binary in (("NORMAL", 0), ("PNEUMONIA", 1)):
        sub = root / folder
        if not sub.is_dir():
            continue
        for path in sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith(".")):
            data = path.read_bytes()
            parsed = parse_name(folder, path.name)
            label3 = 0 if binary == 0 else (parsed[0] if parsed else None)
            patient = _dicom_patient(data)
            if patient is not None:
                group, grouped = "dicom-" + _hashed(patient), True
            elif parsed is not None and not parsed[1].startswith("NORMAL:"):
                group, grouped = "name-" + _hashed(parsed[1]), True
            else:
                group, grouped = "film-" + hashlib.sha256(data).hexdigest()[:16], False
            films.append(SiteFilm(data, binary, label3, group, grouped))
    if not films:
        raise CXRError(f"No films in {str(data_dir)!r}: expected labelled films in NORMAL/ and PNEUMONIA/ subfolders.")
    return films


def films_from_reviews(store: CaseStore) -> tuple[list[SiteFilm], int]:
    """The worklist's reviewed cases, labelled by the latest review (NORMAL, BACTERIAL or VIRAL; OTHER and
    UNREADABLE are left out), as their de-identified pictures; and how many reviews were left out because they
    contradict themselves (an "agree" with a label that is not the model's: `review_problem`)."""
    films, contradictory = [], 0
    for row in store.list():
        review = row["review"]
        if not review or review["label"] not in LABELS:
            continue
        if review.get("contradiction"):
            contradictory += 1
            continue
        label3 = LABELS.index(review["label"])
        if row["study_uid"]:
            group, grouped = "study-" + _hashed(row["study_uid"]), True
        else:
            group, grouped = f"case-{row['case_id']}", False
        films.append(SiteFilm(store.picture(row["case_id"]), int(label3 > 0), label3, group, grouped))
    if not films:
        raise CXRError("No reviewed cases with a NORMAL, BACTERIAL or VIRAL label in the worklist"
                       + (f" ({contradictory} left out: their review contradicts itself)" if contradictory else "")
                       + ": review cases first, or give a labelled folder.")
    return films, contradictory


def _dicom_patient(data: bytes) -> str | None:
    """A DICOM file's PatientID (only to group; hashed at once), or None."""
    if len(data) < 132 or (data[128:132] != b"DICM" and not data.startswith(b"\x08\x00")):
        return None
    try:
        import pydicom  # lazy: heavy

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        value = str(ds.get("PatientID", "") or "").strip()
        return value or None
    except Exception:
        return None


def screen(films: Sequence[SiteFilm], parent: Predictor, min_per_class: int,
           sensitivity_floor: float | None = None) -> ScreenedFilms:
    """Apply the checks (module docstring) with the parent model; the films kept, or a CXRError naming the
    rule that refuses the set, with its numbers. `sensitivity_floor`: also refuse a set with too few pneumonia
    films for the gate's sensitivity bound ever to reach it (`pneumonia_films_needed`)."""
    known = training_hashes(parent.folder.hashes_file) or set()
    counts = {"given": len(films), "unreadable": 0, "outside the intended use": 0,
              "in the parent's training data": 0, "duplicates": 0, "kept": 0}
    kept: list[SiteFilm] = []
    x, probs, hashes, seen = [], [], [], set()
    for film in films:
        try:
            image = load_image(film.data)
        except CXRError:
            counts["unreadable"] += 1
            continue
        pred = parent.predict(image, name="site film")
        if not pred.assessed:
            counts["outside the intended use"] += 1
            continue
        key = pixel_hash(image.pixels)
        if key in known:
            counts["in the parent's training data"] += 1
            continue
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        kept.append(film)
        hashes.append(key)
        x.append(parent.preprocess(image.pixels))
        probs.append([pred.class_probabilities[c] or 0.0 for c in LABELS])
    counts["kept"] = len(kept)
    _refuse_unless_enough(counts, kept, min_per_class)
    pneumonia = sum(f.binary for f in kept)
    needed = 0 if sensitivity_floor is None else pneumonia_films_needed(sensitivity_floor)
    if pneumonia < needed:
        raise CXRError(f"Refused (too few pneumonia films for the gate): even if the adapted model found all "
                       f"{pneumonia} pneumonia films, the lower 95 % bound of its sensitivity would be under the site's "
                       f"floor ({sensitivity_floor:.2f}); at least {needed} pneumonia films are needed.")
    warnings = []
    ungrouped = sum(not f.grouped for f in kept)
    if ungrouped:
        warnings.append(f"{ungrouped} of {len(kept)} films name no patient (no DICOM PatientID, no Kaggle file name, "
                        "no study): each is its own group, so one patient's films may sit in two folds.")
    return ScreenedFilms(kept, np.stack(x), np.asarray(probs, dtype=np.float64), hashes, counts, warnings)


def _refuse_unless_enough(counts: dict[str, int], kept: list[SiteFilm], min_per_class: int) -> None:
    given = counts["given"]
    if given and counts["outside the intended use"] + counts["unreadable"] == given:
        raise CXRError(f"Refused: none of the {given} films can be used: {counts['outside the intended use']} are "
                       f"outside the intended use (not frontal chest radiographs) and {counts['unreadable']} could "
                       "not be read.")
    normal = sum(f.binary == 0 for f in kept)
    pneumonia = len(kept) - normal
    if normal >= min_per_class and pneumonia >= min_per_class:
        return
    dropped = ", ".join(f"{v} {k}" for k, v in counts.items() if k not in ("given", "kept") and v)
    seen = counts["in the parent's training data"]
    if seen and seen >= given / 2:
        rule = f"{seen} of the {given} films are in the parent model's training data, which is no evidence about this site"
    else:
        rule = "too few films of each class"
    raise CXRError(f"Refused ({rule}): site adaptation needs at least {min_per_class} films of each class after the "
                   f"checks; {normal} normal and {pneumonia} pneumonia remain of {given}"
                   + (f" ({dropped} left out)." if dropped else "."))


def folds(screened: ScreenedFilms, k: int, seed: int) -> list[np.ndarray]:
    """The cross-fitting folds: `k` parts of the film indices, patient-grouped (a patient's films in one part) and
    stratified by label; refused where a part would hold one class only."""
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: heavy

    strata = np.array([f.label3 if f.label3 is not None else 3 for f in screened.films])
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    parts = [np.sort(held) for _, held in splitter.split(np.zeros(len(strata)), strata, screened.groups)]
    yb = screened.binary
    for i, held in enumerate(parts):
        if len(np.unique(yb[held])) < 2:
            raise CXRError(f"Refused: fold {i + 1} of {k} of the site's patients holds one class only (too few "
                           "patients of the other): add films from more patients.")
    return parts


def manifest(screened: ScreenedFilms, parts: list[np.ndarray]) -> list[dict[str, Any]]:
    """What the card keeps of each site film: the sha256 of its bytes, its pixel hash (the overlap check's key),
    its label and its cross-fitting fold. No identifier, no file name."""
    part = {int(i): f"fold {k + 1}" for k, held in enumerate(parts) for i in held}
    return [{"sha256": hashlib.sha256(f.data).hexdigest(), "pixel_hash": h,
             "label": (LABELS[f.label3] if f.label3 is not None else "PNEUMONIA"), "part": part[i]}
            for i, (f, h) in enumerate(zip(screened.films, screened.hashes))]


def label_counts(screened: ScreenedFilms, idx: np.ndarray) -> dict[str, int]:
    films = [screened.films[int(i)] for i in idx]
    return {"n": len(films), "normal": sum(f.binary == 0 for f in films),
            "pneumonia": sum(f.binary == 1 for f in films),
            "patients": len({f.group for f in films})}
