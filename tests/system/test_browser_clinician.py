"""The clinician's workflow 2 (issue 35) in a real browser (Debian chromium) at 1280 x 800, with screenshots in
the screenshot folder (tests/system/test_browser.py): the Worklist's selection is a case id across a refresh that inserts a case above it and a
page switch, and Remove asks first, naming the case and its label (item 2); the sidebar reports no site figures
from 8 local films (3); a stored case says how it reads at the site's current point (4); Next / Previous move
between cases (8); the name box, verdict, P and film
are above the fold (9). Skips where chromium is missing."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from testkit import inputs
from testkit.harness import (CHROMEDRIVER, CHROMIUM, FILM_CANVAS, READER_BOX, body_text, make_browser, nav, results_shown,
                             sign_in, start_app, tick_row, upload, wait_for)
from tests.system.test_browser import screenshot
from testkit.reviews import review_as, stored_case

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """One $CXR_HOME for this test process and the app server (the same SQLite case database)."""
    path = tmp_path / "home"
    monkeypatch.setenv("CXR_HOME", str(path))
    return path


def _server(tiny_registry, home, tmp_path, refresh: str = "0"):
    return start_app({"CXR_REGISTRY": str(tiny_registry.root), "CXR_HOME": str(home), "CXR_WORKLIST_REFRESH_S": refresh},
                     log_path=tmp_path / "app.log")


def _click(browser, text: str, tries: int = 5) -> None:
    """Click the button labelled `text`; found again when a rerun (the worklist refreshes itself) replaced it."""
    from selenium.webdriver.common.by import By

    for attempt in range(tries):
        try:
            wait_for(browser, lambda: browser.find_elements(By.XPATH, f"//button[.//p[normalize-space(.)={text!r}]]"),
                     timeout=20, what=f"the button {text!r}")
            button = browser.find_element(By.XPATH, f"//button[.//p[normalize-space(.)={text!r}]]")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            time.sleep(0.2)
            button.click()
            return
        except Exception:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def test_the_worklist_selection_is_a_case_id_and_remove_asks_naming_the_case(tiny_registry, tiny_predictor, home,
                                                                             tmp_path):
    from cxr_core.cases.store import CaseStore
    from cxr_core.cases.worklist import triage_order

    store = CaseStore.open()
    for seed, p in ((1, 0.30), (2, 0.20), (3, 0.10)):
        stored_case(store, tiny_predictor, seed, "NORMAL", p)
    order = [c["case_id"] for c in triage_order(store.list())]
    server = _server(tiny_registry, home, tmp_path, refresh="2")
    browser = make_browser(1280, 800)
    try:
        browser.get(f"{server.url}/worklist")
        wait_for(browser, lambda: "To read (3)" in body_text(browser), what="the worklist")
        sign_in(browser, "Dr Remove")
        chosen = order[-1]  # the last row: every insert above it moves it
        tick_row(browser, 2)
        wait_for(browser, lambda: f"Selected: case {chosen} (NORMAL, P 0.100" in body_text(browser), what="the selection")
        screenshot(browser, "worklist_selected")
        # a case that sorts above it arrives; the 2-s refresh runs
        inserted = stored_case(store, tiny_predictor, 4, "PNEUMONIA", 0.99)
        wait_for(browser, lambda: "To read (4)" in body_text(browser), timeout=30, what="the refreshed worklist")
        time.sleep(1)
        text = body_text(browser)
        assert "Selected:" not in text or f"Selected: case {chosen} " in text
        assert f"Selected: case {inserted}" not in text and "Selected: case " + str(order[-2]) not in text
        screenshot(browser, "worklist_after_insert")
        # tick it again (now the 4th row): the caption and Remove name it, and Remove asks first
        tick_row(browser, 3)
        wait_for(browser, lambda: f"Selected: case {chosen} (" in body_text(browser), what="the selection again")
        _click(browser, "Remove from the worklist")
        wait_for(browser, lambda: f"Remove case {chosen} (NORMAL, P 0.100; not reviewed) from the worklist?"
                 in body_text(browser), what="the confirmation")
        assert chosen in [c["case_id"] for c in store.list()]  # nothing removed before the confirmation
        screenshot(browser, "worklist_remove_confirm")
        _click(browser, f"Yes, remove case {chosen}")
        wait_for(browser, lambda: f"Case {chosen} removed from the worklist (audited)." in body_text(browser),
                 what="the removal")
        assert chosen not in [c["case_id"] for c in store.list()]
        assert [(e["actor"], e["case_id"]) for e in store.audit() if e["action"] == "delete"] == [("Dr Remove", chosen)]
        # a page switch: nothing ticked, nothing said selected
        tick_row(browser, 0)
        wait_for(browser, lambda: "Selected: case " in body_text(browser), what="a selection")
        nav(browser, "Viewer")
        wait_for(browser, lambda: "Chest X-ray viewer" in body_text(browser), what="the viewer")
        nav(browser, "Worklist")
        wait_for(browser, lambda: "To read (3)" in body_text(browser), what="the worklist again")
        time.sleep(1.5)
        assert "Selected:" not in body_text(browser)
        screenshot(browser, "worklist_1280x800")
    finally:
        browser.quit()
        server.stop()



RECT = "const r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom];"


def test_the_viewer_at_1280_by_800_reads_now_and_steps_between_cases(tiny_registry, tiny_predictor,
                                                                                home, tmp_path):
    from selenium.webdriver.common.by import By
    
    from cxr_core.cases.store import CaseStore
    from cxr_core.settings import current
    from cxr_core.validation.evaluation import evaluate_folder

    store = CaseStore.open()
    model_id = tiny_predictor.card.model_id
    for i in range(8):  # 8 reviewed cases, exported and evaluated: too few for site figures
        case_id = stored_case(store, tiny_predictor, 60 + i)
        review_as(store, case_id, "NORMAL" if i % 2 else "BACTERIAL", "Dr Site")
    store.export("eight", reviewed_only=True, actor="Dr Site")
    evaluate_folder(tiny_registry.active().path, current().layout.exports / "eight", n_boot=0)
    data = inputs.png_gray8(seed=90)
    pred = tiny_predictor.predict(data, name="x.png")
    stale, _ = store.add(pred, data, model_id, actor="Dr Test")
    p = pred.pneumonia_probability
    moved = round(min(0.999, p + 0.01) if pred.label == "PNEUMONIA" else max(0.001, p - 0.01), 3)
    store.record_site_point(model_id, moved, "Dr Site", {"n": 200})  # the site's point moves across this film's P
    other = "NORMAL" if pred.label == "PNEUMONIA" else "PNEUMONIA"
    server = _server(tiny_registry, home, tmp_path)
    browser = make_browser(1280, 800)
    try:
        browser.get(f"{server.url}/?case={stale}")
        chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
        browser.set_window_size(1280, 800 + chrome)  # a page area of 1280 x 800, as the walk had
        assert browser.execute_script("return window.innerHeight") == 800
        wait_for(browser, lambda: results_shown(browser, 1), what="the stored case")
        time.sleep(1.5)
        text = body_text(browser)
        # (4) the stored decision stays, and the sentence says how it reads now
        assert f"At the site's current point ({moved:.3f}) this film reads {other}." in text
        assert store.get(stale)["label"] == pred.label
        # (3) no site figures from 8 films, and why
        assert "too few local films to report (n = 8; 50 per class needed)" in text
        # (9) the name box first in the sidebar; verdict, P and film above the fold
        box = browser.find_element(By.CSS_SELECTOR, READER_BOX)
        heading = browser.find_element(By.XPATH, "//h3[normalize-space(.)='Model in use']")
        assert browser.execute_script(RECT, box)[1] < browser.execute_script(RECT, heading)[0]
        assert browser.execute_script(RECT, box)[1] < 800
        verdict = browser.find_element(By.XPATH, f"//*[@data-testid='stAlertContentError' or "
                                                 f"@data-testid='stAlertContentSuccess'][.//strong[starts-with(., '{pred.label}')]]")
        metric = browser.find_element(By.CSS_SELECTOR, "[data-testid=stMetric]")
        film = browser.execute_script(f"return {FILM_CANVAS}")
        for name, element in (("verdict", verdict), ("P", metric), ("film", film)):
            top, bottom = browser.execute_script(RECT, element)
            assert 0 <= top and bottom <= 800, (name, top, bottom)
        screenshot(browser, "viewer_reads_otherwise")
        # (8) Next / Previous between this session's cases
        films = []
        for i in range(2):
            films.append(tmp_path / f"next_{i}.png")
            cv2.imwrite(str(films[-1]), (np.random.default_rng(70 + i).random((64, 64)) * 255).astype(np.uint8))
        browser.find_element(By.XPATH, "//summary[.//p[text()='Add films']]").click()
        time.sleep(0.5)
        upload(browser, films)
        wait_for(browser, lambda: "of 3" in body_text(browser), what="three cases this session")
        at = lambda: body_text(browser).split(" of 3")[0].split()[-1]  # noqa: E731
        first = int(at())
        _click(browser, "Next case" if first < 3 else "Previous case")
        wait_for(browser, lambda: int(at()) != first, what="another case")
        screenshot(browser, "viewer_next_case")
    finally:
        browser.quit()
        server.stop()
