"""The case store (worklist): cases, reviews, audit, export, crash safety; SQLite and, where installed, PostgreSQL. (A site
point on the reports and the DICOM results: tests/reports/test_export.py, tests/dicom/test_site_point_results.py.)"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cxr_core.errors import CXRError

from testkit import inputs
from tests.conftest import PROJECT_ROOT, cli_env, run_cli
from testkit.reviews import consistent_decision, own_label, other_label, review_as


def _database_bytes(home) -> bytes:
    """Everything SQLite holds on disk, the write-ahead log included."""
    return b"".join(p.read_bytes() for p in home.glob("cases.db*"))


def test_a_case_is_stored_once_deidentified_and_reviewed_with_an_audit_trail(store, controlled_predictor, own_app_home):
    data = inputs.dicom(patient="Secret^Name")
    pred = controlled_predictor.predict(data, name="Secret_Name.dcm")
    case_id, created = store.add(pred, data, "model-x", actor="tester")
    again, created_again = store.add(controlled_predictor.predict(data, name="copy.dcm"), data, "model-x")
    assert created and not created_again and again == case_id
    png = store.picture(case_id)  # the de-identified pixels live in the database, not in a workstation's files
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE) is not None and b"Secret" not in png
    assert not (own_app_home / "images").exists()
    db = _database_bytes(own_app_home)
    assert b"Secret" not in db and b"ID-12345" not in db  # no identifiers or file names without the opt-in
    [row] = store.list()
    assert row["case_id"] == case_id and row["status"] == "new" and row["review"] is None
    assert set(row) >= {"case_id", "created", "label", "assessed", "pneumonia_probability", "model_id", "status", "review"}
    other, own = other_label(row), own_label(row)
    store.review(case_id, "disagree", other, "Dr Who", "ground glass")
    assert store.list("disagreed")[0]["review"]["label"] == other and store.list("new") == []
    decision = review_as(store, case_id, own, "Dr Who")  # "agree" where the model assessed the film
    assert store.list()[0]["review"]["decision"] == decision
    assert [e["action"] for e in store.audit()] == ["create", "review", "change"]
    assert store.audit()[-1]["details"]["previous"] == {"decision": "disagree", "label": other, "reader": "Dr Who"}
    with pytest.raises(CXRError, match="'MAYBE'"):
        store.review(case_id, "disagree", "MAYBE", "Dr Who")
    with pytest.raises(CXRError, match="'perhaps'"):
        store.review(case_id, "perhaps", own, "Dr Who")
    with pytest.raises(CXRError, match="No case 999"):
        store.review(999, "agree", own, "Dr Who")
    store.delete(case_id, "Dr Who")
    assert store.list() == [] and store.audit()[-1]["action"] == "delete"
    assert store.add(pred, data, "model-x", actor="tester") == (case_id, False)  # dropped again: back, audited
    assert [r["case_id"] for r in store.list()] == [case_id] and store.audit()[-1]["action"] == "restore"


def test_a_stored_case_rebuilds_its_result_without_re_predicting(store, tiny_predictor):
    data = inputs.dicom()
    pred = tiny_predictor.predict(data, name="scan.dcm")
    case_id, _ = store.add(pred, data, "model-x")
    again = store.prediction(case_id)
    assert again.file == f"Case {case_id}" and again.label == pred.label and again.threshold == pred.threshold
    assert again.pneumonia_probability == pred.pneumonia_probability
    assert again.image.pixels.shape == pred.image.pixels.shape and again.image.identifiers == {}
    assert np.abs(again.image.pixels - pred.image.pixels).max() <= 0.5 / 255 + 1e-6  # 8-bit PNG copy
    assert again.heatmap.shape == pred.heatmap.shape and np.abs(again.heatmap - pred.heatmap).max() <= 0.5 / 255 + 1e-6
    assert again.image.metadata.get("Modality") == pred.image.metadata.get("Modality")
    other_model, created = store.add(pred, data, "model-y")
    assert created and other_model != case_id  # the same image under another model is another case


def test_a_database_made_by_the_first_schema_upgrades_in_place(own_app_home):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect, text

    from cxr_core.cases.db import MIGRATIONS
    from cxr_core.cases.store import CaseStore

    own_app_home.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{own_app_home / 'cases.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO cases (created, image_hash, image_file, source_format, assessed, class_probabilities, threshold,"
            " threshold_source, warnings, not_assessed_reasons, model_id, cam_settings, deleted) VALUES ('2026-11-22 10:00',"
            " 'h1', 'h1.png', 'PNG', 1, '{}', 0.5, 'model', '[]', '[]', 'model-x', '{}', 0)"))
    store = CaseStore.open()
    [row] = store.list()
    assert row["case_id"] == 1 and row["model_id"] == "model-x" and row["view"] is None
    inspector = inspect(store.engine)
    assert {"heatmap_sha256", "image_metadata"} <= {c["name"] for c in inspector.get_columns("cases")}
    assert "ix_cases_created" in {i["name"] for i in inspector.get_indexes("cases")}
    assert inspector.get_unique_constraints("cases") == [{"name": "uq_case_image_model",
                                                          "column_names": ["image_hash", "model_id"]}]


def _database_at_0002(home, png: bytes, cam: bytes, other_png: bytes) -> None:
    """A real 0002 database as a workstation left it: case 1 with its image and heatmap files in
    $CXR_HOME/images (and a review), case 2 made on another workstation whose files are not here."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from cxr_core.cases.db import MIGRATIONS

    (home / "images").mkdir(parents=True)
    (home / "images" / "h1.png").write_bytes(png)
    (home / "images" / "h1.cam.png").write_bytes(cam)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(f"sqlite:///{home / 'cases.db'}")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        for case_id, digest, cam_file in ((1, "h1", "'h1.cam.png'"), (2, "h2", "NULL")):
            connection.execute(text(
                "INSERT INTO cases (id, created, image_hash, image_file, heatmap_file, source_format, assessed,"
                " class_probabilities, threshold, threshold_source, warnings, not_assessed_reasons, model_id,"
                f" cam_settings, image_metadata, deleted) VALUES ({case_id}, '2026-11-30 10:00', '{digest}',"
                f" '{digest}.png', {cam_file}, 'PNG', 1, '{{}}', 0.5, 'model', '[]', '[]', 'model-x', '{{}}', '{{}}', 0)"))
        connection.execute(text("INSERT INTO reviews (case_id, time, decision, label, reader, comment) VALUES"
                                " (1, '2026-11-30 11:00', 'agree', 'NORMAL', 'Dr A', '')"))
    engine.dispose()


