"""The clinician's workflow in a real browser (Debian chromium), with screenshots in the screenshot folder:
the reader's name survives page switches (issue 23, item 4), the review form pre-selects nothing (8), Clear
empties the uploader (7), the sidebar labels internal figures and asks for local validation (3), and a site
point justified by 10 + 10 images is refused with its rule (2). Skips where chromium is missing."""

from __future__ import annotations

import shutil
import time

import pytest

from testkit import inputs
from testkit.harness import (CHROMEDRIVER, CHROMIUM, READER_BOX, body_text, make_browser, nav, results_shown, sign_in,
                             start_app, upload, wait_for)
from tests.system.test_browser import screenshot, show_every_case

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")



def _click_text(browser, text: str, tag: str = "*") -> None:
    from selenium.webdriver.common.by import By

    element = browser.find_element(By.XPATH, f"//{tag}[normalize-space(.)={text!r}]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.2)
    element.click()


def test_the_reader_is_kept_the_review_is_unprimed_clear_empties_and_a_weak_site_point_is_refused(
        tiny_registry, tiny_data, tmp_path, tmp_path_factory, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from cxr_core.validation.evaluation import evaluate_folder

    home = tmp_path_factory.mktemp("home")
    ten = tmp_path / "ten-and-ten"
    for cls in ("NORMAL", "PNEUMONIA"):
        (ten / cls).mkdir(parents=True)
        for f in sorted((tiny_data / cls).iterdir())[:10]:
            shutil.copy(f, ten / cls / f.name)
    monkeypatch.setenv("CXR_HOME", str(home))  # the evaluation is saved where the app will look
    evaluate_folder(tiny_registry.active().path, ten, n_boot=0)
    server = start_app({"CXR_REGISTRY": str(tiny_registry.root), "CXR_HOME": str(home)}, log_path=tmp_path / "app.log")
    browser = make_browser()
    try:
        browser.get(server.url)
        wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, READER_BOX), what="the reader's name box")
        # (3) the sidebar: internal figures labelled as such; the small local evaluation is too small to report
        wait_for(browser, lambda: "too few local films to report (n = " in body_text(browser), what="the site figures")
        # the sidebar streams in order: the internal figures come after the site's
        wait_for(browser, lambda: "Internal (same hospital as training)" in body_text(browser), timeout=30,
                 what="the internal figures, labelled as such")
        # (4) the reader, typed once on the Viewer
        sign_in(browser, "Dr Kept")
        films = []
        for i in range(2):
            films.append(tmp_path / f"film_{i}.png")
            films[-1].write_bytes(inputs.png_gray8(seed=200 + i))
        show_every_case(browser)
        upload(browser, films)
        wait_for(browser, lambda: results_shown(browser, 2), what="two results")
        # (8) nothing pre-selected in the review form; saving without a choice says so
        radios = browser.find_elements(By.CSS_SELECTOR, "[data-testid=stForm] input[type=radio]")
        assert radios and not any(r.is_selected() for r in radios)
        screenshot(browser, "review_unprimed", full_page=True)
        browser.find_elements(By.XPATH, "//button[.//p[text()='Save review']]")[0].click()
        wait_for(browser, lambda: "Choose whether you agree, and the final label" in body_text(browser),
                 what="the no-choice message")
        # (7) Clear empties the uploader too: the next drop brings back nothing earlier
        _click_text(browser, "Clear the Viewer", "p")
        wait_for(browser, lambda: "film_0.png" not in body_text(browser) and "Drop one or more images" in body_text(browser),
                 what="an empty Viewer")
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=stFileUploaderFile]")  # no chips left
        screenshot(browser, "viewer_cleared")
        later = tmp_path / "film_later.png"
        later.write_bytes(inputs.png_gray8(seed=300))
        upload(browser, [later])
        wait_for(browser, lambda: results_shown(browser, 1) and "1 image(s) this session" in body_text(browser),
                 what="only the new film")
        # (4) switch pages: the name is still there, on the Worklist and the Dashboards
        nav(browser, "Worklist")
        wait_for(browser, lambda: "most in need of a read first" in body_text(browser), what="the worklist")
        assert browser.find_element(By.CSS_SELECTOR, READER_BOX).get_attribute("value") == "Dr Kept"
        screenshot(browser, "reader_kept_on_worklist")
        nav(browser, "Dashboards")
        wait_for(browser, lambda: "Operating threshold on P(pneumonia)" in body_text(browser), what="the dashboards")
        assert browser.find_element(By.CSS_SELECTOR, READER_BOX).get_attribute("value") == "Dr Kept"
        # (2) the 10 + 10 evaluation: a site point from it is refused, with the rule and the numbers
        box = browser.find_element(By.XPATH, "//div[@data-testid='stSelectbox'][.//p[text()='Evaluation']]")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        field = box.find_element(By.CSS_SELECTOR, "input")
        field.click()
        field.send_keys("ten-and-ten")  # the select filters its options as one types
        time.sleep(0.5)
        field.send_keys(Keys.ENTER)
        wait_for(browser, lambda: "Site operating point" in body_text(browser), what="the site point form")
        confirm = browser.find_element(By.XPATH, "//label[.//p[starts-with(normalize-space(.), 'I, Dr Kept, set')]]")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", confirm)
        confirm.click()
        wait_for(browser, lambda: browser.find_element(
            By.XPATH, "//button[.//p[starts-with(text(), 'Save ')]]").is_enabled(), what="the enabled Save button")
        browser.find_element(By.XPATH, "//button[.//p[starts-with(text(), 'Save ')]]").click()
        wait_for(browser, lambda: "Refused: too few local films" in body_text(browser), what="the refusal")
        assert "10 pneumonia and 10 normal" in body_text(browser)
        time.sleep(0.5)
        screenshot(browser, "site_point_refused")
        assert "Threshold in use" in body_text(browser) and "the model's own" in body_text(browser)
    finally:
        browser.quit()
        server.stop()


