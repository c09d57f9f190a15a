"""A cross-validated ensemble: one member per fold, assembled from out-of-fold evidence.

For a config with `data.folds = k >= 2`:
1. member i is the ordinary run `python -m train --config C --fold i` (train.pipeline), trained on
   every fold but i and validated on fold i, so each training image gets exactly one
   out-of-fold (OOF) score; members are never registered on their own;
2. the ensemble averages the members' logits (see `cxr_core.model.architecture.merge_members`: one Keras graph,
   Grad-CAM averaged across members);
3. temperature, the stress suite and the operating threshold come from the OOF logits only.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxr_core.config import TrainConfig, apply_overrides
from cxr_core.errors import ConfigError
from cxr_core.fileio import write_atomic
from cxr_core.inputs.imaging import load_image
from cxr_core.model.architecture import logit_function, merge_members
from cxr_core.model.registry import Registry
from cxr_core.validation.dataset import class_counts, fingerprint, index_dataset, split_for
from cxr_core.validation.stress import CLEAN
from cxr_core.fitting.distribute import current
from train.evidence import stress_logits
from train.finish import Evidence, finish_model
from train.pipeline import RunResult, failure_message, headline, register_if_passed, run_dir_for, single_run_lock, train
from train.run_folder import RunFolder


def member_config(config: TrainConfig, fold: int) -> TrainConfig:
    """The config of member `fold` (0-based): the same run whichever command starts it."""
    k = config.data.folds
    if k < 2:
        raise ConfigError(f"data.folds = {k!r}: an ensemble needs at least 2 folds.")
    if not 0 <= fold < k:
        raise ConfigError(f"--fold {fold!r} is invalid: expected an integer from 0 to {k - 1} (data.folds = {k}).")
    # A member's own threshold is informational (members are not registered); the ensemble's policy
    # needs every member's OOF scores.
    return apply_overrides(config, {"name": f"{config.name}-fold{fold + 1}", "data.fold": fold,
                                    "train.threshold_policy": "sensitivity"})


def train_members(config: TrainConfig, runs_dir: Any, command: str, log: Callable[[str], None] = print) -> list[Any]:
    """Train (or resume, or skip when finished) every member in fold order; their RunResults."""

    results = []
    for fold in range(config.data.folds):
        log(f"[{config.name}] member {fold + 1} of {config.data.folds}")
        results.append(train(member_config(config, fold), runs_dir=runs_dir, register=False, command=command, log=log))
        if results[-1].state != "finished":
            break
    return results


def train_ensemble(config: TrainConfig, runs_dir: str | Path, registry: Registry | None = None, register: bool = True,
                   activate: bool = False, command: str = "", log: Callable[[str], None] = print) -> RunResult:
    """Every member (resumable), then the ensemble assembled from OOF evidence, registered as one model."""

    members = train_members(config, runs_dir, command, log)
    if len(members) < config.data.folds or members[-1].state != "finished" or not current().is_chief:
        return RunResult(members[-1].run_dir, members[-1].state, None, {})  # only the chief assembles
    run_dir = run_dir_for(config, Path(runs_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    with single_run_lock(Path(runs_dir)):
        return _assemble(config, run_dir, [m.run_dir for m in members], registry, register, activate, command, log)


def _assemble(config: TrainConfig, run_dir: Path, member_dirs: list[Path], registry: Registry | None, register: bool,
              activate: bool, command: str, log: Callable[[str], None]) -> RunResult:
    run = RunFolder(run_dir)
    status = run.read_status()
    if status.get("state") == "finished":
        log(f"Ensemble {run_dir.name} already finished (model {status.get('model_id')}); nothing to do.")
        return RunResult(run_dir, "finished", status.get("model_id"), status.get("metrics", {}))
    started = time.time()
    run.write_status(state="running", message="assembling the ensemble from out-of-fold evidence", started=started)
    try:
        evidence = out_of_fold_evidence(config, member_dirs, log)
        card = write_ensemble_model(config, run_dir, member_dirs, evidence, command, time.time() - started, log)
    except BaseException as exc:
        run.write_status(state="failed", message=failure_message(exc))
        raise
    metrics = dict(card.internal_validation)
    model_id, passed = register_if_passed(card, run.model.path, config, registry, register, activate, log)
    run.write_status(state="finished", message="finished", model_id=model_id, metrics=headline(metrics),
                 passed_gate=passed)
    return RunResult(run_dir, "finished", model_id, metrics)


def out_of_fold_evidence(config: TrainConfig, member_dirs: list[Any], log: Callable[[str], None]) -> dict[str, Any]:
    """OOF labels, files and logits under every stress condition: each image scored by the one member
    that never trained on it. Clean logits are the ones each member saved at its own evaluation."""

    records = index_dataset(config.data.root)
    labels, files, logits = [], [], defaultdict(list)
    for fold, member_dir in enumerate(member_dirs):
        _, val = split_for(records, member_config(config, fold).data.__dict__)
        log(f"[{config.name}] stress suite on member {fold + 1}'s {len(val)} out-of-fold images")
        model = RunFolder(member_dir).model.load_model()
        images = [load_image(r.path).pixels for r in val]
        clean = np.load(RunFolder(member_dir).val_logits_file)
        if len(clean) != len(val):
            raise ConfigError(f"Member {fold + 1}'s saved logits ({len(clean)}) do not match its fold ({len(val)}).")
        logits[CLEAN].append(clean)
        for key, value in stress_logits(images, config, logit_function(model)).items():
            logits[key].append(value)
        labels += [r.label for r in val]
        files += [f"{r.path.parent.name}/{r.path.name}" for r in val]
    return {"labels": np.array(labels), "files": files, "logits": {k: np.concatenate(v) for k, v in logits.items()},
            "records": records}


def write_ensemble_model(config: TrainConfig, run_dir: Any, member_dirs: list[Any], evidence: dict[str, Any],
                         command: str, assembly_s: float, log: Callable[[str], None]) -> Any:
    """Merge the members into one model, then `finish_model` (shared with the single pipeline) on the OOF
    evidence; the input guards are fitted on every fold but the last and calibrated on the last."""

    out = RunFolder(run_dir).model
    out.path.mkdir(exist_ok=True)
    log(f"[{config.name}] merging {len(member_dirs)} members")
    members = [RunFolder(d).model.load_model() for d in member_dirs]
    merged = merge_members(members, name=config.name.replace("-", "_"))
    _write_member_histories(member_dirs, out.history_file)
    # Four of five members trained on the guards' held-out fold, so the feature-based rates are optimistic.
    records = evidence["records"]
    fit_recs, check_recs = split_for(records, member_config(config, config.data.folds - 1).data.__dict__)
    preprocess = config.data.preprocess()
    member_cards = [RunFolder(d).model.card() for d in member_dirs]
    log(f"[{config.name}] calibrating, choosing the threshold and fitting the input guards")
    return finish_model(merged, config, Evidence(
        labels=evidence["labels"], files=evidence["files"], logits=evidence["logits"],
        guard_fit=(np.stack([preprocess.load(r.path) for r in fit_recs]), [r.patient for r in fit_recs]),
        guard_check=(np.stack([preprocess.load(r.path) for r in check_recs]), [r.patient for r in check_recs]),
        training_paths=[r.path for r in records],  # evaluate's overlap check: every member's data
        data={"root": config.data.root, "fingerprint": fingerprint(records), "n": len(records),
              "counts": class_counts(records), "folds": config.data.folds, "split_seed": config.data.split_seed,
              "fold": config.data.folds - 1,  # the input guards' held-out fold (fit-ood and bench/ood.py use it)
              "n_train": len(records), "n_val": len(evidence["labels"]), "val_fraction": config.data.val_fraction,
              "subset_fraction": config.data.subset_fraction,
              "ood_fit_images": len(fit_recs), "ood_check_images": len(check_recs)},
        kind=f"Internal (cross-validated): out-of-fold scores of {len(member_dirs)} patient-grouped folds",
        stress_note="out-of-fold images, each scored by the member that never trained on it",
        training_time_s=sum(float(RunFolder(d).read_status().get("elapsed_s", 0.0)) for d in member_dirs) + assembly_s,
        epochs_run=int(np.mean([c.epochs_run or 0 for c in member_cards])),
        card_fields={"ensemble": {"members": len(member_dirs), "combination": "mean of member logits, then temperature",
                                  "member_runs": [d.name for d in member_dirs],
                                  "member_val_auc": [c.binary_metrics["auc"] for c in member_cards],
                                  "member_commits": sorted({c.git_commit for c in member_cards})},
                     "member_commands": [f"{command} --fold {i}" for i in range(len(member_dirs))]}),
        out.path, command)


def _write_member_histories(member_dirs: list[Any], path: Any) -> None:
    """Every member's per-epoch log in one CSV, with a `member` column (1-based)."""
    import pandas as pd  # lazy: heavy

    frames = [pd.read_csv(RunFolder(d).history_file).assign(member=i + 1) for i, d in enumerate(member_dirs)
              if RunFolder(d).history_file.is_file()]
    if frames:
        write_atomic(path, pd.concat(frames, ignore_index=True).to_csv(index=False).encode())
