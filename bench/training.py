"""Training speed: throughput per backbone (img/s, batch 32, from scratch) and the shipped recipe's epoch time;
and distribution: the same run with 1 and with 2 worker processes on this machine (MultiWorkerMirroredStrategy
on loopback, `python -m train --workers 2`): time per epoch and the final internal validation AUC on the same
split and seed; then MirroredStrategy over 2 logical CPU devices against one device (the all-reduce path
without a GPU): time per step and the first step's loss.

    python bench/training.py [--parts throughput,distribution] [--size 224] [--steps 3] [--backbones ...]
                             [--budget tiny] [--epochs 3] [--subset 0.1] [--save]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


from _common import ROOT, emit  # noqa: E402


def throughput(backbone: str, size: int, steps: int, batch: int = 32) -> float:
    import keras
    import numpy as np

    from cxr_core.config import ModelConfig
    from cxr_core.model.architecture import build_model

    model = build_model(ModelConfig(backbone=backbone, filters=[24, 48, 96, 192, 256]), size)
    model.compile(keras.optimizers.AdamW(1e-3), "categorical_crossentropy")
    x = np.random.rand(batch, size, size, 1).astype("float32")
    y = np.eye(3)[np.random.randint(0, 3, batch)].astype("float32")
    model.train_on_batch(x, y)  # build and trace
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - t)


def workers_run(workers: int, args: argparse.Namespace, home: Path) -> dict[str, float]:
    """One `python -m train` run of single.toml at the bench's budget with `workers` processes: its figures."""
    import csv
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "train", "--config", "train/configs/single.toml", "--budget", args.budget,
           "--set", f"train.epochs={args.epochs}", "--set", f"data.subset_fraction={args.subset}",
           "--runs-dir", str(home / f"runs-{workers}"), "--registry", str(home / f"models-{workers}")]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    [run_dir] = [p for p in (home / f"runs-{workers}").iterdir() if p.is_dir()]
    epoch_s = [float(r["epoch_s"]) for r in csv.DictReader(open(run_dir / "history.csv"))]
    [model_dir] = [p for p in (home / f"models-{workers}").iterdir() if (p / "model_card.json").is_file()]
    card = json.loads((model_dir / "model_card.json").read_text())
    return {"first_epoch_s": epoch_s[0], "epoch_s": float(sum(epoch_s[1:]) / max(1, len(epoch_s) - 1)),
            "wall_s": wall, "val_auc": card["internal_validation"]["binary"]["auc"],
            "n_train": card["data"]["n_train"], "n_val": card["data"]["n_val"],
            "strategy": card["distribution"]["strategy"]}


_MIRRORED = r"""
import dataclasses, json, sys, time
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from cxr_core.config import load_config
from cxr_core.model.architecture import build_model
from cxr_core.fitting.distribute import TrainingLoop, local

config = load_config("train/configs/single.toml")
size, batch, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
half = rng.random((batch // 2, size, size, 1), dtype=np.float32)
x = np.concatenate([half, half])  # halves repeated: BatchNorm sees the same statistics on 1 or 2 replicas
y = np.concatenate([np.eye(3, dtype=np.float32)[np.arange(batch // 2) % 3]] * 2)
w = np.ones(batch, np.float32)

def run(dist):
    keras.utils.set_random_seed(0)
    with dist.strategy.scope():
        model = build_model(dataclasses.replace(config.model, dropout=0.0), size)  # no random masks to differ
        optimizer = keras.optimizers.AdamW(1e-3)
        optimizer.build(model.trainable_variables)
        loss = keras.losses.CategoricalCrossentropy(reduction=None)
    loop = TrainingLoop(dist, model, optimizer, loss)
    n = batch // dist.replicas
    it = loop.distribute(lambda ctx: tf.data.Dataset.from_tensor_slices((x[:n], y[:n], w[:n])).batch(n).repeat())
    first, _ = loop.step(it)
    loop.step(it)  # traced
    t = time.perf_counter()
    for _ in range(steps):
        loop.step(it)
    return first, (time.perf_counter() - t) / steps

m_first, m_step = run(local(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), "MirroredStrategy"))
o_first, o_step = run(local(tf.distribute.get_strategy(), "default"))
print(json.dumps({"mirrored_step_s": m_step, "one_step_s": o_step, "loss_diff": abs(m_first - o_first),
                  "first_loss": o_first}))
"""


