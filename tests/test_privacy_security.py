"""Privacy and security: identifiers never leave the process; settings; concurrency."""

from __future__ import annotations

import tomllib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from cxr_core.errors import CXRError

from testkit import inputs
from testkit.readers import pdf_text
from tests.conftest import PROJECT_ROOT

SECRET_NAME, SECRET_ID = "Secretname^Patient", "ID-12345"


@pytest.fixture(scope="module")
def dicom_prediction(tiny_predictor):
    return tiny_predictor.predict(inputs.dicom(patient=SECRET_NAME), name="Secretname_Patient.dcm")


def test_identifiers_are_kept_apart_and_out_of_the_json(dicom_prediction):
    assert dicom_prediction.image.identifiers["PatientName"] == SECRET_NAME
    text = str(dicom_prediction.to_json())
    assert "Secretname^" not in text and SECRET_ID not in text
    assert not any("Patient" in k for k in dicom_prediction.image.metadata)


def test_pdf_report_has_no_identifier_and_no_file_name(dicom_prediction, tiny_predictor):
    from cxr_core.model.gradcam import overlay
    from cxr_core.reports.pdf import build_pdf

    pdf = build_pdf(dicom_prediction, overlay(dicom_prediction.image.pixels, dicom_prediction.heatmap), tiny_predictor.card)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert b"research report" in text and b"operating threshold" in text  # the text is really searched
    for secret in (b"Secretname", SECRET_ID.encode(), b"Secretname_Patient.dcm", b"20200101"):
        assert secret not in text


def test_csv_export_and_cam_png_carry_no_identifier(dicom_prediction, tmp_path):
    from cxr_app.viewer_ui import csv_bytes, results_table
    from cxr_core.cli.predict import write_cam

    csv = csv_bytes(results_table([dicom_prediction], ["0123456789ab"], "model-x", "2026-01-01T00:00:00Z"))
    assert b"Secretname^" not in csv and SECRET_ID.encode() not in csv
    assert b"Secretname_Patient" not in csv  # no original file name by default
    assert b"0123456789ab" in csv and b"model-x" in csv and b"2026-01-01T00:00:00Z" in csv
    opted_in = csv_bytes(results_table([dicom_prediction], ["0123456789ab"], "model-x", "t", include_file_name=True))
    assert b"Secretname_Patient.dcm" in opted_in
    import copy

    write_cam(tmp_path, 0, copy.copy(dicom_prediction))
    png = next(tmp_path.glob("*.png")).read_bytes()
    assert SECRET_ID.encode() not in png and b"Secretname^" not in png
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape[2] == 3


def test_streamlit_settings_keep_protections_on():
    cfg = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["enableXsrfProtection"] is True
    assert 1 <= cfg["server"]["maxUploadSize"] <= 500
    assert cfg["browser"]["gatherUsageStats"] is False


def test_typed_dataset_paths_are_resolved_and_must_be_folders(tmp_path):
    from cxr_app.state import resolve_data_dir

    assert resolve_data_dir(f"  {tmp_path}/../{tmp_path.name} ") == tmp_path.resolve()
    (tmp_path / "file.txt").write_text("x")
    for bad in ("", str(tmp_path / "file.txt"), str(tmp_path / "missing")):
        with pytest.raises(CXRError):
            resolve_data_dir(bad)


def test_concurrent_predictions_equal_sequential_and_the_model_loads_once(tiny_predictor, tiny_model_dir):
    from cxr_app import state

    rng = np.random.default_rng(0)
    from testkit.synthetic import phantom_cxr

    images = [inputs.pil_bytes(__import__("PIL.Image").Image.fromarray((phantom_cxr(96, rng, i % 3) * 255).astype(np.uint8)), "PNG")
              for i in range(16)]
    sequential = [tiny_predictor.predict(b).raw_pneumonia_probability for b in images]
    state._load_predictor.clear()
    with ThreadPoolExecutor(8) as pool:
        predictors = list(pool.map(lambda _: state._load_predictor(str(tiny_model_dir), 0.0), range(8)))
        concurrent = list(pool.map(lambda b: predictors[0].predict(b).raw_pneumonia_probability, images))
    assert len({id(p) for p in predictors}) == 1  # one model object shared by every session
    np.testing.assert_allclose(concurrent, sequential, atol=1e-6)
