"""Site adaptation: fine-tune a model on a site's own labelled films, cross-fitted so that every film is evidence,
and keep it in the case database as a new model (not active).

    films --screen--> kept --K patient-grouped folds-->
      for each fold: parent weights --fine-tune on the other folds--> out-of-fold logits after every epoch
      the epoch: the best pooled out-of-fold AUC; the threshold: the highest with out-of-fold sensitivity >= target
    parent weights --fine-tune on every film, that many epochs--> the final model
    temperature (out-of-fold logits), guards, subtype margin, card with the out-of-fold evidence --> the case database

The recipe (`Recipe`) was chosen on a real second site's films, site A (bench/site_adaptation.py --site, table in
bench/README.md): BatchNorm statistics follow the site, no augmentation, no label smoothing, the whole network at
once at 1e-4. The parent is scored on the same films, so the gate compares the two paired (cxr_core.site.evidence).
Choosing the epoch and the threshold on the out-of-fold scores makes their figures slightly optimistic: the card
says so, and gives the threshold rule's cross-checked figures beside them. Fixed seed: the same films, parent and
seed give the same model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxr_core.cases.store import CaseStore
from cxr_core.cli.native_logs import keep_native_logs_off_the_terminal
from cxr_core.config import AugmentConfig, config_from_dict
from cxr_core.errors import ConfigError, CXRError, report_errors
from cxr_core.fileio import read_npz, write_atomic, write_json_atomic, write_npz_atomic
from cxr_core.fitting import distribute
from cxr_core.fitting.guards import fit_guards
from cxr_core.fitting.presentation import fit_presentation
from cxr_core.model import decision as D
from cxr_core.model.architecture import LOGITS_LAYER, all_layers
from cxr_core.model.card import ModelCard
from cxr_core.model.evidence import ThresholdEvidence
from cxr_core.model.folder import ModelFolder
from cxr_core.model.keras_import import load_keras_model
from cxr_core.model.predict import Predictor
from cxr_core.readers import named
from cxr_core.safety.overlap import training_hashes
from cxr_core.settings import current
from cxr_core.site.films import (ScreenedFilms, SiteFilm, films_from_folder, films_from_reviews, folds, label_counts,
                                manifest, screen)
from cxr_core.site.evidence import compare, site_threshold, threshold_cross_check
from cxr_core.site.activation import activation_refusals
from cxr_core.site.models import store_model, unpack
from cxr_core.validation import metrics as M
from cxr_core.validation.evaluation import write_scores
from train.augment import build_augmenter
from train.run_folder import RunFolder
from train.workers import MAX_WORKERS, run_local_cluster

BATCHNORM = ("adapt", "frozen")
AUGMENT = ("none", "light", "parent")
LOSSES = ("3-class", "binary")


@dataclass(frozen=True)
class Recipe:
    """How the parent is fine-tuned on a site's films; the defaults are the recipe chosen on site A."""

    epochs: int = 8  # per fold; the final model trains for the epoch the folds chose
    learning_rate: float = 1e-4
    batch_size: int = 16
    head_epochs: int = 0  # epochs of the classification head alone first (at head_learning_rate); 0: none
    head_learning_rate: float = 1e-3
    batchnorm: str = "adapt"  # "adapt": statistics follow the site's batches; "frozen": the parent's
    augment: str = "none"  # "none", "light" (half-strength geometry and intensity), "parent" (the parent's own)
    label_smoothing: float = 0.0
    loss: str = "3-class"  # "3-class" (binary for pneumonia films without a subtype), or "binary" for every film
    folds: int = 5

    def __post_init__(self) -> None:
        checks = ((1 <= self.epochs <= 100, "epochs", "a whole number from 1 to 100"),
                  (0 < self.learning_rate < 1, "learning_rate", "a number in (0, 1)"),
                  (1 <= self.batch_size <= 512, "batch_size", "a whole number in [1, 512]"),
                  (0 <= self.head_epochs <= 20, "head_epochs", "a whole number from 0 to 20"),
                  (0 < self.head_learning_rate < 1, "head_learning_rate", "a number in (0, 1)"),
                  (self.batchnorm in BATCHNORM, "batchnorm", " or ".join(BATCHNORM)),
                  (self.augment in AUGMENT, "augment", ", ".join(AUGMENT)),
                  (0 <= self.label_smoothing < 0.5, "label_smoothing", "a number in [0, 0.5)"),
                  (self.loss in LOSSES, "loss", " or ".join(LOSSES)),
                  (2 <= self.folds <= 20, "folds", "a whole number from 2 to 20"))
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"site recipe {name} = {getattr(self, name)!r} is invalid: expected {expected}.")


