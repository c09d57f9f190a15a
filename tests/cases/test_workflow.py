"""The clinician's workflow without traps (issue 23): a report traceable to its case, a subtype stated only
with a clear margin, a subtype-only disagreement, and readers named by a trusted proxy header."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cxr_core.errors import CXRError

from testkit import inputs
from testkit.reviews import review_as, stored_result
from tests.conftest import PROJECT_ROOT
from testkit.readers import pdf_text


def test_the_pdf_is_named_by_case_and_carries_its_number_hash_uids_point_and_review(store, tiny_predictor):
    from cxr_core.reports.pdf import build_pdf, report_name

    data = inputs.dicom(patient="Secret^Name")
    pred = tiny_predictor.predict(data, name="Secret_Name.dcm")
    case_id, _ = store.add(pred, data, "model-x", actor="Dr A")
    review_as(store, case_id, "VIRAL", "Dr Review", "patchy")
    case = store.get(case_id)
    text = pdf_text(build_pdf(pred, np.zeros((8, 8, 3), np.uint8), tiny_predictor.card, case=case))
    assert report_name(case, case["image_hash"]) == f"cxr_report_case_{case_id}.pdf"
    for needed in (f"Case {case_id}", case["image_hash"], case["study_uid"], case["sop_uid"], "Dr Review",
                   "final label VIRAL", "the model's threshold"):
        assert needed.encode() in text, needed
    assert b"Secret" not in text and b"Image 1" not in text  # no identifiers, no screen position
    assert b"Accession" not in text  # an identifier: only with the deployment's opt-in
    assert report_name(None, "abcdef0123456789") == "cxr_report_abcdef012345.pdf"


@pytest.mark.parametrize("probs, margin, said", [
    ([0.1, 0.51, 0.39], 0.59, "UNCERTAIN"),  # a coin-flip margin: not a finding
    ([0.1, 0.80, 0.10], 0.59, "BACTERIAL"),
    ([0.1, 0.10, 0.80], 0.59, "VIRAL"),
    ([0.1, 0.51, 0.39], None, "BACTERIAL"),  # a model without a fitted margin states every subtype
])
def test_the_subtype_is_stated_only_with_a_clear_margin(probs, margin, said):
    from cxr_core.model.decision import stated_subtype
    from cxr_core.model.predict import Prediction
    from cxr_core.reports.pdf import verdict_line

    assert stated_subtype(np.array(probs), margin) == said
    line = verdict_line(Prediction(file="x", label="PNEUMONIA", subtype=said, assessed=True))
    assert line == ("PNEUMONIA (subtype uncertain)" if said == "UNCERTAIN" else
                    f"PNEUMONIA ({said.lower()} pattern more likely)")


def test_the_subtype_margin_is_chosen_on_held_out_scores_for_a_stated_precision():
    from cxr_core.validation.metrics import choose_subtype_margin

    rng = np.random.default_rng(0)
    y = np.array([1] * 200 + [2] * 200)
    clear = rng.uniform(0, 1, 400)  # how clearly each film's subtype shows; unclear ones are coin flips
    right = rng.uniform(0, 1, 400) < 0.5 + 0.5 * clear
    p_true = 0.5 + 0.5 * clear * np.where(right, 1, -1) / 2 + np.where(right, 0.001, -0.001)
    probs = np.stack([np.full(400, 0.1), np.where(y == 1, p_true, 1 - p_true) * 0.9,
                      np.where(y == 2, p_true, 1 - p_true) * 0.9], axis=1)
    policy = choose_subtype_margin(y, probs, precision=0.85)
    assert policy["precision"] >= 0.85 > policy["precision_all"] and 0 < policy["stated_fraction"] < 1
    assert 0.0 < policy["margin"] < 1.0 and policy["n_pneumonia"] == 400


def test_a_subtype_only_disagreement_is_recorded_and_needs_a_subtype(store):
    case_id = stored_result(store, "PNEUMONIA", "BACTERIAL")
    with pytest.raises(CXRError, match="subtype-only disagreement needs the subtype"):
        store.review(case_id, "subtype", "NORMAL", "Dr B")
    store.review(case_id, "subtype", "VIRAL", "Dr B", "pneumonia yes, but viral")
    case = store.get(case_id)
    assert case["status"] == "disagreed" and case["review"]["decision"] == "subtype"


@pytest.mark.parametrize("model, subtype, decision, label, refused", [
    ("NORMAL", None, "agree", "NORMAL", None),
    ("NORMAL", None, "agree", "BACTERIAL", "not BACTERIAL: choose Disagree"),  # case 2 of the walkthrough
    ("PNEUMONIA", "BACTERIAL", "agree", "NORMAL", "not NORMAL: choose Disagree"),  # case 18
    ("PNEUMONIA", "BACTERIAL", "agree", "BACTERIAL", None),
    ("PNEUMONIA", "BACTERIAL", "agree", "VIRAL", "agreeing records BACTERIAL"),
    ("PNEUMONIA", None, "agree", "VIRAL", None),  # no stated subtype: agreeing may give one
    ("PNEUMONIA", "UNCERTAIN", "agree", "BACTERIAL", None),  # as a stored case says "no stated subtype"
    ("PNEUMONIA", "UNCERTAIN", "subtype", "VIRAL", "with no stated subtype"),
    ("PNEUMONIA", "VIRAL", "disagree", "NORMAL", None),
    ("PNEUMONIA", "VIRAL", "disagree", "BACTERIAL", "choose 'subtype only'"),
    ("NORMAL", None, "disagree", "NORMAL", "choose Agree"),
    ("NORMAL", None, "disagree", "OTHER", None),
    ("PNEUMONIA", "VIRAL", "subtype", "BACTERIAL", None),
    ("PNEUMONIA", "VIRAL", "subtype", "VIRAL", "the other subtype"),
    ("PNEUMONIA", None, "subtype", "VIRAL", "with no stated subtype"),
    ("NORMAL", None, "subtype", "VIRAL", "the model said NORMAL"),
    (None, None, "agree", "NORMAL", "not assessed"),
    (None, None, "disagree", "UNREADABLE", None),
])
def test_a_review_that_contradicts_itself_is_refused(store, model, subtype, decision, label, refused):
    """Agree records the model's finding; Disagree needs another; Subtype-only the same finding, the other subtype.
    The rule is the core's: the CLI and the form call it through CaseStore.review."""
    case_id = stored_result(store, model, subtype)
    if refused is None:
        store.review(case_id, decision, label, "Dr R")
        assert store.get(case_id)["review"]["contradiction"] is None
    else:
        with pytest.raises(CXRError, match=refused.replace("(", r"\(")):
            store.review(case_id, decision, label, "Dr R")
        assert store.get(case_id)["review"] is None and [e["action"] for e in store.audit(case_id)] == ["create"]


