"""The governed site point (cxr_core.validation.site_point) on local evaluations of the controlled model, whose
answers the test sets: a saved evaluation is found by id, folder or file (never the internal validation), a point is
set only by a named reader on an evaluation meeting the deployment's rules, and reverted; the site's figures are
reported only from such an evaluation, with where its labels came from."""

from __future__ import annotations

import pytest

from cxr_core.errors import CXRError
from cxr_core.model.folder import ModelFolder
from cxr_core.model.operating_point import OperatingPoint, resolve
from cxr_core.settings import Settings
from cxr_core.validation.evaluation import evaluate_folder
from cxr_core.validation.site_point import find_evaluation, revert_site_point, set_site_point, site_figures
from testkit import controlled as C

# 12 pneumonia films all above 0.5, 12 normal films all below: at 0.5, sensitivity and specificity 1
ANSWERS = [("NORMAL", 0.05 + 0.03 * i) for i in range(12)] + [("BACTERIAL", 0.55 + 0.03 * i) for i in range(12)]


def _policy(min_per_class: int, floor: float = 0.5):
    return Settings.from_env({"CXR_SITE_MIN_PER_CLASS": str(min_per_class),
                              "CXR_SITE_SENSITIVITY_FLOOR": str(floor)}).site_policy


@pytest.fixture
def evaluation(controlled_model_dir, controlled_predictor, tmp_path, own_app_home):
    data = C.labelled_folder(tmp_path / "site", ANSWERS)
    return evaluate_folder(controlled_model_dir, data, n_boot=50, predictor=controlled_predictor).saved_to


def test_a_saved_evaluation_is_found_by_id_folder_or_file_and_never_the_internal_one(evaluation, controlled_model_dir):
    scores = evaluation / "scores.csv"
    for given in (evaluation.name, str(evaluation), str(scores)):
        assert find_evaluation(C.MODEL_ID, given) == scores
    with pytest.raises(CXRError, match=f"Saved: {evaluation.name}"):
        find_evaluation(C.MODEL_ID, "no-such-evaluation")
    internal = ModelFolder(controlled_model_dir).scores_file
    with pytest.raises(CXRError, match="internal validation is not a local evaluation"):
        find_evaluation(C.MODEL_ID, str(internal.parent / "elsewhere" / internal.name))


def test_a_point_is_set_by_a_named_reader_within_the_rules_and_reverted(evaluation, store, controlled_predictor):
    card, scores = controlled_predictor.card, evaluation / "scores.csv"
    with pytest.raises(CXRError, match="name of the reader"):
        set_site_point(store, card, 0.5, scores, "  ", _policy(10))
    with pytest.raises(CXRError, match="too few local films.*12 pneumonia and 12 normal"):
        set_site_point(store, card, 0.5, scores, "Dr Site", _policy(13))
    with pytest.raises(CXRError, match="sensitivity is too uncertain"):
        set_site_point(store, card, 0.5, scores, "Dr Site", _policy(12, floor=0.95))
    assert store.site_threshold(C.MODEL_ID) is None  # nothing refused was saved
    evidence = set_site_point(store, card, 0.5, scores, " Dr Site ", _policy(12))
    assert evidence["n_positive"] == 12 and evidence["sensitivity"] == 1.0 and evidence["evaluation"] == evaluation.name
    point = resolve(card, store)
    assert point.threshold == 0.5 and point.source == "site" and point.set_by == "Dr Site"
    with pytest.raises(CXRError, match="reader"):
        revert_site_point(store, card, "")
    assert revert_site_point(store, card, "Dr Site") == 0.5
    assert store.site_threshold(C.MODEL_ID) is None and resolve(card, store).source == "model"
    assert revert_site_point(store, card, "Dr Site") is None  # nothing to revert


def test_the_site_figures_come_only_from_an_evaluation_meeting_the_rules(evaluation, controlled_predictor):
    point = OperatingPoint.of_model(controlled_predictor.card)  # 0.6: two pneumonia films fall below it
    figures = site_figures(C.MODEL_ID, point, _policy(12))
    assert figures.reportable and figures.n == 24 and figures.n_positive == 12 and figures.threshold == C.THRESHOLD
    assert figures.sensitivity == pytest.approx(10 / 12) and figures.specificity == 1.0
    sentence = figures.sentence()
    assert "24 films, 12 pneumonia and 12 normal" in sentence and "labels as given by the folder" in sentence
    assert "sensitivity 0.833" in sentence
    too_few = site_figures(C.MODEL_ID, point, _policy(13))
    assert not too_few.reportable and too_few.sensitivity is None and "too few local films" in too_few.sentence()
    assert site_figures("a-model-never-evaluated", point, _policy(12)) is None
