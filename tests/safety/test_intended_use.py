"""Intended use: refused inputs, warnings, the population check and folder discovery, on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_core.inputs.discovery import collect_inputs
from cxr_core.inputs.imaging import dicom_age_years, load_image
from cxr_core.safety.intended_use import assess
from cxr_core.safety.population import AdultImageCheck, age_warning, fit_adult_check

from testkit import inputs
from tests.conftest import cli_env, run_cli

CT, MR, US, NM, SEG, SC = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.6.1",
                           "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.7")


@pytest.mark.parametrize("modality, sop_class, body", [("CT", CT, "CHEST"), ("MR", MR, "BRAIN"), ("US", US, "ABDOMEN"),
                                                        ("NM", NM, ""), ("SEG", SEG, "CHEST"), ("OT", SC, "")])
def test_dicom_that_is_not_a_projection_radiograph_is_refused(modality, sop_class, body):
    image = load_image(inputs.dicom(modality=modality, sop_class=sop_class, body_part=body))
    verdict = assess(image)
    assert not verdict.assessed
    assert any(modality in r or "secondary capture" in r for r in verdict.reasons)


@pytest.mark.parametrize("view", ["LL", "RL", "LAT"])
def test_lateral_views_are_refused(view):
    verdict = assess(load_image(inputs.dicom(view=view)))
    assert not verdict.assessed and "Lateral view" in verdict.reasons[0]


def test_frontal_chest_dx_cr_of_a_child_is_assessed_without_warning():
    for modality, sop in (("DX", "1.2.840.10008.5.1.4.1.1.1.1"), ("CR", "1.2.840.10008.5.1.4.1.1.1")):
        verdict = assess(load_image(inputs.dicom(modality=modality, sop_class=sop, age="003Y")))
        assert verdict.assessed and verdict.reasons == () and verdict.warnings == ()


def test_other_body_parts_blank_images_and_photographs_are_refused():
    assert "not the chest" in " ".join(assess(load_image(inputs.dicom(body_part="HAND"))).reasons)
    blank = load_image(inputs.pil_bytes(__import__("PIL.Image").Image.new("L", (80, 80), 128), "PNG"))
    assert "almost uniform" in " ".join(assess(blank).reasons)
    photo = assess(load_image(inputs.photo_like()))
    assert not photo.assessed and "colour image" in photo.reasons[0]
    gray_stored_as_rgb = assess(load_image(inputs.jpeg_rgb()))  # how the Kermany JPEGs are stored
    assert gray_stored_as_rgb.assessed


def test_guard_refusals_refuse_and_guard_or_population_warnings_only_warn():
    image = load_image(inputs.png_gray8())
    refused = assess(image, guard_refusals=["layout"], guard_warnings=["unusual"], population_warning="adult")
    assert not refused.assessed and refused.reasons == ("layout",) and refused.warnings == ()
    verdict = assess(image, guard_warnings=["unusual"], population_warning="adult")
    assert verdict.assessed and verdict.reasons == () and verdict.warnings == ("unusual", "adult")


# ---------------------------------------------------------------- two tiers, end to end on the image guards
def _chest_like(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A frontal-chest-like layout: bright mediastinum and body, two dark lung fields, a little texture."""
    yy, xx = np.mgrid[:size, :size] / size
    img = np.full((size, size), 0.8)
    for cx in (0.3, 0.7):
        img[((xx - cx + rng.normal(0, 0.01)) / 0.15) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1] = 0.25
    return np.clip(img + 0.04 * rng.standard_normal((size, size)), 0, 1).astype(np.float32)


def _fitted_detector():
    from cxr_core.safety.ood import OODDetector

    rng = np.random.default_rng(0)
    fit = np.stack([_chest_like(rng) for _ in range(200)])
    held = np.stack([_chest_like(rng) for _ in range(100)])
    features = lambda n: rng.standard_normal((n, 6))  # noqa: E731  the 'model features' of chest films
    return OODDetector.fit(fit, features(200), held, features(100)), rng


