"""Every surface records who acted and which model answered: the CLI, the Viewer, the Worklist, the PACS page and the
listener in the audit trail and the case; the PDF, the CSV, the SR and the SC in what they carry. Driven by the
controlled model (testkit/controlled.py), whose id is not the tiny trained model's."""

from __future__ import annotations

import io

import numpy as np
import pytest

from testkit import controlled as C
from tests.conftest import PROJECT_ROOT, cli_env, run_cli
from testkit.harness import c_store, free_port
from testkit.readers import FakePacs, pdf_words, sr_items

APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture
def app_env(monkeypatch, controlled_registry):
    monkeypatch.setenv("CXR_REGISTRY", str(controlled_registry.root))
    monkeypatch.chdir(PROJECT_ROOT)
    return controlled_registry


def _creates(store) -> list[tuple[str, str]]:
    return [(e["actor"], e["model_id"]) for e in store.audit() if e["action"] == "create"]


def test_the_cli_records_the_reader_and_the_model(controlled_registry, store, tmp_path):
    model_id = controlled_registry.active_id()
    films = [tmp_path / "a.png", tmp_path / "b.png"]
    films[0].write_bytes(C.png16(C.film(C.target(0.8))))
    films[1].write_bytes(C.png16(C.film(C.target(0.2), seed=1)))
    env = cli_env(controlled_registry)
    assert run_cli(["predict", str(films[0]), "--save", "--reader", "Dr Cli"], env=env).returncode == 0
    assert run_cli(["predict", str(films[1]), "--save"], env=env).returncode == 0
    assert _creates(store) == [("Dr Cli", model_id), ("unsigned", model_id)]
    listed = run_cli(["cases", "list", "--json"], env=env)
    assert listed.returncode == 0 and f'"model_id": "{model_id}"' in listed.stdout


def test_the_listener_records_its_sender_and_the_model(controlled_predictor, store):
    from pydicom import dcmread

    from cxr_core.dicom.listener import Listener, ListenerConfig

    port, results = free_port(), []
    listener = Listener(ListenerConfig(port=port, address="127.0.0.1"), controlled_predictor, store,
                        on_result=results.append).start()
    try:
        assert c_store(port, dcmread(io.BytesIO(C.dicom(C.film(C.target(0.8)))))) == 0
    finally:
        listener.stop()
    model_id = controlled_predictor.card.model_id
    [(actor, model)] = _creates(store)
    assert actor == "unsigned (listener, from MODALITY)" and model == model_id
    assert store.get(results[0].case_id)["model_id"] == model_id
    assert f"model id: {model_id}" in [v for n, v in sr_items(results[0].results[0])]


def test_pacs_analysis_records_the_reader_and_the_model(controlled_predictor, store):
    from pydicom import dcmread

    from cxr_core.dicom.pacs import analyse_study

    source = dcmread(io.BytesIO(C.dicom(C.film(C.target(0.8)))))
    [result] = analyse_study(FakePacs([source]), source.StudyInstanceUID, controlled_predictor,
                             controlled_predictor.model_point, store=store, actor="Dr Pacs")
    assert result.case_id and _creates(store) == [("Dr Pacs", controlled_predictor.card.model_id)]


def test_the_pdf_csv_sr_and_sc_carry_the_model_id(controlled_predictor, store):
    from pydicom import dcmread

    from cxr_app.viewer_ui import results_table
    from cxr_core.dicom.results import result_objects
    from cxr_core.dicom.source import result_uid
    from cxr_core.model.gradcam import overlay
    from cxr_core.reports.pdf import build_pdf

    card, model_id = controlled_predictor.card, controlled_predictor.card.model_id
    data = C.dicom(C.film(C.target(0.8)))
    pred = controlled_predictor.predict(data)
    case_id, _ = store.add(pred, data, model_id, actor="Dr Pdf")
    words = pdf_words(build_pdf(pred, overlay(pred.image.pixels, pred.heatmap), card, case=store.get(case_id)))
    assert model_id in words.replace(" ", "") and f"Case {case_id}" in words
    table = results_table([pred], ["abc"], model_id, "now", case_numbers=[case_id])
    assert list(table["model_id"]) == [model_id] and list(table["case"]) == [case_id]
    assert model_id in table.to_csv(index=False)
    sr, _, sc = result_objects(data, pred, card)  # SR, parametric map, SC
    assert f"model id: {model_id}" in [v for n, v in sr_items(sr)]
    source = dcmread(io.BytesIO(data)).SOPInstanceUID
    assert sc.SOPInstanceUID == result_uid(source, model_id, "SC")  # the SC's identity is this model's result
    assert sc.SeriesInstanceUID == result_uid(source, model_id, "SC series")