def test_a_contradictory_review_kept_from_before_is_flagged_and_left_out_of_adaptation(store, tmp_path):
    """A review saved before the rule (written past it here) is shown as contradicting itself (its own status, a
    Worklist filter), and the export and site adaptation from reviews leave it out with a count."""
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import Review
    from cxr_core.cases.worklist import WorklistFilter, filter_cases
    from cxr_core.site.films import films_from_reviews

    old = stored_result(store, "PNEUMONIA", "BACTERIAL", seed=1)
    good = stored_result(store, "NORMAL", seed=2)
    with Session(store.engine) as session, session.begin():
        session.add(Review(case_id=old, decision="agree", label="NORMAL", reader="Dr Old", comment=""))
    store.review(good, "agree", "NORMAL", "Dr New")
    assert "choose Disagree" in store.get(old)["review"]["contradiction"]
    films, left_out = films_from_reviews(store)
    assert left_out == 1 and len(films) == 1 and films[0].binary == 0
    assert store.get(old)["status"] == "contradictory" and store.get(good)["status"] == "reviewed"
    shown = filter_cases(store.list(), WorklistFilter(statuses=("contradictory",)))
    assert [c["case_id"] for c in shown] == [old]
    counts = store.export(tmp_path / "export", reviewed_only=True, actor="Dr New")
    assert (counts["NORMAL"], counts["PNEUMONIA"], counts["contradictory"]) == (1, 0, 1)
    assert len(list((tmp_path / "export" / "NORMAL").glob("*"))) == 1  # the contradicted NORMAL label is not there


def test_a_reader_from_a_trusted_header_and_a_missing_one(own_app_home, tiny_registry, monkeypatch):
    """With CXR_READER_HEADER set, the name is the proxy's, never typed; without the header nobody is named."""
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    monkeypatch.setenv("CXR_READER_HEADER", "X-Forwarded-User")
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert not [t for t in at.sidebar.text_input if t.key == "reader_input"]  # no box to type a name into
    assert any("sign-in header X-Forwarded-User is missing" in c.value for c in at.sidebar.caption)
