"""Site adaptation: fine-tune a model on a site's own labelled films, judge it against its parent on the site's
held-out patients, and keep it in the case database as a new model (not active).

    films --screen--> kept --split (patients, 60/40)--> tuning part | local-validation part
    parent weights --head only (2 epochs)--> --whole network, low rate, early stop on local-validation AUC-->
    temperature, threshold (the parent's policy), guards, card --> the case database

Training follows the parent's recipe where it applies: its augmentation, its label smoothing, class weights; with
BatchNorm statistics kept as the parent's (a few hundred films are too few to re-estimate them). Films with 3-class truth
train with the 3-class loss; pneumonia films without a subtype with a binary loss on P(pneumonia) = 1 - P(NORMAL).
The epoch is chosen on the local-validation films, so their figures are slightly optimistic: the card says so.
A GPU is used when TensorFlow sees one. Fixed seed: the same films, parent and seed give the same model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxr_core.cases.store import CaseStore
from cxr_core.config import config_from_dict
from cxr_core.errors import CXRError
from cxr_core.fileio import write_atomic
from cxr_core.fitting.guards import fit_guards
from cxr_core.fitting.presentation import fit_presentation
from cxr_core.inputs.imaging import load_image
from cxr_core.model import decision as D
from cxr_core.model.architecture import LOGITS_LAYER, logit_function, predict_logits
from cxr_core.model.card import ModelCard
from cxr_core.model.evidence import ThresholdEvidence
from cxr_core.model.folder import ModelFolder
from cxr_core.model.predict import Predictor
from cxr_core.safety.overlap import training_hashes
from cxr_core.settings import PROJECT_ROOT, current
from cxr_core.site.data import (SiteFilm, films_from_folder, films_from_reviews, label_counts, manifest, screen,
                                split)
from cxr_core.site.evidence import compare
from cxr_core.site.models import ACTIVATION_MIN_AUC, activation_refusals, store_model, unpack
from cxr_core.validation import metrics as M
from cxr_core.validation.evaluation import write_scores
from cxr_core.validation.stress import CLEAN, conditions, score_conditions
from train.augment import build_augmenter
from train.evidence import needs_stress, operating_point
from train.run_folder import RunFolder


@dataclass(frozen=True)
class AdaptConfig:
    """The fine-tuning schedule (the same for every site; the seed is the caller's)."""

    head_epochs: int = 2
    head_learning_rate: float = 1e-3
    max_epochs: int = 10  # whole-network epochs at most
    learning_rate: float = 1e-4
    patience: int = 3  # whole-network epochs without a better local-validation AUC before stopping
    batch_size: int = 16

Progress = Callable[[dict[str, Any]], None]
SITE_RUNS = "site-runs"  # under $CXR_HOME: one folder per adaptation, a RunFolder (status, history, log) with the model


def adapt(parent_dir: Path, films: list[SiteFilm], reader: str, source: str, seed: int = 0,
          config: AdaptConfig = AdaptConfig(), store: CaseStore | None = None, work_dir: Path | None = None,
          progress: Progress | None = None, command: str = "", min_per_class: int | None = None) -> dict[str, Any]:
    """Screen, split, fine-tune, judge and keep (see the module docstring); the result `site-model adapt --json`
    prints. Refusals are CXRErrors naming the rule."""
    started = time.time()
    settings = current()
    min_per_class = settings.site_min_per_class if min_per_class is None else min_per_class
    work_dir = Path(work_dir or settings.home / SITE_RUNS / time.strftime("%Y%m%d-%H%M%S"))
    work_dir.mkdir(parents=True, exist_ok=True)
    status: dict[str, Any] = {"state": "checking the films", "started": started, "reader": reader.strip(),
                              "source": source}
    RunFolder(work_dir).write_status(**status)
    try:
        return _adapt(parent_dir, films, reader, source, seed, config, store, work_dir, progress, command,
                      min_per_class, status)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, CXRError) else f"The adaptation stopped ({type(exc).__name__})."
        RunFolder(work_dir).write_status(state="failed", message=message)
        raise


