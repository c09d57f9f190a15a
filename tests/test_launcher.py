"""The Training page's process control: time estimates and explicit registries."""

from __future__ import annotations

from pathlib import Path

from train.launcher import RunInfo, estimate_minutes

from .conftest import tiny_config


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
