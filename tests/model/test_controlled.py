"""Every decision path, driven by the controlled model (testkit/controlled.py), whose answer a film's code sets: NORMAL
and PNEUMONIA at any P and exactly at the threshold, each subtype with a clear or a close margin, a planted blob for
the heatmap; and the breakages `tests/mutations.py` applies (issue 34), each caught here."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from cxr_core.errors import CXRError

from testkit import controlled as C
from testkit import inputs
from testkit.harness import c_store, free_port
from testkit.readers import FakePacs, pdf_words, sr_subtype, sr_text, sr_threshold_source


def model_input(predictor, data: bytes) -> np.ndarray:
    from cxr_core.inputs.imaging import load_image

    return predictor.preprocess(load_image(data).pixels)


def exact_p(predictor, data: bytes) -> float:
    """P(pneumonia) as the Predictor decides on it (unrounded), from its own forward pass."""
    probs, _, _ = predictor.forward(model_input(predictor, data)[None])
    return float(1.0 - probs[0, 0])


# ---- the answers the code chooses
@pytest.mark.parametrize("p,subtype,margin,label,stated", [
    (0.05, "BACTERIAL", 0.9, "NORMAL", None),
    (0.45, "VIRAL", 0.9, "NORMAL", None),
    (0.75, "BACTERIAL", 0.9, "PNEUMONIA", "BACTERIAL"),
    (0.95, "VIRAL", 0.8, "PNEUMONIA", "VIRAL"),
    (0.70, "VIRAL", 0.6, "PNEUMONIA", "VIRAL"),
])
def test_the_reported_answer_is_the_models_output_by_class_name(controlled_predictor, p, subtype, margin, label, stated):
    """P(pneumonia), the label and the class probabilities by name equal the model's output in class order (at the
    card's temperature); a stated subtype is the larger of the two."""
    data = C.png16(C.film(C.target(p, subtype, margin)))
    expected = C.expected_probabilities(model_input(controlled_predictor, data))
    pred = controlled_predictor.predict(data)
    assert pred.assessed and pred.warnings == controlled_predictor.guard_warnings  # no other warning
    got = pred.to_json()["class_probabilities"]
    assert list(got) == ["NORMAL", "BACTERIAL", "VIRAL"]
    np.testing.assert_allclose([got[c] for c in got], expected, atol=2e-6)
    assert abs(pred.pneumonia_probability - p) < 1e-3 and abs(pred.pneumonia_probability - (1 - expected[0])) < 2e-6
    assert (pred.label, pred.subtype) == (label, stated)
    if stated:
        assert stated == max(("BACTERIAL", "VIRAL"), key=got.get)


def test_the_temperature_of_the_card_is_applied(controlled_predictor):
    data = C.png16(C.film(C.target(0.8, "BACTERIAL", 0.9)))
    x = model_input(controlled_predictor, data)
    got = controlled_predictor.predict(data).class_probabilities
    assert abs(got["NORMAL"] - C.expected_probabilities(x, C.TEMPERATURE)[0]) < 2e-6
    assert abs(got["NORMAL"] - C.expected_probabilities(x, 1.0)[0]) > 0.05  # T = 1 would read otherwise


def test_exactly_at_the_threshold_reads_pneumonia_and_just_below_normal(controlled_predictor):
    from cxr_core.model.operating_point import OperatingPoint

    data = C.png16(C.film(C.target(C.THRESHOLD, "BACTERIAL", 0.9)))
    p = exact_p(controlled_predictor, data)
    assert abs(p - C.THRESHOLD) < 1e-3
    at = controlled_predictor.predict(data, point=OperatingPoint(p))
    above = controlled_predictor.predict(data, point=OperatingPoint(float(np.nextafter(p, 1.0))))
    assert (at.label, at.subtype) == ("PNEUMONIA", "BACTERIAL")
    assert (above.label, above.subtype) == ("NORMAL", None)


@pytest.mark.parametrize("margin,stated", [(0.05, "UNCERTAIN"), (0.2, "UNCERTAIN"), (C.MARGIN - 0.02, "UNCERTAIN"),
                                           (C.MARGIN + 0.02, "VIRAL"), (0.9, "VIRAL")])
