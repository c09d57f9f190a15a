"""`python -m cxr_core predict / evaluate / models`, run as a user would: in this process (tests/conftest.run_cli), and
once as a real process (`models`), which proves the command itself starts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cxr_core import CLASSES
from cxr_core.model.decision import stated_subtype

from testkit import inputs
from tests.conftest import cli_env, run_cli


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, tiny_data):
    d = tmp_path_factory.mktemp("mixed")
    (d / "h_training_like.jpeg").write_bytes(sorted((tiny_data / "NORMAL").iterdir())[0].read_bytes())
    (d / "a_gray.jpeg").write_bytes(inputs.jpeg_gray())
    (d / "b_16bit.png").write_bytes(inputs.png_gray16())
    (d / "c_scan.dcm").write_bytes(inputs.dicom())
    (d / "d_cmyk.jpg").write_bytes(inputs.jpeg_cmyk())
    (d / "e_empty.png").write_bytes(b"")
    (d / "f_notes.jpg").write_bytes(b"not an image at all" * 10)
    (d / "g_truncated.jpeg").write_bytes(inputs.jpeg_gray()[:300])
    (d / "notes.txt").write_text("a document: skipped by name")
    return d


def test_predict_json_one_line_per_input_errors_in_place(tiny_registry, mixed_folder, tmp_path):
    res = run_cli(["predict", str(mixed_folder), "--json", "--cam-out", str(tmp_path / "cams")], cli_env(tiny_registry))
    assert res.returncode == 2, res.stderr  # some inputs failed
    assert "Traceback" not in res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    margin = tiny_registry.active().card.subtype_margin
    # Nothing is dropped silently: every file but the document is an input, and the unreadable ones fail with
    # their reason in place.
    assert [os.path.basename(r["file"]) for r in lines] == ["a_gray.jpeg", "b_16bit.png", "c_scan.dcm", "d_cmyk.jpg",
                                                            "e_empty.png", "f_notes.jpg", "g_truncated.jpeg",
                                                            "h_training_like.jpeg"]
    assert "8 file(s) found" in res.stderr and "3 failed" in res.stderr and "1 non-image file(s) skipped" in res.stderr
    good = [r for r in lines if r["error"] is None]
    bad = [r for r in lines if r["error"] is not None]
    assert len(good) == 5 and len(bad) == 3 and not any(r["assessed"] for r in bad)
    assert "empty" in bad[0]["error"] and "not an image" in bad[1]["error"] and "truncated" in bad[2]["error"]
    assert good[-1]["assessed"]  # an image like the training images is assessed
    for r in good:
        if not r["assessed"]:  # refused by the OOD check: a reason, no finding, raw output kept
            assert r["not_assessed_reasons"] and r["label"] is None and r["pneumonia_probability"] is None
            assert set(r["class_probabilities"]) == {"NORMAL", "BACTERIAL", "VIRAL"} and r["class_probabilities_note"]
            continue
        assert r["label"] in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= r["pneumonia_probability"] <= 1.0
        assert set(r["class_probabilities"]) == {"NORMAL", "BACTERIAL", "VIRAL"}
        assert abs(sum(r["class_probabilities"].values()) - 1.0) < 1e-3
        # the subtype follows the model's margin: a close call says UNCERTAIN (tests/model/test_controlled.py drives both)
        expected = stated_subtype(np.array([r["class_probabilities"][c] for c in CLASSES]), margin)
        assert r["subtype"] == (expected if r["label"] == "PNEUMONIA" else None)
        assert r["pneumonia_probability"] >= r["threshold"] if r["label"] == "PNEUMONIA" else r["pneumonia_probability"] < r["threshold"]
    named = run_cli(["predict", str(mixed_folder / "e_empty.png"), str(mixed_folder / "f_notes.jpg"), "--json"], cli_env(tiny_registry))
    errors = [json.loads(line)["error"] for line in named.stdout.splitlines()]
    assert named.returncode == 2 and "empty" in errors[0] and "not an image" in errors[1]  # named files get their error
    cams = sorted(os.listdir(tmp_path / "cams"))
    assert len(cams) == sum(r["assessed"] for r in good) and all(c.endswith("_cam.png") for c in cams)
    assert "Doe" not in res.stdout and "ID-12345" not in res.stdout  # DICOM identifiers never printed


def test_predict_table_and_clean_errors(tiny_registry, mixed_folder):
    res = run_cli(["predict", str(mixed_folder / "a_gray.jpeg")], cli_env(tiny_registry))
    assert res.returncode == 0 and "a_gray.jpeg" in res.stdout and "research use only" in res.stdout
    missing = run_cli(["predict", "/nonexistent/file.png", "--json"], cli_env(tiny_registry))
    assert missing.returncode == 2 and "does not exist" in json.loads(missing.stdout)["error"]
    bad_model = run_cli(["predict", str(mixed_folder), "--model", "no-such-model"], cli_env(tiny_registry))
    assert bad_model.returncode == 2 and bad_model.stderr.startswith("error: No model") and "Traceback" not in bad_model.stderr


def test_evaluate_json_keys_and_saved_scores(tiny_registry, tiny_data, tmp_path):
    out = tmp_path / "summary.json"
    res = run_cli(["evaluate", str(tiny_data), "--json", "--out", str(out), "--bootstrap", "100"], cli_env(tiny_registry))
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["n"] == 48 and json.loads(out.read_text()) == s
    for key in ("accuracy", "auc", "sensitivity", "specificity", "threshold", "confusion_matrix", "accuracy_ci95", "auc_ci95"):
        assert key in s["binary"]
    for key in ("accuracy", "macro_f1", "bacterial_vs_viral_auc", "confusion_matrix", "accuracy_ci95"):
        assert key in s["three_class"]
    from cxr_core.validation.evaluation import read_scores, saved_evaluations

    entry = tiny_registry.active()
    evals = saved_evaluations(entry.path, entry.model_id)
    saved = [v for k, v in evals.items() if k.startswith(str(tiny_data.resolve()))]
    files, labels, probs = read_scores(saved[0])
    assert len(files) == 48 and probs.shape == (48, 3)
    assert not (entry.path / "evaluations").exists()  # the registered folder is left as it was


def test_models_lists_the_active_model(tiny_registry):
    res = run_cli(["models"], cli_env(tiny_registry), process=True)
    assert res.returncode == 0 and f"* {tiny_registry.active_id()} " in res.stdout
    assert res.stdout.count("* ") == 1