def test_the_0004_migration_moves_a_workstations_picture_files_into_the_database(own_app_home, tmp_path, monkeypatch):
    from cxr_core.cases.store import CaseStore
    from cxr_core.errors import CXRError

    rng = np.random.default_rng(0)
    png, cam, other = (cv2.imencode(".png", rng.integers(0, 255, (24, 20), dtype=np.uint8))[1].tobytes()
                       for _ in range(3))
    _database_at_0002(own_app_home, png, cam, other)
    store = CaseStore.open()  # upgrades to head: the files found here move in, and leave the disk
    assert store.picture(1) == png and store.picture(1, "heatmap") == cam
    assert store.prediction(1).image.pixels.shape == (24, 20) and store.list()[-1]["review"]["reader"] == "Dr A"
    assert not (own_app_home / "images").exists()
    with pytest.raises(CXRError, match=r"^Case 2's image is not in the case database yet") as missing:
        store.prediction(2)  # made on a workstation whose files have not moved in: one line, no traceback
    assert "\n" not in str(missing.value)
    # That workstation opens the same database: its files move in, and every workstation can open case 2.
    other_home = tmp_path / "workstation-b"
    (other_home / "images").mkdir(parents=True)
    (other_home / "images" / "h2.png").write_bytes(other)
    monkeypatch.setenv("CXR_DATABASE_URL", f"sqlite:///{own_app_home / 'cases.db'}")
    monkeypatch.setenv("CXR_HOME", str(other_home))
    CaseStore.open()
    assert store.picture(2) == other and store.picture(2, "heatmap") is None
    assert not (other_home / "images").exists()


def test_identifiers_are_stored_only_with_the_deployment_opt_in(store, controlled_predictor, own_app_home, monkeypatch):
    monkeypatch.setenv("CXR_STORE_IDENTIFIERS", "1")
    data = inputs.dicom(patient="Secret^Name")
    store.add(controlled_predictor.predict(data, name="Secret_Name.dcm"), data, "model-x")
    assert b"Secret_Name.dcm" in _database_bytes(own_app_home) and b"Secret^Name" in _database_bytes(own_app_home)


def test_the_audit_trail_is_append_only(store, controlled_predictor):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import AuditEvent

    data = inputs.png_gray8()
    store.add(controlled_predictor.predict(data), data, "model-x")
    with Session(store.engine) as session:
        event = session.scalars(select(AuditEvent)).first()
        event.actor = "someone else"
        with pytest.raises(PermissionError, match="append-only"):
            session.commit()
    with Session(store.engine) as session:
        session.delete(session.scalars(select(AuditEvent)).first())
        with pytest.raises(PermissionError, match="append-only"):
            session.commit()
    assert [e["actor"] for e in store.audit()] == ["unsigned"]