def test_the_image_guards_refuse_a_non_chest_layout_and_only_warn_for_an_unusual_chest_film():
    from cxr_core.safety.ood import PIXEL_REASON, UNUSUAL_WARNING, VERY_UNUSUAL_WARNING

    from testkit.synthetic import non_xray

    det, rng = _fitted_detector()
    chest, typical = _chest_like(rng), rng.standard_normal(6)
    layout, warnings = det.check(chest, typical)
    assert layout.reasons == () and layout.excess < 1 and warnings == []
    layout, _ = det.check(non_xray("document", 48, rng).astype(np.float32), typical)
    assert layout.reasons == (PIXEL_REASON,) and layout.excess > 1
    checker = (np.indices((48, 48)).sum(0) // 6 % 2).astype(np.float32)
    assert det.check(checker, typical)[0].reasons == (PIXEL_REASON,)
    # A chest film whose features sit at the edge, then far outside: assessed with a graded warning.
    direction = rng.standard_normal(6)
    direction /= np.linalg.norm(direction)
    scale = lambda t: det.feat_mean + direction / np.sqrt(direction @ det.feat_precision @ direction) * t  # noqa: E731
    mild = scale((det.feature_threshold + det.feature_threshold_strong) / 2)
    assert det.check(chest, mild)[1] == [UNUSUAL_WARNING]
    assert det.check(chest, scale(det.feature_threshold_strong * 1.5))[1] == [VERY_UNUSUAL_WARNING]
    layout, warnings = det.check(chest, scale(det.feature_threshold_strong * 2))
    verdict = assess(load_image(inputs.png_gray8()), layout.reasons, warnings)
    assert verdict.assessed and verdict.warnings == (VERY_UNUSUAL_WARNING,)


def test_guard_thresholds_come_from_held_out_scores_and_hold_their_rate_on_new_films():
    """Training scores sit lower than new films' (the model and the PCA fitted them): the in-sample 99.5 %
    quantile would flag about 10 % of new films; the held-out calibration keeps the intended rate."""
    from cxr_core.safety.ood import ThresholdRule, cross_fitted_flags

    rng = np.random.default_rng(3)
    training = rng.gamma(4.0, 1.0, 4000)  # in-sample: tighter
    held_out, new_films = rng.gamma(4.0, 1.5, 1500), rng.gamma(4.0, 1.5, 20000)
    rule = ThresholdRule(0.995)
    in_sample_rate = float((new_films > rule.calibrate(training)).mean())
    held_out_rate = float((new_films > rule.calibrate(held_out)).mean())
    assert in_sample_rate > 0.05
    assert held_out_rate <= 0.01
    groups = [f"p{i // 3}" for i in range(len(held_out))]
    assert cross_fitted_flags(held_out, groups, rule).mean() <= 0.012  # the estimate the card reports
    assert ThresholdRule(0.99, 2.0).calibrate(held_out) == pytest.approx(2 * np.quantile(held_out, 0.99))
    for bad in (ThresholdRule, lambda q: ThresholdRule(0.99, q)):
        with pytest.raises(ValueError, match="0.2"):
            bad(0.2)


@pytest.mark.parametrize("age, birth, study, years", [("034Y", None, None, 34), ("018M", None, None, 1.5),
                                                       ("003W", None, None, 3 * 7 / 365.25), ("", "20200101", "20240102", 4.0),
                                                       ("junk", "2020", "20240102", None), (None, None, None, None)])
def test_dicom_age_from_patient_age_or_dates(age, birth, study, years):
    got = dicom_age_years(age, birth, study)
    assert (got is None) if years is None else got == pytest.approx(years, abs=0.01)


def test_age_warning_outside_one_to_five_years():
    assert age_warning(3.0) is None and age_warning(None) is None
    assert "34 years" in age_warning(34.0) and "validated population" in age_warning(34.0)
    assert "6 months" in age_warning(0.5)
    image = load_image(inputs.dicom(age="034Y"))
    assert image.metadata["age_years"] == 34.0 and "PatientAge" not in image.metadata


def test_adult_image_check_separates_two_populations_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48] / 48

    def films(n, lung_width):  # "adults": wider lung fields filling the frame
        out = []
        for _ in range(n):
            img = np.full((48, 48), 0.75)
            for cx in (0.3, 0.7):
                img[((xx - cx) / lung_width) ** 2 + ((yy - 0.5) / 0.35) ** 2 < 1] = 0.25
            out.append(img + 0.03 * rng.standard_normal((48, 48)))
        return np.stack(out).astype(np.float32)

    kids, adults = films(120, 0.12), films(40, 0.2)
    check, report = fit_adult_check(kids, [f"k{i // 2}" for i in range(120)], adults, [f"a{i // 2}" for i in range(40)])
    assert report["cv_adult_detection_rate"] > 0.9 and report["cv_pediatric_false_alarm_rate"] <= 0.05
    check.save(tmp_path / "population.npz")
    again = AdultImageCheck.load(tmp_path / "population.npz")
    np.testing.assert_allclose(again.scores(adults), check.scores(adults))
    assert AdultImageCheck.load(tmp_path / "missing.npz") is None


