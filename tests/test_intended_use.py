"""Intended use: refused inputs, warnings, the population check and folder discovery, on tiny inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cxr_core.discovery import collect_inputs
from cxr_core.imaging import dicom_age_years, load_image
from cxr_core.intended_use import assess
from cxr_core.population import AdultImageCheck, age_warning, fit_adult_check

from . import inputs
from .conftest import PROJECT_ROOT

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


def test_ood_reasons_refuse_and_population_warnings_only_warn():
    image = load_image(inputs.png_gray8())
    assert not assess(image, ood_reasons=["layout"]).assessed
    verdict = assess(image, population_warning="adult")
    assert verdict.assessed and verdict.warnings == ("adult",)


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
    check.save(tmp_path)
    again = AdultImageCheck.load(tmp_path)
    np.testing.assert_allclose(again.scores(adults), check.scores(adults))
    assert AdultImageCheck.load(tmp_path / "missing") is None


def test_folders_are_walked_by_content(tmp_path):
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    (tmp_path / "IM0001").write_bytes(inputs.dicom())  # extensionless, as CDs export
    (tmp_path / "bare").write_bytes(inputs.dicom(file_meta=False))  # no preamble, no file meta
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
    found = collect_inputs([tmp_path])
    names = [p.name for _, p in found.items]
    assert "IM0001" in names and "bare" in names and len(names) == 3  # + the File-set's referenced image
    assert found.skipped == 4  # notes.txt, .DS_Store, scan.xml and the DICOMDIR itself
    from_dicomdir = collect_inputs([cd / "media" / "DICOMDIR"])
    assert len(from_dicomdir.items) == 1 and load_image(from_dicomdir.items[0][1]).format == "DICOM"
    assert load_image(tmp_path / "bare").pixels.shape == (inputs.SIZE, inputs.SIZE)


def test_cli_app_table_csv_and_pdf_agree_on_a_refused_input(tiny_registry, tmp_path):
    from cxr_app.viewer_ui import csv_bytes, results_table
    from cxr_core.gradcam import overlay
    from cxr_core.predict import Predictor
    from cxr_core.report import build_pdf

    from .test_privacy_security import pdf_text

    ct = tmp_path / "ct_slice"
    ct.write_bytes(inputs.dicom(modality="CT", sop_class=CT))
    env = {**os.environ, "CXR_REGISTRY": str(tiny_registry.root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "cxr_core", "predict", str(tmp_path), "--json"], cwd=PROJECT_ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
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

    from cxr_core.predict import Predictor

    bare = tmp_path / "model"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "ood.npz").unlink()
    (bare / "population.npz").unlink(missing_ok=True)
    pred = Predictor(bare).predict(inputs.jpeg_gray())
    assert any("no out-of-distribution detector" in w for w in pred.warnings)
    assert any("no population check" in w for w in pred.warnings)
