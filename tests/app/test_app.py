"""Headless app tests (streamlit.testing.v1.AppTest): every page, with and without a model."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from testkit import inputs
from tests.conftest import PROJECT_ROOT

PAGES = ["app_pages/viewer.py", "app_pages/worklist.py", "app_pages/pacs.py", "app_pages/dashboards.py", "app_pages/training.py", "app_pages/experiments.py"]
APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture
def app_env(monkeypatch, tiny_registry, tmp_path):
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    monkeypatch.setenv("CXR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(PROJECT_ROOT)
    return tiny_registry


def _run(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_a_model(app_env, page):
    at = _run(page)
    assert not at.exception, at.exception
    assert any("Model in use" in m.value for m in at.sidebar.markdown)
    sidebar = [m.value for m in at.sidebar.markdown]
    assert any(m.startswith("**Internal (same hospital as training)**") for m in sidebar)  # labelled for what it is
    assert any("No local evaluation at this site yet" in w.value for w in at.sidebar.warning)
    assert any(c.value.startswith("Threshold in use:") for c in at.sidebar.caption)  # the shared preamble said it


@pytest.mark.parametrize("page", PAGES)
def test_every_page_starts_with_the_one_preamble(page):
    """The store, reader, model panel and threshold come from cxr_app.state.page_preamble, never page by page."""
    source = (PROJECT_ROOT / page).read_text()
    assert "page_preamble(" in source
    assert not any(f"{f}(" in source for f in ("case_store", "reader_name", "sidebar_model_panel", "point_in_use"))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_any_model(monkeypatch, tmp_path, page):
    monkeypatch.setenv("CXR_REGISTRY", str(tmp_path / "empty"))
    monkeypatch.setenv("CXR_RUNS_DIR", str(tmp_path / "runs"))
    at = _run(page)
    assert not at.exception, at.exception
    assert any("No model" in w.value for w in at.sidebar.warning)


def test_dashboards_without_the_dataset_on_disk(app_env, monkeypatch):
    monkeypatch.setenv("CXR_DATA_DIR", "/nonexistent/data")
    at = _run("app_pages/dashboards.py")
    assert not at.exception
    assert any(m.label == "AUC" for m in at.metric)  # from the saved scores alone
    at.button[0].click().run()  # "Evaluate" with a missing folder: a message, not a traceback
    assert not at.exception and any("not an existing folder" in e.value for e in at.error)


def test_threshold_slider_moves_the_metrics(app_env):
    at = _run("app_pages/dashboards.py")
    sens = lambda: next(m.value for m in at.metric if m.label == "Sensitivity")  # noqa: E731
    spec = lambda: next(m.value for m in at.metric if m.label == "Specificity")  # noqa: E731
    at.slider(key="threshold").set_value(0.0).run()
    assert sens() == "1.000" and spec() == "0.000"
    at.slider(key="threshold").set_value(1.0).run()
    assert float(sens()) < 1.0 and float(spec()) == 1.0


def test_viewer_panel_shows_label_overlay_and_report(tiny_predictor):
    def page(model_dir: str) -> None:
        import streamlit as st

        from cxr_app.viewer_ui import Display, prediction_panel, results_table
        from cxr_core.model.predict import Predictor
        from testkit import inputs

        predictor = Predictor(model_dir)
        dicom = inputs.dicom()
        preds = [predictor.predict(dicom, name="scan.dcm"), predictor.predict(b"", name="empty.png")]
        st.dataframe(results_table(preds, ["a", "b"], "model", "2026-01-01T00:00:00Z"))
        for i, p in enumerate(preds):
            prediction_panel(p, i, predictor.card, Display(), False, dicom_source=dicom if i == 0 else None)

    at = AppTest.from_function(page, args=(str(tiny_predictor.model_dir),), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(x.value for x in list(at.success) + list(at.error) + list(at.warning) + list(at.info))
    expected = tiny_predictor.predict(inputs.dicom(), name="scan.dcm")  # the same film, the same answer
    assert (expected.label or "Not assessed") in shown
    def overlaid() -> bool:  # the film component is sent the evidence overlay and its legend
        sent = json.loads(at.get("bidi_component")[0].proto.json)
        assert (sent["overlay"] is None) == (sent["legend"] is None)
        return sent["overlay"] is not None

    if expected.label == "PNEUMONIA":
        assert overlaid()
    else:  # NORMAL: off, with its own toggle; on, the same fixed-scale map appears
        assert not overlaid()
        at.toggle(key="heat_0").set_value(True).run()
        assert overlaid()
    assert any("empty" in e.value for e in at.error)  # the unreadable file's message, in place
    assert "identifying tag(s) hidden" in " ".join(c.value for c in at.caption)
    downloads = [b.proto.label for b in at.get("download_button")]
    assert "DICOM structured report" in downloads  # the DICOM input's results for the PACS
    assert ("DICOM Grad-CAM map" in downloads) == expected.assessed  # the map exists where a heatmap does
    assert "Doe" not in str(at.get("arrow_data_frame")) and "Doe" not in " ".join(t.value for t in at.markdown)


@pytest.fixture
def own_registry(monkeypatch, tiny_registry, tmp_path):
    """A private copy of the tiny registry: a test that trains registers only here."""
    import shutil

    from cxr_core.model.registry import Registry

    root = tmp_path / "registry"
    shutil.copytree(tiny_registry.root, root)
    monkeypatch.setenv("CXR_REGISTRY", str(root))
    monkeypatch.setenv("CXR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(PROJECT_ROOT)
    return Registry(root)


@pytest.mark.slow  # trains: a real process, 2 epochs
def test_training_page_runs_a_tiny_config_to_the_end(own_registry, tiny_data, tmp_path, own_app_home):
    from cxr_core.model.registry import Registry

    before = {e.model_id for e in own_registry.list()}
    shipped = sorted(p.name for p in own_registry.root.iterdir())
    at = _run("app_pages/training.py")
    assert not at.exception
    next(s for s in at.selectbox if s.label == "Stage config").set_value("single.toml").run()
    by_label = lambda seq, label: next(w for w in seq if w.label == label)  # noqa: E731
    by_label(at.text_input, "Training data folder").input(str(tiny_data))
    by_label(at.number_input, "Image size (px)").set_value(64)
    by_label(at.number_input, "Epochs").set_value(2)
    by_label(at.number_input, "Batch size").set_value(16)
    by_label(at.number_input, "Chest-film check: epochs").set_value(2)
    by_label(at.number_input, "Chest-film check: minimum updates").set_value(20)
    at.button[0].click().run()  # not confirmed: nothing starts
    assert any("Tick the confirmation" in w.value for w in at.warning) and not any("Started" in s.value for s in at.success)
    by_label(at.checkbox, "I understand: training uses this machine's CPU until it ends (one run at a time)").check()
    next(c for c in at.checkbox if c.label.startswith("Yes, a full run")).check()  # no budget: a full run, confirmed
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and any("Started" in s.value for s in at.success), [e.value for e in at.error]
    at.button[0].click().run()  # a second start while the first runs is refused
    refused = any("already in progress" in e.value for e in at.error)
    deadline = time.time() + 240
    while time.time() < deadline:
        at.run()
        if any("finished" in h.value for h in at.subheader):
            break
        time.sleep(2)
    assert any("finished" in h.value for h in at.subheader), [h.value for h in at.subheader]
    assert refused, "a second concurrent start must be refused"
    assert len(at.get("plotly_chart")) >= 3  # loss, accuracy/AUC and learning-rate curves
    assert any(r for r in at.dataframe)
    statuses = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/status.json")]
    assert len(statuses) == 1 and statuses[0]["state"] == "finished"
    # registered in the user's own folder, never the shipped one; below its gate, as a hidden experiment
    assert sorted(p.name for p in own_registry.root.iterdir()) == shipped
    [new] = [e for e in Registry().list() if e.model_id not in before]
    assert new.model_id == statuses[0]["model_id"] and new.model_id.startswith("cxrnet-single-")
    assert new.path.parent == own_app_home / "models" and new.passed_gate == statuses[0]["passed_gate"]
    recipe = new.card.appearance_check["recipe"]  # the form's guard budget reached the run
    assert (recipe["epochs"], recipe["min_steps"]) == (2, 20)


def test_training_page_keeps_the_config_and_budget_in_the_url(app_env):
    at = _run("app_pages/training.py")
    next(s for s in at.selectbox if s.label == "Stage config").set_value("shipped.toml").run()
    next(s for s in at.selectbox if s.label == "Budget").set_value("tiny").run()
    assert at.query_params["config"] in ("shipped.toml", ["shipped.toml"]) and at.query_params["budget"] in ("tiny", ["tiny"])
    reloaded = AppTest.from_file(APP, default_timeout=120)  # a browser reload: a new session, the same URL
    reloaded.query_params.update({"config": "shipped.toml", "budget": "tiny"})
    reloaded.run()
    reloaded.switch_page("app_pages/training.py").run()
    assert next(s for s in reloaded.selectbox if s.label == "Budget").value == "tiny"


def _named(at: AppTest, name: str = "Dr App") -> AppTest:
    at.sidebar.text_input(key="reader_input").set_value(name).run()
    return at


def test_the_site_model_is_changed_only_on_local_evidence_by_a_named_reader(app_env, tmp_path, monkeypatch,
                                                                            site_data):
    """The Training page's governed activation: a reduced-budget run is named and never offered; a finished run is
    refused until it is compared with the site's model on local films (the table, the paired difference and both
    ROCs shown first), then needs the reader and the confirmation; one confirmation follows, this session uses the
    new model at once, and so does every new session; a revert is said once and followed too."""
    import shutil

    from cxr_core.cases.store import CaseStore
    from cxr_core.model.folder import ModelFolder
    from train.run_folder import RunFolder

    shipped = tmp_path / "shipped"
    shutil.copytree(app_env.root, shipped)
    parent = app_env.active().model_id
    for model_id, budget in (("reduced-run", "tiny"), ("good-model", "")):  # finished runs, as the runs table lists them
        copy = ModelFolder(shutil.copytree(app_env.active().path, shipped / model_id))
        copy.write_card(copy.card().with_fields(model_id=model_id, config={**copy.card().config,
                                                                           "reduced_budget": budget}))
        RunFolder(tmp_path / "runs" / model_id).path.mkdir(parents=True)
        RunFolder(tmp_path / "runs" / model_id).write_status(state="finished", model_id=model_id, epoch=1, epochs=1)
    monkeypatch.setenv("CXR_REGISTRY", str(shipped))
    monkeypatch.setenv("CXR_SITE_MIN_PER_CLASS", "10")
    # The floor is low: a copy of the tiny model must pass it, and its sensitivity on these films varies by machine
    # (the floor itself is tested with chosen answers in tests/site).
    monkeypatch.setenv("CXR_SITE_SENSITIVITY_FLOOR", "0.05")

    at = _run("app_pages/training.py")
    assert not at.exception
    assert any(c.value.startswith("`reduced-run` cannot become the site's model: It is a reduced-budget run (tiny)")
               for c in at.caption)
    assert at.selectbox(key="trained_target").options == ["good-model"]
    assert any("no evidence on this site's own films" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "trained_activate"]  # nothing to confirm without evidence
    at.text_input(key="trained_films").set_value(str(site_data)).run()
    at.button(key="trained_compare").click().run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Paired AUC difference (candidate - current, same films): +0.000")
               for c in at.caption)
    table = at.dataframe[-1].value
    assert list(table["model"]) == [parent, "good-model"] and "AUC" in table.columns

    at.checkbox(key="trained_confirm").check().run()
    assert at.button(key="trained_activate").disabled  # no reader named yet
    _named(at)
    at.button(key="trained_activate").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["good-model is now the site's model, set by Dr App (audited; revertible). "
                                             "This session uses it now."]
    assert next(s for s in at.sidebar.selectbox if s.label == "Model").value == "good-model"  # followed at once
    at.run()  # the panel refreshes itself every few seconds: the confirmation stays while the change stands
    assert [s.value for s in at.success] == ["good-model is now the site's model, set by Dr App (audited; revertible). "
                                             "This session uses it now."]
    assert not any("Not the site's model" in w.value for w in at.sidebar.warning)
    store = CaseStore.open()
    activated = [e for e in store.audit() if e["action"] == "model-activate"]
    assert [e["actor"] for e in activated] == ["Dr App"]
    assert activated[0]["details"]["evidence"]["candidate"]["model_id"] == "good-model"
    fresh = _run()  # a new browser session defaults to the site's model
    assert next(s for s in fresh.sidebar.selectbox if s.label == "Model").value == "good-model"

    at.button(key="trained_revert").click().run()
    assert [s.value for s in at.success] == [f"Reverted by Dr App: the site's model is the default, {parent} again (audited). "
                                             "This session uses it now."]
    assert next(s for s in at.sidebar.selectbox if s.label == "Model").value == parent
    assert not any("Not the site's model" in w.value for w in at.sidebar.warning)


def test_adapt_to_this_site_checks_the_folder_before_starting(app_env, tmp_path):
    at = _named(_run("app_pages/training.py"))
    assert any("Adapt to this site" in h.value for h in at.subheader)
    at.text_input(key="adapt_folder").set_value(str(tmp_path / "nowhere")).run()
    next(b for b in at.button if b.label == "Start the adaptation").click().run()
    assert not at.exception
    assert any("is not a labelled folder" in e.value for e in at.error)
    assert not any("Started" in s.value for s in at.success)


def _training_form(at: AppTest, folder: str | None = None, full: bool = False) -> None:
    if folder is not None:
        next(w for w in at.text_input if w.label == "Training data folder").input(folder)
    next(c for c in at.checkbox if c.label.startswith("I understand: training uses")).check()
    if full:
        next(c for c in at.checkbox if c.label.startswith("Yes, a full run")).check()
    at.button[0].click().run()


def test_training_checks_the_data_folder_before_saying_started(app_env, tmp_path):
    at = _run("app_pages/training.py")
    next(s for s in at.selectbox if s.label == "Budget").set_value("tiny").run()
    _training_form(at, folder=str(tmp_path / "no-such-data"))
    assert not at.exception and not any("Started" in s.value for s in at.success)
    [error] = [e.value for e in at.error]
    assert error.startswith("Not started:") and "does not exist" in error and "Training data folder" in error
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no failed run to resume


def test_a_full_run_shows_its_eta_and_asks_for_its_own_confirmation(app_env, tmp_path):
    at = _run("app_pages/training.py")
    next(s for s in at.selectbox if s.label == "Stage config").set_value("shipped.toml").run()
    assert next(s for s in at.selectbox if s.label == "Budget").value == "(full)"
    assert any(c.value.startswith("Estimated time (") for c in at.caption)
    _training_form(at, folder=str(tmp_path / "no-such-data"))  # the CPU box alone does not start a full run
    assert any("This is a full run" in w.value for w in at.warning) and not at.error and not at.success
    assert not any(c.label.startswith("Yes, a full run") for c in at.checkbox if c.value)


def test_the_training_budget_is_kept_across_pages(app_env):
    at = _run("app_pages/training.py")
    next(s for s in at.selectbox if s.label == "Budget").set_value("tiny").run()
    at.query_params.clear()  # a page link from the sidebar carries no query parameters
    at.switch_page("app_pages/viewer.py").run()
    at.switch_page("app_pages/training.py").run()
    assert next(s for s in at.selectbox if s.label == "Budget").value == "tiny"


def test_a_running_adaptation_shows_its_fold_and_per_fold_curves_from_epoch_one(app_env):
    """A site adaptation's folder as the process writes it mid-run: the progress names the fold and the epoch,
    and the curves draw one line per fold (and the final model) at the epochs written, counted from 1."""
    import time

    from cxr_core.settings import current
    from train.run_folder import RunFolder

    run = RunFolder(current().layout.site_runs / "20261207-090000")
    run.path.mkdir(parents=True)
    run.write_status(state="training", started=time.time(), reader="Dr App", source="folder", fold=2, folds=5,
                     epoch=3, epochs=8, val_auc=0.951)
    rows = ["fold,epoch,stage,loss,val_auc,learning_rate,seconds"]
    rows += [f"{fold},{epoch},whole network,{0.5 - 0.01 * epoch},{0.9 + 0.01 * epoch},0.0001,2.0"
             for fold in (1, 2) for epoch in range(1, 9 if fold == 1 else 4)]
    rows += ["final,1,whole network,0.3,,0.0001,2.0"]
    run.history_file.write_text("\n".join(rows) + "\n")
    at = _named(_run("app_pages/training.py"))
    assert not at.exception
    assert any("Adaptation 20261207-090000: training" in m.value for m in at.markdown)
    bar = next(p for p in at.get("progress"))
    assert "fold 2 of 5: epoch 3 of 8" in bar.proto.text and "0.951" in bar.proto.text
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    auc = next(c for c in charts if "held-out patients" in json.dumps(c["layout"].get("title", "")))
    lines = {t["name"]: t["x"] for t in auc["data"]}
    assert lines == {"fold 1": list(range(1, 9)), "fold 2": [1, 2, 3]}  # the final model has no held-out AUC
    loss = next(c for c in charts if "Training loss" in json.dumps(c["layout"].get("title", "")))
    assert {t["name"] for t in loss["data"]} == {"fold 1", "fold 2", "final model"}


def test_a_site_adapted_model_s_figures_are_called_this_site_s(app_env, tmp_path, monkeypatch):
    """The sidebar names where each figure comes from without contradicting itself: a site-adapted model's own
    figures are local (out-of-fold), never "internal" nor "no local evaluation"."""
    import json
    import shutil

    from cxr_core.model.folder import ModelFolder

    shipped = tmp_path / "shipped"
    adapted = ModelFolder(shutil.copytree(app_env.active().path, shipped / "adapted-model"))
    adapted.write_card(adapted.card().with_fields(
        model_id="adapted-model", internal_validation_kind="Local validation at this site, out-of-fold: 40 films",
        site_adaptation={"parent_model_id": app_env.active().model_id, "reader": "Dr Adapt", "counts": {"kept": 40}}))
    (shipped / "ACTIVE").write_text(json.dumps({"model_id": "adapted-model"}))
    monkeypatch.setenv("CXR_REGISTRY", str(shipped))
    at = _run()
    assert not at.exception
    assert "**At this site (out-of-fold local validation)**" in [m.value for m in at.sidebar.markdown]
    said = " ".join([m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption]
                    + [w.value for w in at.sidebar.warning])
    for contradiction in ("Internal (same hospital", "No local evaluation at this site", "Same hospital and period"):
        assert contradiction not in said
    assert "Site-adapted from" in said and "local validation at this site, out-of-fold" in said


def test_the_reader_s_name_survives_a_reload(app_env):
    """The name is kept in the address (?reader=), so a reload (a new session on the same address) keeps it;
    clearing the box clears it there too."""
    at = _named(_run())
    assert at.query_params["reader"] in ("Dr App", ["Dr App"])
    reloaded = AppTest.from_file(APP, default_timeout=120)
    reloaded.query_params["reader"] = "Dr App"
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.sidebar.text_input(key="reader_input").value == "Dr App"
    reloaded.sidebar.text_input(key="reader_input").set_value("").run()
    assert "reader" not in reloaded.query_params


def test_a_case_link_is_the_viewer_s_own_address(app_env):
    """The root address forwards to /viewer, so "Open in the Viewer" links (/viewer?case=N) open the case
    wherever they are opened; the root's own ?case= goes with it."""
    import inspect

    from streamlit.navigation.page import StreamlitPage

    at = _run()
    assert not at.exception and any(i.value.startswith("Drop one or more images above") for i in at.info)
    source = (PROJECT_ROOT / "app.py").read_text()
    assert 'url_path="viewer"' in source and "switch_page(viewer, query_params=st.query_params.to_dict())" in source
    assert "url_path" in inspect.signature(StreamlitPage.__init__).parameters