def _bare_dicom_with_a_long_header() -> bytes:
    """A CT written without preamble or file meta whose private sequence runs past the first 64 KiB."""
    import io

    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset
    from pydicom.sequence import Sequence

    ds = dcmread(io.BytesIO(inputs.dicom(file_meta=False, modality="CT", sop_class=CT, body_part="HEAD")), force=True)
    items = []
    for _ in range(30):
        item = Dataset()
        item.add_new(0x00291010, "OB", bytes(3000))
        items.append(item)
    ds.add_new(0x00291020, "SQ", Sequence(items))
    ds[0x00291020].is_undefined_length = True
    buf = io.BytesIO()
    fp = DicomFileLike(buf)
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    assert len(buf.getvalue()) > 64 * 1024
    return buf.getvalue()


def test_folders_are_walked_by_content(tmp_path):
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    (tmp_path / "IM0001").write_bytes(inputs.dicom())  # extensionless, as CDs export
    (tmp_path / "bare").write_bytes(inputs.dicom(file_meta=False))  # no preamble, no file meta
    (tmp_path / "bare_ct").write_bytes(_bare_dicom_with_a_long_header())
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (tmp_path / "scan.xml").write_text("<xml/>")
    cd = tmp_path / "cd"
    cd.mkdir()
    (cd / "src.dcm").write_bytes(inputs.dicom())
    fs = FileSet()
    fs.add(dcmread(cd / "src.dcm"))
    fs.write(cd / "media")
    (cd / "src.dcm").unlink()
    (tmp_path / "junk.bin").write_bytes(b"\x01\x02not an image" * 10)
    found = collect_inputs([tmp_path])
    names = [p.name for _, p in found.items]
    # + the File-set's referenced image; an unknown binary is an input too, so it fails with its reason
    assert {"IM0001", "bare", "bare_ct", "junk.bin"} <= set(names) and len(names) == 5
    assert found.skipped == 4  # notes.txt, .DS_Store, scan.xml and the DICOMDIR itself
    ct = load_image(tmp_path / "bare_ct")
    assert ct.metadata["Modality"] == "CT" and not assess(ct).assessed
    from_dicomdir = collect_inputs([cd / "media" / "DICOMDIR"])
    assert len(from_dicomdir.items) == 1 and load_image(from_dicomdir.items[0][1]).format == "DICOM"
    assert load_image(tmp_path / "bare").pixels.shape == (inputs.SIZE, inputs.SIZE)


