"""Fitting the chest-appearance check (cxr_core.safety.appearance): its autoencoder trains through the one training
loop (cxr_core.fitting.distribute.TrainingLoop), with a checkpoint after every epoch where a folder is given, so an
interrupted fit resumes (the folder goes once it finished); then the code statistics are fitted on the training
films and every threshold calibrated on held-out films' scores, never on the training films' own."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..safety.appearance import RULES, AppearanceCheck, AutoencoderRecipe, build_autoencoder, thumbnails
from .distribute import Checkpoints, Distribution, TrainingLoop, local, per_replica_batch


def fit_appearance(fit_images: np.ndarray, held_out_images: np.ndarray, recipe: AutoencoderRecipe = AutoencoderRecipe(),
                   checkpoint_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
                   dist: Distribution | None = None) -> AppearanceCheck:
    """Train on the training films' inputs, calibrate every threshold on held-out films' scores. `dist`: the
    strategy (default: this process's one device; the check is fitted by one process, the chief)."""
    import keras  # lazy: heavy
    import tensorflow as tf  # lazy: heavy
    from sklearn.covariance import LedoitWolf  # lazy: heavy

    keras.utils.set_random_seed(recipe.seed)
    dist = dist or local(tf.distribute.get_strategy(), "default")
    x = thumbnails(fit_images, recipe.size, recipe.equalize)
    steps = updates_per_epoch(len(x), recipe)
    with dist.strategy.scope():
        net = build_autoencoder(recipe)
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            recipe.learning_rate, recipe.epochs * steps, alpha=0.05))

    def squared_error(target: Any, reconstruction: Any) -> Any:  # one loss per thumbnail
        return tf.reduce_mean(tf.square(target - reconstruction), axis=[1, 2, 3])

    loop = TrainingLoop(dist, net, optimizer, squared_error, accuracy=False)
    checkpoints = Checkpoints(dist, Path(checkpoint_dir), model=net, optimizer=optimizer) if checkpoint_dir else None
    start = checkpoints.restore() if checkpoints else 0
    batch = per_replica_batch(recipe.batch_size, dist.replicas)
    iterator = loop.distribute(lambda context: _dataset(x, batch, recipe.seed + start * 1000 + context.input_pipeline_id))
    for epoch in range(start, recipe.epochs):
        loop.reset_metrics()
        for _ in range(steps):
            loop.step(iterator)
        if checkpoints:
            checkpoints.save(epoch + 1)
        if log is not None:
            log(f"appearance autoencoder epoch {epoch + 1}/{recipe.epochs}: loss {loop.epoch_logs()['loss']:.5f}")
    if checkpoint_dir:  # trained: a later fit (other films, another recipe) starts afresh
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    check = AppearanceCheck(net, np.zeros(recipe.code, np.float64), np.eye(recipe.code), {k: math.inf for k in RULES},
                            recipe.size, recipe.equalize, recipe.detail_version)
    _, codes = check.reconstruct(fit_images)
    lw = LedoitWolf().fit(codes.astype(np.float64))
    check.code_mean, check.code_precision = lw.location_, lw.precision_
    held = check.scores(held_out_images)
    check.thresholds = {k: rule.calibrate(held[k]) for k, rule in RULES.items()}
    return check


def updates_per_epoch(n: int, recipe: AutoencoderRecipe) -> int:
    """An epoch is a pass over the films; a tiny training set still gets `recipe.min_steps` updates in all."""
    return max(math.ceil(n / recipe.batch_size), math.ceil(recipe.min_steps / recipe.epochs))


def _dataset(x: np.ndarray, batch: int, seed: int) -> Any:
    """Endless (input, target, weight) batches of one replica: small rotations, shifts and zooms, as chest films are
    positioned."""
    import tensorflow as tf  # lazy: heavy

    def batches():
        rng = np.random.default_rng(seed)
        n, size = len(x), x.shape[1]
        while True:
            idx = rng.choice(n, size=min(batch, n), replace=n < batch)
            out = np.empty((len(idx), size, size, 1), np.float32)
            for j, i in enumerate(idx):
                m = cv2.getRotationMatrix2D((size / 2 + rng.normal(0, size * 0.03), size / 2 + rng.normal(0, size * 0.03)),
                                            rng.normal(0, 4), rng.uniform(0.92, 1.08))
                out[j, ..., 0] = cv2.warpAffine(x[i, ..., 0], m, (size, size), flags=cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_REFLECT)
            yield out, out, np.ones(len(idx), np.float32)

    spec = tf.TensorSpec((None, *x.shape[1:]), tf.float32)
    return tf.data.Dataset.from_generator(batches, output_signature=(spec, spec, tf.TensorSpec((None,), tf.float32)))