def test_the_viewer_review_records_the_reader_and_the_cases_model(app_env, controlled_predictor, store):
    from streamlit.testing.v1 import AppTest

    data = C.png16(C.film(C.target(0.8)))
    case_id, _ = store.add(controlled_predictor.predict(data), data, controlled_predictor.card.model_id)
    viewer = AppTest.from_file(APP, default_timeout=120)
    viewer.query_params["case"] = str(case_id)
    viewer.run()
    assert not viewer.exception, viewer.exception
    viewer.sidebar.text_input(key="reader_input").input("Dr Viewer").run()
    viewer.radio(key="decision_0").set_value("agree")
    viewer.selectbox(key="final_0").set_value("BACTERIAL")
    next(b for b in viewer.button if b.label == "Save review").click().run()
    assert not viewer.exception, viewer.exception
    last = store.audit()[-1]
    assert (last["action"], last["actor"], last["model_id"], last["case_id"]) == \
        ("review", "Dr Viewer", controlled_predictor.card.model_id, case_id)


def test_the_worklist_removal_records_the_reader_and_the_cases_model(app_env, controlled_predictor, store):
    from streamlit.testing.v1 import AppTest

    data = C.png16(C.film(C.target(0.3)))
    case_id, _ = store.add(controlled_predictor.predict(data), data, controlled_predictor.card.model_id)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/worklist.py").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["case"]) == [case_id]
    assert controlled_predictor.card.model_id in set(at.dataframe[0].value["model"])
    at.sidebar.text_input(key="reader_input").input("Dr Worklist").run()
    # what a tick on the row records (the table's key holds the ids it shows: app_pages/worklist.py)
    at.session_state[f"wl_table_{hash((case_id,))}"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.button(key="wl_remove").click().run()
    at.button(key="wl_remove_yes").click().run()  # Remove asks first, naming the case
    assert not at.exception, at.exception
    last = store.audit()[-1]
    assert (last["action"], last["actor"], last["model_id"], last["case_id"]) == \
        ("delete", "Dr Worklist", controlled_predictor.card.model_id, case_id)


def test_the_pacs_page_records_the_reader_and_the_model(app_env, controlled_predictor, store, monkeypatch):
    from datetime import date

    from pydicom import dcmread
    from streamlit.testing.v1 import AppTest

    from cxr_core.dicom.pacs import PacsServer

    source = dcmread(io.BytesIO(C.dicom(C.film(C.target(0.8)))))
    study = {"0020000D": {"vr": "UI", "Value": [source.StudyInstanceUID]}, "00080020": {"vr": "DA", "Value": ["20240102"]},
             "00080061": {"vr": "CS", "Value": ["DX"]}}

    class Fake(FakePacs):
        def search_for_studies(self, **kw):
            return [study]

    fake = Fake([source])
    monkeypatch.setattr(PacsServer, "client", lambda self: fake)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/pacs.py").run()
    at.sidebar.text_input(key="reader_input").input("Dr Page").run()
    at.text_input(key="pacs_url").input("http://pacs.invalid/dicom-web")
    at.date_input(key="pacs_since").set_value(date(2024, 1, 1))
    at.button[0].click().run()
    assert not at.exception, at.exception
    at.multiselect(key="pacs_chosen").set_value([source.StudyInstanceUID]).run()
    at.button(key="pacs_analyse").click().run()
    assert not at.exception, at.exception
    assert _creates(store) == [("Dr Page", controlled_predictor.card.model_id)]
    model_id = controlled_predictor.card.model_id
    assert store.list()[0]["model_id"] == model_id and np.isfinite(store.list()[0]["pneumonia_probability"])