def test_cli_app_table_csv_and_pdf_agree_on_a_refused_input(tiny_registry, tmp_path):
    from cxr_app.viewer_ui import csv_bytes, results_table
    from cxr_core.model.gradcam import overlay
    from cxr_core.model.predict import Predictor
    from cxr_core.reports.pdf import build_pdf

    from testkit.readers import pdf_text

    ct = tmp_path / "ct_slice"
    ct.write_bytes(inputs.dicom(modality="CT", sop_class=CT))
    res = run_cli(["predict", str(tmp_path), "--json"], cli_env(tiny_registry))
    cli = json.loads(res.stdout.splitlines()[0])
    assert res.returncode == 0 and cli["assessed"] is False and cli["label"] is None
    assert cli["pneumonia_probability"] is None and "'CT'" in cli["not_assessed_reasons"][0]
    assert "1 not assessed" in res.stderr

    pred = Predictor(tiny_registry.active().path).predict(ct.read_bytes(), name="ct_slice")
    assert pred.to_json() | {"file": cli["file"]} == cli  # the same result object
    table = results_table([pred], ["abc"], "model", "2026-01-01T00:00:00Z")
    row = table.iloc[0]
    assert row["label"] == "not assessed" and row["P(pneumonia)"] is None and "'CT'" in row["not assessed because"]
    assert b"not assessed" in csv_bytes(table)
    text = pdf_text(build_pdf(pred, overlay(pred.image.pixels, pred.heatmap), tiny_registry.active().card))
    assert b"Not assessed" in text and b"'CT'" in text and b"P(pneumonia)" not in text


def test_a_model_without_its_guards_says_so_on_every_result(tiny_model_dir, tmp_path):
    import shutil

    from cxr_core.model.predict import Predictor

    bare = tmp_path / "model"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "ood.npz").unlink()
    (bare / "population.npz").unlink(missing_ok=True)
    pred = Predictor(bare).predict(inputs.jpeg_gray())
    assert any("no current out-of-distribution detector" in w for w in pred.warnings)
    assert any("no population check" in w for w in pred.warnings)


def test_the_tiny_model_refuses_or_warns_on_foreign_images_and_assesses_its_training_images(tiny_predictor, tiny_data):
    """End to end through Predictor: noise, a document and a checkerboard are refused by the layout or the
    chest-appearance check or warned by the feature check, each with its reason; the films the model was built on
    stay assessed."""
    import cv2

    from cxr_core.safety.appearance import REASON, WHY
    from cxr_core.safety.ood import PIXEL_REASON, UNUSUAL_WARNING, VERY_UNUSUAL_WARNING

    from testkit.synthetic import non_xray

    rng = np.random.default_rng(5)
    for kind in ("noise", "document", "checker"):
        png = cv2.imencode(".png", (non_xray(kind, 64, rng) * 255).astype(np.uint8))[1].tobytes()
        pred = tiny_predictor.predict(png, name=kind)
        assert pred.error is None and pred.out_of_distribution, kind
        if pred.assessed:
            assert {UNUSUAL_WARNING, VERY_UNUSUAL_WARNING} & set(pred.warnings), (kind, pred.warnings)
        else:
            known = {PIXEL_REASON, *(REASON.format(why=why) for why in WHY.values())}
            assert pred.not_assessed_reasons and set(pred.not_assessed_reasons) <= known, (kind, pred.not_assessed_reasons)
            assert pred.label is None
    films = sorted(tiny_data.rglob("*.png")) + sorted(tiny_data.rglob("*.jpeg"))
    preds = [tiny_predictor.predict(f) for f in films]
    assert films and all(p.assessed for p in preds)


def test_the_detector_calibrates_its_thresholds_on_the_held_out_films_it_is_given():
    """The model's features of its own training films are tighter than of new films; thresholds taken from the
    training films would warn on far more new films than intended."""
    from cxr_core.safety.ood import OODDetector

    rng = np.random.default_rng(4)
    films = lambda n: np.stack([_chest_like(rng) for _ in range(n)])  # noqa: E731
    det = OODDetector.fit(films(150), rng.normal(0, 1.0, (150, 4)), films(150), rng.normal(0, 1.4, (150, 4)))
    new_films = det.findings(films(300), rng.normal(0, 1.4, (300, 4)))
    assert new_films["unusual"].mean() <= 0.03 and not new_films["refused"].any()
    in_sample = np.quantile(det.feature_scores(rng.normal(0, 1.0, (150, 4))), 0.995)
    assert det.feature_threshold > in_sample * 1.15