Progress = Callable[[dict[str, Any]], None]


@dataclass
class CrossFit:
    """The folds' out-of-fold logits after every epoch, and what the folds chose."""

    parts: list[np.ndarray]  # each fold's held-out film indices
    logits: np.ndarray  # (epochs, films, 3): each film's logits from the fold model that never saw its patient
    history: list[dict[str, Any]]  # one row per fold and epoch

    def auc_by_epoch(self, y_binary: np.ndarray) -> list[float]:
        return [M.safe_auc(y_binary, M.pneumonia_probability(M.as_three_class(D.softmax(z)))) for z in self.logits]

    def best_epoch(self, y_binary: np.ndarray) -> int:
        """The epoch (from 1) with the best pooled out-of-fold AUC; the earliest of equals."""
        return int(np.argmax(self.auc_by_epoch(y_binary))) + 1


def adapt(parent_dir: Path, films: list[SiteFilm], reader: str, source: str, seed: int = 0,
          recipe: Recipe = Recipe(), store: CaseStore | None = None, work_dir: Path | None = None,
          progress: Progress | None = None, command: str = "", min_per_class: int | None = None,
          left_out_reviews: int = 0) -> dict[str, Any] | None:
    """Screen, cross-fit, train the final model, judge and keep (see the module docstring); the result
    `site-model adapt --json` prints (None on a cluster's other workers: the chief keeps the model). Refusals are
    CXRErrors naming the rule. `left_out_reviews`: reviews the source left out as contradicting themselves (counted
    in the card)."""
    reader = named(reader, "Site adaptation needs the reader's name (it is recorded in the model card and the audit).")
    settings, dist = current(), distribute.current()
    chief = dist.is_chief
    min_per_class = settings.site_min_per_class if min_per_class is None else min_per_class
    name = _run_name(parent_dir, films, seed, recipe)
    work_dir = Path(work_dir or settings.layout.site_runs / name)
    if chief:  # the chief alone writes the folder (the other workers of a cluster read its checkpoints)
        _clear_stale(work_dir, name)
    dist.barrier()  # no worker restores a checkpoint the chief is about to clear
    dist.agree(int(name.rsplit("-", 1)[1], 16), "the films, the parent, the seed and the recipe")
    run = _Run(work_dir, progress if chief else None, {"state": "checking the films", "started": time.time(),
                                                       "reader": reader, "source": source, "adaptation": name},
               writes=chief)
    try:
        return _adapt(parent_dir, films, reader, source, seed, recipe, store, run, command, min_per_class,
                      left_out_reviews)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, CXRError) else f"The adaptation stopped ({type(exc).__name__})."
        run.stage("failed", message=message)
        raise


class _Run:
    """The adaptation's folder (a RunFolder: status, history) and its listener, told of each stage and epoch."""

    def __init__(self, folder: Path, progress: Progress | None, status: dict[str, Any], writes: bool = True):
        self.folder, self.progress, self.status, self.rows, self.writes = RunFolder(folder), progress, status, [], writes
        self._write()

    def _write(self) -> None:
        if self.writes:
            self.folder.write_status(**self.status)

    def stage(self, state: str, **fields: Any) -> None:
        self.status.update(state=state, **fields)
        self._write()
        if self.progress:
            self.progress({"stage": state})

    def epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.writes:
            _write_history(self.folder, self.rows)
        self.status.update(fold=row["fold"], folds=row["folds"], epoch=row["epoch"], epochs=row["epochs"],
                           val_auc=row.get("val_auc"))
        self._write()
        if self.progress:
            self.progress(row)