def test_a_close_subtype_call_says_uncertain(controlled_predictor, margin, stated):
    """Below the card's subtype margin a PNEUMONIA states no subtype ("UNCERTAIN"), above it the likelier one; on
    every side of the margin, in the JSON, the PDF and the SR."""
    from cxr_core.dicom.results import result_objects
    from cxr_core.model.decision import subtype_margin
    from cxr_core.reports.pdf import build_pdf

    data = C.dicom(C.film(C.target(0.9, "VIRAL", margin)))
    pred = controlled_predictor.predict(data)
    probs = np.array([[pred.class_probabilities[c] for c in ("NORMAL", "BACTERIAL", "VIRAL")]])
    assert abs(subtype_margin(probs)[0] - margin) < 5e-3
    assert (pred.label, pred.subtype, pred.to_json()["subtype"]) == ("PNEUMONIA", stated, stated)
    sr = result_objects(data, pred, controlled_predictor.card)[0]
    words = pdf_words(build_pdf(pred, np.zeros((8, 8, 3), np.uint8), controlled_predictor.card))
    said = sr_subtype(sr)
    if stated == "UNCERTAIN":
        assert "uncertain" in said.lower() and "VIRAL" not in said.upper()
        assert "uncertain" in words.lower()
    else:
        assert "VIRAL" in said.upper() and "uncertain" not in said.lower()
        assert "VIRAL" in words.upper() and "uncertain" not in words.lower()


# ---- the heatmap explains pneumonia
def test_evidence_weights_are_minus_normal_plus_likelier_subtype_in_numpy_and_tensorflow():
    import tensorflow as tf

    from cxr_core.model.gradcam import _evidence_weights_tf, evidence_weights

    logits = np.array([[0.0, 2.0, 1.0], [3.0, -1.0, 0.5], [1.0, 1.0, 1.0]], np.float32)
    expected = np.array([[-1, 1, 0], [-1, 0, 1], [-1, 1, 0]], np.float32)  # a tie: BACTERIAL
    np.testing.assert_array_equal(evidence_weights(logits), expected)
    np.testing.assert_array_equal(np.asarray(_evidence_weights_tf(tf.constant(logits))), expected)
    two = np.array([[0.3, -0.2]], np.float32)
    np.testing.assert_array_equal(evidence_weights(two), [[-1, 1]])
    np.testing.assert_array_equal(np.asarray(_evidence_weights_tf(tf.constant(two))), [[-1, 1]])


