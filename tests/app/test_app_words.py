"""Plain words, everywhere (issue 35, item 11), and the workflow items an AppTest can show: every page is rendered
in its main states and its visible text is searched for what a clinician should never read ("None", an errno, a
Python exception's class name, "Error:", a dict's repr, a rule's code name). Also: the sample film (item 10), the
site figures (3), the reading at the current point (4), the display (5), the Training page (6) and the export (7)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from testkit import inputs
from tests.conftest import PROJECT_ROOT
from testkit.reviews import other_label, review_as

APP = str(PROJECT_ROOT / "app.py")
FORBIDDEN = [
    (re.compile(r"\bNone\b"), "None"),
    (re.compile(r"Errno"), "an errno"),
    (re.compile(r"Error:"), "Error:"),
    (re.compile(r"\b\w*(Error|Exception)\b"), "an exception class name"),
    (re.compile(r"\{\s*'[^']*'\s*:"), "a dict repr"),
    (re.compile(r"min_per_class|sensitivity_floor"), "a rule's code name"),
    (re.compile(r"Traceback"), "a traceback"),
]
TEXT_KINDS = ("title", "header", "subheader", "markdown", "caption", "text", "error", "warning", "info", "success",
              "exception", "code", "latex")
LABELLED_KINDS = ("button", "checkbox", "toggle", "selectbox", "multiselect", "radio", "text_input", "slider",
                  "number_input", "date_input", "text_area", "expander", "tab", "download_button")


def visible_text(at: AppTest) -> list[str]:
    """Everything a reader can read on the page and in its sidebar: texts, labels, chosen values, metrics and the
    cells of every table (an empty cell of a table shows as "None" on screen, so it counts as one)."""
    out: list[str] = []
    for kind in TEXT_KINDS:
        out += [str(e.value) for e in at.get(kind)]
    for kind in LABELLED_KINDS:
        for e in at.get(kind):
            out.append(str(getattr(e, "label", "") or getattr(e.proto, "label", "")))
            if kind in ("selectbox", "radio"):
                out += [str(o) for o in getattr(e, "options", [])]
    for m in at.get("metric"):
        out += [m.label, str(m.value), str(m.proto.body), str(m.proto.delta)]
    for frame in [d.value for d in at.get("arrow_data_frame")] + [t.value for t in at.get("table")]:
        if isinstance(frame, pd.DataFrame):
            out += ["None" if pd.isna(v) else str(v) for v in frame.astype(object).to_numpy().ravel()]
            out += [str(c) for c in frame.columns]
    return out


def assert_plain(at: AppTest, where: str) -> None:
    assert not at.exception, f"{where}: {at.exception}"
    bad = [(what, text) for text in visible_text(at) for pattern, what in FORBIDDEN if pattern.search(text)]
    assert not bad, f"{where}: " + "; ".join(f"{what} in {text[:160]!r}" for what, text in bad[:5])


@pytest.fixture
def app_env(monkeypatch, tiny_registry, tmp_path):
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    monkeypatch.setenv("CXR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CXR_WORKLIST_REFRESH_S", "0")
    monkeypatch.chdir(PROJECT_ROOT)
    return tiny_registry


def _app(page: str | None = None, case: int | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if case is not None:
        at.query_params["case"] = str(case)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def _cases(tiny_predictor) -> dict[str, int]:
    """Stored cases of every kind: an assessed film, a reviewed one, a DICOM, a refused photograph."""
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open()
    model_id = tiny_predictor.card.model_id
    films = {"film": inputs.png_gray8(seed=1), "reviewed": inputs.png_gray8(seed=2), "dicom": inputs.dicom(),
             "photo": inputs.photo_like()}
    ids = {k: store.add(tiny_predictor.predict(d, name=f"{k}.x"), d, model_id)[0] for k, d in films.items()}
    store.review(ids["reviewed"], "disagree", other_label(store.get(ids["reviewed"])), "Dr Words", "patchy")
    return ids


def test_the_viewer_speaks_plainly_empty_and_on_every_kind_of_case(app_env, tiny_predictor):
    assert_plain(_app(), "the empty Viewer")
    for kind, case_id in _cases(tiny_predictor).items():
        assert_plain(_app(case=case_id), f"the Viewer on a {kind} case")


def test_the_worklist_and_its_refused_exports_speak_plainly(app_env, tiny_predictor):
    _cases(tiny_predictor)
    at = _app("app_pages/worklist.py")
    assert_plain(at, "the Worklist")
    next(e for e in at.expander if e.label == "Audit trail")  # the audit in words (checked above with the page)
    at.button(key="wl_export").click().run()  # no reader
    assert_plain(at, "an export without a reader")
    at.sidebar.text_input(key="reader_input").input("Dr Words").run()
    at.text_input(key="wl_export_dir").input("/proc/not-here").run()
    at.button(key="wl_export").click().run()  # an unwritable folder
    assert any(e.value.startswith("Export failed.") for e in at.error), [e.value for e in at.error]
    assert_plain(at, "an export to an unwritable folder")


@pytest.mark.parametrize("page", ["app_pages/pacs.py", "app_pages/training.py", "app_pages/experiments.py",
                                  "app_pages/dashboards.py"])
def test_the_other_pages_speak_plainly(app_env, page):
    assert_plain(_app(page), page)


def test_a_refused_site_point_speaks_plainly(app_env, site_data):
    from cxr_core.validation.evaluation import evaluate_folder

    evaluate_folder(app_env.active().path, site_data, n_boot=0)  # a local evaluation of 48 films: too few
    at = _app("app_pages/dashboards.py")
    box = next(s for s in at.selectbox if s.label == "Evaluation")
    box.set_value(next(o for o in box.options if o != "internal validation")).run()
    at.sidebar.text_input(key="reader_input").input("Dr Words").run()
    at.checkbox(key="site_confirm").check().run()
    at.button(key="site_save").click().run()
    assert any("too few local films" in e.value for e in at.error)
    assert_plain(at, "a refused site point")


def test_an_unreachable_pacs_speaks_plainly(app_env):
    at = _app("app_pages/pacs.py")
    at.text_input(key="pacs_url").input("http://127.0.0.1:9/dicom-web")
    next(b for b in at.button if "List radiograph studies" in b.label).click().run()
    assert at.error
    assert_plain(at, "an unreachable PACS")


def test_a_sample_film_in_one_click_marked_as_from_the_training_set(app_env):
    at = _app()
    assert "from the training set: for trying the interface, not for judging the model" in \
        " ".join(c.value for c in at.caption)
    assert sorted(at.selectbox(key="sample_pick").options) == ["Sample: bacterial 1", "Sample: normal 1",
                                                                "Sample: normal 2", "Sample: viral 1"]
    at.selectbox(key="sample_pick").set_value("Sample: viral 1").run()
    at.button(key="sample_try").click().run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("**Case 1: Sample: viral 1") for m in at.markdown)
    # a result: the tiny test model (trained on phantoms) may refuse a real film as unlike its training data
    assert any(m.label == "P(pneumonia)" for m in at.metric) or any("Not assessed" in e.value for e in at.error)
    assert_plain(at, "a sample film's result")


def test_the_samples_ship_renamed_with_their_attribution():
    folder = PROJECT_ROOT / "assets" / "samples"
    films = sorted(p.name for p in folder.glob("*.jpeg"))
    assert films == ["bacterial-1.jpeg", "normal-1.jpeg", "normal-2.jpeg", "viral-1.jpeg"]
    assert not any(re.match(r"(IM-|person\d)", f) for f in films)  # not the data set's file names
    attribution = (folder / "ATTRIBUTION.md").read_text()
    for needed in ("CC BY 4.0", "10.17632/rscbjbr9sj.2", "Kermany", "Zhang", "Goldbaum", "Mendeley Data",
                   "not for judging the model"):
        assert needed in attribution


def test_site_figures_only_from_an_evaluation_meeting_the_rules_with_their_label_source(app_env, tiny_predictor,
                                                                                         monkeypatch):
    """8 reviewed cases exported and evaluated: no figures, "too few local films to report (n = 8; 50 per class
    needed)"; with the deployment's minimum at 4, figures that say readers saw the model's answer."""
    from cxr_core.cases.store import CaseStore
    from cxr_core.validation.evaluation import evaluate_folder

    store = CaseStore.open()
    model_id = tiny_predictor.card.model_id
    for i in range(8):
        data = inputs.png_gray8(seed=40 + i)
        case_id, _ = store.add(tiny_predictor.predict(data, name="x.png"), data, model_id)
        review_as(store, case_id, "NORMAL" if i % 2 else "BACTERIAL", "Dr Site")
    export = store.export("site-check", reviewed_only=True, actor="Dr Site")
    assert export["NORMAL"] == 4 and export["PNEUMONIA"] == 4
    evaluate_folder(app_env.active().path, _exported("site-check"), n_boot=0)
    at = _app()
    sidebar = " ".join(w.value for w in at.sidebar.warning)
    assert "too few local films to report (n = 8; 50 per class needed)" in sidebar
    assert not any(m.value.startswith("**At this site**") for m in at.sidebar.markdown)
    monkeypatch.setenv("CXR_SITE_MIN_PER_CLASS", "4")
    at = _app()
    assert any(m.value.startswith("**At this site**") for m in at.sidebar.markdown)
    said = " ".join(c.value for c in at.sidebar.caption)
    assert "readers saw the model's answer" in said and "sensitivity" in said and "n = 8" in " ".join(
        m.value for m in at.sidebar.markdown)
    assert_plain(at, "the site's figures")