def _adapt(parent_dir: Path, films: list[SiteFilm], reader: str, source: str, seed: int, config: AdaptConfig,
           store: CaseStore | None, work_dir: Path, progress: Progress | None, command: str, min_per_class: int,
           status: dict[str, Any]) -> dict[str, Any]:
    started, settings = status["started"], current()
    parent = Predictor(parent_dir)
    screened = screen(films, parent, min_per_class)
    tune, val = split(screened, seed)
    status.update(state="training", counts=screened.counts, parent_model_id=parent.card.model_id)
    RunFolder(work_dir).write_status(**status)

    def on_epoch(row: dict[str, Any]) -> None:
        RunFolder(work_dir).write_status(epoch=row["step"], epochs=row["steps"], val_auc=row["val_auc"])
        if progress:
            progress(row)

    model, history = fine_tune(parent, screened.x, screened.films, tune, val, config, seed, work_dir, on_epoch)
    yb = screened.binary
    logits_val = _logits(model, screened.x[val])
    y3_val = np.array([f.label3 if f.label3 is not None else -1 for f in (screened.films[i] for i in val)])
    temperature = _temperature(logits_val, y3_val, parent.card.temperature)
    probs_val = M.as_three_class(D.softmax(logits_val, temperature))
    p_val = M.pneumonia_probability(probs_val)
    threshold, policy = _threshold(parent, model, temperature, screened.films, val, yb[val], p_val)
    evidence = compare(yb[val], M.pneumonia_probability(screened.parent_probs[val]), parent.card.threshold, p_val,
                       threshold, seed=seed)

    films_manifest = manifest(screened, tune, val)
    model_id = f"{parent.card.model_id}-site-{_short_hash(films_manifest, seed, config)}"
    folder = ModelFolder(work_dir / model_id)
    if folder.path.exists():
        shutil.rmtree(folder.path)
    folder.path.mkdir(parents=True)
    for guard in (ModelFolder.OOD, ModelFolder.POPULATION):  # the parent's guards first; refitted below
        if (parent.model_dir / guard).is_file():
            shutil.copy2(parent.model_dir / guard, folder.path / guard)
    model.save(folder.model_file)
    guards = _fit_guards(model, screened, tune, val, parent, folder.path)
    known = sorted((training_hashes(parent.folder.hashes_file) or set()) | set(screened.hashes))
    write_atomic(folder.hashes_file, ("\n".join(known) + "\n").encode())
    summary = _summary(y3_val, yb[val], probs_val, p_val, threshold)
    counts = {**screened.counts, "tuning": label_counts(screened, tune), "local_validation": label_counts(screened, val)}
    site = {"parent_model_id": parent.card.model_id, "reader": reader.strip(), "source": source,
            "labels_from": ("the worklist's reader reviews (readers saw the model's answer)" if source == "reviews"
                            else "the labelled folder's NORMAL/ and PNEUMONIA/ (and Kaggle file names)"),
            "seed": seed, "schedule": config.__dict__, "counts": counts, "manifest": films_manifest,
            "local_validation": evidence, "history": history, "warnings": screened.warnings, "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "note": "Both models are judged on the same local-validation patients, which the adaptation never "
                    "trained on; the adapted model's epoch and threshold were chosen on them (slightly optimistic)."}
    card = ModelCard.from_dict({**parent.card.to_dict(), "model_id": model_id, "name": f"{parent.card.name}-site",
                                "version": time.strftime("%Y.%m.%d"), "created": site["created"],
                                "description": f"{parent.card.name} adapted to this site on {counts['tuning']['n']} of "
                                               f"its labelled films ({counts['tuning']['patients']} patients).",
                                "threshold": threshold, "threshold_policy": policy.name,
                                "threshold_evidence": policy, "temperature": temperature,
                                "internal_validation": summary,
                                "internal_validation_kind": f"Local validation at this site: {len(val)} films of "
                                                            f"{counts['local_validation']['patients']} patients held out "
                                                            "from the adaptation",
                                "stress": None, "ensemble": None, "site_adaptation": site, **guards,
                                "reproduce_command": command, "epochs_run": len(history),
                                "training_time_s": time.time() - started,
                                "parameters": int(model.count_params())})
    refusals = activation_refusals(card.with_fields(validation_gate={"min_val_auc": ACTIVATION_MIN_AUC,
                                                                     "auc": evidence["adapted"]["auc"],
                                                                     "passed": True}), settings.site_policy)
    site.update(passed_gate=not refusals, gate_refusals=refusals, time_s=time.time() - started)
    card = card.with_fields(site_adaptation=site, training_time_s=site["time_s"],
                            validation_gate={"min_val_auc": ACTIVATION_MIN_AUC, "auc": evidence["adapted"]["auc"],
                                             "passed": not refusals})
    folder.write_card(card)
    _fit_presentation(folder, parent.card, screened, val, y3_val, probs_val)
    if store is not None:
        store_model(store, folder.path, reader)
    result = {"model_id": model_id, "parent_model_id": parent.card.model_id, "counts": counts,
              "local_validation": {k: ({m: v for m, v in ev.items() if m != "roc"} if isinstance(ev, dict) else ev)
                                   for k, ev in evidence.items()},
              "passed_gate": not refusals, "gate_refusals": refusals, "warnings": screened.warnings,
              "time_s": round(time.time() - started, 1), "stored": store is not None,
              "model_dir": str(unpack(store, model_id) if store is not None else folder.path)}
    RunFolder(work_dir).write_status(state="finished", result=result)
    return result