@pytest.mark.parametrize("blob", [(3, 2), (5, 6), (7, 0)])
def test_the_predictors_heatmap_peaks_on_the_blob_that_drives_pneumonia(controlled_predictor, blob):
    """A film that reads NORMAL without the blob reads PNEUMONIA with it; the map (fused CAM and LayerCAM, so both
    the numpy and the TensorFlow evidence weights) peaks inside the blob's cell."""
    probs = C.target(0.3, "BACTERIAL", 0.5)
    without = controlled_predictor.predict(C.png16(C.film(probs)))
    pred = controlled_predictor.predict(C.png16(C.film(probs, blob=blob)))
    assert without.label == "NORMAL" and pred.label == "PNEUMONIA"
    assert pred.pneumonia_probability > without.pneumonia_probability + 0.3
    heat = pred.heatmap
    assert heat.shape == (C.SIZE, C.SIZE) and heat.max() > 0
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert (r // C.CELL, c // C.CELL) == blob
    inside = heat[blob[0] * C.CELL:(blob[0] + 1) * C.CELL, blob[1] * C.CELL:(blob[1] + 1) * C.CELL]
    assert inside.sum() > 0.9 * heat.sum()  # the evidence is the blob's, not the code strip's


# ---- the population warning reaches every surface
def test_an_adult_age_warns_in_the_json_the_pdf_and_the_sr(controlled_predictor):
    from cxr_core.dicom.results import result_objects
    from cxr_core.reports.pdf import build_pdf

    data = C.dicom(C.film(C.target(0.8)), age="034Y")
    pred = controlled_predictor.predict(data)
    assert pred.assessed and pred.label == "PNEUMONIA"
    warning = "the DICOM header gives an age of 34 years"
    assert any(warning in w for w in pred.to_json()["warnings"])
    assert warning in pdf_words(build_pdf(pred, np.zeros((8, 8, 3), np.uint8), controlled_predictor.card))
    assert warning in sr_text(result_objects(data, pred, controlled_predictor.card)[0])
    child = controlled_predictor.predict(C.dicom(C.film(C.target(0.8)), age="003Y"))
    assert not any("validated population" in w for w in child.warnings)


def test_an_adult_looking_film_without_an_age_warns(controlled_predictor):
    adult = controlled_predictor.predict(C.png16(C.film(C.target(0.2), adult=True, seed=7)))
    child = controlled_predictor.predict(C.png16(C.film(C.target(0.2), seed=7)))
    assert adult.assessed and any("looks like an adult" in w for w in adult.to_json()["warnings"])
    assert child.assessed and child.warnings == controlled_predictor.guard_warnings


@pytest.mark.parametrize("age,warns", [("000Y", True), ("011M", True), ("012M", False), ("001Y", False),
                                       ("005Y", False), ("006Y", True), ("034Y", True)])
def test_the_validated_ages_either_side_of_their_bounds(controlled_predictor, age, warns):
    pred = controlled_predictor.predict(C.dicom(C.film(C.target(0.3)), age=age))
    assert any("validated population" in w for w in pred.warnings) == warns


# ---- DICOM pixels and preprocessing
@pytest.mark.parametrize("window", [None, (2048.0, 4096.0)])
def test_monochrome1_reads_as_the_inverted_monochrome2(window):
    from cxr_core.inputs.imaging import load_image

    m1 = load_image(inputs.dicom("MONOCHROME1", window=window)).pixels
    m2 = load_image(inputs.dicom("MONOCHROME2", window=window)).pixels
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2.std() > 0.1


@pytest.mark.parametrize("policy", ["none", "percentile", "equalize", "clahe"])
def test_the_served_model_input_equals_the_training_pipelines(controlled_model_dir, tmp_path, policy):
    """For every intensity policy, the Predictor feeds the model exactly what training fed it for the same film."""
    import cv2

    from cxr_core.model.predict import Predictor
    from train.pipeline import load_arrays
    from cxr_core.validation.dataset import Record

    from tests.conftest import tiny_config
    from testkit.synthetic import phantom_cxr

    path = tmp_path / "film.png"
    cv2.imwrite(str(path), (phantom_cxr(96, np.random.default_rng(3), 1) * 255).astype(np.uint8))
    config = tiny_config(tmp_path, data={"image_size": C.SIZE, "intensity": policy})
    trained, _ = load_arrays([Record(path, 1, "p1")], config.data.preprocess())
    folder = C.variant(controlled_model_dir, tmp_path / "model", input=config.data.preprocess().card_input())
    predictor = Predictor(folder)
    seen = []
    forward = predictor.forward
    predictor.forward = lambda batch, heatmaps=True: (seen.append(np.array(batch)), forward(batch, heatmaps))[1]
    predictor.predict(path)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0][0], trained[0], atol=1e-6)


# ---- the listener
def _listen(predictor, store, results):
    from cxr_core.dicom.listener import Listener, ListenerConfig

    port = free_port()
    return Listener(ListenerConfig(port=port, address="127.0.0.1"), predictor, store, on_result=results.append).start(), port


def test_the_listener_logs_no_patient_identifier(controlled_predictor, store, caplog):
    """Refused, analysed and failed instances alike: no PatientID, birth date or name in any captured log line."""
    from pydicom import dcmread
    from pynetdicom.sop_class import CTImageStorage, DigitalXRayImageStorageForPresentation

    caplog.set_level(logging.DEBUG)
    results: list = []
    listener, port = _listen(controlled_predictor, store, results)
    try:
        ct = dcmread(io.BytesIO(inputs.dicom(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2",
                                                           patient="Zqxsecret^Wvyname")))
        dx = dcmread(io.BytesIO(C.dicom(C.film(C.target(0.8)), patient="Zqxsecret^Wvyname")))
        contexts = (CTImageStorage, DigitalXRayImageStorageForPresentation)
        assert c_store(port, ct, contexts) == 0xC000
        assert c_store(port, dx, contexts) == 0x0000
    finally:
        listener.stop()
    log = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "refused instance" in log and len(results) == 1
    for secret in ("ID-12345", "20200101", "Zqxsecret", "Wvyname"):
        assert secret not in log