def _adapt(parent_dir: Path, films: list[SiteFilm], reader: str, source: str, seed: int, recipe: Recipe,
           store: CaseStore | None, run: _Run, command: str, min_per_class: int,
           left_out_reviews: int) -> dict[str, Any] | None:
    started, settings = run.status["started"], current()
    parent = Predictor(parent_dir)
    screened = screen(films, parent, min_per_class, settings.site_policy.sensitivity_floor)
    distribute.current().agree(int(hashlib.sha256("".join(screened.hashes).encode()).hexdigest()[:12], 16),
                               "the films kept")
    parts = folds(screened, recipe.folds, seed)
    run.stage("training", counts=screened.counts, parent_model_id=parent.card.model_id)
    yb, y3 = screened.binary, _labels3(screened)

    crossfit = cross_fit(parent, screened, parts, recipe, seed, run.epoch, run.folder.checkpoints_dir)
    run.stage("choosing the epoch and the threshold")
    epoch = crossfit.best_epoch(yb)
    distribute.current().agree(epoch, "the epoch the folds chose")  # a near tie may fall apart on other hardware
    logits = crossfit.logits[epoch - 1]
    temperature = _temperature(logits, y3, parent.card.temperature)
    probs = M.as_three_class(D.softmax(logits, temperature))
    p_oof = M.pneumonia_probability(probs)
    target = float(config_from_dict(dict(parent.card.config)).train.target_sensitivity)
    threshold = site_threshold(yb, p_oof, target)
    evidence = compare(yb, M.pneumonia_probability(screened.parent_probs), parent.card.threshold, p_oof, threshold,
                       seed=seed)
    cross_check = threshold_cross_check(yb, p_oof, parts, target)

    model, _ = fine_tune(parent, screened, np.arange(len(yb)), recipe, seed + len(parts), epoch, None,
                         lambda row: run.epoch({**row, "fold": "final", "folds": len(parts)}),
                         run.folder.checkpoints_dir / f"final-{epoch}")
    dist = distribute.current()
    if not dist.is_chief:  # the chief writes the model; this worker waits for it, so the cluster ends together
        dist.barrier()
        return None
    films_manifest = manifest(screened, parts)
    model_id = f"{parent.card.model_id}-site-{_short_hash(films_manifest, seed, recipe)}"
    folder = ModelFolder(run.folder.path / model_id)
    if folder.path.exists():
        shutil.rmtree(folder.path)
    folder.path.mkdir(parents=True)
    model.save(folder.model_file)
    model = load_keras_model(folder.model_file)  # the saved model, off the training strategy's variables
    run.stage("fitting the guards")
    guards = _fit_guards(model, screened, parts, parent, folder.path)
    known = sorted((training_hashes(parent.folder.hashes_file) or set()) | set(screened.hashes))
    write_atomic(folder.hashes_file, ("\n".join(known) + "\n").encode())
    counts = {**screened.counts, "contradictory reviews left out": left_out_reviews, "local_validation": label_counts(screened, np.arange(len(yb))),
              "folds": [label_counts(screened, held) for held in parts]}
    site = {"parent_model_id": parent.card.model_id, "reader": reader, "source": source,
            "labels_from": ("the worklist's reader reviews (readers saw the model's answer)" if source == "reviews"
                            else "the labelled folder's NORMAL/ and PNEUMONIA/ (and Kaggle file names)"),
            "seed": seed, "recipe": asdict(recipe), "epoch": epoch, "counts": counts, "manifest": films_manifest,
            **({"members_adapted": f"all {parent.card.ensemble['members']} members of the parent's ensemble, "
                                   "together: the merged graph is fine-tuned as one, on the mean of their logits"}
               if parent.card.ensemble else {}),
            "local_validation": {**evidence, "kind": "out-of-fold"}, "threshold_cross_check": cross_check,
            "out_of_fold_auc_by_epoch": crossfit.auc_by_epoch(yb), "history": crossfit.history,
            "warnings": screened.warnings, "command": command, "distribution": dist.describe(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "note": f"Every site film was scored by a model fine-tuned without its patient ({len(parts)} patient-grouped "
                    "folds); the parent is scored on the same films. The epoch and the threshold were chosen on these "
                    "out-of-fold scores, so their figures are slightly optimistic: threshold_cross_check gives the "
                    "threshold rule judged on folds it did not see. The final model trained on every film."}
    policy = ThresholdEvidence(name="site_out_of_fold_sensitivity", target_sensitivity=target,
                               trade=cross_check["rule"])
    card = ModelCard.from_dict({**parent.card.to_dict(), "model_id": model_id, "name": f"{parent.card.name}-site",
                                "version": time.strftime("%Y.%m.%d"), "created": site["created"],
                                "description": f"{parent.card.name} adapted to this site on {len(yb)} of its labelled "
                                               f"films ({counts['local_validation']['patients']} patients).",
                                "threshold": threshold, "threshold_policy": policy.name,
                                "threshold_evidence": policy, "temperature": temperature,
                                "internal_validation": _summary(y3, yb, probs, p_oof, threshold),
                                "internal_validation_kind": f"Local validation at this site, out-of-fold: {len(yb)} "
                                                            f"films of {counts['local_validation']['patients']} "
                                                            "patients, each scored by a model fine-tuned without its "
                                                            "patient",
                                "stress": None, "ensemble": None, "site_adaptation": site, **guards,
                                "external_validation": None,  # the parent's: this model trained on site films
                                "reproduce_command": command, "epochs_run": epoch, "distribution": dist.describe(),
                                "parameters": int(model.count_params())})
    gate = {"auc": evidence["adapted"]["auc"], "rule": "cxr_core.site.activation.activation_refusals"}
    refusals = activation_refusals(card.with_fields(validation_gate={**gate, "passed": True}), settings.site_policy)
    site.update(passed_gate=not refusals, gate_refusals=refusals, time_s=time.time() - started)
    card = card.with_fields(site_adaptation=site, training_time_s=site["time_s"],
                            validation_gate={**gate, "passed": not refusals})
    folder.write_card(card)
    run.stage("fitting the subtype margin and the heatmap scale")
    _fit_presentation(folder, parent.card, screened, y3, probs)
    if store is not None:
        run.stage("storing the model in the case database")
        store_model(store, folder.path, reader)
    result = {"model_id": model_id, "parent_model_id": parent.card.model_id, "counts": counts, "epoch": epoch,
              "local_validation": {k: ({m: v for m, v in ev.items() if m != "roc"} if isinstance(ev, dict) else ev)
                                   for k, ev in evidence.items()},
              "threshold_cross_check": cross_check,
              "passed_gate": not refusals, "gate_refusals": refusals, "warnings": screened.warnings,
              "time_s": round(time.time() - started, 1), "stored": store is not None,
              "model_dir": str(unpack(store, model_id) if store is not None else folder.path)}
    run.stage("finished", result=result)
    shutil.rmtree(run.folder.checkpoints_dir, ignore_errors=True)  # done: nothing left to resume
    dist.barrier()
    return result


def _clear_stale(work_dir: Path, name: str) -> None:
    """The adaptation's folder, without checkpoints another adaptation (other films, parent, seed or recipe) left
    there: nothing of theirs is resumed."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if RunFolder(work_dir).read_status().get("adaptation") != name:
        shutil.rmtree(RunFolder(work_dir).checkpoints_dir, ignore_errors=True)


def _source(data_dir: str | None, from_reviews: bool) -> tuple[CaseStore, list[SiteFilm], int]:
    """The case database, the site's films (a labelled folder, or the worklist's reviews) and the contradictory
    reviews left out."""
    store = CaseStore.open()
    films, contradictory = films_from_reviews(store) if from_reviews else (films_from_folder(data_dir or ""), 0)
    return store, films, contradictory


def adapt_from_cli(parent_dir: Path, data_dir: str | None, from_reviews: bool, reader: str, seed: int,
                   work_dir: Path | None = None) -> dict[str, Any] | None:
    """`python -m cxr_core site-model adapt` (through `main`): the source, a progress bar on stderr, the case
    database."""
    store, films, contradictory = _source(data_dir, from_reviews)
    command = "python -m cxr_core site-model adapt " + ("--from-reviews" if from_reviews else "DATA_DIR") + \
              f" --reader NAME --seed {seed}"
    return adapt(parent_dir, films, reader, "reviews" if from_reviews else "folder", seed, store=store,
                 work_dir=work_dir, progress=_Bar(), command=command, left_out_reviews=contradictory)


def main(argv: list[str] | None = None) -> int:
    """`python -m train.site PARENT_DIR (DATA_DIR | --from-reviews) --reader NAME --seed N --result FILE
    [--work-dir DIR] [--workers N]`: the process `python -m cxr_core site-model adapt` runs (cxr_core never imports
    train/); the result is written to FILE as JSON. Errors are one line on stderr (each worker's, prefixed, with
    `--workers`), exit status 2. `--workers N` starts N processes of this command on loopback (train.workers), one
    TF_CONFIG each; on real machines each sets its own TF_CONFIG. Under a cluster every worker screens the films and
    trains its share of each batch; the chief alone writes the folder, the model and the result."""
    parser = argparse.ArgumentParser(prog="python -m train.site", description="site adaptation (run by cxr_core)")
    parser.add_argument("parent_dir")
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--from-reviews", action="store_true")
    parser.add_argument("--reader", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", required=True, help="where the result's JSON is written")
    parser.add_argument("--work-dir")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"train with N worker processes on this machine's loopback (1 to {MAX_WORKERS})")
    args = parser.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers {args.workers} is invalid: expected an integer from 1 to {MAX_WORKERS}.")

    def run() -> int:
        if args.workers and args.workers > 1 and distribute.tf_config() is None:
            distribute.per_replica_batch(Recipe().batch_size, args.workers)  # refused before any worker starts
            return _run_cluster(args, list(sys.argv[1:] if argv is None else argv))
        dist = distribute.current()  # first: a cluster's collectives are set up before any other TensorFlow work
        result = adapt_from_cli(Path(args.parent_dir), args.data_dir, args.from_reviews, args.reader, args.seed,
                                work_dir=Path(args.work_dir) if args.work_dir else None)
        if dist.is_chief:
            write_json_atomic(Path(args.result), result)
        return 0

    return report_errors(run)


def _run_cluster(args: argparse.Namespace, argv: list[str]) -> int:
    """`--workers N` without a TF_CONFIG: N processes of this command on loopback, all told the same folder
    (named from the films here, as `adapt` would), their live status in its workers.json."""
    _, films, _ = _source(args.data_dir, args.from_reviews)  # the case database is made ready before any worker
    name = _run_name(Path(args.parent_dir), films, args.seed, Recipe())
    work_dir = Path(args.work_dir or current().layout.site_runs / name)
    _clear_stale(work_dir, name)  # before any worker starts: every worker resumes from the same epoch
    kept = [a for i, a in enumerate(argv) if not (a.startswith("--workers") or (i and argv[i - 1] == "--workers"))]
    kept = [a for i, a in enumerate(kept) if not (a.startswith("--work-dir") or (i and kept[i - 1] == "--work-dir"))]
    code = run_local_cluster([*kept, "--work-dir", str(work_dir)], args.workers, work_dir,
                             current().layout.site_runs, log=lambda line: print(line, file=sys.stderr),
                             module="train.site", out=sys.stderr)
    if code:
        raise CXRError("A worker of the adaptation stopped (its reason is above); the others were stopped too. Where "
                       "it stopped mid-training, rerunning the same command resumes from the last finished epoch.")
    return 0


class _Bar:
    """One line on stderr, redrawn: the fold, the epoch, the fold's held-out AUC, or the stage being run."""

    def __call__(self, row: dict[str, Any]) -> None:
        if "epoch" not in row:
            text = row["stage"] if row["stage"] in ("finished", "failed") else f"{row['stage']}..."
        else:
            fold = "final model" if row["fold"] == "final" else f"fold {row['fold']}/{row['folds']}"
            auc = "" if row.get("val_auc") is None else f"  held-out AUC {row['val_auc']:.3f}"
            filled = int(30 * row["epoch"] / max(1, row["epochs"]))
            text = f"[{'#' * filled}{'.' * (30 - filled)}] {fold} epoch {row['epoch']}/{row['epochs']}{auc}"
        sys.stderr.write(f"\r{text:<80}")
        if row.get("stage") in ("finished", "failed"):
            sys.stderr.write("\n")
        sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ cross-fitting
