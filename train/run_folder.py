"""A training run's folder, its fixed layout owned here (as ModelFolder owns a model's), and the runs folder's
one-run-at-a-time lock.

    runs/<name>-<config fingerprint>/
        config.json        the exact resolved config
        status.json        state (running / finished / failed / stopped), epoch, ETA: the app follows it
        history.csv        per-epoch metrics
        workers.json       a local cluster's workers (train.workers), when there are any
        checkpoints/       tf.train.CheckpointManager (model, optimizer, epoch): a killed run resumes at its last epoch
        tensorboard/       the history for TensorBoard
        best.weights.h5    best epoch by validation AUC; fit_done marks the end of training
        val_logits.npy     the validation logits (what a cross-validated ensemble calibrates on)
        model/             the finished model folder (ModelFolder), then copied into the registry
        train.log          the run's output, when the app's launcher started it
        STOP               created by the app (or a user) to stop the run after the current batch
    runs/.train.lock       an exclusive flock: one training at a time

Site adaptation's work folders (train.site) use the same status, history and log files. Every reader and writer
of these files goes through `RunFolder`; nothing else spells a file name.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from cxr_core.config import TrainConfig
from cxr_core.errors import CXRError
from cxr_core.fileio import write_json_atomic
from cxr_core.model.folder import ModelFolder
from cxr_core.settings import current


class RunFolder:
    CONFIG = "config.json"
    STATUS = "status.json"
    HISTORY = "history.csv"
    WORKERS = "workers.json"
    CHECKPOINTS = "checkpoints"
    TENSORBOARD = "tensorboard"
    BEST = "best.weights.h5"
    FIT_DONE = "fit_done"
    VAL_LOGITS = "val_logits.npy"
    MODEL = "model"
    LOG = "train.log"
    STOP = "STOP"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    config_file = property(lambda self: self.path / self.CONFIG)
    status_file = property(lambda self: self.path / self.STATUS)
    history_file = property(lambda self: self.path / self.HISTORY)
    workers_file = property(lambda self: self.path / self.WORKERS)
    checkpoints_dir = property(lambda self: self.path / self.CHECKPOINTS)
    tensorboard_dir = property(lambda self: self.path / self.TENSORBOARD)
    best_weights_file = property(lambda self: self.path / self.BEST)
    fit_done_file = property(lambda self: self.path / self.FIT_DONE)
    val_logits_file = property(lambda self: self.path / self.VAL_LOGITS)
    log_file = property(lambda self: self.path / self.LOG)
    stop_file = property(lambda self: self.path / self.STOP)

    @property
    def model(self) -> ModelFolder:
        """The finished model's folder inside the run."""
        return ModelFolder(self.path / self.MODEL)

    def read_status(self) -> dict[str, Any]:
        """The run's status, with the local cluster's workers when there are any ({} before the first write)."""
        status = self._own_status()
        workers = self.read_workers()
        return {**status, "workers": workers} if workers else status

    def write_status(self, **fields: Any) -> None:
        """Merge `fields` into the run's status (atomic replace); written by the chief only."""
        status = self._own_status()
        status.update(fields, updated=time.time())
        write_json_atomic(self.status_file, status)

    def _own_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def read_workers(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.workers_file.read_text()).get("workers", []))
        except (OSError, ValueError, AttributeError):
            return []

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, ValueError):
            return {}

    def read_history(self) -> list[dict[str, float]]:
        return read_history(self.history_file)


def read_history(path: Path) -> list[dict[str, float]]:
    """Per-epoch rows of a history CSV (a run's, or an experiment's copy), as floats; [] before the first epoch."""
    import pandas as pd  # lazy: heavy

    try:
        frame = pd.read_csv(path).apply(pd.to_numeric, errors="coerce")
    except (OSError, ValueError):  # not there yet, or empty
        return []
    frame = frame.dropna(how="any", subset=[c for c in ("epoch", "loss") if c in frame])  # a line being written
    return [{k: float(v) for k, v in row.items() if v == v} for row in frame.to_dict("records")]


def default_runs_dir() -> Path:
    """Runs are user data: `$CXR_HOME/runs` (or `$CXR_RUNS_DIR`), never the checkout."""
    return current().layout.runs


def run_dir_for(config: TrainConfig, runs_dir: Path) -> Path:
    return Path(runs_dir) / f"{config.name}-{config.fingerprint()}"


LOCK_NAME = ".train.lock"
LOCK_FD_ENV = "CXR_TRAIN_LOCK_FD"  # set by train.launcher: the child inherits the lock its parent took


def acquire_run_lock(runs_dir: Path) -> IO[str]:
    """Take the exclusive flock on runs/.train.lock (non-blocking); the open file, or CXRError when held."""
    fh = open(Path(runs_dir) / LOCK_NAME, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise CXRError("A training run is already in progress (only one at a time): stop it or wait for it to finish.") from None
    return fh


class single_run_lock:
    """An exclusive flock on runs/.train.lock: a second training is refused, a killed one releases it. A run
    started by the app's launcher holds it from before its start (inherited descriptor), so two quick starts
    can never both look started."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir

    def __enter__(self) -> "single_run_lock":
        inherited = os.environ.pop(LOCK_FD_ENV, None)
        self.inherited = inherited is not None
        if inherited is not None:
            self.fh = os.fdopen(int(inherited), "a+")  # already locked by the launcher, for this process
        else:
            self.fh = acquire_run_lock(self.runs_dir)
        self.fh.truncate(0)
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.inherited:  # an inherited lock is shared with its launcher: released when the last copy closes
            fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def training_in_progress(runs_dir: Path) -> bool:
    path = Path(runs_dir) / LOCK_NAME
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False
