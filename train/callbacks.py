"""Small Keras callbacks the pipeline adds to Keras' own (CSVLogger, TensorBoard, checkpoints).

ValidationMetrics runs first each epoch and puts the validation metrics into the shared `logs`
dict, so CSVLogger, TensorBoard, ModelCheckpoint, EarlyStopping and ReduceLROnPlateau all see
the binary (NORMAL vs PNEUMONIA) AUC computed exactly with scikit-learn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from cxr_core.model.decision import is_pneumonia
from cxr_core.validation import metrics as M
from train.run_folder import RunFolder


class ValidationMetrics(keras.callbacks.Callback):
    """`predict(x)` gives the model's softmax outputs on this process alone: under a multi-worker strategy,
    Keras' own `model.predict` would try to distribute the validation set."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray, num_classes: int,
                 predict: Callable[[np.ndarray], np.ndarray]):
        super().__init__()
        self.x_val, self.y_val, self.num_classes, self.predict = x_val, y_val, num_classes, predict

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from sklearn.metrics import roc_auc_score  # lazy: heavy

        logs = logs if logs is not None else {}
        probs = np.asarray(self.predict(self.x_val))
        y = self.y_val if self.num_classes == 3 else (self.y_val > 0).astype(int)
        yb = (self.y_val > 0).astype(int)
        p = M.pneumonia_probability(probs)
        logs["val_loss"] = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, None))))
        logs["val_accuracy"] = float(np.mean(probs.argmax(1) == y))
        logs["val_auc"] = float(roc_auc_score(yb, p)) if 0 < yb.sum() < len(yb) else float("nan")
        logs["val_binary_accuracy"] = float(np.mean(is_pneumonia(p, 0.5) == yb))
        normal = yb == 0
        logs["val_normal_recall"] = float(np.mean(~is_pneumonia(p[normal], 0.5))) if normal.any() else float("nan")
        logs["val_pred_std"] = float(np.std(p))  # ~0 means constant predictions (a BN-statistics failure)


class LearningRateLogger(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        opt = self.model.optimizer
        lr = opt.learning_rate
        if callable(lr) and not hasattr(lr, "numpy"):
            lr = lr(opt.iterations)
        logs["learning_rate"] = float(np.asarray(lr))


class StatusWriter(keras.callbacks.Callback):
    """Writes status.json after each epoch (epoch, ETA) for the app and `python -m train status`."""

    def __init__(self, run_dir: Path, epochs: int, started: float):
        super().__init__()
        self.run_dir, self.epochs, self.started = run_dir, epochs, started
        self.epoch_start = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_start = time.time()
        self._write(epoch=epoch, message=f"epoch {epoch + 1}/{self.epochs}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        per_epoch = time.time() - self.epoch_start
        self._write(epoch=epoch + 1, epoch_s=per_epoch, eta_s=per_epoch * (self.epochs - epoch - 1),
                    elapsed_s=time.time() - self.started, last={k: float(v) for k, v in (logs or {}).items()})

    def _write(self, **fields: Any) -> None:
        RunFolder(self.run_dir).write_status(**fields)


class StopFile(keras.callbacks.Callback):
    """Asks training to stop when the STOP file appears; the loop stops every worker after the same step."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch % 5 == 0 and self.path.exists():
            self.model.stop_training = True