def distribution(args: argparse.Namespace) -> None:
    import json
    import subprocess
    import sys

    from _common import SHARED_TRAIN, use_temporary_home

    emit("distribution_config", f"train/configs/single.toml --budget {args.budget}, train.epochs={args.epochs}, "
                                f"data.subset_fraction={args.subset}")
    if not SHARED_TRAIN.is_dir():
        emit("distribution_workers", f"skipped: no training data at {SHARED_TRAIN}")
    else:
        home = use_temporary_home("cxr_bench_training_")
        runs = {w: workers_run(w, args, home) for w in (1, 2)}
        for w, r in runs.items():
            emit(f"workers_{w}_strategy", str(r["strategy"]))
            emit(f"workers_{w}_first_epoch_s", r["first_epoch_s"], "s")
            emit(f"workers_{w}_epoch_s_after_first", r["epoch_s"], "s")
            emit(f"workers_{w}_run_wall_s", r["wall_s"], "s")
            emit(f"workers_{w}_final_val_auc", r["val_auc"])
        emit("distribution_split", f"{runs[1]['n_train']} train / {runs[1]['n_val']} validation images (same split and "
                                   "seed for both)")
        ratio = runs[2]["epoch_s"] / runs[1]["epoch_s"]
        emit("workers_2_over_1_epoch_time", ratio, "x")
        emit("note", f"both workers run on the same {os.cpu_count()} CPU cores, so 2 workers take {ratio:.2f} x the time "
                     "per epoch of 1 (all-reduce and two processes competing for the cores), plus a slower first "
                     "epoch (cluster start, tracing); the gain needs one machine (or GPU) per worker")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    res = subprocess.run([sys.executable, "-c", _MIRRORED, str(args.mirrored_size), "32", str(args.steps * 5)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"MirroredStrategy bench failed:\n{res.stderr[-3000:]}")
    m = json.loads(res.stdout.strip().splitlines()[-1])
    emit("mirrored_setup", f"single.toml model at {args.mirrored_size} px, global batch 32, 2 logical CPU devices vs 1")
    emit("mirrored_2_logical_cpus_step_s", m["mirrored_step_s"], "s")
    emit("one_device_step_s", m["one_step_s"], "s")
    emit("mirrored_first_step_loss_abs_diff", m["loss_diff"])
    emit("one_device_first_step_loss", m["first_loss"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="throughput,distribution")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--backbones", default="cxrnet,mobilenetv2,efficientnetb0,resnet50,densenet121")
    ap.add_argument("--budget", default="tiny", help="single.toml's budget for the 1-vs-2-worker runs")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--subset", type=float, default=0.1)
    ap.add_argument("--mirrored-size", type=int, default=64)
    args = ap.parse_args()
    emit("cpu_cores", str(os.cpu_count()))
    if "distribution" in args.parts.split(","):
        distribution(args)
    if "throughput" not in args.parts.split(","):
        return
    for b in args.backbones.split(","):
        emit(f"train_throughput_{b}_{args.size}px_img_per_s", throughput(b, args.size, args.steps), "img/s")
    from cxr_core.config import load_config

    shipped = load_config(ROOT / "train" / "configs" / "shipped.toml")
    emit(f"train_throughput_shipped_recipe_{shipped.data.image_size}px_img_per_s",
         throughput("cxrnet", shipped.data.image_size, args.steps), "img/s")
    from cxr_core.model.registry import Registry

    active = Registry().active()
    if active is not None:
        card = active.card
        emit("shipped_model", card.model_id)
        emit("shipped_training_minutes_total", card.training_time_s / 60, "min")
        emit("shipped_seconds_per_epoch_mean", card.training_time_s / max(1, card.epochs_run or 0), "s")


if __name__ == "__main__":
    main()
