"""Distributed training with tf.distribute: real worker processes on loopback (MultiWorkerMirroredStrategy), a
SIGKILLed worker and the restart that resumes, what a non-chief leaves behind, and MirroredStrategy over two
logical CPU devices against one device. The TF_CONFIG and --workers checks are quick; the rest train and are slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from cxr_core.errors import ConfigError
from cxr_core.model.registry import Registry

from tests.conftest import PROJECT_ROOT, tiny_config_file


def _config_file(tmp_path: Path, data: Path, epochs: int, batch_size: int = 8) -> Path:
    return tiny_config_file(tmp_path / "tiny-dist.toml", data, name="tinydist",
                            train={"epochs": epochs, "batch_size": batch_size})


def _train_command(config: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "--config", str(config), "--runs-dir", str(tmp_path / "runs"),
            "--registry", str(tmp_path / "reg"), *extra]


def _env(tmp_path: Path) -> dict[str, str]:
    """Each run's own temporary folder: what a non-chief leaves behind shows there."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path / "tmp")}
    env.pop("TF_CONFIG", None)
    return env


def _run_dir(tmp_path: Path) -> Path:
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run_dir


# ---------------------------------------------------------------------------------------------- quick
@pytest.mark.parametrize("value, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}), "cluster"),
    (json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}}),
     "task"),
    (json.dumps({"cluster": {"worker": ["localhost:1"]}}), "task"),
])
def test_a_malformed_tf_config_is_a_clear_error(monkeypatch, value, message):
    from cxr_core.fitting.distribute import tf_config

    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ConfigError, match=message):
        tf_config()


def test_the_chief_is_worker_0_unless_the_cluster_names_one(monkeypatch):
    from cxr_core.fitting.distribute import Distribution

    two = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": two, "task": {"type": "worker", "index": 0}}))
    assert Distribution(None, "x", 2, "worker", 0).is_chief and not Distribution(None, "x", 2, "worker", 1).is_chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["localhost:3"], **two},
                                                "task": {"type": "worker", "index": 0}}))
    assert Distribution(None, "x", 3, "chief", 0).is_chief and not Distribution(None, "x", 3, "worker", 0).is_chief


def test_the_global_batch_must_split_evenly_over_the_replicas():
    from cxr_core.fitting.distribute import per_replica_batch

    assert per_replica_batch(32, 2) == 16
    with pytest.raises(ConfigError, match="train.batch_size = 9 .* 2 replicas"):
        per_replica_batch(9, 2)


@pytest.mark.parametrize("args, message", [(["--workers", "0"], "--workers 0 is invalid"),
                                           (["--workers", "two"], "invalid int value")])
