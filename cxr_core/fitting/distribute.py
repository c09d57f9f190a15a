"""Distributed training with TensorFlow's own engine, `tf.distribute`: the process's one strategy, chosen from the
environment, and the one training step every training path runs (single run, ensemble members, experiments, site
fine-tuning, the chest-appearance autoencoder).

The strategy (`current()`, one per process: TensorFlow's collectives can be set up only once):
- `TF_CONFIG` naming a cluster of several workers: `MultiWorkerMirroredStrategy` (synchronous data parallelism
  across machines; worker 0 is the chief unless the cluster names a "chief" task);
- else several GPUs on this machine: `MirroredStrategy` over them;
- else TensorFlow's default strategy (one device).

Why a custom step and not `model.fit`: with Keras 3.15 / TensorFlow 2.21, `model.fit` under
`MultiWorkerMirroredStrategy` on two loopback workers fails at its first step ("ValueError: Attempt to convert a
value (PerReplica: ...) to a Tensor"), measured here; `strategy.run` with `tf.nn.compute_average_loss` trains, and
both workers hold the same weights after each step. So every path, one device included, runs `TrainingLoop.step`.

Input (`TrainingLoop.distribute`): `distribute_datasets_from_function` calls the pipeline builder once per worker
with its `tf.distribute.InputContext`; the builder shards the shuffled stream of *image indices* by
`input_pipeline_id` before any image is gathered or augmented, so no worker decodes or augments another's images.
tf.data's own auto-sharding is therefore switched off (`AutoShardPolicy.OFF`, stated in `dataset_options`): the
data are in-memory tensors, not files, so FILE sharding cannot apply, and DATA sharding would make every worker
augment the whole global batch and keep only its share.

Batch size: the config's `train.batch_size` is the global batch, split evenly over the replicas (it must divide).
An epoch is ceil(n / global batch) full global batches of a repeated stream, so every worker runs the same number
of steps (a collective that one worker skips would hang the others).

BatchNormalization's moving statistics are per replica in Keras; `sync_statistics` averages them over all
replicas at each epoch end, so every worker holds the same model (and the validation decisions of EarlyStopping
and ReduceLROnPlateau agree).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cxr_core.errors import ConfigError, CXRError
import numpy as np

WORKER_TEMP_PREFIX = "cxr-train-worker"  # a non-chief's checkpoint folder, removed after every save


@dataclass(frozen=True)
class Distribution:
    """The process's place in training: its strategy, the cluster size, and whether it is the chief (the one
    process that writes the run folder, the model, its card and the registry entry)."""

    strategy: Any
    name: str  # "default", "MirroredStrategy" or "MultiWorkerMirroredStrategy"
    workers: int
    task_type: str
    task_index: int

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and not self._has_chief_task)

    @property
    def _has_chief_task(self) -> bool:
        return bool(cluster_spec().get("chief"))

    @property
    def task(self) -> str:
        return f"{self.task_type}:{self.task_index}"

    def barrier(self) -> None:
        """Wait until every worker got here (a collective): a worker that finished training waits for the chief
        to write the model, so the cluster ends together rather than reporting a vanished peer."""
        if self.workers > 1:
            _barrier(self.strategy)()

    def agree(self, value: int, what: str) -> None:
        """Raise unless every worker holds the same `value` (a collective: every worker calls it at the same point),
        so a cluster whose workers would run different numbers of steps stops with the reason instead of hanging."""
        if self.workers > 1:
            total, squares = (float(v) for v in _sums(self.strategy)(float(value)))
            if abs(squares * self.replicas - total * total) > 1e-6 * max(1.0, total * total):  # equal iff all equal
                raise CXRError(f"The workers disagree on {what}: they do not share the run folder, or read different "
                               "films. Give every worker the same folder and data, then rerun.")

    def describe(self) -> dict[str, Any]:
        """The model card's and the status file's `distribution` block."""
        return {"strategy": self.name, "workers": self.workers, "replicas": self.replicas}


@functools.cache
def _barrier(strategy: Any) -> Any:
    import tensorflow as tf  # lazy: heavy

    @tf.function
    def barrier() -> Any:
        ones = strategy.run(lambda: tf.identity(tf.constant(1.0)))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    return barrier


@functools.cache
def _sums(strategy: Any) -> Any:
    import tensorflow as tf  # lazy: heavy

    @tf.function
    def sums(value: Any) -> Any:
        def replica() -> Any:
            v = tf.identity(value)  # (an all-reduce needs a tensor made in the replica)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, [v, v * v])
        return strategy.experimental_local_results(strategy.run(replica))[0]

    return lambda value: sums(tf.constant(value, tf.float64))


def cluster_spec() -> dict[str, list[str]]:
    """The cluster of `TF_CONFIG` ({} without one), validated: a malformed one is a ConfigError, not a hang."""
    config = tf_config()
    return config.get("cluster", {}) if config else {}


def tf_config() -> dict[str, Any] | None:
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc}); see README 'Data and training'.") from None
    cluster, task = config.get("cluster") if isinstance(config, dict) else None, config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not all(isinstance(v, list) and v for v in cluster.values()):
        raise ConfigError(f"TF_CONFIG cluster {cluster!r} is invalid: expected {{\"worker\": [\"host:port\", ...]}}.")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG task {task!r} is invalid: expected {{\"type\": \"worker\", \"index\": i}} "
                          f"naming one of the cluster's tasks ({', '.join(f'{k}: {len(v)}' for k, v in cluster.items())}).")
    return config


@functools.cache
def current() -> Distribution:
    """The strategy for this process, chosen once from the environment (see the module docstring)."""
    import tensorflow as tf  # lazy: heavy

    config = tf_config()
    if config is not None:
        cluster = config["cluster"]
        workers = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
        if workers > 1:
            task = config["task"]
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            return Distribution(strategy, "MultiWorkerMirroredStrategy", workers, task["type"], task["index"])
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return Distribution(tf.distribute.MirroredStrategy(), "MirroredStrategy", 1, "worker", 0)
    return Distribution(tf.distribute.get_strategy(), "default", 1, "worker", 0)


def local(strategy: Any, name: str) -> Distribution:
    """A one-machine Distribution over an explicit strategy (bench and tests: MirroredStrategy on logical CPUs)."""
    return Distribution(strategy, name, 1, "worker", 0)


def dataset_options() -> Any:
    """Explicit sharding by input pipeline (see the module docstring): tf.data's auto-sharding is off."""
    import tensorflow as tf  # lazy: heavy

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def per_replica_batch(global_batch: int, replicas: int) -> int:
    if global_batch % replicas:
        raise ConfigError(f"train.batch_size = {global_batch} is invalid here: it is the global batch and must split "
                          f"evenly over the {replicas} replicas of this cluster (use a multiple of {replicas}).")
    return global_batch // replicas


