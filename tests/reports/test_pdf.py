"""The PDF report (cxr_core.reports.pdf) for answers the controlled model is set to give: the verdict in the same
words as every surface, P against the threshold and its source, the heatmap only for PNEUMONIA, the case that it is
traceable to, the review, the site's figures before the internal ones, and no identifier."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.model.operating_point import OperatingPoint
from cxr_core.reports.pdf import acquisition_note, build_pdf, report_name, verdict_line
from testkit import controlled as C
from testkit.readers import pdf_words

OVERLAY = np.zeros((8, 8, 3), np.uint8)


def _predict(predictor, p, subtype="BACTERIAL", margin=0.9, point=None, **dicom):
    return predictor.predict(C.dicom(C.film(C.target(p, subtype, margin)), **dicom), name="Secret_Name.dcm", point=point)


@pytest.mark.parametrize("p, subtype, margin, verdict", [
    (0.9, "VIRAL", 0.9, "PNEUMONIA (viral pattern more likely)"),
    (0.9, "BACTERIAL", 0.9, "PNEUMONIA (bacterial pattern more likely)"),
    (0.9, "BACTERIAL", 0.1, "PNEUMONIA (subtype uncertain)"),
    (0.2, "BACTERIAL", 0.9, "NORMAL")])
def test_the_verdict_p_threshold_and_heatmap_caption(controlled_predictor, p, subtype, margin, verdict):
    pred = _predict(controlled_predictor, p, subtype, margin)
    assert verdict_line(pred) == verdict
    words = pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card))
    assert f"Model output: {verdict}" in words
    assert f"P(pneumonia) = {pred.pneumonia_probability:.3f} operating threshold = {C.THRESHOLD:.3f} (the model's" in words
    pneumonia = verdict != "NORMAL"
    assert ("Grad-CAM: evidence for pneumonia" in words) == pneumonia
    assert ("No heatmap for a NORMAL result" in words) == (not pneumonia)
    assert ("Subtype, as shares within pneumonia" in words) == pneumonia


def test_a_site_point_is_named_and_decides(controlled_predictor):
    point = OperatingPoint(0.95, "site", set_by="Dr Site")
    pred = _predict(controlled_predictor, 0.9, point=point)
    words = pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card))
    assert "Model output: NORMAL" in words and "operating threshold = 0.950 (the site's operating point)" in words


def test_the_case_review_and_study_trace_the_report_and_no_identifier_is_shown(controlled_predictor):
    pred = _predict(controlled_predictor, 0.9, patient="Secret^Name")
    case = {"case_id": 17, "image_hash": "ab" * 32, "created": "2026-12-01T10:20:30+00:00", "study_uid": "1.2.3",
            "sop_uid": "1.2.3.4", "study_date": "20261130",
            "review": {"reader": "Dr R", "time": "2026-12-01T11:00:00+00:00", "decision": "agree",
                       "label": "BACTERIAL", "comment": ""}}
    words = pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card, case=case))
    assert f"Case 17 content sha256 {'ab' * 32} analysed 2026-12-01 10:20 UTC" in words
    assert "Study Instance UID 1.2.3" in words and "SOP Instance UID 1.2.3.4" in words
    assert "Reader review: Dr R (2026-12-01 11:00 UTC): agree, final label BACTERIAL" in words
    assert "Secret" not in words and ".dcm" not in words
    assert report_name(case, "ff" * 32) == "cxr_report_case_17.pdf"
    unkept = pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card))
    assert "Not kept as a case" in unkept and "Reader review: none recorded yet." in unkept
    assert report_name(None, "0123456789abcdef") == "cxr_report_0123456789ab.pdf"


def test_a_refused_input_has_its_reasons_and_no_probability(controlled_predictor):
    from testkit.synthetic import non_xray

    pred = controlled_predictor.predict(C.png16(non_xray("noise", C.SIZE, np.random.default_rng(0))), name="x.png")
    assert not pred.assessed
    words = pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card))
    assert "Not assessed: this input is outside the intended use" in words and "P(pneumonia)" not in words
    assert all(f"Reason: {r}"[:60] in words for r in pred.not_assessed_reasons)


def test_the_site_figures_come_before_the_internal_ones_only_when_reportable(controlled_predictor):
    class Site:
        def __init__(self, reportable):
            self.reportable = reportable

        def sentence(self):
            return "At this site (local evaluation of 120 films)."

    pred = _predict(controlled_predictor, 0.9)
    words = pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card, site=Site(True)))
    assert words.index("At this site (local evaluation of 120 films).") < words.index("Internal (same hospital")
    assert "At this site" not in pdf_words(build_pdf(pred, OVERLAY, controlled_predictor.card, site=Site(False)))


def test_the_model_s_own_figures_say_where_they_come_from_as_the_sidebar_does(controlled_predictor):
    """One rule for the sidebar and the PDF (cxr_core.validation.figures.own_figures): a site-adapted model's own
    figures are this site's out-of-fold figures, never "internal"."""
    from cxr_core.validation.figures import own_figures

    pred, card = _predict(controlled_predictor, 0.9), controlled_predictor.card
    internal = own_figures(card)
    assert internal.heading == "Internal (same hospital as training)"
    assert f"{internal.heading}: {internal.sentence}"[:80] in pdf_words(build_pdf(pred, OVERLAY, card))
    adapted = card.with_fields(site_adaptation={"parent_model_id": "parent", "counts": {"kept": 120}},
                               internal_validation_kind="Local validation at this site, out-of-fold: 120 films")
    words = pdf_words(build_pdf(pred, OVERLAY, adapted))
    assert "At this site (out-of-fold local validation): " in words and "Internal (same hospital" not in words
    assert "slightly optimistic" in words


def test_the_acquisition_note_from_known_tags_only():
    assert acquisition_note({"ViewPosition": "PA", "StudyDate": "20260131"}) == ", view PA, study date 2026-01-31"
    assert acquisition_note({"StudyDate": "2026"}) == "" and acquisition_note({}) == ""
