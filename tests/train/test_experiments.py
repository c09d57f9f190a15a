"""Experiments: each kind runs end to end on tiny data and writes its table, plots and logs."""

from __future__ import annotations

import csv

import pytest

from cxr_core.errors import ConfigError
from train.experiments import plan, run_experiment, validate_spec

from tests.conftest import tiny_config


@pytest.mark.parametrize("spec, n_runs, plot", [
    ({"kind": "runs", "runs": [{"label": "a", "set": {"model.dropout": 0.0}},
                               {"label": "b", "from_previous": True, "set": {"model.trainable_layers": 2}}]}, 2, "curves.png"),
    ({"kind": "grid", "grid": {"train.batch_size": [8, 16], "train.learning_rate": [1e-3]}}, 2, "grid_heatmap.png"),
    ({"kind": "cv", "folds": 2}, 2, "cv_spread.png"),
])
def test_each_experiment_kind_runs_and_writes_results(tiny_data, tmp_path, spec, n_runs, plot):
    base = tiny_config(tiny_data, train={"epochs": 1}, name="exp-tiny")
    rows = run_experiment(spec, base, runs_dir=tmp_path / "runs", command="pytest", results_dir=tmp_path / "docs",
                          log=lambda s: None)
    out = tmp_path / "docs" / "exp-tiny"
    assert len(rows) == n_runs
    assert len(list(csv.DictReader(open(out / "results.csv")))) == n_runs
    assert (out / "results.md").read_text().count("\n| ") >= n_runs
    assert (out / plot).stat().st_size > 1000
    assert len(list(out.glob("history_*.csv"))) == n_runs
    for r in rows:
        assert 0.0 <= r["val_auc"] <= 1.0 and r["trainable_parameters"] > 0
    if spec["kind"] == "runs":  # freezing all but the top 2 layers leaves fewer trainable parameters
        assert rows[1]["trainable_parameters"] < rows[0]["trainable_parameters"]
    if spec["kind"] == "cv":
        assert "standard deviation" in (out / "results.md").read_text()


def test_bad_specs_are_rejected():
    with pytest.raises(ConfigError, match="'sweep'"):
        validate_spec({"kind": "sweep"})
    with pytest.raises(ConfigError, match="two dotted keys"):
        validate_spec({"kind": "grid", "grid": {"train.epochs": [1]}})
    assert len(plan({"kind": "grid", "grid": {"a.b": [1, 2], "c.d": [3, 4, 5]}}, None)) == 6