def _exported(name: str):
    from cxr_core.settings import current

    return current().layout.exports / name


def test_a_relative_export_goes_under_cxr_home_exports(app_env, tiny_predictor, own_app_home):
    ids = _cases(tiny_predictor)
    assert ids
    at = _app("app_pages/worklist.py")
    at.sidebar.text_input(key="reader_input").input("Dr Export").run()
    at.text_input(key="wl_export_dir").input("relative-site").run()
    at.button(key="wl_export").click().run()
    assert not at.exception and any("Exported" in s.value for s in at.success)
    assert (own_app_home / "exports" / "relative-site" / "PNEUMONIA").is_dir()
    assert not (PROJECT_ROOT / "relative-site").exists()
    assert (own_app_home / "exports" / "relative-site" / "label_source.json").is_file()


def test_a_stored_decision_says_how_it_reads_at_the_current_point(app_env, tiny_predictor):
    """The site point moves past a stored case's P: the case keeps its decision, and the Viewer, the Worklist and
    the PDF say plainly how it reads now."""
    from cxr_core.cases.store import CaseStore
    from cxr_core.model.operating_point import reading_now, resolve

    store = CaseStore.open()
    data = inputs.png_gray8(seed=5)
    pred = tiny_predictor.predict(data, name="x.png")
    case_id, _ = store.add(pred, data, tiny_predictor.card.model_id)
    p = pred.pneumonia_probability
    moved = min(0.999, p + 0.01) if pred.label == "PNEUMONIA" else max(0.001, p - 0.01)
    store.record_site_point(tiny_predictor.card.model_id, moved, "Dr Site", {"n": 200})
    other = "NORMAL" if pred.label == "PNEUMONIA" else "PNEUMONIA"
    expected = f"At the site's current point ({moved:.3f}) this film reads {other}."
    assert reading_now(True, p, pred.label, "m", resolve(tiny_predictor.card, store), "m") == expected
    at = _app(case=case_id)
    assert any(expected in w.value for w in at.warning), [w.value for w in at.warning]
    assert store.get(case_id)["label"] == pred.label  # the stored decision stays
    at = _app("app_pages/worklist.py")
    table = at.dataframe[0].value
    assert dict(zip(table["case"], table["now"]))[case_id] == "reads otherwise"
    assert_plain(at, "a worklist with a changed reading")