def _raw_sql_cannot_rewrite_the_audit(store, tiny_predictor) -> None:
    """Raw UPDATE, DELETE (and on PostgreSQL TRUNCATE) bypass the ORM; the database's triggers refuse them."""
    from sqlalchemy import delete, text, update
    from sqlalchemy.exc import DBAPIError

    from cxr_core.cases.db import AuditEvent

    data = inputs.png_gray8()
    store.add(tiny_predictor.predict(data), data, "model-x")
    statements = [update(AuditEvent).values(actor="someone else"), delete(AuditEvent)]
    if store.engine.dialect.name == "postgresql":
        statements.append(text("TRUNCATE audit"))
    for statement in statements:
        with store.engine.connect() as connection:
            with pytest.raises(DBAPIError, match="append-only"):
                connection.execute(statement)
                connection.commit()
    assert [e["actor"] for e in store.audit()] == ["unsigned"]


def test_raw_sql_cannot_rewrite_the_audit_on_sqlite(store, tiny_predictor):
    _raw_sql_cannot_rewrite_the_audit(store, tiny_predictor)


def test_raw_sql_cannot_rewrite_the_audit_on_postgresql(postgres_url, tiny_predictor):
    from cxr_core.cases.store import CaseStore

    _raw_sql_cannot_rewrite_the_audit(CaseStore.open(postgres_url), tiny_predictor)


def test_reviewed_cases_export_as_a_folder_that_evaluates(store, tiny_predictor, tiny_data, tiny_model_dir, tmp_path):
    from cxr_core.validation.evaluation import evaluate_folder

    for i in range(8):
        data = inputs.training_like(tiny_data, i)
        case_id, _ = store.add(tiny_predictor.predict(data), data, "model-x")
        review_as(store, case_id, "NORMAL" if i % 2 == 0 else ("BACTERIAL" if i % 4 == 1 else "VIRAL"), "Dr A")
    other = inputs.jpeg_gray()
    case_id, _ = store.add(tiny_predictor.predict(other), other, "model-x")
    store.review(case_id, "disagree", "UNREADABLE", "Dr A")
    counts = store.export(tmp_path / "site", reviewed_only=True)
    assert counts == {"NORMAL": 4, "PNEUMONIA": 4, "left out": 1, "contradictory": 0}
    result = evaluate_folder(tiny_model_dir, tmp_path / "site", n_boot=20)
    assert result.summary["n"] == 8 and result.summary["class_counts"] == {"NORMAL": 4, "BACTERIAL": 2, "VIRAL": 2}
    overlap = result.summary["overlap"]  # the exported PNGs are the tiny model's training JPEGs, decoded
    assert overlap["images_in_training"] == 8 and "8 of 8 images" in overlap["warning"]


def _cli_round_trip(tiny_registry, tiny_data, tmp_path, env) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"img{i}.jpeg").write_bytes(inputs.training_like(tiny_data, i))
    saved = run_cli(["predict", str(folder), "--save", "--json"], env)
    assert saved.returncode == 0, saved.stderr
    listed = [json.loads(line) for line in run_cli(["cases", "list", "--json"], env).stdout.splitlines()]
    assert len(listed) == 4 and all(c["status"] == "new" for c in listed)
    assert run_cli(["predict", str(folder), "--save", "--json"], env).returncode == 0  # the same images: no new cases
    assert len(run_cli(["cases", "list", "--json"], env).stdout.splitlines()) == 4
    for c, label in zip(listed, ["NORMAL", "BACTERIAL", "NORMAL", "VIRAL"]):
        res = run_cli(["cases", "review", str(c["case_id"]), "--decision", consistent_decision(c, label), "--label",
                       label, "--reader", "Dr B"], env)
        assert res.returncode == 0, res.stderr
    bad = run_cli(["cases", "review", str(listed[0]["case_id"]), "--decision", "agree", "--label", "X", "--reader", "B"], env)
    assert bad.returncode == 2 and "'X'" in bad.stderr and "Traceback" not in bad.stderr
    assert run_cli(["cases", "list", "--status", "new", "--json"], env).stdout.count("case_id") == 0
    export = run_cli(["cases", "export", str(tmp_path / "site"), "--reviewed-only"], env)
    assert export.returncode == 0 and "Exported 2 NORMAL and 2 PNEUMONIA" in export.stdout
    evaluated = run_cli(["evaluate", str(tmp_path / "site"), "--json", "--bootstrap", "10"], env)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["n"] == 4
    actions = [json.loads(line)["action"] for line in run_cli(["cases", "audit", "--json"], env).stdout.splitlines()]
    assert actions.count("create") == 4 and actions.count("review") == 4 and actions[-1] == "export"


def test_the_cases_commands_round_trip_on_sqlite(tiny_registry, tiny_data, tmp_path):
    env = cli_env(tiny_registry)
    _cli_round_trip(tiny_registry, tiny_data, tmp_path, env)


