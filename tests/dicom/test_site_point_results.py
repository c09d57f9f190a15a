"""A site point either side of an image's P(pneumonia) flips the decision on every surface: the JSON, the CSV row,
the PDF, and the DICOM results (the TID 1500 SR's finding, the Parametric Map's decision, the Secondary Capture's
burned-in line), with the Grad-CAM map on the source's pixel grid whatever the decision."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from testkit import inputs
from testkit.readers import pdf_text


@pytest.mark.parametrize("side", ["above", "below"])
def test_a_site_point_either_side_of_p_flips_the_decision_on_every_surface(store, tiny_model_dir, tiny_data, side):
    """Just above an image's P(pneumonia) the site point reads NORMAL, just below PNEUMONIA: in the JSON, the
    CSV row, the PDF, the SR's finding code, the decision the Parametric Map names and the SC's burned-in line
    alike; the map's values are the heatmap on the source's grid whatever the decision."""
    import highdicom as hd
    from pydicom import dcmread
    from pydicom.sr.coding import Code

    from cxr_core.dicom.results import result_objects
    from cxr_core.dicom.sc import CAPTION, captioned, result_line
    from cxr_core.reports.export import result_row
    from cxr_core.model.gradcam import on_image, overlay
    from cxr_core.model.operating_point import resolve
    from cxr_core.model.predict import Predictor
    from cxr_core.reports.pdf import build_pdf

    film = cv2.imdecode(np.frombuffer(inputs.training_like(tiny_data, 1), np.uint8), cv2.IMREAD_GRAYSCALE)
    source = inputs.dicom(array=film.astype(np.uint16) * 16)
    predictor = Predictor(tiny_model_dir)
    p = predictor.predict(source).pneumonia_probability
    assert p is not None and 0.01 < p < 0.99
    threshold, expected = (p + 0.005, "NORMAL") if side == "above" else (p - 0.005, "PNEUMONIA")
    store.record_site_point(predictor.card.model_id, threshold, "Dr Site")
    pred = predictor.predict(source, point=resolve(predictor.card, store))
    assert (pred.label, pred.threshold_source) == (expected, "site")
    assert pred.to_json()["label"] == expected
    assert result_row(pred, 1, "abc", "m", "now")["label"] == expected
    assert f"Model output: {expected}".encode() in pdf_text(build_pdf(pred, overlay(pred.image.pixels, pred.heatmap),
                                                               predictor.card))
    sr, pm, sc = result_objects(source, pred, predictor.card)
    pneumonia = Code("233604007", "SCT", "Pneumonia")
    [group] = hd.sr.srread(_as_file(sr)).content.get_image_measurement_groups(finding_type=pneumonia)
    [finding] = group.get_qualitative_evaluations(name=pneumonia)
    assert finding.value.value == ("52101004" if expected == "PNEUMONIA" else "2667000")  # SNOMED CT Present / Absent
    [threshold_item] = [m for m in group.get_measurements() if m.name.value == "122411"]
    assert threshold_item.value == pytest.approx(threshold)
    assert any("the site's operating point" in t for t in _sr_texts(sr, "111002"))  # DCM Algorithm Parameters
    etiology = [e.value.value for e in group.get_qualitative_evaluations() if e.name.value == "134198009"]
    assert etiology == {None: [], "UNCERTAIN": ["373068000"], "BACTERIAL": ["409822003"],
                        "VIRAL": ["49872002"]}[pred.subtype]
    assert (pred.subtype is None) == (expected == "NORMAL")
    assert pm.ContentDescription == f"{expected}: P(pneumonia) {p:.3f}, threshold {threshold:.3f} (site)"
    np.testing.assert_array_equal(dcmread(_as_file(pm)).pixel_array, on_image(pred.heatmap, film.shape))
    line = result_line(pred)
    assert line.startswith(expected) and "site" in line
    plain = overlay(pred.image.pixels, pred.heatmap)
    np.testing.assert_array_equal(dcmread(_as_file(sc)).pixel_array, captioned(plain, (line, *CAPTION)))
    flipped = line.replace(expected, "PNEUMONIA" if expected == "NORMAL" else "NORMAL", 1)
    assert not np.array_equal(captioned(plain, (line, *CAPTION)), captioned(plain, (flipped, *CAPTION)))


def _sr_texts(node, code_value: str) -> list[str]:
    """The TEXT values anywhere in an SR's tree whose concept name has `code_value`."""
    found = []
    for item in node.get("ContentSequence", []):
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == code_value:
            found.append(item.TextValue)
        found += _sr_texts(item, code_value)
    return found


def _as_file(ds):
    import io

    from cxr_core.dicom.results import to_bytes

    return io.BytesIO(to_bytes(ds))
