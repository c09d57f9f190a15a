"""Ensembles: one model from several members, each an ordinary run (train.pipeline) of the same recipe.

Two kinds, one per config:
- cross-validated (`data.folds = k >= 2`): member i trains on every fold but i and is validated on fold i, so each
  training image gets exactly one out-of-fold (OOF) score;
- seeded (`train.seeds = [s1, s2, ...]`): member i is the recipe's single run with `train.seed = s_i`, on the one
  patient-grouped split; the member with the recipe's own seed is named as the recipe, so an already trained single
  run is the ensemble's first member. The members' held-out images are the same, scored by every member.

Member i is `python -m train --config C --member i`; members are never registered on their own. The ensemble
averages the members' logits (`cxr_core.model.architecture.merge_members`: one Keras graph, Grad-CAM averaged
across members); its temperature, stress suite and operating threshold come from held-out logits only (OOF, or the
mean of the members' logits on the shared validation split).
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
from train.evidence import needs_stress, stress_logits
from train.finish import Evidence, finish_model
from train.pipeline import RunResult, failure_message, headline, register_if_passed, run_dir_for, single_run_lock, train
from train.run_folder import RunFolder


def member_config(config: TrainConfig, member: int) -> TrainConfig:
    """The config of member `member` (0-based): the same run whichever command starts it."""
    k = config.member_count()
    if k < 2:
        raise ConfigError("--member needs an ensemble config: data.folds >= 2 or train.seeds with 2 or more seeds.")
    if not 0 <= member < k:
        raise ConfigError(f"--member {member!r} is invalid: expected an integer from 0 to {k - 1} ({k} members).")
    if config.train.seeds:
        seed = config.train.seeds[member]
        name = config.name if seed == config.train.seed else f"{config.name}-seed{seed}"
        return apply_overrides(config, {"name": name, "train.seed": seed, "train.seeds": []})
    # A fold member's own threshold is informational (members are not registered); the ensemble's policy
    # needs every member's OOF scores.
    return apply_overrides(config, {"name": f"{config.name}-fold{member + 1}", "data.fold": member,
                                    "train.threshold_policy": "sensitivity"})


def train_members(config: TrainConfig, runs_dir: Any, command: str, log: Callable[[str], None] = print) -> list[Any]:
    """Train (or resume, or skip when finished) every member in order; their RunResults."""

    results = []
    k = config.member_count()
    for member in range(k):
        log(f"[{config.name}] member {member + 1} of {k}")
        results.append(train(member_config(config, member), runs_dir=runs_dir, register=False, command=command, log=log))
        if results[-1].state != "finished":
            break
    return results


def train_ensemble(config: TrainConfig, runs_dir: str | Path, registry: Registry | None = None, register: bool = True,
                   activate: bool = False, command: str = "", log: Callable[[str], None] = print) -> RunResult:
    """Every member (resumable), then the ensemble assembled from held-out evidence, registered as one model. A
    seeded ensemble's model is named `<recipe>-x<k>` (its first member has the recipe's own name)."""

    members = train_members(config, runs_dir, command, log)
    if len(members) < config.member_count() or members[-1].state != "finished" or not current().is_chief:
        return RunResult(members[-1].run_dir, members[-1].state, None, {})  # only the chief assembles
    if config.train.seeds:
        config = apply_overrides(config, {"name": f"{config.name}-x{len(members)}"})
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
    run.write_status(state="running", message="assembling the ensemble from held-out evidence", started=started)
    try:
        members = [RunFolder(d).model.load_model() for d in member_dirs]
        merged = merge_members(members, name=config.name.replace("-", "_"))
        if config.train.seeds:
            evidence = shared_split_evidence(config, member_dirs, merged, log)
        else:
            evidence = out_of_fold_evidence(config, member_dirs, members, log)
        card = write_ensemble_model(config, run_dir, member_dirs, merged, evidence, command, time.time() - started, log)
    except BaseException as exc:
        run.write_status(state="failed", message=failure_message(exc))
        raise
    metrics = dict(card.internal_validation)
    model_id, passed = register_if_passed(card, run.model.path, config, registry, register, activate, log)
    run.write_status(state="finished", message="finished", model_id=model_id, metrics=headline(metrics),
                 passed_gate=passed)
    return RunResult(run_dir, "finished", model_id, metrics)


def out_of_fold_evidence(config: TrainConfig, member_dirs: list[Any], members: list[Any],
                         log: Callable[[str], None]) -> dict[str, Any]:
    """OOF labels, files and logits under every stress condition: each image scored by the one member
    that never trained on it. Clean logits are the ones each member saved at its own evaluation."""

    records = index_dataset(config.data.root)
    labels, files, logits = [], [], defaultdict(list)
    for fold, member_dir in enumerate(member_dirs):
        _, val = split_for(records, member_config(config, fold).data.__dict__)
        log(f"[{config.name}] stress suite on member {fold + 1}'s {len(val)} out-of-fold images")
        images = [load_image(r.path).pixels for r in val]
        logits[CLEAN].append(_saved_logits(member_dir, fold, len(val)))
        for key, value in stress_logits(images, config, logit_function(members[fold])).items():
            logits[key].append(value)
        labels += [r.label for r in val]
        files += [f"{r.path.parent.name}/{r.path.name}" for r in val]
    fit_recs, check_recs = split_for(records, member_config(config, config.data.folds - 1).data.__dict__)
    return {"labels": np.array(labels), "files": files, "logits": {k: np.concatenate(v) for k, v in logits.items()},
            "records": records, "n_train": len(records),  # every image trained all members but one
            "guard_fit": fit_recs, "guard_check": check_recs, "guard_fold": config.data.folds - 1,
            "kind": f"Internal (cross-validated): out-of-fold scores of {len(member_dirs)} patient-grouped folds",
            "stress_note": "out-of-fold images, each scored by the member that never trained on it"}


def shared_split_evidence(config: TrainConfig, member_dirs: list[Any], merged: Any,
                          log: Callable[[str], None]) -> dict[str, Any]:
    """A seeded ensemble's held-out labels, files and logits: the one validation split every member held out,
    scored by the merged model (the mean of the members' logits); the guards are fitted as for a single run."""

    records = index_dataset(config.data.root)
    train_recs, val = split_for(records, config.data.__dict__)
    logits = {CLEAN: np.mean([_saved_logits(d, i, len(val)) for i, d in enumerate(member_dirs)], axis=0)}
    if needs_stress(config):
        log(f"[{config.name}] stress suite on the {len(val)} held-out images")
        logits.update(stress_logits([load_image(r.path).pixels for r in val], config, logit_function(merged)))
    return {"labels": np.array([r.label for r in val]), "files": [f"{r.path.parent.name}/{r.path.name}" for r in val],
            "logits": logits, "records": records, "n_train": len(train_recs),
            "split_counts": {"train_counts": class_counts(train_recs), "val_counts": class_counts(val),
                             "val_patients": len({r.patient for r in val})},
            "guard_fit": train_recs, "guard_check": val, "guard_fold": 0,
            "kind": f"Internal (held-out): a patient-grouped validation split of {len(val)} images, scored by the "
                    f"mean of {len(member_dirs)} members' logits",
            "stress_note": "validation images (held out from every member's training)"}


def _saved_logits(member_dir: Any, member: int, n: int) -> np.ndarray:
    """A member's held-out logits as its run saved them, checked against the images they should score."""
    logits = np.load(RunFolder(member_dir).val_logits_file)
    if len(logits) != n:
        raise ConfigError(f"Member {member + 1}'s saved logits ({len(logits)}) do not match its held-out images ({n}).")
    return logits


def write_ensemble_model(config: TrainConfig, run_dir: Any, member_dirs: list[Any], merged: Any,
                         evidence: dict[str, Any], command: str, assembly_s: float, log: Callable[[str], None]) -> Any:
    """`finish_model` (shared with the single pipeline) on the merged model and its held-out evidence; the input
    guards are fitted on `guard_fit` and calibrated on `guard_check` (for folds, the last fold, which the other
    members trained on, so the feature-based rates are optimistic)."""

    out = RunFolder(run_dir).model
    out.path.mkdir(exist_ok=True)
    _write_member_histories(member_dirs, out.history_file)
    records, fit_recs, check_recs = evidence["records"], evidence["guard_fit"], evidence["guard_check"]
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
              "fold": evidence["guard_fold"],  # the input guards' held-out fold (fit-ood and bench/ood.py use it)
              "n_train": evidence["n_train"], "n_val": len(evidence["labels"]), "val_fraction": config.data.val_fraction,
              "subset_fraction": config.data.subset_fraction,
              "ood_fit_images": len(fit_recs), "ood_check_images": len(check_recs), **evidence.get("split_counts", {})},
        kind=evidence["kind"], stress_note=evidence["stress_note"],
        training_time_s=sum(float(RunFolder(d).read_status().get("elapsed_s", 0.0)) for d in member_dirs) + assembly_s,
        epochs_run=int(np.mean([c.epochs_run or 0 for c in member_cards])),
        card_fields={"ensemble": {"members": len(member_dirs), "combination": "mean of member logits, then temperature",
                                  "member_runs": [d.name for d in member_dirs],
                                  "member_val_auc": [c.binary_metrics["auc"] for c in member_cards],
                                  "member_commits": sorted({c.git_commit for c in member_cards}),
                                  "seeds": list(config.train.seeds)},
                     "member_commands": [f"{command} --member {i}" for i in range(len(member_dirs))]}),
        out.path, command)


def _write_member_histories(member_dirs: list[Any], path: Any) -> None:
    """Every member's per-epoch log in one CSV, with a `member` column (1-based)."""
    import pandas as pd  # lazy: heavy

    frames = [pd.read_csv(RunFolder(d).history_file).assign(member=i + 1) for i, d in enumerate(member_dirs)
              if RunFolder(d).history_file.is_file()]
    if frames:
        write_atomic(path, pd.concat(frames, ignore_index=True).to_csv(index=False).encode())