def adapt_from_cli(parent_dir: Path, data_dir: str | None, from_reviews: bool, reader: str, seed: int,
                   quiet: bool = False, work_dir: Path | None = None) -> dict[str, Any]:
    """`python -m cxr_core site-model adapt`: the source, a progress bar on stderr, the case database."""
    store = CaseStore.open()
    films = films_from_reviews(store) if from_reviews else films_from_folder(data_dir or "")
    command = "python -m cxr_core site-model adapt " + ("--from-reviews" if from_reviews else "DATA_DIR") + \
              f" --reader NAME --seed {seed}"
    return adapt(parent_dir, films, reader, "reviews" if from_reviews else "folder", seed, store=store,
                 work_dir=work_dir, progress=None if quiet else _bar, command=command)


def start(parent_model_id: str, data_dir: str | None, from_reviews: bool, reader: str, seed: int = 0) -> Path:
    """The Training page's "Adapt to this site": the same command in its own process (it survives a page reload);
    its folder, which `site_runs` reads. Cheap checks first, so a bad folder or no reader never looks started."""

    if not reader.strip():
        raise CXRError("Site adaptation needs the reader's name (the sidebar's box).")
    if not from_reviews:
        root = Path(data_dir or "").expanduser()
        if not (root / "NORMAL").is_dir() or not (root / "PNEUMONIA").is_dir():
            raise CXRError(f"{str(data_dir)!r} is not a labelled folder: it needs NORMAL/ and PNEUMONIA/ subfolders.")
        data_dir = str(root.resolve())
    work = current().home / SITE_RUNS / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=False)
    RunFolder(work).write_status(state="starting", started=time.time(), reader=reader.strip(),
                                 source="reviews" if from_reviews else "folder")
    cmd = [sys.executable, "-m", "cxr_core", "site-model", "adapt", *(["--from-reviews"] if from_reviews else
                                                                      [data_dir]),
           "--reader", reader.strip(), "--model", parent_model_id, "--seed", str(seed), "--json",
           "--work-dir", str(work)]
    with open(RunFolder(work).log_file, "wb") as log:
        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT,
                         start_new_session=True)
    return work


def site_runs() -> list[tuple[Path, dict[str, Any]]]:
    """Every adaptation's folder and status, newest first."""
    root = current().home / SITE_RUNS
    runs = []
    for folder in sorted(root.glob("*/"), reverse=True) if root.is_dir() else []:
        status = RunFolder(folder).read_status()
        if status:
            runs.append((folder, status))
    return runs


def _bar(row: dict[str, Any]) -> None:
    done, total = row["step"], row["steps"]
    filled = int(30 * done / max(1, total))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] epoch {done}/{total} ({row['stage']}) "
                     f"local-validation AUC {row['val_auc']:.3f}   ")
    if done >= total or row.get("last"):
        sys.stderr.write("\n")
    sys.stderr.flush()

