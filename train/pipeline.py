"""One training run, end to end: data -> fit -> calibrate -> threshold -> model card -> registry.

A run lives in `runs/<name>-<config fingerprint>/`, whose layout train.run_folder.RunFolder owns.

Rerunning the same command continues the same run. The site's model is never changed here (that is the governed
`models --activate` alone); `activate=True` makes the model the default of a registry named by its folder (a
release), and only after the run finished and passed its validation gate.

Training runs under the process's tf.distribute strategy (cxr_core.fitting.distribute: one device, several GPUs, or the
workers of a TF_CONFIG cluster), with one custom step for all. Only the chief writes the run folder, the model,
its card (with its `distribution` block) and the registry entry.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxr_core.model.card import ModelCard
from cxr_core.config import TrainConfig
from cxr_core.validation.dataset import Record, balanced_indices, class_counts, fingerprint, index_dataset, split_for
from cxr_core.errors import CXRError, plain_cause
from cxr_core.fileio import write_atomic, write_json_atomic
from cxr_core.model.folder import ModelFolder
from cxr_core.inputs.preprocess import Preprocess
from cxr_core.model.registry import Registry
from train.run_folder import RunFolder, default_runs_dir, read_history, run_dir_for, single_run_lock
from cxr_core.inputs.imaging import load_image
from cxr_core.model.architecture import build_model, logit_function, predict_logits
from cxr_core.validation.stress import CLEAN
from train.augment import build_augmenter
from train.callbacks import LearningRateLogger, StatusWriter, StopFile, ValidationMetrics
from cxr_core.fitting.distribute import Checkpoints, TrainingLoop, current, dataset_options, per_replica_batch
from train.evidence import needs_stress, stress_logits
from train.finish import Evidence, finish_model
import csv
import io


@dataclass
class RunResult:
    run_dir: Path
    state: str
    model_id: str | None
    metrics: dict[str, Any]


def failure_message(exc: BaseException) -> str:
    """A failed run's status message in plain words (shown on the Training page): ours as it is, anything else
    by what went wrong, pointing at the run's log for the details."""

    if isinstance(exc, KeyboardInterrupt):
        return "stopped (interrupted); rerun the same command to resume"
    if isinstance(exc, CXRError):
        return str(exc)
    return f"the run stopped on {plain_cause(exc)}; the run's log has the details"


def train(config: TrainConfig, runs_dir: str | Path | None = None, registry: Registry | None = None,
          register: bool = True, activate: bool = False, command: str | None = None,
          split: tuple[list[Record], list[Record]] | None = None, log: Callable[[str], None] = print,
          reevaluate: bool = False) -> RunResult:
    """Run (or resume) one training run. Only one run at a time per runs folder. Under a multi-worker TF_CONFIG
    every worker calls this with the same arguments; only the chief's result carries a model.

    `reevaluate`: for a run whose training finished, redo only the evaluation stage (calibration,
    threshold, OOD detector, model card) from its best checkpoint and register the result as a new
    model; for use after a change to that stage's code.
    """

    runs_dir = Path(runs_dir or default_runs_dir())
    dist = current()
    if not dist.is_chief:
        result = _train_as_worker(config, runs_dir, split, log, reevaluate, dist)
    else:
        runs_dir.mkdir(parents=True, exist_ok=True)
        with single_run_lock(runs_dir):
            result = _train_locked(config, runs_dir, registry, register, activate, command, split, log, reevaluate,
                                   dist)
    dist.barrier()  # the other workers wait for the chief's model (not on an error: that ends the cluster)
    return result


