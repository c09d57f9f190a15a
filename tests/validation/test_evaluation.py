"""Evaluation (cxr_core.validation.evaluation) with the controlled model, whose every answer the test sets: the
summary's figures are the ones the chosen answers give, the per-image scores are saved outside the model folder and
read back exactly, an unreadable file is listed and not fatal, and a foreign CSV is not read as scores."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core import CLASSES
from cxr_core.errors import CXRError
from cxr_core.validation.dataset import kaggle_name
from cxr_core.validation.evaluation import SCORES_HEADER, evaluate_folder, read_scores, saved_evaluations, write_scores
from testkit import controlled as C

# (true label, the P(pneumonia) the controlled model answers); its threshold is C.THRESHOLD = 0.6
ANSWERS = [("NORMAL", 0.1), ("NORMAL", 0.2), ("NORMAL", 0.3), ("NORMAL", 0.65),
           ("BACTERIAL", 0.7), ("BACTERIAL", 0.8), ("BACTERIAL", 0.9), ("VIRAL", 0.75)]


def test_the_summary_holds_the_figures_the_chosen_answers_give(controlled_model_dir, controlled_predictor, tmp_path,
                                                               own_app_home):
    data = C.labelled_folder(tmp_path / "site", ANSWERS)
    (data / "NORMAL" / "IM-000099-0001.png").write_bytes(b"not an image")
    result = evaluate_folder(controlled_model_dir, data, n_boot=50, predictor=controlled_predictor)
    s = result.summary
    assert s["n"] == 8 and [f["file"] for f in s["failed"]] == ["NORMAL/IM-000099-0001.png"]
    assert s["model"] == C.MODEL_ID and s["threshold_source"] == "model"
    b = s["binary"]
    assert b["threshold"] == pytest.approx(C.THRESHOLD)
    assert b["sensitivity"] == 1.0 and b["specificity"] == 0.75 and b["accuracy"] == 7 / 8 and b["auc"] == 1.0
    expected = {"/".join(kaggle_name(label, i + 1)): (label, p) for i, (label, p) in enumerate(ANSWERS)}
    assert sorted(result.files) == sorted(expected)
    for f, y, probs in zip(result.files, result.labels, result.probs):  # each film's label and the answer it set
        assert CLASSES[y] == expected[f][0] and 1 - probs[0] == pytest.approx(expected[f][1], abs=0.01)


def test_the_scores_are_saved_outside_the_model_folder_and_read_back_exactly(controlled_model_dir, controlled_predictor,
                                                                           tmp_path, own_app_home):
    data = C.labelled_folder(tmp_path / "site", ANSWERS)
    result = evaluate_folder(controlled_model_dir, data, n_boot=20, predictor=controlled_predictor)
    assert result.saved_to is not None and own_app_home in result.saved_to.parents
    assert controlled_model_dir not in result.saved_to.parents
    files, labels, probs = read_scores(result.saved_to / "scores.csv")
    assert files == result.files and np.array_equal(labels, result.labels) and np.array_equal(probs, result.probs)
    listed = saved_evaluations(controlled_model_dir, C.MODEL_ID)
    [name] = [k for k in listed if k != "internal validation"]
    assert listed[name] == result.saved_to / "scores.csv" and name.startswith(str(data.resolve())) and "n = 8" in name
    unsaved = evaluate_folder(controlled_model_dir, data, n_boot=20, predictor=controlled_predictor, save=False)
    assert unsaved.saved_to is None


def test_write_and_read_scores_round_trip_at_full_precision(tmp_path):
    probs = np.array([[1 / 3, 1 / 3, 1 / 3], [0.1 + 1e-15, 0.3, 0.6 - 1e-15]])
    write_scores(tmp_path / "scores.csv", ["a,b.png", "NORMAL/x.png"], np.array([0, 2]), probs)
    assert (tmp_path / "scores.csv").read_text().splitlines()[0] == SCORES_HEADER
    files, labels, back = read_scores(tmp_path / "scores.csv")
    assert files == ["a,b.png", "NORMAL/x.png"] and labels.tolist() == [0, 2] and np.array_equal(back, probs)


@pytest.mark.parametrize("content", ["a,b,c\n1,2,3\n", "file,label,p_normal,p_bacterial,p_viral\nx,CAT,1,0,0\n", None])
def test_a_file_that_is_not_scores_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "scores.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CXRError, match="scores"):
        read_scores(path)


def test_a_missing_folder_is_an_error_not_an_empty_evaluation(controlled_model_dir, controlled_predictor, tmp_path):
    with pytest.raises(CXRError, match="is not a folder"):
        evaluate_folder(controlled_model_dir, tmp_path / "none", predictor=controlled_predictor)
