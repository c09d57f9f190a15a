"""Training throughput per backbone (img/s, batch 32, from scratch) and the shipped recipe's epoch time.

    python bench/training.py [--size 224] [--steps 3] [--backbones cxrnet,mobilenetv2,...]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--backbones", default="cxrnet,mobilenetv2,efficientnetb0,resnet50,densenet121")
    args = ap.parse_args()
    emit("cpu_cores", str(os.cpu_count()))
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
