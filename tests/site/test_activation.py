"""Activation on the site's own films (cxr_core.site.activation, `models --activate ID --evidence DATA_DIR`): the
candidate and the site's model are scored on the same labelled local films; a better model is accepted and a worse
one refused, naming the rule; films either model trained on are never evidence.

The controlled model answers the local films exactly as the test sets them (AUC 1); the tiny model, trained on other
phantoms, does not know the films' code, so it ranks them far worse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxr_core.model.folder import ModelFolder
from cxr_core.safety.overlap import write_training_hashes
from testkit import controlled as C
from tests.conftest import cli_env, run_cli

# 25 normal films the controlled model reads at 0.05-0.29, 25 pneumonia films at 0.70-0.94 (its threshold is 0.6)
ANSWERS = [("NORMAL", 0.05 + 0.01 * i) for i in range(25)] + [("BACTERIAL", 0.70 + 0.01 * i) for i in range(25)]
RULES = {"CXR_SITE_MIN_PER_CLASS": "20", "CXR_SITE_SENSITIVITY_FLOOR": "0.85"}  # 25 of 25: Wilson lower bound 0.867


@pytest.fixture
def films(tmp_path):
    return C.labelled_folder(tmp_path / "local", ANSWERS)


def _registry(root: Path, controlled_model_dir: Path, tiny_model_dir: Path, active: str) -> Path:
    """A registry with the controlled model (a training hash list of other films) and the tiny one; `active` the
    default."""
    controlled = C.variant(controlled_model_dir, root / C.MODEL_ID)
    others = C.labelled_folder(root.parent / "other-films", [("NORMAL", 0.1), ("VIRAL", 0.9)], seed=900)
    write_training_hashes(ModelFolder(controlled).hashes_file, sorted(others.rglob("*.png")))
    tiny_id = ModelFolder(tiny_model_dir).card().model_id
    shutil.copytree(tiny_model_dir, root / tiny_id)
    (root / "ACTIVE").write_text(json.dumps({"model_id": C.MODEL_ID if active == "controlled" else tiny_id}))
    return root


def _env(tmp_path, registry: Path) -> dict[str, str]:
    return cli_env(registry, CXR_HOME=str(tmp_path / "home"), **RULES)


def test_a_better_model_is_accepted_on_the_site_s_films(tmp_path, films, controlled_model_dir, tiny_model_dir):
    registry = _registry(tmp_path / "registry", controlled_model_dir, tiny_model_dir, active="tiny")
    env = _env(tmp_path, registry)
    r = run_cli(["models", "--activate", C.MODEL_ID, "--reader", "Dr Site", "--yes", "--evidence", str(films)], env)
    assert r.returncode == 0, r.stderr
    assert "On 50 local films (25 pneumonia, 25 normal" in r.stdout
    candidate = next(line for line in r.stdout.splitlines() if line.startswith("candidate"))
    assert C.MODEL_ID in candidate and " 1.000 " in candidate  # AUC 1 on the films the test set
    assert "Paired AUC difference (candidate - current):" in r.stdout
    listed = run_cli(["models"], env)
    assert any(line.startswith(f"* {C.MODEL_ID}") for line in listed.stdout.splitlines())


def test_a_worse_model_is_refused_naming_the_rule(tmp_path, films, controlled_model_dir, tiny_model_dir):
    registry = _registry(tmp_path / "registry", controlled_model_dir, tiny_model_dir, active="controlled")
    env = _env(tmp_path, registry)
    tiny_id = ModelFolder(tiny_model_dir).card().model_id
    r = run_cli(["models", "--activate", tiny_id, "--reader", "Dr Site", "--yes", "--evidence", str(films)], env)
    assert r.returncode == 2
    assert "its AUC is not shown to be at least the site model's (controlled-t2): the paired difference is -" in r.stderr
    listed = run_cli(["models"], env)
    assert any(line.startswith(f"* {C.MODEL_ID}") for line in listed.stdout.splitlines())  # unchanged


def test_films_a_model_trained_on_or_too_few_are_not_evidence(tmp_path, films, controlled_model_dir, tiny_model_dir):
    registry = _registry(tmp_path / "registry", controlled_model_dir, tiny_model_dir, active="tiny")
    args = ["models", "--activate", C.MODEL_ID, "--reader", "Dr Site", "--yes", "--evidence", str(films)]
    r = run_cli(args, cli_env(registry, CXR_HOME=str(tmp_path / "home"), CXR_SITE_MIN_PER_CLASS="26"))
    assert r.returncode == 2 and "Too few local films: 25 pneumonia and 25 normal" in r.stderr
    write_training_hashes(ModelFolder(registry / C.MODEL_ID).hashes_file, sorted(films.rglob("*.png"))[:2])
    r = run_cli(args, _env(tmp_path, registry))
    assert r.returncode == 2 and "2 of them are in the training data of controlled-t2" in r.stderr
    ModelFolder(registry / C.MODEL_ID).hashes_file.unlink()
    r = run_cli(args, _env(tmp_path, registry))
    assert r.returncode == 2 and "no training hash list" in r.stderr


def test_the_training_page_refuses_a_worse_model_on_local_films(tmp_path, films, controlled_model_dir, tiny_model_dir,
                                                                  monkeypatch):
    """The panel's "Compare on local films": the tiny run ranks the site's films worse than the site's model (the
    controlled one), so it is refused with the rule's numbers and no confirmation is offered."""
    from streamlit.testing.v1 import AppTest

    from cxr_core.model.folder import ModelFolder
    from tests.conftest import PROJECT_ROOT
    from train.run_folder import RunFolder

    registry = _registry(tmp_path / "registry", controlled_model_dir, tiny_model_dir, active="controlled")
    tiny_id = ModelFolder(tiny_model_dir).card().model_id
    RunFolder(tmp_path / "runs" / tiny_id).path.mkdir(parents=True)
    RunFolder(tmp_path / "runs" / tiny_id).write_status(state="finished", model_id=tiny_id, epoch=1, epochs=1)
    for key, value in {"CXR_REGISTRY": str(registry), "CXR_RUNS_DIR": str(tmp_path / "runs"), **RULES}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(PROJECT_ROOT)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/training.py").run()
    at.text_input(key="trained_films").set_value(str(films)).run()
    at.button(key="trained_compare").click().run()
    assert not at.exception
    refused = [e.value for e in at.error if e.value.startswith(f"{tiny_id} cannot become the site's model")]
    assert refused and "the paired difference is -" in refused[0]
    assert not [c for c in at.checkbox if c.key == "trained_confirm"]  # nothing to confirm