def test_the_listener_decides_at_the_site_point(controlled_predictor, store):
    """With a site point just below a film's P (the model's threshold above it), a C-STORE makes a PNEUMONIA case
    and an SR whose threshold source is the site's."""
    from pydicom import dcmread

    data = C.dicom(C.film(C.target(0.5, "BACTERIAL", 0.9)))
    p = exact_p(controlled_predictor, data)
    assert p < controlled_predictor.card.threshold
    store.record_site_point(controlled_predictor.card.model_id, p - 0.01, "Dr Site")
    results: list = []
    listener, port = _listen(controlled_predictor, store, results)
    try:
        assert c_store(port, dcmread(io.BytesIO(data))) == 0x0000
    finally:
        listener.stop()
    [result] = results
    assert (result.prediction.label, result.prediction.threshold_source) == ("PNEUMONIA", "site")
    case = store.get(result.case_id)
    assert (case["label"], case["threshold_source"]) == ("PNEUMONIA", "site")
    sr = next(d for d in result.results if d.Modality == "SR")
    assert "site" in sr_threshold_source(sr).lower()
    assert "Present" in sr_text(sr) or "PRESENT" in sr_text(sr).upper()


# ---- the site point's rules
def _govern(n_pos: int, n_neg: int, floor: float = 0.9, min_per_class: int = 50):
    from cxr_core.settings import SitePointPolicy
    from cxr_core.validation.site_point import govern_site_point

    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int)
    p = np.r_[np.full(n_pos, 0.9), np.full(n_neg, 0.1)]
    return govern_site_point(0.5, y, p, SitePointPolicy(min_per_class, floor))


@pytest.mark.parametrize("n_pos,n_neg", [(300, 10), (10, 300), (49, 300), (300, 49)])
def test_the_site_points_minimum_is_per_class_not_on_the_total(n_pos, n_neg):
    with pytest.raises(CXRError, match="too few local films"):
        _govern(n_pos, n_neg)


def test_the_site_point_rules_either_side_of_their_bounds():
    from cxr_core.validation.metrics import operating_point_evidence

    ev = _govern(50, 50)  # exactly the minimum of each class
    assert ev["n_positive"] == 50 and ev["n_negative"] == 50
    low = operating_point_evidence(np.r_[np.ones(50), np.zeros(50)].astype(int),
                                   np.r_[np.full(50, 0.9), np.full(50, 0.1)], 0.5)["sensitivity_ci95"][0]
    assert _govern(50, 50, floor=low)  # at the floor: accepted
    with pytest.raises(CXRError, match="sensitivity is too uncertain"):
        _govern(50, 50, floor=float(np.nextafter(low, 1.0)))
    with pytest.raises(CXRError, match="too few local films"):
        _govern(50, 50, min_per_class=51)


