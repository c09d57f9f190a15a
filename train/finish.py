"""Finish a model: from a trained Keras model and its held-out evidence to a complete model folder.

The single-split pipeline (validation images) and the cross-validated ensemble (out-of-fold images) both call
`finish_model`, so calibration, the threshold policy, the stress section, the input guards, the hashes, the
card and how results are presented mean the same thing whichever recipe made the model.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_core import CLASSES, __version__
from cxr_core.model import decision as D
from cxr_core.validation import metrics as M
from cxr_core.model.card import ModelCard
from cxr_core.safety.appearance import AutoencoderRecipe
from cxr_core.safety.intended_use import INTENDED_USE
from cxr_core.config import TrainConfig
from cxr_core.validation.evaluation import write_scores
from cxr_core.fitting.guards import fit_guards
from cxr_core.fitting.presentation import fit_presentation
from cxr_core.model.folder import ModelFolder
from cxr_core.model.architecture import trainable_parameter_count
from cxr_core.safety.overlap import write_training_hashes
from cxr_core.settings import PROJECT_ROOT
from cxr_core.validation.stress import CLEAN
from train.evidence import operating_point, stress_section


@dataclass
class Evidence:
    """What a model is judged on, all held out from the weights that produced each score."""

    labels: np.ndarray  # 3-class labels of the held-out images
    files: list[str]  # their names, for validation_scores.csv
    logits: dict[str, np.ndarray]  # condition -> held-out logits: "clean" always; stress conditions when stress_note
    guard_fit: tuple[np.ndarray, list[str]]  # (preprocessed images, patients) the input guards are fitted on
    guard_check: tuple[np.ndarray, list[str]]  # held-out (images, patients) the guards are calibrated on
    training_paths: list[Path]  # every image the model was built on (the overlap check's hashes)
    data: dict[str, Any]  # the card's data block
    kind: str  # what the internal figures are, in words
    stress_note: str | None  # where the stress suite ran; None: it did not
    training_time_s: float
    epochs_run: int
    presentation_held_out: tuple[np.ndarray, np.ndarray] | None = None  # (images, labels); None: the card's split
    card_fields: dict[str, Any] = field(default_factory=dict)  # recipe-specific blocks (ensemble, member_commands)


def model_identity(config: TrainConfig) -> str:
    """A new model's id: its name, when it was finished and its config's fingerprint (also its registry folder)."""
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{config.fingerprint()}"


def finish_model(model: Any, config: TrainConfig, evidence: Evidence, out: Path, command: str) -> ModelCard:
    """Calibrate, choose the threshold, save the model (no optimizer), fit the guards, hash the training images
    and write the card into `out`; then fit how results are presented. The finished card."""
    folder = ModelFolder(out)
    folder.path.mkdir(parents=True, exist_ok=True)
    y = evidence.labels
    yb = (y > 0).astype(int)
    clean = evidence.logits[CLEAN]
    temperature = D.fit_temperature(clean, yb if config.model.num_classes == 2 else y)
    probs = {k: M.as_three_class(D.softmax(v, temperature)) for k, v in evidence.logits.items()}
    p = {k: M.pneumonia_probability(v) for k, v in probs.items()}
    threshold, policy = operating_point(config, yb, p)
    summary = M.evaluation_summary(y, probs[CLEAN], threshold)
    summary["threshold_at_95_sensitivity"] = M.choose_threshold(yb, p[CLEAN], "sensitivity", 0.95)

    model.save(folder.model_file)
    write_scores(folder.scores_file, evidence.files, y, probs[CLEAN])
    guards = fit_guards(model, *evidence.guard_fit, *evidence.guard_check, config.data.preprocess(), folder.path,
                        recipe=AutoencoderRecipe(epochs=config.guards.appearance_epochs,
                                                 min_steps=config.guards.appearance_min_steps))
    write_training_hashes(folder.hashes_file, evidence.training_paths)
    card = ModelCard(
        model_id=model_identity(config), name=config.name, version=time.strftime("%Y.%m.%d"),
        description=config.description, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        intended_use=INTENDED_USE, classes=CLASSES, input=config.data.preprocess().card_input(),
        threshold=threshold, threshold_policy=policy.name, threshold_evidence=policy, temperature=temperature,
        ece_uncalibrated=M.expected_calibration_error(yb, M.pneumonia_probability(M.as_three_class(D.softmax(clean)))),
        **guards, internal_validation=summary, internal_validation_kind=evidence.kind,
        stress=(stress_section(config, yb, p, threshold, evidence.stress_note) if evidence.stress_note else None),
        data=evidence.data, config=config.to_dict(), training_time_s=evidence.training_time_s,
        epochs_run=evidence.epochs_run, hardware=f"{platform.machine()} {os.cpu_count()} CPU cores" + gpu_note(),
        git_commit=git_commit(), cxr_core_version=__version__, reproduce_command=command,
        parameters=int(model.count_params()), trainable_parameters=trainable_parameter_count(model),
        **evidence.card_fields)
    folder.write_card(card)
    fit_presentation(folder.path, held_out=evidence.presentation_held_out)  # before registration: the card gains it
    return folder.card()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gpu_note() -> str:
    try:
        import tensorflow as tf  # lazy: heavy

        gpus = tf.config.list_physical_devices("GPU")
        return f", {len(gpus)} GPU(s)" if gpus else ", no GPU"
    except Exception:
        return ""