def test_a_viewer_rerun_resolves_the_point_and_the_site_figures_once(app_env, monkeypatch):
    """The preamble resolves them once per rerun and passes them on (the sidebar, the Viewer and the PDF read the
    same objects), so no two surfaces of one page can disagree."""
    import cxr_core.request as request

    calls = {"resolve": 0, "site_figures": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(request, "resolve", counted("resolve", request.resolve))
    monkeypatch.setattr(request, "site_figures", counted("site_figures", request.site_figures))
    at = _run()
    assert not at.exception
    calls.update(resolve=0, site_figures=0)
    at.run()  # one rerun of the Viewer
    assert calls == {"resolve": 1, "site_figures": 1}


def test_a_review_that_contradicts_itself_is_refused_in_the_form(app_env, store):
    """"Agree" with a label that is not the model's: the form says which rule and saves nothing."""
    from testkit.reviews import stored_result

    case_id = stored_result(store, "PNEUMONIA", "BACTERIAL", seed=3)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["case"] = str(case_id)
    at.run()
    _named(at)
    at.radio(key="decision_0").set_value("agree")
    at.selectbox(key="final_0").set_value("NORMAL")
    next(b for b in at.button if b.label == "Save review").click().run()
    assert not at.exception
    assert any("An agreement records the model's own finding (PNEUMONIA), not NORMAL: choose Disagree." in e.value
               for e in at.error)
    assert store.get(case_id)["review"] is None