def test_the_cases_commands_round_trip_on_postgresql(tiny_registry, tiny_data, tmp_path, postgres_url):
    env = cli_env(tiny_registry, CXR_DATABASE_URL=postgres_url)
    _cli_round_trip(tiny_registry, tiny_data, tmp_path, env)


@pytest.mark.slow  # kills a real process
def test_kill_9_during_predict_save_leaves_every_case_complete_or_absent(tiny_registry, tiny_data, tmp_path,
                                                                       own_app_home):
    folder = tmp_path / "batch"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):  # 40 distinct images
        img = cv2.imdecode(np.frombuffer(inputs.training_like(tiny_data, i % 32), np.uint8), cv2.IMREAD_GRAYSCALE)
        noisy = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:02d}.png"), noisy)
    env = cli_env(tiny_registry)
    proc = subprocess.Popen([sys.executable, "-m", "cxr_core", "predict", str(folder), "--save", "--json",
                             "--batch-size", "1"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    lines = 0
    while lines < 12:  # let it store a dozen cases, then kill it mid-batch
        if not proc.stdout.readline():
            break
        lines += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    db = own_app_home / "cases.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cases = con.execute("SELECT c.id, p.data FROM cases c LEFT JOIN pictures p ON p.sha256 = c.image_sha256"
                            ).fetchall()
        created = con.execute("SELECT case_id FROM audit WHERE action = 'create'").fetchall()
    assert 10 <= len(cases) < 40
    assert sorted(c[0] for c in cases) == sorted(c[0] for c in created)  # each case with its audit event
    for _, png in cases:
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE) is not None  # and its image
    resumed = subprocess.run([sys.executable, "-m", "cxr_core", "predict", str(folder), "--save", "--json"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM cases").fetchone()[0] == 40  # the rest added, none twice


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_a_case_made_on_one_workstation_is_listed_opened_reviewed_and_exported_on_another(
        database, tiny_registry, tiny_data, tmp_path, request):
    """Two CXR_HOME folders on one database (the CLI): B needs nothing from A's disk."""
    url = (f"sqlite:///{tmp_path / 'shared.db'}" if database == "sqlite"
           else request.getfixturevalue("postgres_url"))
    base = cli_env(tiny_registry, CXR_DATABASE_URL=url)
    env_a, env_b = ({**base, "CXR_HOME": str(tmp_path / name)} for name in ("a", "b"))
    film = tmp_path / "film.jpeg"
    film.write_bytes(inputs.training_like(tiny_data, 1))
    made = run_cli(["predict", str(film), "--save", "--json"], env_a)
    assert made.returncode == 0, made.stderr
    [listed] = [json.loads(line) for line in run_cli(["cases", "list", "--json"], env_b).stdout.splitlines()]
    shown = run_cli(["cases", "show", str(listed["case_id"]), "--out", str(tmp_path / "opened")], env_b)
    assert shown.returncode == 0, shown.stderr
    image = cv2.imread(str(tmp_path / "opened" / f"case-{listed['case_id']}.png"), cv2.IMREAD_GRAYSCALE)
    gradcam = cv2.imread(str(tmp_path / "opened" / f"case-{listed['case_id']}-gradcam.png"), cv2.IMREAD_COLOR)
    assert image is not None and gradcam is not None and image.shape == gradcam.shape[:2]
    reviewed = run_cli(["cases", "review", str(listed["case_id"]), "--decision",
                        consistent_decision(listed, "BACTERIAL"), "--label", "BACTERIAL", "--reader", "Dr B"], env_b)
    assert reviewed.returncode == 0, reviewed.stderr
    exported = run_cli(["cases", "export", str(tmp_path / "site"), "--reviewed-only", "--reader", "Dr B"], env_b)
    assert exported.returncode == 0 and "Exported 0 NORMAL and 1 PNEUMONIA" in exported.stdout, exported.stderr
    assert [p.name for p in (tmp_path / "site").rglob("*.png")] == [f"person{listed['case_id']}_bacteria_1.png"]
    audit = [json.loads(line) for line in run_cli(["cases", "audit", "--json"], env_b).stdout.splitlines()]
    assert [(e["action"], e["actor"]) for e in audit] == [("create", "unsigned"), ("review", "Dr B"),
                                                         ("export", "Dr B")]
    assert not (tmp_path / "a" / "images").exists()  # A kept no picture of its own


def test_a_missing_case_or_picture_kind_is_one_line_from_the_cli(tiny_registry):
    env = cli_env(tiny_registry)
    res = run_cli(["cases", "show", "7"], env)
    assert res.returncode == 2 and res.stderr.strip() == "error: No case 7 in the case store."