# ------------------------------------------------------------------------------------------------ fine-tuning
def fine_tune(parent: Predictor, x: np.ndarray, films: list[SiteFilm], tune: np.ndarray, val: np.ndarray,
              config: AdaptConfig, seed: int, work_dir: Path,
              progress: Progress | None) -> tuple[Any, list[dict[str, Any]]]:
    """The parent's weights, trained in two stages on the tuning films; the best epoch by local-validation AUC
    and the per-epoch history (also the history file of `work_dir`, a RunFolder, which the Training page draws)."""
    import keras  # lazy: heavy
    import tensorflow as tf  # lazy: heavy

    keras.utils.set_random_seed(seed)
    parent_config = config_from_dict({k: v for k, v in parent.card.config.items()})
    model = keras.models.clone_model(parent.model)
    model.set_weights(parent.model.get_weights())
    for layer in model.layers:  # BatchNorm keeps the parent's statistics (inference mode when not trainable)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    augmenter = build_augmenter(parent_config.augment, seed=seed)
    smoothing = float(parent_config.train.label_smoothing)
    y3 = np.array([f.label3 if f.label3 is not None else -1 for f in films])
    yb = np.array([f.binary for f in films], dtype=np.float32)
    counts = np.bincount(yb[tune].astype(int), minlength=2)
    class_weight = (len(tune) / (2.0 * np.maximum(counts, 1))).astype(np.float32)

    def loss_fn(logits: Any, y3b: Any, ybb: Any) -> Any:
        has3 = tf.cast(y3b >= 0, tf.float32)
        onehot = tf.one_hot(tf.maximum(y3b, 0), 3) * (1 - smoothing) + smoothing / 3
        ce3 = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
        p_normal = tf.nn.softmax(logits)[:, 0]
        target = ybb * (1 - smoothing) + smoothing / 2
        p = tf.clip_by_value(1.0 - p_normal, 1e-6, 1 - 1e-6)
        bce = -(target * tf.math.log(p) + (1 - target) * tf.math.log(1 - p))
        weight = tf.gather(tf.constant(class_weight), tf.cast(ybb, tf.int32))
        return tf.reduce_mean(weight * (has3 * ce3 + (1 - has3) * bce))

    # One trace per stage: batches differ in size by one film, and each retrace costs seconds.
    signature = [tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype)), tf.TensorSpec([None], tf.as_dtype(y3.dtype)),
                 tf.TensorSpec([None], tf.float32)]

    def make_step(optimizer: Any, variables: list[Any]) -> Any:
        @tf.function(input_signature=signature)
        def step(xb: Any, y3b: Any, ybb: Any) -> Any:
            if augmenter is not None:
                xb = tf.clip_by_value(augmenter(xb, training=True), 0.0, 1.0)
            with tf.GradientTape() as tape:
                loss = loss_fn(model(xb, training=True), y3b, ybb)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss
        return step

    rng = np.random.default_rng(seed)
    head = [v for v in model.get_layer(LOGITS_LAYER).trainable_variables]
    stages = [("head", config.head_epochs, config.head_learning_rate, head),
              ("whole network", config.max_epochs, config.learning_rate, model.trainable_variables)]
    steps_total = config.head_epochs + config.max_epochs
    history: list[dict[str, Any]] = []
    best = (-1.0, model.get_weights())
    y_val = yb[val].astype(int)
    for stage, epochs, lr, variables in stages:
        step = make_step(keras.optimizers.Adam(learning_rate=lr), variables)
        stale = 0
        for _ in range(epochs):
            t0 = time.time()
            order = tune[rng.permutation(len(tune))]
            losses = [float(step(tf.constant(x[b]), tf.constant(y3[b]), tf.constant(yb[b])))
                      for b in np.array_split(order, max(1, int(np.ceil(len(order) / config.batch_size))))]
            auc = M.safe_auc(y_val, M.pneumonia_probability(M.as_three_class(D.softmax(_logits(model, x[val])))))
            row = {"epoch": len(history) + 1, "stage": stage, "loss": float(np.mean(losses)), "val_auc": auc,
                   "learning_rate": lr, "seconds": round(time.time() - t0, 2), "step": len(history) + 1,
                   "steps": steps_total}
            history.append(row)
            _write_history(work_dir, history)
            improved = auc > best[0]
            if improved:
                best = (auc, model.get_weights())
            stale = 0 if improved else stale + 1
            if stage != "head" and stale >= config.patience:
                row["last"] = True
            if progress:
                progress(row)
            if row.get("last"):
                break
    model.set_weights(best[1])
    return model, [{k: v for k, v in r.items() if k not in ("step", "steps", "last")} for r in history]