def test_the_display_puts_p_against_the_threshold_first_and_the_subtype_within_pneumonia(tiny_predictor):
    import json

    def page(model_dir: str) -> None:
        import numpy as np

        from cxr_app.viewer_ui import Display, prediction_panel
        from cxr_core.inputs.imaging import load_image
        from cxr_core.model.folder import ModelFolder
        from cxr_core.model.predict import Prediction
        from testkit import inputs as made

        image = load_image(made.png_gray8(seed=3))
        normal = Prediction(file="n", label="NORMAL", pneumonia_probability=0.625, threshold=0.737, assessed=True,
                            class_probabilities={"NORMAL": 0.375, "BACTERIAL": 0.2, "VIRAL": 0.425},
                            heatmap=np.zeros((7, 7), np.float32), image=image)
        pneumonia = Prediction(file="p", label="PNEUMONIA", subtype="VIRAL", pneumonia_probability=0.9,
                               threshold=0.737, assessed=True, heatmap=np.zeros((7, 7), np.float32), image=image,
                               class_probabilities={"NORMAL": 0.1, "BACTERIAL": 0.3, "VIRAL": 0.6})
        card = ModelFolder(model_dir).card()
        prediction_panel(normal, 0, card, Display(), False)
        prediction_panel(pneumonia, 1, card, Display(), False)

    at = AppTest.from_function(page, args=(str(tiny_predictor.model_dir),), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = [c for c in charts if any(t.get("type") == "bar" for t in c["data"])]
    texts = [t.get("text") for c in bars for t in c["data"]]
    assert ["0.625"] in texts and ["0.900"] in texts  # P(pneumonia) first, against the threshold line
    assert not any("normal" in str(t).lower() for t in texts)  # NORMAL never competes with a subtype
    assert [["bacterial 33%"], ["viral 67%"]] == [t for t in texts if t and "%" in t[0]]  # only for the PNEUMONIA
    assert [m.value for m in at.metric] == ["0.625", "0.900"]


def test_pacs_studies_lead_with_date_and_description_and_results_with_label_and_p(app_env, monkeypatch):
    """Dates formatted, UIDs shortened and last; results lead with the label and P (item 9)."""
    import cxr_core.dicom.pacs as pacs
    from cxr_core.dicom.instance import AnalysedInstance
    from cxr_core.model.predict import Prediction

    uid = "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012345678901234"
    monkeypatch.setattr(pacs, "find_studies", lambda server, since: [
        {"study_uid": uid, "date": "20261205", "time": "093015.123", "modalities": ["DX"], "description": "Chest PA",
         "instances": 1}])
    sop = uid + ".7"
    monkeypatch.setattr(pacs, "analyse_study", lambda *a, **k: [AnalysedInstance(sop, Prediction(
        file="x", label="PNEUMONIA", pneumonia_probability=0.91, assessed=True), case_id=12)])
    at = _app("app_pages/pacs.py")
    at.text_input(key="pacs_url").input("http://pacs.example/dicom-web")
    next(b for b in at.button if "List radiograph studies" in b.label).click().run()
    studies = at.dataframe[0].value
    assert list(studies.columns)[0] == "date" and list(studies.columns)[-1] == "study"
    assert studies.iloc[0]["date"] == "2026-12-05" and studies.iloc[0]["time"] == "09:30"
    assert studies.iloc[0]["study"] == "..." + uid[-12:]
    at.multiselect(key="pacs_chosen").set_value([uid]).run()
    next(b for b in at.button if b.label.startswith("Analyse 1")).click().run()
    results = at.dataframe[-1].value
    assert list(results.columns)[:2] == ["result", "P(pneumonia)"] and list(results.columns)[-2:] == ["study", "instance"]
    assert results.iloc[0]["result"] == "PNEUMONIA" and results.iloc[0]["P(pneumonia)"] == "0.910"
    assert results.iloc[0]["instance"] == "..." + sop[-12:]
    assert_plain(at, "PACS results")


def test_the_film_is_one_component_sent_pixels_only_with_window_level_in_the_browser(app_env, tiny_predictor):
    """Item 8: the film is one component (cxr_app.film_component), keyed by the film, that does window / level, zoom
    and pan in the browser: no Streamlit slider (whose step would rerun the script) is left; it is sent the film at
    most 768 px on the long side, its overlay and legend, and nothing that names the case."""
    import json

    from cxr_core.cases.store import CaseStore

    data = inputs.png_gray8(seed=11)
    case_id, _ = CaseStore.open().add(tiny_predictor.predict(data, name="secret-name.png"), data,
                                      tiny_predictor.card.model_id)
    at = _app(case=case_id)
    assert not at.exception
    films = at.get("bidi_component")
    assert len(films) == 1 and films[0].proto.component_name == "cxr_film"
    sent = json.loads(films[0].proto.json)
    assert set(sent) == {"width", "height", "grey", "overlay", "legend", "view"}
    assert 0 < max(sent["width"], sent["height"]) <= 768
    assert not [s for s in at.slider if str(s.key).startswith(("level_", "width_"))]
    image_hash = CaseStore.open().get(case_id)["image_hash"]
    for name in ("secret-name", image_hash[:12], f"Case {case_id}"):
        assert name not in films[0].proto.json and name not in films[0].proto.id