def cross_fit(parent: Predictor, screened: ScreenedFilms, parts: list[np.ndarray], recipe: Recipe, seed: int,
              on_epoch: Progress | None = None, checkpoints: Path | None = None) -> CrossFit:
    """For each fold, the parent fine-tuned on the other folds' films for `recipe.epochs`, scoring the fold's films
    after every epoch: every film's out-of-fold logits, epoch by epoch (what the bench and `adapt` choose on).
    `checkpoints`: a folder for each fold's checkpoints (fold-1/, ...), so a rerun resumes where it stopped."""
    logits = np.zeros((0,))  # (epochs, films, classes) once the first fold's first epoch says how many classes
    history: list[dict[str, Any]] = []
    yb = screened.binary
    for k, held in enumerate(parts):
        tune = np.setdiff1d(np.arange(len(yb)), held)

        def row_done(row: dict[str, Any], k: int = k, held: np.ndarray = held) -> None:
            nonlocal logits
            if not logits.size:
                logits = np.zeros((recipe.epochs, len(yb), row["logits"].shape[1]))
            logits[row["epoch"] - 1, held] = row.pop("logits")
            row.update(fold=k + 1, folds=len(parts),
                       val_auc=M.safe_auc(yb[held], M.pneumonia_probability(M.as_three_class(
                           D.softmax(logits[row["epoch"] - 1, held])))))
            history.append(row)
            if on_epoch:
                on_epoch(row)

        fine_tune(parent, screened, tune, recipe, seed + k, recipe.epochs, held, row_done,
                  checkpoints / f"fold-{k + 1}" if checkpoints is not None else None)
    return CrossFit(parts, logits, history)


