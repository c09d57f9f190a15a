"""Analyse and keep: the one path from an image to a case that the CLI, the Viewer, PACS and the listener share."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from cxr_core.cases.analyse import analyse_and_store, keep_case
from cxr_core.errors import StorageError

from testkit import inputs


def test_an_image_becomes_one_case_of_the_predictors_model_and_a_second_upload_finds_it(tiny_predictor):
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open()
    data = inputs.png_gray8(seed=3)
    first = analyse_and_store(data, "a.png", tiny_predictor, tiny_predictor.model_point, store, actor="  Dr A ")
    again = analyse_and_store(data, "b.png", tiny_predictor, tiny_predictor.model_point, store, actor="Dr B")
    assert first.new and not again.new and first.case_id == again.case_id
    case = store.get(first.case_id)
    assert case["model_id"] == tiny_predictor.card.model_id == tiny_predictor.model_dir.name
    assert [(e["actor"], e["action"]) for e in store.audit() if e["case_id"] == first.case_id] == [("Dr A", "create")]


def test_an_unreadable_input_or_no_store_makes_no_case(tiny_predictor):
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open()
    broken = analyse_and_store(b"not an image", "x.png", tiny_predictor, tiny_predictor.model_point, store)
    assert broken.prediction.error and broken.case_id is None
    unsaved = analyse_and_store(inputs.png_gray8(seed=4), "y.png", tiny_predictor, tiny_predictor.model_point)
    assert unsaved.prediction.error is None and unsaved.case_id is None and store.list() == []


def test_a_failing_case_database_is_a_storage_error_that_names_no_file(tiny_predictor):
    class LostConnection:
        def add(self, *args, **kwargs):
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    pred = tiny_predictor.predict(inputs.png_gray8(seed=5), name="patient-name.png")
    with pytest.raises(StorageError, match="case database failed") as err:
        keep_case(pred, b"x", tiny_predictor, LostConnection())
    assert "patient-name" not in str(err.value)