# ---- the case store's audit
def test_every_stored_case_assessed_or_not_has_exactly_one_create_event(controlled_predictor, store):
    from testkit.synthetic import non_xray

    kept = {}
    for name, data in {"pneumonia": C.png16(C.film(C.target(0.9))), "normal": C.png16(C.film(C.target(0.1))),
                       "ct": inputs.dicom(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2"),
                       "document": C.png16(non_xray("document", 64, np.random.default_rng(0)))}.items():
        pred = controlled_predictor.predict(data)
        kept[name] = (store.add(pred, data, controlled_predictor.card.model_id, actor="Dr Audit")[0], pred.assessed)
    assert [a for _, a in kept.values()] == [True, True, False, False]
    creates = [e for e in store.audit() if e["action"] == "create"]
    assert sorted(e["case_id"] for e in creates) == sorted(c for c, _ in kept.values())
    assert {e["actor"] for e in creates} == {"Dr Audit"}
    assert {e["model_id"] for e in creates} == {controlled_predictor.card.model_id}


# ---- result identity follows the model
def test_result_uids_depend_on_the_model_and_another_models_analysis_is_not_skipped(controlled_model_dir,
                                                                                    controlled_predictor, tmp_path):
    from pydicom import dcmread

    from cxr_core.dicom.pacs import analyse_study
    from cxr_core.dicom.results import result_objects
    from cxr_core.model.predict import Predictor

    other = Predictor(C.variant(controlled_model_dir, tmp_path / "other", model_id="controlled-other"))
    data = C.dicom(C.film(C.target(0.8)))
    source = dcmread(io.BytesIO(data))
    mine = result_objects(data, controlled_predictor.predict(data), controlled_predictor.card)
    theirs = result_objects(data, other.predict(data), other.card)
    assert [d.Modality for d in mine] == [d.Modality for d in theirs] == ["SR", "OT", "OT"]  # SR, map, SC
    for a, b in zip(mine, theirs):
        assert a.SOPInstanceUID != b.SOPInstanceUID and a.SeriesInstanceUID != b.SeriesInstanceUID
    point = controlled_predictor.model_point
    again = list(analyse_study(FakePacs([source, *mine]), source.StudyInstanceUID, controlled_predictor, point))
    assert again[0].skipped and "already analysed" in again[0].skipped
    first = list(analyse_study(FakePacs([source, *mine]), source.StudyInstanceUID, other, point))
    assert first[0].skipped is None and first[0].prediction.label == "PNEUMONIA"


AT_MARGIN = 2.0 / 1.25  # with a layout excess of 1.25: a product of exactly ADULT_FOREIGN_MARGIN (asserted below)


@pytest.mark.parametrize("layout, appearance, adult_refused", [
    (3.0, 0.5, False), (0.5, 3.0, False), (4.0, 0.6, False),  # one check refuses: an adult's anatomy, assessed
    (1.25, 1.2, False),  # both refuse, a little: still an adult's chest film
    (1.25, AT_MARGIN * (1 - 1e-9), False), (1.25, AT_MARGIN, True),  # just under, exactly at the joint margin
    (2.0, 1.5, True),  # both refuse, clearly: not a chest film
    (3.0, None, True), (0.5, None, False),  # a model with one chest check: it refuses adults too
    (None, 3.0, True), (None, 0.5, False)])
def test_an_adult_chest_film_gets_the_population_warning_not_the_foreign_input_refusal(controlled_model_dir, layout,
                                                                                        appearance, adult_refused):
    """Both chest checks (the thumbnail's layout, the chest-appearance autoencoder) are built on children's films and
    either may call an adult's anatomy unlike theirs: a film the population check flags as adult is refused only when
    both refuse it and, together, clearly (the product of their excesses at least ADULT_FOREIGN_MARGIN), and
    otherwise assessed with the population warning; a child's film is refused by either. A model without one of
    the checks (None) has one chest check, which refuses adult-looking films too."""
    from cxr_core.model.predict import Predictor
    from cxr_core.safety.intended_use import ADULT_FOREIGN_MARGIN, ChestCheck
    from cxr_core.safety.ood import PIXEL_REASON

    assert 1.25 * AT_MARGIN == ADULT_FOREIGN_MARGIN
    looks = "This does not look like a chest radiograph (test)."

    def answer(excess: float, reason: str) -> ChestCheck:
        return ChestCheck((reason,) * (excess > 1), excess)

    class Appearance:
        def checks(self, batch):
            return [answer(appearance, looks) for _ in batch]

    class Layout:  # the model's layout check; its feature check has nothing to say here
        def check(self, image, pooled):
            return answer(layout, PIXEL_REASON), []

    predictor = Predictor(controlled_model_dir)  # this test's own: the shared one is never changed
    predictor.appearance = Appearance() if appearance is not None else None
    predictor.ood = Layout() if layout is not None else None
    expected = [looks] * bool(appearance and appearance > 1) + [PIXEL_REASON] * bool(layout and layout > 1)
    adult = predictor.predict(C.png16(C.film(C.target(0.2), adult=True, seed=7)))
    if adult_refused:
        assert not adult.assessed and adult.not_assessed_reasons == expected
    else:
        assert adult.assessed and adult.label == "NORMAL" and any("adult" in w for w in adult.warnings)
    child = predictor.predict(C.png16(C.film(C.target(0.2), seed=7)))
    assert child.assessed == (not expected) and child.not_assessed_reasons == expected