def fine_tune(parent: Predictor, screened: ScreenedFilms, tune: np.ndarray, recipe: Recipe, seed: int, epochs: int,
              watch: np.ndarray | None, on_epoch: Progress | None = None,
              checkpoint_dir: Path | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """The parent's weights trained on the films `tune` (and only those) for `epochs` epochs by `recipe`, through the
    one training loop (cxr_core.fitting.distribute: this process's strategy, a GPU where present); after each epoch
    `on_epoch` gets a row (with the logits of the films `watch`, when given). With `checkpoint_dir`, every epoch is
    checkpointed there with its rows, and a rerun resumes after the last one (its rows replayed to `on_epoch`).
    The model and the rows."""
    import keras  # lazy: heavy
    import tensorflow as tf  # lazy: heavy

    keras.utils.set_random_seed(seed)
    dist = distribute.current()
    distribute.per_replica_batch(recipe.batch_size, dist.replicas)  # the batch splits evenly over the replicas
    x, yb = screened.x, screened.binary.astype(np.float32)
    y3 = _labels3(screened) if recipe.loss == "3-class" else np.full(len(yb), -1)
    with dist.strategy.scope():
        model = keras.models.clone_model(parent.model)
        model.set_weights(parent.model.get_weights())
        for layer in all_layers(model):  # frozen: BatchNorm keeps the parent's statistics (inference mode when not
            # trainable); an ensemble's members are nested models, adapted together through their mean
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = recipe.batchnorm == "adapt"
        logit_model = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)  # shares the model's weights
        head = list(model.get_layer(LOGITS_LAYER).trainable_variables)
        head_epochs = min(recipe.head_epochs, epochs)
        stages = [("head", 0, head_epochs, keras.optimizers.Adam(recipe.head_learning_rate), head,
                   recipe.head_learning_rate),
                  ("whole network", head_epochs, epochs, keras.optimizers.Adam(recipe.learning_rate),
                   list(model.trainable_variables), recipe.learning_rate)]
        for _, _, _, optimizer, variables, _ in stages:
            optimizer.build(variables)  # before a restore, so the checkpoint's slots have somewhere to go
    smoothing = recipe.label_smoothing
    counts = np.bincount(yb[tune].astype(int), minlength=2)
    class_weight = (len(tune) / (2.0 * np.maximum(counts, 1))).astype(np.float32)
    targets = np.stack([y3.astype(np.float32), yb], axis=1)  # per film: the 3-class label (-1: none), the binary one
    weights = class_weight[yb.astype(int)]

    def per_film_loss(target: Any, logits: Any) -> Any:
        y3b, ybb = tf.cast(target[:, 0], tf.int32), target[:, 1]
        has3 = tf.cast(y3b >= 0, tf.float32)
        onehot = tf.one_hot(tf.maximum(y3b, 0), 3) * (1 - smoothing) + smoothing / 3
        ce3 = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
        p = tf.clip_by_value(1.0 - tf.nn.softmax(logits)[:, 0], 1e-6, 1 - 1e-6)
        soft = ybb * (1 - smoothing) + smoothing / 2
        bce = -(soft * tf.math.log(p) + (1 - soft) * tf.math.log(1 - p))
        return has3 * ce3 + (1 - has3) * bce

    rng = np.random.default_rng(seed)
    orders = [tune[rng.permutation(len(tune))] for _ in range(epochs)]  # fixed up front: a resumed run sees the same
    steps = max(1, int(np.ceil(len(tune) / recipe.batch_size)))
    if len(tune) // steps < dist.replicas:
        raise ConfigError(f"{len(tune)} films in batches of {recipe.batch_size} leave some of the {dist.replicas} "
                          "replicas without a film: use fewer workers.")
    augmenter = _augmenter(parent, recipe, seed)
    checkpoints = (distribute.Checkpoints(dist, checkpoint_dir, model=logit_model, head=stages[0][3], whole=stages[1][3])
                   if checkpoint_dir is not None else None)
    done = checkpoints.restore() if checkpoints is not None else 0
    dist.agree(done, "the epochs already trained")
    rows = _replay(checkpoint_dir, done, on_epoch) if done else []
    logits_so_far = [r.pop("logits") for r in rows] if watch is not None else []
    infer = tf.function(lambda xb: logit_model(xb, training=False), reduce_retracing=True)
    for stage, first, last, optimizer, variables, lr in stages:
        if last <= max(first, done):
            continue
        loop = distribute.TrainingLoop(dist, logit_model, optimizer, per_film_loss, variables, accuracy=False)
        iterator = loop.distribute(lambda context, first=max(first, done), last=last: _batches(
            x, targets, weights, [orders[e] for e in range(first, last)], steps, context, augmenter))
        for epoch in range(max(first, done), last):
            t0 = time.time()
            loop.reset_metrics()
            for _ in range(steps):
                loop.step(iterator)
            loop.sync_statistics()
            row: dict[str, Any] = {"epoch": epoch + 1, "epochs": epochs, "stage": stage,
                                   "loss": loop.epoch_logs()["loss"], "learning_rate": lr}
            if watch is not None:
                logits_so_far.append(np.concatenate([np.asarray(infer(tf.constant(x[watch[i:i + 64]])), np.float64)
                                                     for i in range(0, len(watch), 64)]))
            row["seconds"] = round(time.time() - t0, 2)
            rows.append(row)
            if checkpoints is not None:
                if dist.is_chief:
                    _keep_rows(checkpoint_dir, rows, logits_so_far)  # first: a checkpoint never outruns its rows
                checkpoints.save(epoch + 1)  # every worker (a non-chief's copy goes at once)
            if on_epoch:
                on_epoch({**row, **({"logits": logits_so_far[-1]} if watch is not None else {})})
    return model, rows