class TrainingLoop:
    """The one training step (strategy.run: forward, per-example loss scaled by the global batch, gradients that
    the optimizer all-reduces across replicas), its metrics, the BatchNormalization sync and agreement on
    stopping. Every training path runs it: the classifier (train.pipeline), site fine-tuning (train.site) and the
    chest-appearance autoencoder (cxr_core.fitting.appearance). Build the model, optimizer and loss under
    `dist.strategy.scope()` first. `loss(y, outputs)` gives one loss per example (weighted by the batch's `w`);
    `variables`: the ones trained (default: all trainable); `accuracy`: track categorical accuracy (outputs are
    class probabilities)."""

    def __init__(self, dist: Distribution, model: Any, optimizer: Any, loss: Any, variables: list[Any] | None = None,
                 accuracy: bool = True):
        import keras  # lazy: heavy
        import tensorflow as tf  # lazy: heavy

        self.dist, self.model, self.optimizer, self.loss = dist, model, optimizer, loss
        strategy = dist.strategy
        with strategy.scope():
            self.loss_metric = keras.metrics.Mean(name="loss")
            self.accuracy = keras.metrics.CategoricalAccuracy(name="accuracy") if accuracy else None
        self._moving = [v for v in model.non_trainable_variables if "moving_" in v.path]
        trained = list(variables) if variables is not None else None

        def replica_step(x: Any, y: Any, w: Any, stop: Any) -> Any:
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_example = loss(y, probs) * w
                scaled = tf.nn.compute_average_loss(per_example)
                if model.losses:
                    scaled += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            weights = trained if trained is not None else model.trainable_variables
            grads = tape.gradient(scaled, weights)
            optimizer.apply_gradients(zip(grads, weights))
            self.loss_metric.update_state(per_example)
            if self.accuracy is not None:
                self.accuracy.update_state(y, probs)
            ctx = tf.distribute.get_replica_context()
            # (tf.identity: an all-reduce needs a tensor made in the replica, not one passed in)
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [scaled, tf.identity(stop)])

        @tf.function
        def step(iterator: Any, stop: Any) -> Any:
            x, y, w = next(iterator)
            loss_value, stops = strategy.run(replica_step, args=(x, y, w, stop))
            return strategy.experimental_local_results(loss_value)[0], strategy.experimental_local_results(stops)[0]

        @tf.function
        def sync() -> None:
            def replica_sync() -> None:
                ctx = tf.distribute.get_replica_context()
                means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in self._moving])
                for v, mean in zip(self._moving, means):
                    v.assign(mean)
            strategy.run(replica_sync)

        @tf.function
        def agree(flag: Any) -> Any:
            def replica_flag() -> Any:
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(flag))
            return strategy.experimental_local_results(strategy.run(replica_flag))[0]

        self._step, self._sync, self._agree = step, sync, agree
        self._forward = tf.function(lambda x: model(x, training=False))

    def distribute(self, dataset_fn: Callable[[Any], Any]) -> Any:
        """An iterator over per-replica batches; `dataset_fn(input_context)` builds one worker's pipeline."""
        return iter(self.dist.strategy.distribute_datasets_from_function(dataset_fn))

    def step(self, iterator: Any, stop_here: bool = False) -> tuple[float, bool]:
        """One synchronous step on every replica: (the global batch's mean loss, whether any worker asked to
        stop). Every worker must call it the same number of times."""
        import tensorflow as tf  # lazy: heavy

        loss_value, stops = self._step(iterator, tf.constant(1.0 if stop_here else 0.0))
        return float(loss_value), float(stops) > 0

    def agree(self, flag: bool) -> bool:
        """True on every worker when any worker's `flag` is set (a collective: every worker calls it)."""
        import tensorflow as tf  # lazy: heavy

        return float(self._agree(tf.constant(1.0 if flag else 0.0))) > 0

    def sync_statistics(self) -> None:
        """Average BatchNormalization's moving statistics over all replicas (a collective)."""
        if self._moving and self.dist.replicas > 1:
            self._sync()

    def reset_metrics(self) -> None:
        self.loss_metric.reset_state()
        if self.accuracy is not None:
            self.accuracy.reset_state()

    def epoch_logs(self) -> dict[str, float]:
        logs = {"loss": float(self.loss_metric.result())}
        if self.accuracy is not None:
            logs["accuracy"] = float(self.accuracy.result())
        return logs

    def predict(self, x: Any, batch_size: int = 64) -> Any:
        """Softmax outputs of `x` on this process alone (no collective): the validation callback's scores."""

        return np.concatenate([np.asarray(self._forward(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


class Checkpoints:
    """Fault tolerance through `tf.train.CheckpointManager`: the given objects (a model, its optimizers) and the next
    epoch, saved at every epoch end by every worker (saving is collective), kept only in the chief's `directory` (a
    run folder's checkpoints); a non-chief saves into a temporary folder that is removed at once. A restarted
    cluster restores the chief's latest checkpoint (the run folder is shared)."""

    def __init__(self, dist: Distribution, directory: Path, **objects: Any):
        import tensorflow as tf  # lazy: heavy

        self.dist, self.directory = dist, Path(directory)
        with dist.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(epoch=self.epoch, **objects)
        self.manager = (tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=2)
                        if dist.is_chief else None)

    def restore(self) -> int:
        """Restore the latest checkpoint, if any: the number of finished epochs (0 for a fresh run)."""
        import tensorflow as tf  # lazy: heavy

        latest = tf.train.latest_checkpoint(str(self.directory))
        if latest is None:
            return 0
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def save(self, epochs_done: int) -> None:
        import tensorflow as tf  # lazy: heavy

        self.epoch.assign(epochs_done)
        if self.manager is not None:
            self.manager.save()
            return
        scratch = tempfile.mkdtemp(prefix=f"{WORKER_TEMP_PREFIX}{self.dist.task_index}-")
        try:
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