def test_a_request_uses_the_model_asked_for_else_the_governed_choice_else_the_default(tmp_path, monkeypatch,
                                                                                      controlled_model_dir,
                                                                                      tiny_model_dir):
    """cxr_core.site.models.model_for, through Request.resolve: a folder or an id as asked; nothing asked, the
    site's governed choice; none made (or reverted to none), the registry's default (its ACTIVE pointer)."""
    from cxr_core.cases.store import CaseStore
    from cxr_core.errors import ModelError
    from cxr_core.request import Request
    from cxr_core.site.models import record_choice

    registry = _registry(tmp_path / "registry", controlled_model_dir, tiny_model_dir, active="tiny")
    tiny_id = ModelFolder(tiny_model_dir).card().model_id
    monkeypatch.setenv("CXR_REGISTRY", str(registry))
    store = CaseStore.open()
    assert Request.resolve(store).entry.model_id == tiny_id  # the registry's default
    assert Request.resolve(store, C.MODEL_ID).entry.model_id == C.MODEL_ID  # asked for by id
    asked = Request.resolve(store, str(registry / C.MODEL_ID))  # asked for by folder
    assert asked.entry.path == registry / C.MODEL_ID and not asked.is_site_model
    record_choice(store, C.MODEL_ID, "Dr Site", {"action": "activate"})
    governed = Request.resolve(store, reader="  Dr Site ")
    assert governed.entry.model_id == governed.site_model.model_id == C.MODEL_ID and governed.reader == "Dr Site"
    assert governed.point.threshold == governed.entry.card.threshold  # no site point: the model's own
    record_choice(store, None, "Dr Site", {"action": "revert"})
    assert Request.resolve(store).entry.model_id == tiny_id
    with pytest.raises(ModelError, match="No model 'nope'"):
        Request.resolve(store, "nope")
    assert not Request.resolve(store).signed_in and Request.resolve(store).reader == "unsigned"
    record_choice(store, "a-model-nobody-has", "Dr Site", {"action": "activate"})  # the site's cannot be had
    with pytest.raises(ModelError):
        Request.resolve(store)
    compared = Request.resolve(store, C.MODEL_ID)  # a model asked for goes on without it
    assert compared.entry.model_id == C.MODEL_ID and compared.site_model is None and not compared.is_site_model
