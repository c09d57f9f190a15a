"""The site's governed active model (cxr_core.site.models): models kept in the case database, activation by a
named reader past the gate, seen by every workstation on the database, revertible, audited; a site point stays
with its model. The models are the tiny model and copies of it whose cards each test chooses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli


def _copy(model_dir: Path, dest: Path, model_id: str, **card_fields) -> Path:
    """A copy of a model folder under a new id, its card changed as the test says."""
    from cxr_core.model.folder import ModelFolder

    shutil.copytree(model_dir, dest / model_id)
    folder = ModelFolder(dest / model_id)
    folder.write_card(folder.card().with_fields(model_id=model_id, **card_fields))
    return folder.path


def _site_evidence(parent_auc: float, adapted_auc: float, sensitivity_low: float,
                   difference_low: float | None = None) -> dict:
    """Out-of-fold evidence as the card keeps it; the paired difference's lower bound 0.01 under the point unless
    the test says otherwise."""
    side = lambda auc, low: {"auc": auc, "auc_ci95": [auc - 0.02, min(1.0, auc + 0.02)], "threshold": 0.5,  # noqa: E731
                             "sensitivity": 0.97, "sensitivity_ci95": [low, 0.99], "specificity": 0.9,
                             "specificity_ci95": [0.85, 0.94]}
    point = adapted_auc - parent_auc
    low = point - 0.01 if difference_low is None else difference_low
    return {"n": 200, "n_positive": 120, "n_negative": 80, "kind": "out-of-fold", "parent": side(parent_auc, 0.9),
            "adapted": side(adapted_auc, sensitivity_low), "difference": {"auc": point, "auc_ci95": [low, point + 0.02]}}


@pytest.fixture
def site(tmp_path, tiny_model_dir):
    """A shipped registry (the tiny model as its default), one shared database, two workstations' homes, and a
    site-adapted child of the tiny model that passes its gate, kept only in the database."""
    from cxr_core.cases.store import CaseStore
    from cxr_core.model.folder import ModelFolder
    from cxr_core.site.models import store_model

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    parent_id = ModelFolder(tiny_model_dir).card().model_id
    parent = _copy(tiny_model_dir, shipped, parent_id, validation_gate={"min_val_auc": 0.9, "auc": 0.95, "passed": True})
    (shipped / "ACTIVE").write_text(json.dumps({"model_id": parent_id}))
    db = f"sqlite:///{tmp_path / 'site.db'}"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child_id = f"{parent_id}-site-0123456789"
    child = _copy(parent, scratch, child_id, validation_gate={"min_val_auc": 0.9, "auc": 0.97, "passed": True},
                  site_adaptation={"parent_model_id": parent_id, "reader": "Dr Adapt",
                                   "local_validation": _site_evidence(0.95, 0.97, 0.93)})
    env = cli_env(shipped, CXR_DATABASE_URL=db)
    homes = {"A": {**env, "CXR_HOME": str(tmp_path / "home-a")}, "B": {**env, "CXR_HOME": str(tmp_path / "home-b")}}
    store_model(CaseStore.open(db), child, "Dr Adapt")
    shutil.rmtree(child)  # it lives in the database only
    return {"parent": parent_id, "child": child_id, "homes": homes, "db": db, "shipped": shipped, "tmp": tmp_path}


def _predict_model_id(env: dict, tmp_path: Path) -> str:
    import cv2
    import numpy as np

    from testkit.synthetic import phantom_cxr

    film = tmp_path / "film.png"
    cv2.imwrite(str(film), (phantom_cxr(64, np.random.default_rng(0), 1) * 255).astype("uint8"))
    r = run_cli(["predict", str(film), "--json"], env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[0])["model_id"]


def test_an_activation_on_one_workstation_is_the_default_on_another_and_reverts(site):
    a, b = site["homes"]["A"], site["homes"]["B"]
    assert _predict_model_id(b, site["tmp"]) == site["parent"]  # the registry's default until a reader acts
    r = run_cli(["site-model", "activate", site["child"], "--reader", "Dr A", "--yes"], env=a)
    assert r.returncode == 0, r.stderr
    assert _predict_model_id(b, site["tmp"]) == site["child"]  # B never had its files: the database did
    assert Path(b["CXR_HOME"], "site-models", site["child"], "model.keras").is_file()
    shown = json.loads(run_cli(["site-model", "show", "--json"], env=b).stdout)
    assert shown["active_model_id"] == site["child"] and shown["parent_model_id"] == site["parent"]
    assert shown["set_by"] == "Dr A"
    r = run_cli(["site-model", "revert", "--reader", "Dr B"], env=b)
    assert r.returncode == 0, r.stderr
    assert _predict_model_id(a, site["tmp"]) == site["parent"]
    events = [json.loads(line) for line in run_cli(["cases", "audit", "--json"], env=a).stdout.splitlines()]
    changes = [(e["actor"], e["action"], e["model_id"]) for e in events if e["action"].startswith("model-")]
    assert ("Dr A", "model-activate", site["child"]) in changes
    assert ("Dr B", "model-revert", site["parent"]) in changes


def test_activation_needs_a_reader_and_a_confirmation(site):
    a = site["homes"]["A"]
    r = run_cli(["models", "--activate", site["child"], "--yes"], env=a)
    assert r.returncode == 2 and "--reader" in r.stderr
    r = run_cli(["models", "--activate", site["child"], "--reader", "Dr A"], env=a)  # no terminal, no --yes
    assert r.returncode == 2 and "confirmation" in r.stderr
    assert _predict_model_id(a, site["tmp"]) == site["parent"]


def test_a_reduced_budget_run_is_refused_whatever_its_figures(site, tiny_model_dir):
    """A tiny run's card may report any figures: a reduced-budget run is never the site's model, and no local
    films are scored for it."""
    user = Path(site["homes"]["A"]["CXR_HOME"]) / "models"
    user.mkdir(parents=True)
    config = {**_card(tiny_model_dir).config, "reduced_budget": "tiny"}
    _copy(tiny_model_dir, user, "tiny-budget-run", config=config,
          site_adaptation={"parent_model_id": "p", "local_validation": _site_evidence(0.95, 0.99, 0.97)})
    r = run_cli(["models", "--activate", "tiny-budget-run", "--reader", "X", "--yes", "--evidence", str(site["tmp"])],
                env=site["homes"]["A"])
    assert r.returncode == 2 and "reduced-budget run (tiny): never the site's model" in r.stderr
    assert "On " not in r.stdout  # refused before any film was scored


def test_a_model_without_site_evidence_is_refused(site, tiny_model_dir):
    user = Path(site["homes"]["A"]["CXR_HOME"]) / "models"
    user.mkdir(parents=True)
    _copy(tiny_model_dir, user, "user-run", validation_gate={"min_val_auc": 0.9, "auc": 0.999, "passed": True})
    r = run_cli(["models", "--activate", "user-run", "--reader", "X", "--yes"], env=site["homes"]["A"])
    assert r.returncode == 2 and "no evidence on this site's own films" in r.stderr and "--evidence DATA_DIR" in r.stderr
    assert _predict_model_id(site["homes"]["A"], site["tmp"]) == site["parent"]


def _card(model_dir: Path):
    from cxr_core.model.folder import ModelFolder

    return ModelFolder(model_dir).card()


@pytest.mark.parametrize("adapted_auc, low, difference_low, floor, refused_for", [
    (0.9499, 0.95, -0.005, 0.90, "paired difference is -0.000"),  # a point difference just under 0
    (0.95, 0.95, -0.01, 0.90, None),  # equal to the parent, lower bound exactly at the margin
    (0.97, 0.95, -0.0101, 0.90, "lower 95 % bound -0.010"),  # the lower bound just past the margin
    (0.97, 0.8999, 0.0, 0.90, "floor"),  # sensitivity's lower bound just under the floor
    (0.97, 0.90, 0.0, 0.90, None),  # exactly at the floor
])
def test_the_site_adapted_gate(tiny_model_dir, adapted_auc, low, difference_low, floor, refused_for):
    from cxr_core.model.folder import ModelFolder
    from cxr_core.settings import SitePointPolicy
    from cxr_core.site.activation import activation_refusals

    card = ModelFolder(tiny_model_dir).card().with_fields(
        validation_gate={"min_val_auc": 0.9, "auc": adapted_auc, "passed": True},
        site_adaptation={"parent_model_id": "p",
                         "local_validation": _site_evidence(0.95, adapted_auc, low, difference_low)})
    refusals = activation_refusals(card, SitePointPolicy(50, floor))
    if refused_for is None:
        assert refusals == []
    else:
        assert len(refusals) == 1 and refused_for in refusals[0]


def test_a_card_marked_failed_is_refused_whatever_its_figures(tiny_model_dir):
    from cxr_core.model.folder import ModelFolder
    from cxr_core.settings import SitePointPolicy
    from cxr_core.site.activation import activation_refusals

    good = ModelFolder(tiny_model_dir).card().with_fields(
        site_adaptation={"parent_model_id": "p", "local_validation": _site_evidence(0.95, 0.97, 0.93)})
    passed = good.with_fields(validation_gate={"min_val_auc": 0.9, "auc": 0.97, "passed": True})
    failed = good.with_fields(validation_gate={"min_val_auc": 0.9, "auc": 0.97, "passed": False})
    assert activation_refusals(passed, SitePointPolicy()) == []
    assert len(activation_refusals(failed, SitePointPolicy())) == 1


def test_a_worse_adapted_model_is_refused_activation(site):
    from cxr_core.cases.store import CaseStore
    from cxr_core.site.models import store_model

    worse_id = f"{site['parent']}-site-worse00000"
    _copy(site["shipped"] / site["parent"], site["tmp"], worse_id,
          validation_gate={"min_val_auc": 0.9, "auc": 0.93, "passed": True},
          site_adaptation={"parent_model_id": site["parent"], "local_validation": _site_evidence(0.96, 0.93, 0.95)})
    store_model(CaseStore.open(site["db"]), site["tmp"] / worse_id, "Dr Adapt")
    r = run_cli(["site-model", "activate", worse_id, "--reader", "Dr A", "--yes"], env=site["homes"]["A"])
    assert r.returncode == 2 and "paired difference is -0.030" in r.stderr
    assert _predict_model_id(site["homes"]["B"], site["tmp"]) == site["parent"]


def test_a_site_point_stays_with_its_model(site, monkeypatch):
    from cxr_core.cases.store import CaseStore
    from cxr_core.model.operating_point import resolve
    from cxr_core.site.models import model_for
    from cxr_core.model.registry import Registry

    store = CaseStore.open(site["db"])
    store.record_site_point(site["parent"], 0.3, "Dr P", {"n": 200})
    env = site["homes"]["A"]
    assert run_cli(["site-model", "activate", site["child"], "--reader", "Dr A", "--yes"], env=env).returncode == 0
    monkeypatch.setenv("CXR_HOME", env["CXR_HOME"])
    monkeypatch.setenv("CXR_REGISTRY", env["CXR_REGISTRY"])
    child = model_for(site["child"], store, Registry())
    assert resolve(child.card, store).source == "model"  # the parent's site point does not carry over
    parent = model_for(site["parent"], store, Registry())
    assert resolve(parent.card, store).threshold == pytest.approx(0.3)


def test_revert_without_an_activation_says_so(site):
    r = run_cli(["models", "--revert", "--reader", "Dr A"], env=site["homes"]["A"])
    assert r.returncode == 2 and "no activation to revert" in r.stderr


def test_a_damaged_stored_model_is_refused(site):
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import ModelArchive
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open(site["db"])
    with Session(store.engine) as session, session.begin():
        session.execute(update(ModelArchive).values(data=b"not a zip"))
    r = run_cli(["predict", "--model", site["child"], str(site["tmp"])], env=site["homes"]["B"])
    assert r.returncode == 2 and "damaged" in r.stderr


def test_revert_of_a_site_adapted_model_returns_to_its_parent_not_the_model_before(site, tiny_model_dir):
    """Activate another model first, then the site-adapted child: revert gives the child's parent."""
    from cxr_core.cases.store import CaseStore
    from cxr_core.model.registry import Registry
    from cxr_core.settings import SitePointPolicy
    from cxr_core.site.activation import activate_model, revert_active_model

    other = _copy(tiny_model_dir, site["shipped"], "other-model",
                  validation_gate={"min_val_auc": 0.9, "auc": 0.96, "passed": True})
    evidence = {"source": "local films", "n": 200, "n_positive": 120, "n_negative": 80,
                **{k: v for k, v in _site_evidence(0.95, 0.96, 0.93).items() if k == "difference"},
                "current": {"model_id": site["parent"]}, "candidate": _site_evidence(0.95, 0.96, 0.93)["adapted"]}
    assert other.is_dir()
    env = site["homes"]["A"]
    store = CaseStore.open(site["db"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_HOME", env["CXR_HOME"])
        mp.setenv("CXR_REGISTRY", env["CXR_REGISTRY"])
        activate_model(store, Registry(), "other-model", "Dr A", SitePointPolicy(), evidence)
        activate_model(store, Registry(), site["child"], "Dr A", SitePointPolicy())
        back = revert_active_model(store, Registry(), "Dr B")
    assert back.model_id == site["parent"] and back.details["previous_model_id"] == site["child"]


def test_storing_a_model_is_audited(site):
    from cxr_core.cases.store import CaseStore

    events = [e for e in CaseStore.open(site["db"]).audit() if e["action"] == "model-store"]
    assert [(e["model_id"], e["actor"]) for e in events] == [(site["child"], "Dr Adapt")]


def _replace_archive(site: dict, data: bytes) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import ModelArchive
    from cxr_core.cases.store import CaseStore

    with Session(CaseStore.open(site["db"]).engine) as session, session.begin():
        session.execute(update(ModelArchive).values(data=data))


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _unpack(site: dict):
    from cxr_core.cases.store import CaseStore
    from cxr_core.site.models import unpack

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_HOME", site["homes"]["B"]["CXR_HOME"])
        return unpack(CaseStore.open(site["db"]), site["child"])


def test_a_valid_zip_swapped_in_under_the_stored_hash_is_refused_as_damaged(site):
    from cxr_core.errors import ModelError

    _replace_archive(site, _zip({"model_card.json": b"{}"}))
    with pytest.raises(ModelError, match="damaged"):
        _unpack(site)


def test_an_archive_member_outside_its_folder_is_refused(site, monkeypatch):
    """Even under a matching hash (a database written by someone else): no member may climb out of the folder."""
    import hashlib

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import ModelArchive, StoredModel
    from cxr_core.cases.store import CaseStore
    from cxr_core.errors import ModelError

    data = _zip({"model_card.json": b"{}", "../escaped.txt": b"x"})
    key = hashlib.sha256(data).hexdigest()
    with Session(CaseStore.open(site["db"]).engine) as session, session.begin():
        session.add(ModelArchive(sha256=key, data=data))
        session.flush()
        session.execute(update(StoredModel).values(archive_sha256=key))
    with pytest.raises(ModelError, match="unsafe path"):
        _unpack(site)
    home = Path(site["homes"]["B"]["CXR_HOME"])
    assert not list(home.parent.rglob("escaped.txt"))
