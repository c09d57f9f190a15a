"""The Worklist: its filter rule, and cases that outlive page switches and sessions (AppTest)."""

from __future__ import annotations

from datetime import date

import pytest
from streamlit.testing.v1 import AppTest

from cxr_core.errors import CXRError
from cxr_core.cases.worklist import WorklistFilter, filter_cases, triage_order

from testkit import inputs
from testkit.reviews import other_label
from tests.conftest import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app.py")


def _case(i, status="new", label="NORMAL", p=0.2, warnings=(), model="m1", created="2026-11-20T10:00:00+00:00"):
    return {"case_id": i, "status": status, "label": label, "pneumonia_probability": p, "warnings": list(warnings),
            "model_id": model, "created": created, "assessed": label is not None}


CASES = [_case(1), _case(2, "reviewed", "PNEUMONIA", 0.9, ["unusual size"], "m2", "2026-11-24T09:00:00+00:00"),
         _case(3, "disagreed", None, None, ["adult?"])]


@pytest.mark.parametrize("chosen, kept", [
    (WorklistFilter(), [3, 2, 1]),  # triage order
    (WorklistFilter(statuses=("reviewed", "disagreed")), [3, 2]),
    (WorklistFilter(labels=("not assessed",)), [3]),
    (WorklistFilter(models=("m2",)), [2]),
    (WorklistFilter(warnings=True), [3, 2]),
    (WorklistFilter(warnings=False), [1]),
    (WorklistFilter(p_min=0.5), [2]),  # a narrowed range leaves out cases without a probability
    (WorklistFilter(start=date(2026, 11, 21)), [2]),
    (WorklistFilter(end=date(2026, 11, 20)), [3, 1]),
])
def test_the_worklist_filter(chosen, kept):
    assert [c["case_id"] for c in filter_cases(CASES, chosen)] == kept


def test_the_triage_order_puts_the_cases_that_need_a_read_first():
    day = lambda d: f"2026-11-{d:02d}T10:00:00+00:00"  # noqa: E731
    cases = [_case(1, label="NORMAL", p=0.1, created=day(25)), _case(2, label="PNEUMONIA", p=0.7, created=day(21)),
             _case(3, label=None, p=None, created=day(20)), _case(4, label="PNEUMONIA", p=0.95, created=day(20)),
             _case(5, label=None, p=None, created=day(22)), _case(6, label="NORMAL", p=0.3, created=day(26)),
             _case(7, label="PNEUMONIA", p=0.7, created=day(24)), _case(8, label="NORMAL", p=0.62, created=day(19)),
             {**_case(9, label=None, p=None, created=day(27)), "not_assessed_reasons": ["This is a colour image."]}]
    # not assessed chest films (newest first), PNEUMONIA by descending P (newest first at equal P), then NORMAL by
    # descending P (the borderline one first, however old), and last what is not a chest film at all
    assert [c["case_id"] for c in triage_order(cases)] == [5, 3, 4, 7, 2, 8, 6, 1, 9]


@pytest.mark.parametrize("kwargs, quoted", [({"statuses": ("done",)}, "'done'"), ({"labels": ("VIRAL",)}, "'VIRAL'"),
                                            ({"p_min": 0.8, "p_max": 0.2}, "0.8"),
                                            ({"start": date(2026, 2, 1), "end": date(2026, 1, 1)}, "2026-02-01")])
def test_a_bad_filter_is_refused_with_the_value(kwargs, quoted):
    with pytest.raises(CXRError, match=quoted):
        WorklistFilter(**kwargs)


@pytest.fixture
def app_env(monkeypatch, tiny_registry):
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    monkeypatch.chdir(PROJECT_ROOT)
    return tiny_registry


def _stored_cases(tiny_predictor, n=3):
    """Cases stored the way the Viewer stores an upload (predict, then CaseStore.add)."""
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open()
    model_id = tiny_predictor.card.model_id
    images = [inputs.png_gray8(seed=i) for i in range(n)]
    return store, [store.add(tiny_predictor.predict(d, name=f"x{i}.png"), d, model_id)[0] for i, d in enumerate(images)]