def _batches(x: np.ndarray, targets: np.ndarray, weights: np.ndarray, orders: list[np.ndarray], steps: int,
             context: Any, augmenter: Any) -> Any:
    """One input pipeline's batches for the epochs `orders`: each epoch's order cut into `steps` global batches,
    each split evenly over the replicas, this pipeline taking its replicas' shares (every worker runs the same
    number of steps)."""
    import tensorflow as tf  # lazy: heavy

    local = max(1, context.num_replicas_in_sync // context.num_input_pipelines)
    mine = range(context.input_pipeline_id * local, (context.input_pipeline_id + 1) * local)

    def batches():
        for order in orders:
            for batch in np.array_split(order, steps):
                parts = np.array_split(batch, context.num_replicas_in_sync)
                for r in mine:
                    yield x[parts[r]], targets[parts[r]], weights[parts[r]]

    ds = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)), tf.TensorSpec((None, 2), tf.float32),
        tf.TensorSpec((None,), tf.float32)))
    if augmenter is not None:
        ds = ds.map(lambda a, b, c: (tf.clip_by_value(augmenter(a, training=True), 0.0, 1.0), b, c))
    return ds.prefetch(2).with_options(distribute.dataset_options())


def _keep_rows(folder: Path, rows: list[dict[str, Any]], logits: list[np.ndarray]) -> None:
    """The epochs' rows (and the watched films' logits) beside the checkpoints, so a resumed fold has its history."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "rows.json", rows)
    if logits:
        write_npz_atomic(folder / "logits.npz", logits=np.stack(logits))


def _replay(folder: Path, done: int, on_epoch: Progress | None) -> list[dict[str, Any]]:
    """The rows of the `done` epochs a checkpoint holds (with their logits, where kept), each given to `on_epoch`
    again, as when it first ran."""
    rows = json.loads((folder / "rows.json").read_text())[:done]
    kept = read_npz(folder / "logits.npz")
    if kept is not None:
        for row, logits in zip(rows, kept["logits"][:done]):
            row["logits"] = logits
    for row in rows:
        if on_epoch:
            on_epoch(dict(row))
    return rows


def _augmenter(parent: Predictor, recipe: Recipe, seed: int) -> Any:
    if recipe.augment == "none":
        return None
    augment = (config_from_dict(dict(parent.card.config)).augment if recipe.augment == "parent"
               else AugmentConfig(strength=0.5))
    return build_augmenter(augment, seed=seed)


def _labels3(screened: ScreenedFilms) -> np.ndarray:
    """Each film's 3-class label, -1 for pneumonia without a subtype."""
    return np.array([f.label3 if f.label3 is not None else -1 for f in screened.films])