def test_bad_workers_values_exit_2_with_a_message(args, message):
    res = subprocess.run([sys.executable, "-m", "train", "--config", "train/configs/single.toml", *args],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and message in res.stderr, res.stderr


def test_workers_must_match_the_tf_config_cluster(tmp_path, tiny_data):
    env = {**_env(tmp_path), "TF_CONFIG": json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                                      "task": {"type": "worker", "index": 1}})}
    res = subprocess.run(_train_command(_config_file(tmp_path, tiny_data, 1), tmp_path, "--workers", "3"),
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "does not match TF_CONFIG's cluster of 2 workers" in res.stderr, res.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- real workers
@pytest.mark.slow
def test_two_loopback_workers_train_to_the_end_and_register_one_model(tmp_path, tiny_data):
    import keras

    from cxr_core.model.architecture import build_model
    from cxr_core.model.predict import Predictor
    from cxr_core.model.keras_import import load_keras_model
    from train.pipeline import train

    config_path = _config_file(tmp_path, tiny_data, epochs=2)
    res = subprocess.run(_train_command(config_path, tmp_path, "--workers", "2"), cwd=PROJECT_ROOT,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "[worker 0]" in res.stdout and "[worker 1]" in res.stdout
    [entry] = Registry(tmp_path / "reg").list()
    card = entry.card
    assert card.distribution["strategy"] == "MultiWorkerMirroredStrategy"
    assert card.distribution["workers"] == 2 and card.distribution["resumed"] is False
    assert json.loads((entry.path / "model_card.json").read_text())["distribution"]["workers"] == 2
    assert card.epochs_run == 2 and card.reproduce_command.endswith("--workers 2")

    run_dir = _run_dir(tmp_path)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["model_id"] == entry.model_id
    workers = json.loads((run_dir / "workers.json").read_text())["workers"]
    assert [(w["role"], w["state"]) for w in workers] == [("chief", "finished"), ("worker", "finished")]
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1"]
    # The non-chief left nothing: no temporary checkpoint folder, no file of its own in the shared run folder.
    assert list((tmp_path / "tmp").glob("cxr-train-worker*")) == []
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["best.weights.h5", "checkpoints", "config.json", "fit_done", "history.csv", "model", "status.json",
         "tensorboard", "val_logits.npy", "workers.json"])
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".train.lock", run_dir.name]

    # Its weights load (safe_mode) and predict like a single-worker model's: the same graph and weight shapes as
    # the same config trained by one process, and in a network built the single-worker way they give the same
    # outputs as the loaded model.
    from cxr_core.config import load_config

    config = load_config(config_path)
    single = train(config, runs_dir=tmp_path / "single-runs", registry=Registry(tmp_path / "single-reg"),
                   command="pytest", log=lambda s: None)
    single_card = Registry(tmp_path / "single-reg").get(single.model_id).card
    assert single_card.distribution["strategy"] == "default" and single_card.distribution["workers"] == 1
    distributed = load_keras_model(entry.path / "model.keras")
    one = load_keras_model(Registry(tmp_path / "single-reg").get(single.model_id).path / "model.keras")
    assert [layer.name for layer in distributed.layers] == [layer.name for layer in one.layers]
    assert [w.shape for w in distributed.get_weights()] == [w.shape for w in one.get_weights()]
    rebuilt = build_model(config.model, config.data.image_size)
    rebuilt.set_weights(distributed.get_weights())
    x = np.random.default_rng(0).random((6, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(rebuilt(x, training=False)), np.asarray(distributed(x, training=False)),
                               atol=1e-6)
    keras.backend.clear_session()
    image = next((tiny_data / "PNEUMONIA").glob("*.jpeg"))
    for model_dir in (entry.path, Registry(tmp_path / "single-reg").get(single.model_id).path):
        result = Predictor(model_dir).predict(image)  # the app's and the CLI's way in
        assert result.error is None, result.error
        assert sum(result.class_probabilities.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_a_sigkilled_worker_restarted_with_the_same_command_resumes_and_the_card_says_so(tmp_path, tiny_data):
    """Kill worker 1 (SIGKILL) during epoch 3 of 6: the launcher stops the chief and exits 1; the same command
    again resumes from the checkpoint after epoch 2 and finishes, and the card records the resume."""
    config_path = _config_file(tmp_path, tiny_data, epochs=6, batch_size=4)
    cmd = _train_command(config_path, tmp_path, "--workers", "2")
    env = _env(tmp_path)
    launcher = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    from cxr_core.config import load_config
    from train.run_folder import RunFolder, run_dir_for

    run_dir = run_dir_for(load_config(config_path), tmp_path / "runs")
    deadline = time.time() + 400
    while time.time() < deadline and RunFolder(run_dir).read_status().get("message") != "epoch 3/6":
        assert launcher.poll() is None, launcher.stdout.read()[-3000:]
        time.sleep(0.01)
    [chief, worker] = RunFolder(run_dir).read_status()["workers"]
    os.kill(worker["pid"], signal.SIGKILL)
    out, _ = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, out[-3000:]
    assert "Worker 1 killed (signal 9)" in out and "Rerun the same command to resume" in out
    status = RunFolder(run_dir).read_status()
    assert [w["state"] for w in status["workers"]] == ["stopped by the launcher", "killed (signal 9)"]
    # The chief either failed on its own (TensorFlow's health check saw the peer vanish) or was stopped mid-epoch.
    assert status["state"] in ("failed", "running") and status["epoch"] == 2  # after epoch 2's checkpoint
    assert Registry(tmp_path / "reg").list() == []
    for pid in (chief["pid"], worker["pid"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Resuming from the checkpoint after epoch 2" in done.stdout
    [entry] = Registry(tmp_path / "reg").list()
    assert entry.card.distribution["resumed"] is True and entry.card.distribution["resumed_at_epochs"] == [2]
    assert entry.card.epochs_run == 6
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2", "3", "4", "5"]  # no epoch twice


_MIRRORED_FIRST_STEP = r"""
import json, sys
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from cxr_core.config import ModelConfig
from cxr_core.model.architecture import build_model
from cxr_core.fitting.distribute import TrainingLoop, local

rng = np.random.default_rng(0)
half = 4  # each replica's batch; the global batch repeats it, so BatchNorm's batch statistics are the same
x = np.concatenate([rng.random((half, 32, 32, 1), dtype=np.float32)] * 2)
y = np.concatenate([np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]] * 2)
w = np.concatenate([np.array([1.0, 2.0, 0.5, 1.5], np.float32)] * 2)

def first_step(dist, per_replica):
    keras.utils.set_random_seed(0)
    with dist.strategy.scope():
        model = build_model(ModelConfig(filters=[8, 16], dropout=0.0), 32)
        optimizer = keras.optimizers.AdamW(1e-3)
        optimizer.build(model.trainable_variables)
        loss = keras.losses.CategoricalCrossentropy(reduction=None)
    loop = TrainingLoop(dist, model, optimizer, loss)
    data = lambda ctx: tf.data.Dataset.from_tensor_slices((x[:per_replica], y[:per_replica], w[:per_replica])).batch(per_replica).repeat()
    value, _ = loop.step(loop.distribute(data))
    return value, float(loop.loss_metric.result()), [v.numpy() for v in model.trainable_variables]

mirrored = local(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), "MirroredStrategy")
one = local(tf.distribute.get_strategy(), "default")
m_loss, m_metric, m_weights = first_step(mirrored, half)
o_loss, o_metric, o_weights = first_step(one, 2 * half)
print(json.dumps({"replicas": mirrored.replicas, "mirrored": m_loss, "one": o_loss, "mirrored_metric": m_metric,
                  "one_metric": o_metric,
                  "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(m_weights, o_weights))}))
"""


@pytest.mark.slow
def test_two_logical_cpus_under_mirrored_strategy_give_one_devices_first_step_loss():
    """Same global batch of 8 (each replica's 4 repeated, so BatchNorm sees the same batch statistics): the first
    step's loss agrees to 1e-5 and so do the weights after it (the gradient all-reduce and the loss scaling by the
    global batch). A loss averaged per replica and summed would double it; an unreduced gradient would differ."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    res = subprocess.run([sys.executable, "-c", _MIRRORED_FIRST_STEP], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["mirrored"] == pytest.approx(out["one"], abs=1e-5) and 0.5 < out["one"] < 5
    assert out["mirrored_metric"] == pytest.approx(out["one_metric"], abs=1e-5)
    assert out["max_weight_diff"] < 1e-5


def _checkpoints(run_dir: Path, task_index: int, monkeypatch):
    """Checkpoints of a tiny Keras model for worker `task_index` of a two-worker cluster (the default strategy:
    the rules under test are the files each worker writes and what restore returns)."""
    import keras
    import tensorflow as tf

    from cxr_core.fitting.distribute import Checkpoints, Distribution

    two = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": two, "task": {"type": "worker", "index": task_index}}))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1)
    dist = Distribution(tf.distribute.get_strategy(), "x", 2, "worker", task_index)
    return Checkpoints(dist, run_dir / "checkpoints", model=model, optimizer=optimizer)


def test_a_non_chief_s_save_leaves_the_shared_run_folder_untouched(tmp_path, monkeypatch):
    run_dir, scratch = tmp_path / "run", tmp_path / "tmp"
    run_dir.mkdir(), scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # this test's own temporary folder
    _checkpoints(run_dir, 1, monkeypatch).save(1)
    assert list(run_dir.rglob("*")) == []  # the chief alone writes the run folder
    assert list(scratch.iterdir()) == []  # and the non-chief's scratch copy is gone


def test_restore_returns_the_epochs_saved(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert _checkpoints(run_dir, 0, monkeypatch).restore() == 0  # a fresh run starts at epoch 0
    chief = _checkpoints(run_dir, 0, monkeypatch)
    chief.save(1)
    assert _checkpoints(run_dir, 0, monkeypatch).restore() == 1  # one epoch done: the next is epoch index 1
    chief.save(2)
    assert _checkpoints(run_dir, 1, monkeypatch).restore() == 2  # a restarted worker reads the chief's latest
