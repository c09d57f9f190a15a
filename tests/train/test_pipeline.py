"""The training pipeline: logs, resume, registration gate, one run at a time, SIGKILL recovery."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cxr_core.errors import CXRError
from cxr_core.model.registry import Registry
from train.pipeline import train
from train.run_folder import RunFolder, run_dir_for, training_in_progress

from tests.conftest import PROJECT_ROOT, tiny_config, tiny_config_file


def test_finished_run_has_logs_card_and_scores(tiny_registry, tiny_data, tmp_path):
    entry = tiny_registry.active()
    rows = list(csv.DictReader(open(entry.path / "history.csv")))
    assert len(rows) == 3
    for key in ("loss", "accuracy", "val_loss", "val_auc", "learning_rate"):
        assert key in rows[0]
    card = entry.card
    assert card.data["n_train"] + card.data["n_val"] == 48
    assert 0 < card.temperature and 0 <= card.threshold <= 1
    assert (entry.path / "validation_scores.csv").read_text().startswith("file,label,p_normal")
    assert (entry.path / "ood.npz").is_file()


def test_rerunning_a_finished_run_does_nothing(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, train={"epochs": 1})
    registry = Registry(tmp_path / "reg")
    first = train(cfg, runs_dir=tmp_path / "runs", registry=registry, log=lambda s: None)
    assert first.model_id and registry.active_id() == first.model_id  # only model: the fallback
    (registry.root / "ACTIVE").write_text(json.dumps({"model_id": "something-else"}))
    again = train(cfg, runs_dir=tmp_path / "runs", registry=registry, log=lambda s: None)
    assert again.model_id == first.model_id and len(registry.list()) == 1


def test_reevaluate_redoes_only_the_last_stage_as_a_new_model(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, train={"epochs": 1})
    registry = Registry(tmp_path / "reg")
    first = train(cfg, runs_dir=tmp_path / "runs", registry=registry, activate=True, log=lambda s: None)
    history = (first.run_dir / "history.csv").read_text()
    time.sleep(1.1)  # model ids carry a timestamp to the second
    again = train(cfg, runs_dir=tmp_path / "runs", registry=registry, reevaluate=True, log=lambda s: None)
    assert again.model_id != first.model_id and len(registry.list()) == 2
    assert (first.run_dir / "history.csv").read_text() == history  # no further training
    assert registry.active_id() == first.model_id  # not activated without --activate
    assert again.metrics["binary"]["auc"] == pytest.approx(first.metrics["binary"]["auc"])


def test_a_run_below_the_validation_gate_is_an_experiment_never_active(tiny_data, tmp_path):
    from cxr_core.errors import RegistryError

    cfg = tiny_config(tiny_data, train={"epochs": 1, "min_val_auc_to_register": 1.01 - 1e-9})
    registry = Registry(tmp_path / "shipped", user_root=tmp_path / "mine")
    result = train(cfg, runs_dir=tmp_path / "runs", registry=registry, activate=True, log=lambda s: None)
    [entry] = registry.list()
    assert entry.model_id == result.model_id and not entry.passed_gate and entry.path.parent == tmp_path / "mine"
    assert entry.card.validation_gate["min_val_auc"] == pytest.approx(1.01 - 1e-9)
    assert registry.active_id() is None and not (tmp_path / "shipped").exists()  # nothing written there
    with pytest.raises(RegistryError, match="named reader"):  # the deployment's registry: only the governed path
        registry.set_default(entry.model_id)
    with pytest.raises(RegistryError, match="failed its validation gate"):
        Registry(tmp_path / "mine").set_default(entry.model_id)


def test_activate_sets_only_a_named_registry_s_default_and_names_the_governed_command(capsys):
    """`python -m train --activate` without --registry would change the site's model ungoverned: refused at once."""
    from train.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["--config", "train/configs/shipped.toml", "--activate"])
    assert stopped.value.code == 2 and "models --activate MODEL_ID --reader" in capsys.readouterr().err


def test_the_app_lists_shipped_and_user_models_and_hides_experiments(tiny_registry, tmp_path, monkeypatch):
    """The app's registry reads the shipped folder and $CXR_HOME/models; its picker hides a model below its gate."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from cxr_core.model.folder import ModelFolder

    shipped = tiny_registry.active()
    mine = tmp_path / "home" / "models"
    shutil.copytree(shipped.path, mine / "experiment-1")
    ModelFolder(mine / "experiment-1").update_card(model_id="experiment-1", validation_gate={
        "min_val_auc": 0.9, "auc": 0.5, "passed": False})
    monkeypatch.setenv("CXR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    assert {e.model_id for e in Registry().list()} == {shipped.model_id, "experiment-1"}
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    assert len(at.sidebar.selectbox(key="model_picker").options) == 1  # the experiment is hidden
    at.sidebar.checkbox(key="show_experimental").check().run()
    assert len(at.sidebar.selectbox(key="model_picker").options) == 2


def test_only_one_training_at_a_time(tiny_data, tmp_path):
    from train.run_folder import single_run_lock

    runs = tmp_path / "runs"
    runs.mkdir()
    with single_run_lock(runs):
        assert training_in_progress(runs)
        with pytest.raises(CXRError, match="already in progress"):
            train(tiny_config(tiny_data), runs_dir=runs, log=lambda s: None)
    assert not training_in_progress(runs)


def test_sigkill_mid_training_then_rerun_resumes(tiny_data, tmp_path):
    """Kill -9 during epoch 3 of 4: the registry and active model are untouched; the rerun resumes."""
    registry = Registry(tmp_path / "reg")
    registry.root.mkdir()
    config_path = tiny_config_file(tmp_path / "slow.toml", tiny_data, name="killme",
                                   train={"epochs": 4, "batch_size": 4})
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "train", "--config", str(config_path), "--runs-dir", str(runs),
           "--registry", str(registry.root), "--activate"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from cxr_core.config import load_config

    run_dir = run_dir_for(load_config(config_path), runs)
    deadline = time.time() + 240
    # "epoch 3/4" is written at the start of epoch 3, after epoch 2's checkpoint was saved: the kill
    # lands inside epoch 3's training steps, not inside a checkpoint write.
    while time.time() < deadline and RunFolder(run_dir).read_status().get("message") != "epoch 3/4":
        time.sleep(0.01)
    time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = RunFolder(run_dir).read_status()
    assert status["state"] == "running" and 2 <= status["epoch"] < 4, status  # killed mid-run
    assert registry.list() == [] and registry.active_id() is None
    epochs_before = [r["epoch"] for r in csv.DictReader(open(run_dir / "history.csv"))]

    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    epochs_after = [r["epoch"] for r in csv.DictReader(open(run_dir / "history.csv"))]
    assert epochs_after[:len(epochs_before)] == epochs_before
    assert epochs_after[-1] == "3" and len(epochs_after) == 4  # resumed, not restarted
    assert RunFolder(run_dir).read_status()["state"] == "finished"
    assert len(registry.list()) == 1 and registry.active_id() == registry.list()[0].model_id