def _train_locked(config: TrainConfig, runs_dir: Path, registry: Registry | None, register: bool, activate: bool,
                  command: str | None, split: tuple[list[Record], list[Record]] | None,
                  log: Callable[[str], None], reevaluate: bool, dist: Any) -> RunResult:
    run_dir = run_dir_for(config, runs_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunFolder(run_dir)
    status = run.read_status()
    if reevaluate and not run.fit_done_file.exists():
        raise CXRError(f"--reevaluate needs a run whose training finished; {run_dir.name} has not.")
    if status.get("state") == "finished" and not reevaluate:
        log(f"Run {run_dir.name} already finished (model {status.get('model_id')}); nothing to do.")
        return RunResult(run_dir, "finished", status.get("model_id"), status.get("metrics", {}))
    run.stop_file.unlink(missing_ok=True)
    command = command or "python -m train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_json_atomic(run.config_file, {**config.to_dict(), "command": command})
    started = time.time() - float(status.get("elapsed_s", 0.0))
    run.write_status(state="running", pid=os.getpid(), epoch=status.get("epoch", 0), epochs=config.train.epochs,
                 started=started, message="loading data", distribution=dist.describe())
    try:
        train_recs, val_recs, data_info = _split(config, split)
        log(f"Data: {data_info['n_train']} train / {data_info['n_val']} validation images "
            f"(patient-grouped), fingerprint {data_info['fingerprint']}.")
        preprocess = config.data.preprocess()
        x_train, y_train = load_arrays(train_recs, preprocess)
        x_val, y_val = load_arrays(val_recs, preprocess)
        run.write_status(message="training")
        model, epochs_run = _fit(config, run_dir, x_train, y_train, x_val, y_val, started, log, dist)
        if run.stop_file.exists() or model is None:
            run.write_status(state="stopped", message="stopped by the user; rerun the same command to resume")
            return RunResult(run_dir, "stopped", None, {})
        run.write_status(message="evaluating on internal validation")
        resumed_at = [int(e) for e in run.read_status().get("resumed_at", [])]
        distribution = {**dist.describe(), "resumed": bool(resumed_at), "resumed_at_epochs": resumed_at}
        card = _evaluate_and_write_model(config, run_dir, model, x_train, train_recs, x_val,
                                         y_val, val_recs, data_info,
                                         time.time() - started, epochs_run, command, distribution)
    except BaseException as exc:
        state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.write_status(state=state, message=failure_message(exc))
        raise
    metrics = dict(card.internal_validation)
    model_id, passed = register_if_passed(card, run.model.path, config, registry, register, activate, log)
    run.write_status(state="finished", message="finished", model_id=model_id, metrics=headline(metrics),
            passed_gate=passed, elapsed_s=time.time() - started)
    return RunResult(run_dir, "finished", model_id, metrics)


def _train_as_worker(config: TrainConfig, runs_dir: Path, split: tuple[list[Record], list[Record]] | None,
                     log: Callable[[str], None], reevaluate: bool, dist: Any) -> RunResult:
    """A non-chief worker: the same data, steps, checkpoint saves and stop decisions as the chief (collectives),
    but it writes nothing into the run folder (its checkpoints go to temporary folders, removed at once) and
    neither evaluates nor registers. It reads the shared run folder to skip what the chief will skip."""
    run_dir = run_dir_for(config, runs_dir)
    run = RunFolder(run_dir)
    status = run.read_status()
    if status.get("state") == "finished" or reevaluate or (run.fit_done_file.exists()
                                                            and run.best_weights_file.exists()):
        log(f"[{dist.task}] nothing to train in {run_dir.name}: the chief finishes it.")
        return RunResult(run_dir, "finished", None, {})
    train_recs, val_recs, _ = _split(config, split)
    preprocess = config.data.preprocess()
    x_train, y_train = load_arrays(train_recs, preprocess)
    x_val, y_val = load_arrays(val_recs, preprocess)
    _, epochs = _fit(config, run_dir, x_train, y_train, x_val, y_val, time.time(), log, dist)
    log(f"[{dist.task}] trained {epochs} epoch(s) with the chief; the chief writes the model.")
    return RunResult(run_dir, "finished", None, {})


def register_if_passed(card: ModelCard, model_dir: Path, config: TrainConfig, registry: Registry | None,
                       register: bool, activate: bool, log: Callable[[str], None]) -> tuple[str | None, bool]:
    """The validation gate, recorded in the card, then (if asked) registration and activation: (registered model
    id, passed). A model below its gate is registered as an experiment: hidden from the app's model picker unless
    asked for, and never made active."""
    auc = card.binary_metrics["auc"]
    gate = config.train.min_val_auc_to_register
    passed = bool(auc >= gate)
    ModelFolder(model_dir).update_card(validation_gate={"min_val_auc": gate, "auc": auc, "passed": passed})
    if not register:
        return None, passed
    registry = registry or Registry()
    model_id = card.model_id
    if model_id not in {e.model_id for e in registry.list()}:
        registry.register(model_dir)
    if not passed:
        log(f"Validation AUC {auc:.3f} is below the gate {gate}: registered in {registry.write_root} as an "
            "experiment (hidden from the model picker; never active).")
        return model_id, passed
    if activate:
        registry.set_default(model_id)
    log(f"Registered {model_id} in {registry.write_root}" + (" as its default." if activate else "."))
    return model_id, passed

# ---------------------------------------------------------------------------------------------- data
def _split(config: TrainConfig, split: tuple[list[Record], list[Record]] | None) -> tuple[list[Record], list[Record], dict]:
    d = config.data
    if split is None:
        train_recs, val_recs = split_for(index_dataset(d.root), d.__dict__)
    else:
        train_recs, val_recs = split
    info = {"root": d.root, "fingerprint": fingerprint(train_recs + val_recs), "n_train": len(train_recs),
            "n_val": len(val_recs), "train_counts": class_counts(train_recs), "val_counts": class_counts(val_recs),
            "split_seed": d.split_seed, "val_fraction": d.val_fraction, "folds": d.folds, "fold": d.fold,
            "subset_fraction": d.subset_fraction,
            "val_patients": len({r.patient for r in val_recs})}
    return train_recs, val_recs, info


def load_arrays(records: list[Record], preprocess: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Decode with the shared preprocessing, in parallel (OpenCV/PIL release the GIL); float32, as served."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        images = list(pool.map(lambda r: preprocess.load(r.path), records))
    return np.stack(images), np.array([r.label for r in records], dtype=np.int32)


def steps_per_epoch(config: TrainConfig, y: np.ndarray) -> int:
    """Full global batches per epoch: ceil(balanced sample count / train.batch_size)."""
    labels = y if config.model.num_classes == 3 else (y > 0).astype(np.int32)
    return int(np.ceil(len(balanced_indices(labels, config.data.balancing, config.train.seed)) / config.train.batch_size))


def make_train_dataset(config: TrainConfig, x: np.ndarray, y: np.ndarray, input_context: Any = None) -> Any:
    """tf.data for one worker: balanced/oversampled indices -> shuffle -> repeat -> this worker's shard -> batch ->
    gather -> augment -> prefetch. Sharding is by input pipeline on the index stream, before any gather or
    augmentation, and tf.data's auto-sharding is off (see cxr_core.fitting.distribute). Without `input_context` (one
    pipeline, one replica) the batch is the config's; with one it is the per-replica share of that global batch."""
    import tensorflow as tf  # lazy: heavy

    aug_config = config.augment
    if config.data.balancing == "balanced_strong":
        aug_config = dataclasses.replace(aug_config, strength=aug_config.strength * 1.5)
    augmenter = build_augmenter(aug_config, seed=config.train.seed)
    num_classes = config.model.num_classes
    labels = y if num_classes == 3 else (y > 0).astype(np.int32)
    weights = class_weights(labels, num_classes) if config.train.class_weights else np.ones(num_classes, np.float32)
    idx = balanced_indices(labels, config.data.balancing, config.train.seed)
    xs, ys, ws = tf.constant(x), tf.constant(labels), tf.constant(weights)

    def gather(i: Any) -> Any:
        xb = tf.gather(xs, i)
        yb = tf.gather(ys, i)
        return xb, tf.one_hot(yb, num_classes), tf.gather(ws, yb)

    ds = tf.data.Dataset.from_tensor_slices(idx).shuffle(len(idx), seed=config.train.seed, reshuffle_each_iteration=True)
    ds = ds.repeat()  # epochs are counted in full global batches: every worker runs the same number of steps
    batch = config.train.batch_size
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch = per_replica_batch(batch, input_context.num_replicas_in_sync)
    ds = ds.batch(batch, drop_remainder=True).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda a, b, c: (tf.clip_by_value(augmenter(a, training=True), 0.0, 1.0), b, c),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(dataset_options())


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights, n / (classes x count); 1 for a class absent from `labels`."""
    from sklearn.utils.class_weight import compute_class_weight  # lazy: heavy

    present = np.unique(labels)
    weights = np.ones(num_classes, np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels) * len(present) / num_classes
    return weights

# ---------------------------------------------------------------------------------------------- fit
def _fit(config: TrainConfig, run_dir: Path, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
         y_val: np.ndarray, started: float, log: Callable[[str], None], dist: Any) -> tuple[Any, int]:
    """Train with the one custom step (cxr_core.fitting.distribute) under the process's strategy; resume from the run's
    checkpoint. The chief returns a plain (undistributed) model holding the best epoch's weights; another
    worker returns None. Every worker runs the same steps, checkpoint saves and stop decisions."""
    import keras  # lazy: heavy

    t = config.train
    run = RunFolder(run_dir)
    best = run.best_weights_file
    fit_done = run.fit_done_file
    if fit_done.exists() and best.exists():
        log("Training already complete; evaluating the best checkpoint.")
        return (_plain_model(config, best) if dist.is_chief else None), int(run.read_status().get("epoch", t.epochs))
    steps = steps_per_epoch(config, y_train)
    keras.utils.set_random_seed(t.seed)
    with dist.strategy.scope():  # model, optimizer, loss and metrics: their variables belong to the strategy
        model = build_model(config.model, config.data.image_size)
        lr: Any = t.learning_rate
        if t.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=max(1, steps * t.epochs),
                                                        alpha=0.02, warmup_target=None)
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=t.weight_decay)
        optimizer.build(model.trainable_variables)  # before a restore: every slot exists
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing, reduction=None)
        model.compile(optimizer=optimizer)  # model.optimizer, for the callbacks (the loop is cxr_core.fitting.distribute's)
    loop = TrainingLoop(dist, model, optimizer, loss)
    checkpoints = Checkpoints(dist, RunFolder(run_dir).checkpoints_dir, model=model, optimizer=optimizer)
    start = checkpoints.restore()
    if start:
        log(f"Resuming from the checkpoint after epoch {start}.")
    callbacks: list[Any] = []
    monitors_val = bool(t.early_stopping_patience) or t.lr_schedule == "plateau"
    if dist.is_chief or monitors_val:  # the chief logs it; every worker needs it to take the same decisions
        callbacks.append(ValidationMetrics(x_val, y_val, config.model.num_classes, predict=loop.predict))
    callbacks.append(LearningRateLogger())
    if dist.is_chief:
        if start:
            _keep_history_before(run.history_file, start)
            run.write_status(resumed_at=[*run.read_status().get("resumed_at", []), start])
        checkpoint_best = keras.callbacks.ModelCheckpoint(str(best), monitor="val_auc", mode="max",
                                                          save_best_only=True, save_weights_only=True)
        previous = [r.get("val_auc") for r in read_history(run.history_file)]
        if best.exists() and previous:
            checkpoint_best.best = max(previous)  # the best epoch before the restart still counts
        callbacks += [keras.callbacks.CSVLogger(str(run.history_file), append=True),
                      keras.callbacks.TensorBoard(str(run.tensorboard_dir), write_graph=False),
                      checkpoint_best, StatusWriter(run_dir, t.epochs, started)]
    callbacks.append(StopFile(run.stop_file))
    if t.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                                       patience=t.early_stopping_patience))
    if t.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                           patience=t.plateau_patience, min_lr=1e-7))
    hooks = keras.callbacks.CallbackList(callbacks, model=model, epochs=t.epochs, steps=steps)
    iterator = loop.distribute(lambda context: make_train_dataset(config, x_train, y_train, context))
    model.stop_training = False
    stopped = False
    epochs_done = start
    hooks.on_train_begin()
    for epoch in range(start, t.epochs):
        hooks.on_epoch_begin(epoch)
        loop.reset_metrics()
        epoch_start = time.time()
        for step in range(steps):
            hooks.on_train_batch_begin(step)
            _, stopped = loop.step(iterator, stop_here=bool(model.stop_training))
            hooks.on_train_batch_end(step, {})
            if stopped:
                break
        if stopped:  # the STOP file: this epoch is not finished; a rerun redoes it from the last checkpoint
            break
        loop.sync_statistics()
        hooks.on_epoch_end(epoch, {**loop.epoch_logs(), "epoch_s": time.time() - epoch_start})
        checkpoints.save(epoch + 1)
        epochs_done = epoch + 1
        if loop.agree(bool(model.stop_training)):  # early stopping: every worker stops after the same epoch
            break
    hooks.on_train_end()
    if stopped or not dist.is_chief:
        return None, epochs_done
    write_atomic(fit_done, b"done\n")
    if best.exists():
        return _plain_model(config, best), epochs_done
    plain = _plain_model(config, None)
    plain.set_weights(model.get_weights())
    return plain, epochs_done


def _plain_model(config: TrainConfig, weights: Path | None) -> Any:
    """The trained network outside any strategy (for evaluation and saving): no collective, no optimizer."""

    model = build_model(dataclasses.replace(config.model, init_from=""), config.data.image_size)
    if weights is not None:
        model.load_weights(weights)
    return model


def _keep_history_before(path: Path, epochs_done: int) -> None:
    """After a restore to `epochs_done` finished epochs: drop the log rows of epochs that will be redone."""

    if not path.exists():
        return
    rows = list(csv.reader(io.StringIO(path.read_text())))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs_done]
    if len(kept) != len(rows):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(kept)
        write_atomic(path, out.getvalue().encode())

# ---------------------------------------------------------------------------------------------- evaluate
def _evaluate_and_write_model(config: TrainConfig, run_dir: Path, model: Any, x_train: np.ndarray,
                              train_recs: list[Record], x_val: np.ndarray, y_val: np.ndarray,
                              val_recs: list[Record], data_info: dict, elapsed: float, epochs_run: int,
                              command: str, distribution: dict[str, Any]) -> ModelCard:
    """The validation split's evidence, then `finish_model` (shared with the ensemble)."""

    run = RunFolder(run_dir)
    logits = {CLEAN: predict_logits(model, x_val)}
    np.save(run.val_logits_file, logits[CLEAN])  # out-of-fold logits: what a cross-validated ensemble calibrates on
    if needs_stress(config):  # the validation images are held out: the stress suite runs on them
        logits.update(stress_logits([load_image(r.path).pixels for r in val_recs], config, logit_function(model)))
    out = run.model
    out.path.mkdir(exist_ok=True)
    if run.history_file.exists():
        out.history_file.write_bytes(run.history_file.read_bytes())
    evidence = Evidence(
        labels=y_val, files=[f"{r.path.parent.name}/{r.path.name}" for r in val_recs], logits=logits,
        guard_fit=(x_train, [r.patient for r in train_recs]), guard_check=(x_val, [r.patient for r in val_recs]),
        training_paths=[r.path for r in train_recs + val_recs], data=data_info,
        kind=f"Internal (held-out): a patient-grouped validation split of {len(val_recs)} images",
        stress_note="validation images (held out from training)" if needs_stress(config) else None,
        training_time_s=elapsed, epochs_run=epochs_run, presentation_held_out=(x_val, y_val),
        card_fields={"distribution": distribution})
    return finish_model(model, config, evidence, out.path, command)  # uncompiled: saved without the optimizer

# ---------------------------------------------------------------------------------------------- status
def headline(summary: dict[str, Any]) -> dict[str, float]:
    return {"val_binary_accuracy": summary["binary"]["accuracy"], "val_auc": summary["binary"]["auc"],
            "val_sensitivity": summary["binary"]["sensitivity"], "val_specificity": summary["binary"]["specificity"],
            "val_3class_accuracy": summary["three_class"]["accuracy"], "val_macro_f1": summary["three_class"]["macro_f1"],
            "val_normal_recall": summary["three_class"]["recall"]["NORMAL"]}