def _write_history(folder: RunFolder, rows: list[dict[str, Any]]) -> None:
    """The history CSV the Training page draws: one row per fold and epoch (epochs counted from 1)."""
    lines = ["fold,epoch,stage,loss,val_auc,learning_rate,seconds"]
    lines += [f"{r['fold']},{r['epoch']},{r['stage']},{r['loss']:.6f},"
              f"{'' if r.get('val_auc') is None else format(r['val_auc'], '.6f')},{r['learning_rate']},{r['seconds']}"
              for r in rows]
    write_atomic(folder.history_file, ("\n".join(lines) + "\n").encode())


def _temperature(logits: np.ndarray, y3: np.ndarray, parent_temperature: float) -> float:
    """Refit on the out-of-fold logits of the films with 3-class truth (the parent's where under 20 have it)."""
    known = y3 >= 0
    return D.fit_temperature(logits[known], y3[known]) if known.sum() >= 20 else float(parent_temperature)


def _summary(y3: np.ndarray, yb: np.ndarray, probs: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """The card's figures on the out-of-fold scores: the full summary where every film has 3-class truth."""
    if (y3 >= 0).all():
        return M.evaluation_summary(y3, probs, threshold)
    binary = M.binary_at_threshold(yb, p, threshold)
    binary["auc"] = M.safe_auc(yb, p)
    return {"n": int(len(yb)), "binary": binary}


def _fit_guards(model: Any, screened: ScreenedFilms, parts: list[np.ndarray], parent: Predictor,
                out: Path) -> dict[str, Any]:
    """The guards for the final model's features, fitted on every fold but the first and calibrated on the first
    (which the final model trained on too, as for a cross-validated ensemble: thresholds slightly low, rates
    optimistic); the chest-appearance check is the parent's."""
    groups, held = screened.groups, parts[0]
    rest = np.setdiff1d(np.arange(len(groups)), held)
    return fit_guards(model, screened.x[rest], [groups[i] for i in rest], screened.x[held], [groups[i] for i in held],
                      parent.preprocess, out, appearance_of=parent)


def _fit_presentation(folder: ModelFolder, parent_card: ModelCard, screened: ScreenedFilms, y3: np.ndarray,
                      probs: np.ndarray) -> None:
    """The subtype margin from the out-of-fold scores of the films with 3-class truth, and the heatmap scale from
    the final model's maps of them; the parent's where no pneumonia film has a subtype."""
    known = y3 >= 0
    if not (y3[known] > 0).any():
        folder.update_card(subtype_policy=parent_card.subtype_policy, gradcam=parent_card.gradcam)
        return
    write_scores(folder.scores_file, [f"site-{i}" for i in range(int(known.sum()))], y3[known], probs[known])
    fit_presentation(folder.path, held_out=(screened.x[known], y3[known]))


def _run_name(parent_dir: Path, films: list[SiteFilm], seed: int, recipe: Recipe) -> str:
    """The folder of an adaptation: the same parent, films, seed and recipe name the same folder, so rerunning a
    stopped adaptation resumes from its checkpoints."""
    digest = hashlib.sha256()
    for film in films:  # in the order given: the folds and the batches follow it
        digest.update(hashlib.sha256(film.data).digest() + f"{film.binary},{film.label3},{film.group}".encode())
    digest.update(json.dumps([seed, asdict(recipe)], sort_keys=True).encode())
    return f"{ModelFolder(parent_dir).card().model_id}-{digest.hexdigest()[:10]}"


def _short_hash(films_manifest: list[dict[str, Any]], seed: int, recipe: Recipe) -> str:
    text = json.dumps([films_manifest, seed, asdict(recipe)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


__all__ = ["CrossFit", "Recipe", "adapt", "adapt_from_cli", "cross_fit", "fine_tune", "main"]

if __name__ == "__main__":
    keep_native_logs_off_the_terminal()  # TensorFlow's native lines stay off the caller's terminal
    sys.exit(main())