OVERLAPS = """
const out = [];
for (const plot of document.querySelectorAll('.js-plotly-plot')) {
  const area = plot.querySelector('.nsewdrag');
  const legend = plot.querySelector('.legend');
  const svg = plot.querySelector('.main-svg').getBoundingClientRect();
  const overlap = (a, b) => !(a.right <= b.left || a.left >= b.right || a.bottom <= b.top || a.top >= b.bottom);
  const bar = plot.querySelector('.modebar');
  if (area && legend) {
    const a = area.getBoundingClientRect(), l = legend.getBoundingClientRect();
    out.push({legend_over_plot: overlap(l, a) || (bar !== null && overlap(l, bar.getBoundingClientRect()))});
  }
  for (const t of plot.querySelectorAll('text.bartext, text.textpoint text, .heatmaplayer text')) {
    const r = t.getBoundingClientRect();
    out.push({text_cut: r.top < svg.top - 1 || r.bottom > svg.bottom + 1 || r.left < svg.left - 1 || r.right > svg.right + 1,
              text_size: parseFloat(getComputedStyle(t).fontSize)});
  }
}
return out;
"""


def test_experiments_charts_are_legible_at_1280_by_800(tiny_registry, tmp_path):
    """Legends beside the curves, never over them; bar values inside the figure; grid numbers large (item 12)."""
    server = start_app({"CXR_REGISTRY": str(tiny_registry.root), "CXR_HOME": str(tmp_path / "home")},
                       log_path=tmp_path / "app.log")
    browser = make_browser(1280, 800)
    try:
        browser.get(f"{server.url}/experiments")
        wait_for(browser, lambda: len(browser.find_elements("css selector", ".js-plotly-plot .main-svg")) >= 5,
                 what="the experiment charts")
        time.sleep(2)
        found = browser.execute_script(OVERLAPS)
        legends = [f for f in found if "legend_over_plot" in f]
        texts = [f for f in found if "text_cut" in f]
        assert legends and not any(f["legend_over_plot"] for f in legends)
        assert texts and not any(f["text_cut"] for f in texts)
        assert min(f["text_size"] for f in texts) >= 12
        screenshot(browser, "experiments_charts", full_page=True)
    finally:
        browser.quit()
        server.stop()
