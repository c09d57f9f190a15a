"""Start, follow and stop training runs and site adaptations as separate processes (used by the Training page).

A run started here is `python -m train --config FILE --set ...` in its own process session, so it
survives a browser refresh or a restart of the Streamlit server; its state is read back from the
run folder (train.run_folder.RunFolder), never from the process that started it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_core.config import TrainConfig, apply_budget, apply_overrides, load_config
from cxr_core.errors import CXRError
from cxr_core.settings import PROJECT_ROOT, current
from train.run_folder import LOCK_FD_ENV, RunFolder, acquire_run_lock, run_dir_for
from cxr_core.validation.dataset import index_dataset
from cxr_core.readers import named

CONFIG_DIR = PROJECT_ROOT / "train" / "configs"
_CHILDREN: list[subprocess.Popen] = []  # runs this process started: polled, so an ended child never lingers as a zombie


@dataclass
class RunInfo:
    run_dir: Path
    name: str
    status: dict[str, Any]
    config: dict[str, Any]

    @property
    def state(self) -> str:
        _reap()
        state = self.status.get("state", "unknown")
        if state == "running" and not _alive(self.status.get("pid")):
            return "interrupted"  # killed: rerun the same command to resume
        return state


def list_configs() -> list[Path]:
    return sorted(CONFIG_DIR.rglob("*.toml"))


def resolve_config(path: str | Path, overrides: dict[str, Any], budget: str | None = None) -> TrainConfig:
    """Load and validate a config with a budget and the form's overrides (ConfigError quotes bad values)."""
    config = load_config(path)
    if budget:
        config = apply_budget(config, budget)
    return apply_overrides(config, overrides) if overrides else config


def changed_fields(config: TrainConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The form's values that differ from the config, as dotted overrides (numbers coerced to the field's type)."""
    out = {}
    for dotted, value in values.items():
        section, key = dotted.split(".", 1)
        current = getattr(getattr(config, section), key)
        if isinstance(current, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) and value.is_integer():
            value = int(value)
        if value != current:
            out[dotted] = value
    return out


def check_data(config: TrainConfig) -> None:
    """The training data must be there before a run is started (else the run would fail at once, as a "failed"
    run to resume): a CXRError in plain words."""

    try:
        index_dataset(config.data.root)
    except CXRError as exc:
        raise CXRError(f"{exc} Set 'Training data folder' to a folder holding NORMAL/ and PNEUMONIA/.") from None


def start(config_path: str | Path, overrides: dict[str, Any], runs_dir: str | Path, registry: str | Path,
          budget: str | None = None) -> Path:
    """Launch a run in a new process session. The run's own lock decides (a second run exits at once
    with "already in progress"); the check here only gives the message without starting a process."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    config = resolve_config(config_path, overrides, budget)
    cmd = [sys.executable, "-m", "train", "--config", str(config_path), "--runs-dir", str(runs_dir)]
    if budget:
        cmd += ["--budget", budget]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={_toml_value(value)}"]
    cmd += ["--registry", str(Path(registry).resolve())]  # explicit: the child never guesses from its environment
    run_dir = run_dir_for(config, runs_dir)
    _spawn(cmd, run_dir, runs_dir)
    return run_dir


def resume(run: RunInfo) -> None:
    """Start a stopped or interrupted run again with its recorded command: it continues from its last epoch."""
    if run.state not in ("stopped", "interrupted", "failed"):
        raise CXRError(f"Run {run.name} is {run.state}: only a stopped, interrupted or failed run can be resumed.")
    words = shlex.split(str(run.config.get("command", "")))
    if words[:3] != ["python", "-m", "train"]:
        raise CXRError(f"Run {run.name} has no recorded `python -m train` command to resume with.")
    _spawn([sys.executable, *words[1:]], run.run_dir, run.run_dir.parent)


def _spawn(cmd: list[str], run_dir: Path, runs_dir: Path) -> None:
    """Take the single-run lock here (a second start is refused at once, with a message), then start the
    child in its own process session holding it (inherited descriptor), logging to the run folder; we keep
    the child to reap it."""
    lock = acquire_run_lock(runs_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(RunFolder(run_dir).log_file, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", LOCK_FD_ENV: str(lock.fileno())}
        _CHILDREN.append(subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                          pass_fds=(lock.fileno(),)))
        log.close()
    finally:
        lock.close()  # the parent's copy; the child's descriptor keeps the lock until it ends


def start_site_adaptation(parent_model_id: str, data_dir: str | None, from_reviews: bool, reader: str,
                          seed: int = 0) -> Path:
    """The Training page's "Adapt to this site": `python -m cxr_core site-model adapt` in its own process (it
    survives a page reload; one adaptation at a time); its folder, which `list_runs(current().layout.site_runs)` reads.
    Cheap checks first, so a bad folder or no reader never looks started."""
    reader = named(reader, "Site adaptation needs the reader's name (the sidebar's box).")
    if not from_reviews:
        root = Path(data_dir or "").expanduser()
        if not (root / "NORMAL").is_dir() or not (root / "PNEUMONIA").is_dir():
            raise CXRError(f"{str(data_dir)!r} is not a labelled folder: it needs NORMAL/ and PNEUMONIA/ subfolders.")
        data_dir = str(root.resolve())
    runs_dir = current().layout.site_runs
    work = runs_dir / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=False)
    RunFolder(work).write_status(state="starting", started=time.time(), reader=reader,
                                 source="reviews" if from_reviews else "folder")
    try:
        _spawn([sys.executable, "-m", "cxr_core", "site-model", "adapt", *(["--from-reviews"] if from_reviews
                                                                          else [str(data_dir)]),
                "--reader", reader, "--model", parent_model_id, "--seed", str(seed), "--json",
                "--work-dir", str(work)], work, runs_dir)
    except CXRError:
        shutil.rmtree(work, ignore_errors=True)  # refused (one at a time): no folder that looks started
        raise
    return work


def estimate_minutes(config: TrainConfig, runs: list[RunInfo]) -> float | None:
    """Minutes for `config` from earlier runs' seconds per epoch with the same data subset, image size and
    backbone (times the members of an ensemble); None without such a run."""
    def same(r: RunInfo) -> bool:
        data, model = r.config.get("data", {}), r.config.get("model", {})
        return (data.get("image_size"), data.get("subset_fraction"), model.get("backbone")) == \
            (config.data.image_size, config.data.subset_fraction, config.model.backbone)

    seconds = sorted(r.status["epoch_s"] for r in runs if r.status.get("epoch_s") and same(r))
    if not seconds:
        return None
    return seconds[len(seconds) // 2] * config.train.epochs * max(1, config.member_count()) / 60


def stop(run_dir: str | Path) -> None:
    """Ask a run to stop after its current batch (it can be resumed later by starting it again)."""
    RunFolder(run_dir).stop_file.touch()


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    runs_dir = Path(runs_dir)
    out = []
    for d in sorted(runs_dir.glob(f"*/{RunFolder.STATUS}"), key=lambda p: p.stat().st_mtime, reverse=True):
        run = RunFolder(d.parent)
        out.append(RunInfo(run.path, run.path.name, run.read_status(), run.read_config()))
    return out


def _reap() -> None:
    """Collect the exit status of finished children (poll waits without blocking)."""
    _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (TypeError, ValueError, ProcessLookupError, PermissionError):
        return False


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value).replace("'", '"') if isinstance(value, list) else str(value)