def _write_history(work_dir: Path, history: list[dict[str, Any]]) -> None:
    lines = ["epoch,stage,loss,val_auc,learning_rate,seconds"]
    lines += [f"{r['epoch']},{r['stage']},{r['loss']:.6f},{r['val_auc']:.6f},{r['learning_rate']},{r['seconds']}"
              for r in history]
    write_atomic(RunFolder(work_dir).history_file, ("\n".join(lines) + "\n").encode())


def _logits(model: Any, x: np.ndarray) -> np.ndarray:
    return predict_logits(model, x)


def _temperature(logits: np.ndarray, y3: np.ndarray, parent_temperature: float) -> float:
    """Refit on the local-validation films with 3-class truth (the parent's temperature where under 20 have it)."""
    known = y3 >= 0
    return D.fit_temperature(logits[known], y3[known]) if known.sum() >= 20 else float(parent_temperature)


def _threshold(parent: Predictor, model: Any, temperature: float, films: list[SiteFilm], val: np.ndarray,
               y_val: np.ndarray, p_val: np.ndarray) -> tuple[float, ThresholdEvidence]:
    """The parent's threshold policy, applied to the adapted model's local-validation scores (with the stress
    conditions the policy reads, up to moderate severity, where it reads any)."""

    config = config_from_dict(dict(parent.card.config))
    p = {CLEAN: p_val}
    if needs_stress(config):
        keys = [k for k in conditions(None, [1, 2]) if k != CLEAN]
        images = [load_image(films[int(i)].data).pixels for i in val]
        logits = score_conditions(images, config.data.preprocess(), logit_function(model), keys)
        p.update({k: M.pneumonia_probability(M.as_three_class(D.softmax(v, temperature))) for k, v in logits.items()})
    return operating_point(config, y_val, p)


def _summary(y3: np.ndarray, yb: np.ndarray, probs: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """The card's figures on the local-validation films: the full summary where every film has 3-class truth."""
    if (y3 >= 0).all():
        return M.evaluation_summary(y3, probs, threshold)
    binary = M.binary_at_threshold(yb, p, threshold)
    binary["auc"] = M.safe_auc(yb, p)
    return {"n": int(len(yb)), "binary": binary}


def _fit_guards(model: Any, screened: Any, tune: np.ndarray, val: np.ndarray, parent: Predictor,
                out: Path) -> dict[str, Any]:
    """The guards for the adapted model's features, fitted on the tuning films and calibrated on the
    local-validation patients, as for any model; the chest-appearance check is the parent's."""
    groups = screened.groups
    return fit_guards(model, screened.x[tune], [groups[i] for i in tune], screened.x[val], [groups[i] for i in val],
                      parent.preprocess, out, appearance_of=parent)


def _fit_presentation(folder: ModelFolder, parent_card: ModelCard, screened: Any, val: np.ndarray, y3: np.ndarray,
                      probs: np.ndarray) -> None:
    """The subtype margin and heatmap scale on the local-validation films with 3-class truth; the parent's where
    no pneumonia film there has a subtype."""

    known = y3 >= 0
    if not (y3[known] > 0).any():
        folder.update_card(subtype_policy=parent_card.subtype_policy, gradcam=parent_card.gradcam)
        return
    write_scores(folder.scores_file, [f"site-{i}" for i in range(int(known.sum()))], y3[known], probs[known])
    fit_presentation(folder.path, held_out=(screened.x[val][known], y3[known]))


def _short_hash(films_manifest: list[dict[str, Any]], seed: int, config: AdaptConfig) -> str:
    text = json.dumps([films_manifest, seed, config.__dict__], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]

__all__ = ["AdaptConfig", "adapt", "adapt_from_cli", "fine_tune", "site_runs", "start"]
