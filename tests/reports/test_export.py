"""The site operating point on the result's reports: it decides, the JSON, the CSV row and the PDF name it, and
reverting it returns every surface to the model's own threshold, audited. (The DICOM results at a site point:
tests/dicom/test_site_point_results.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.errors import CXRError
from testkit import inputs
from testkit.readers import pdf_text


def test_the_site_operating_point_decides_and_every_surface_says_so(store, tiny_predictor):
    from cxr_core.reports.export import result_row
    from cxr_core.model.operating_point import resolve
    from cxr_core.reports.pdf import build_pdf

    predictor = tiny_predictor  # shared by the session: nothing here may change it
    model_id = predictor.card.model_id
    with pytest.raises(CXRError, match="1.5"):
        store.record_site_point(model_id, 1.5, "Dr Site")
    with pytest.raises(CXRError, match="author"):
        store.record_site_point(model_id, 0.3, " ")
    assert resolve(predictor.card, store).source == "model"
    store.record_site_point(model_id, 0.987, "Dr Site", {"n": 40})
    point = resolve(predictor.card, store)
    assert (point.threshold, point.source, point.set_by, point.evidence_dict) == (0.987, "site", "Dr Site", {"n": 40})
    pred = predictor.predict(inputs.png_gray8(), point=point)
    assert (pred.threshold, pred.threshold_source) == (0.987, "site")
    assert result_row(pred, 1, "abc", model_id, "now")["threshold_source"] == "site"
    assert pred.to_json()["threshold_source"] == "site"
    assert b"threshold = 0.987 \\(the site's operating point\\)" in pdf_text(build_pdf(pred, np.zeros((8, 8, 3), np.uint8), predictor.card))
    store.record_site_point(model_id, None, "Dr Site")
    assert resolve(predictor.card, store) == predictor.model_point
    assert predictor.predict(inputs.png_gray8()).threshold_source == "model"  # the default never moved
    assert [e["action"] for e in store.audit()] == ["site-threshold", "site-threshold"]
