"""The Training page's process control: time estimates and explicit registries."""

from __future__ import annotations

from pathlib import Path

from train.launcher import RunInfo, estimate_minutes

from tests.conftest import tiny_config


def _run(epoch_s: float, size: int, subset: float = 1.0, backbone: str = "cxrnet") -> RunInfo:
    config = {"data": {"image_size": size, "subset_fraction": subset}, "model": {"backbone": backbone}}
    return RunInfo(Path("/nonexistent"), "r", {"state": "finished", "epoch_s": epoch_s}, config)


def test_estimate_uses_the_median_epoch_of_comparable_runs_times_members(tiny_data):
    config = tiny_config(tiny_data, data={"image_size": 64}, train={"epochs": 4})
    runs = [_run(10.0, 64), _run(30.0, 64), _run(20.0, 64), _run(999.0, 128), _run(999.0, 64, subset=0.5)]
    assert estimate_minutes(config, runs) == 20.0 * 4 / 60
    ensemble = tiny_config(tiny_data, data={"image_size": 64, "folds": 3}, train={"epochs": 4})
    assert estimate_minutes(ensemble, runs) == 20.0 * 4 * 3 / 60
    assert estimate_minutes(config, [_run(10.0, 128)]) is None


def test_resume_restarts_the_recorded_command_and_refuses_a_finished_run(monkeypatch, tmp_path):
    import sys

    import pytest

    from cxr_core.errors import CXRError
    from train import launcher

    started = []
    monkeypatch.setattr(launcher, "_spawn", lambda cmd, run_dir, runs_dir: started.append((cmd, run_dir)))
    command = "python -m train --config train/configs/single.toml --runs-dir /x/runs --set 'train.epochs=2'"
    run = RunInfo(tmp_path / "run", "run", {"state": "stopped"}, {"command": command})
    launcher.resume(run)
    assert started == [([sys.executable, "-m", "train", "--config", "train/configs/single.toml", "--runs-dir", "/x/runs",
                         "--set", "train.epochs=2"], tmp_path / "run")]
    with pytest.raises(CXRError, match="finished"):
        launcher.resume(RunInfo(tmp_path / "run", "run", {"state": "finished"}, {"command": command}))


def test_a_second_start_is_refused_at_once_while_the_first_child_holds_the_lock(tmp_path):
    """The launcher takes the lock before the child exists and the child inherits it: no window in which a
    second start looks started (the child here only sleeps, as a run importing TensorFlow would)."""
    import sys
    import time

    import pytest

    from cxr_core.errors import CXRError
    from train import launcher
    from train.run_folder import training_in_progress

    runs = tmp_path / "runs"
    runs.mkdir()
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    launcher._spawn(sleeper, runs / "a", runs)
    child = launcher._CHILDREN[-1]
    try:
        assert training_in_progress(runs)  # held by the child, the launcher's copy is closed
        with pytest.raises(CXRError, match="already in progress"):
            launcher._spawn(sleeper, runs / "b", runs)
        assert not (runs / "b").exists()
    finally:
        child.kill()
        child.wait(timeout=10)
    deadline = time.time() + 10
    while training_in_progress(runs) and time.time() < deadline:
        time.sleep(0.1)
    assert not training_in_progress(runs)  # a killed child releases it