def test_cases_survive_page_switches_and_new_sessions_and_open_in_the_viewer(app_env, tiny_predictor):
    store, ids = _stored_cases(tiny_predictor)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/worklist.py").run()
    assert not at.exception, at.exception
    shown = at.dataframe[0].value
    assert sorted(shown["case"]) == sorted(ids) and set(shown["status"]) == {"new"}
    at.multiselect(key="wl_status").set_value(["reviewed"]).run()
    assert "To read (0)" in [t.label for t in at.tabs] and "No case here." in [c.value for c in at.caption]
    at.switch_page("app_pages/dashboards.py").run()
    at.switch_page("app_pages/worklist.py").run()
    assert len(at.dataframe[0].value) == 3  # still there after a page switch

    viewer = AppTest.from_file(APP, default_timeout=120)  # a new session (another workstation, or after a restart)
    viewer.query_params["case"] = str(ids[1])
    viewer.run()
    assert not viewer.exception, viewer.exception
    assert any(f"Case {ids[1]}" in m.value for m in viewer.markdown)
    viewer.sidebar.text_input(key="reader_input").input("Dr Review").run()
    other = other_label(store.get(ids[1]))  # a finding the model did not give, whichever it gave
    viewer.radio(key="decision_0").set_value("disagree")
    viewer.selectbox(key="final_0").set_value(other)
    viewer.text_input(key="comment_0").input("patchy")
    next(b for b in viewer.button if b.label == "Save review").click().run()
    assert not viewer.exception, viewer.exception
    review = store.get(ids[1])["review"]
    assert (review["decision"], review["label"], review["reader"], review["comment"]) == ("disagree", other, "Dr Review", "patchy")
    assert store.audit()[-1]["action"] == "review" and store.audit()[-1]["actor"] == "Dr Review"
    at.run()
    assert dict(zip(at.dataframe[0].value["case"], at.dataframe[0].value["status"]))[ids[1]] == "disagreed"


def test_a_missing_case_in_the_url_is_a_message(app_env):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["case"] = "999"
    at.run()
    assert not at.exception and any("no case '999'" in e.value for e in at.error)


def test_the_site_operating_point_is_governed_confirmed_and_revertible(app_env, site_data, tiny_model_dir,
                                                                         monkeypatch):
    from cxr_core.cases.store import CaseStore
    from cxr_core.validation.evaluation import evaluate_folder

    n = evaluate_folder(tiny_model_dir, site_data, n_boot=10).summary["n"]  # saved under this test's $CXR_HOME
    model_id = app_env.active().model_id
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/dashboards.py").run()
    box = next(s for s in at.selectbox if s.label == "Evaluation")
    box.set_value(next(o for o in box.options if o != "internal validation")).run()
    at.slider(key="threshold").set_value(0.3).run()  # low: most pneumonia films of the tiny model pass it
    assert at.button(key="site_save").disabled  # not before the reader confirms
    at.checkbox(key="site_confirm").check().run()
    at.button(key="site_save").click().run()
    assert any("reader" in e.value for e in at.error) and CaseStore.open().site_threshold(model_id) is None
    at.sidebar.text_input(key="reader_input").input("Dr Site").run()
    at.checkbox(key="site_confirm").check().run()
    at.button(key="site_save").click().run()  # 32 + 16 images: below the default 50 of each class
    assert any("too few local films" in e.value and "32 pneumonia and 16 normal" in e.value for e in at.error)
    assert CaseStore.open().site_threshold(model_id) is None
    monkeypatch.setenv("CXR_SITE_MIN_PER_CLASS", "16")  # a deployment's own rules
    monkeypatch.setenv("CXR_SITE_SENSITIVITY_FLOOR", "0.05")
    at.checkbox(key="site_confirm").check().run()
    at.button(key="site_save").click().run()
    assert not at.exception, at.exception
    point = CaseStore.open().site_threshold(model_id)
    assert point["threshold"] == pytest.approx(0.3) and point["author"] == "Dr Site" and point["evidence"]["n"] == n
    assert point["evidence"]["rules"] == {"min_per_class": 16, "sensitivity_floor": 0.05}
    assert any("site's operating point" in c.value for c in at.sidebar.caption)
    at.button(key="site_revert").click().run()
    assert CaseStore.open().site_threshold(model_id) is None
