"""Real-browser test: `streamlit run app.py` on a free loopback port, driven by Debian's chromium.

Uploads a JPEG and a DICOM through the viewer's file input, checks that the label and the Grad-CAM
overlay appear, and saves a 1280x800 screenshot of each page to $CXR_BROWSER_SCREENSHOTS (default: the temp folder's
cxr-screenshots/).
Skips (with the reason) where chromium / chromedriver are not installed; .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from testkit.harness import (CHROMEDRIVER, CHROMIUM, FILMS, OVERLAID_FILMS, body_text, make_browser, results_shown,
                             start_app, upload, wait_for)

from testkit import inputs

# Screenshots go to a temp folder ($CXR_BROWSER_SCREENSHOTS to choose it), never into the checkout; the README's are
# retaken by `python docs/screenshots.py`.
ARTIFACTS = Path(os.environ.get("CXR_BROWSER_SCREENSHOTS") or Path(tempfile.gettempdir()) / "cxr-screenshots")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")


def _app_env(tiny_registry, tmp_path_factory) -> dict[str, str]:
    return {"CXR_REGISTRY": os.environ.get("CXR_BROWSER_REGISTRY", str(tiny_registry.root)),  # screenshots: shipped
            "CXR_RUNS_DIR": str(tmp_path_factory.mktemp("runs")), "CXR_HOME": str(tmp_path_factory.mktemp("home"))}


@pytest.fixture(scope="module")
def app_env(tiny_registry, tmp_path_factory):
    return _app_env(tiny_registry, tmp_path_factory)


@pytest.fixture(scope="module")
def app_url(app_env):
    server = start_app(app_env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    driver = make_browser()
    yield driver
    driver.quit()


def screenshot(driver, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        height = driver.execute_script("return document.querySelector('section.main, [data-testid=stMain]').scrollHeight")
        driver.set_window_size(1280, max(800, min(int(height) + 100, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 800)
    return path


def show_every_case(driver) -> None:
    """The Viewer's Display setting "Show every case at once" (it shows one case at a time by default)."""
    from selenium.webdriver.common.by import By

    switch = "//label[.//p[text()='Show every case at once']]"
    driver.find_element(By.XPATH, "//summary[.//p[text()='Display']]").click()
    wait_for(driver, lambda: driver.find_element(By.XPATH, switch).is_displayed(), what="the display settings")

    def switched_on() -> bool:  # a click during a rerun of a busy machine can be lost: click until the switch holds
        if not driver.find_element(By.XPATH, switch + "//input").is_selected():
            driver.find_element(By.XPATH, switch).click()
            time.sleep(1)
        return driver.find_element(By.XPATH, switch + "//input").is_selected()

    wait_for(driver, switched_on, what="'Show every case at once' on")
    time.sleep(1)
    driver.find_element(By.XPATH, "//summary[.//p[text()='Display']]").click()


def test_upload_jpeg_and_dicom_shows_label_and_overlay(app_url, browser, tmp_path, tiny_data):
    """A training-like JPEG and a DICOM of the same pixels are assessed; a colour photograph is refused.
    Also: after the uploads, the server log holds neither file names nor patient identifiers."""
    import cv2
    from selenium.webdriver.common.by import By

    jpeg = tmp_path / "child_cxr.jpeg"
    jpeg.write_bytes(sorted((tiny_data / "NORMAL").iterdir())[0].read_bytes())
    sample = os.environ.get("CXR_BROWSER_SAMPLE")  # a real X-ray for the README screenshot, if given
    if sample:
        shutil.copy(sample, jpeg)
    dcm = tmp_path / "study.dcm"
    dcm.write_bytes(inputs.dicom(array=cv2.imread(str(jpeg), cv2.IMREAD_GRAYSCALE).astype("uint16") * 16, age="003Y"))
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(inputs.photo_like())
    browser.get(app_url.url)
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=file]"), what="the file input")
    screenshot(browser, "viewer_empty")
    show_every_case(browser)
    upload(browser, [jpeg, dcm, photo])
    wait_for(browser, lambda: results_shown(browser, 3) and "Download results (CSV)" in body_text(browser), what="all results")
    text = body_text(browser)
    assert "child_cxr.jpeg" in text and "study.dcm" in text and "holiday.jpg" in text
    assert "NORMAL" in text or "PNEUMONIA" in text
    assert "Not assessed" in text and "colour image" in text  # the photograph: a reason, no finding
    # The same pixels twice: both PNEUMONIA with their evidence maps, or both NORMAL with the map off; none for
    # the refused photograph
    maps, off = text.count("Grad-CAM: where the model found evidence"), text.count("Heatmap off.")
    assert (maps, off) in ((2, 0), (0, 2))
    # the charts draw after the text: wait for the figures themselves
    wait_for(browser, lambda: browser.execute_script(f"return {FILMS}.filter(c => c.dataset.draws).length") >= 3,
             timeout=30, what="the three zoomable radiographs")
    wait_for(browser, lambda: browser.execute_script(OVERLAID_FILMS) == maps, timeout=30,
             what="the heatmaps and their legends")
    assert "Doe^Jane" not in text and "ID-12345" not in text  # identifiers hidden by default
    assert text.count("Reader review") == 3 and "Case 1" in text  # each upload is a case with its review form
    time.sleep(1)
    screenshot(browser, "viewer_results", full_page=True)
    log = app_url.log_path.read_text(errors="replace")
    for secret in ("child_cxr", "study.dcm", "holiday", "Doe", "ID-12345"):
        assert secret not in log


@pytest.mark.parametrize("path, marker", [("dashboards", "Run a fresh evaluation"), ("training", "Run history"),
                                          ("experiments", "Experiments")])
def test_other_pages_render_in_the_browser(app_url, browser, path, marker):
    from selenium.webdriver.common.by import By

    browser.get(f"{app_url.url}/{path}")
    wait_for(browser, lambda: marker in body_text(browser), what=marker)
    time.sleep(2)
    assert "Traceback" not in body_text(browser)
    nav = browser.find_element(By.CSS_SELECTOR, "[data-testid=stSidebarNav]").text.splitlines()
    assert "Viewer" in nav and "app" not in nav  # the app's own navigation, not Streamlit's legacy page list
    screenshot(browser, path)


def test_uploaded_cases_survive_a_page_switch_and_an_app_restart(tiny_registry, tmp_path_factory, browser, tmp_path):
    """Upload, switch to the Worklist (in the same session), restart the server: the cases are still listed."""
    from selenium.webdriver.common.by import By

    env = _app_env(tiny_registry, tmp_path_factory)  # its own server and case database
    first = start_app(env)
    files = []
    for i in range(2):
        files.append(tmp_path / f"kept_{i}.png")
        files[-1].write_bytes(inputs.png_gray8(seed=100 + i))
    try:
        browser.get(first.url)
        wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=file]"), what="the file input")
        show_every_case(browser)
        upload(browser, files)
        wait_for(browser, lambda: "kept_1.png" in body_text(browser) and results_shown(browser, 2), what="both results")
        nav = browser.find_elements(By.CSS_SELECTOR, "[data-testid=stSidebarNav] a")
        next(a for a in nav if "Worklist" in a.text).click()  # a page switch inside the same session
        wait_for(browser, lambda: "case(s), most in need of a read first" in body_text(browser), what="the worklist")
        listed = body_text(browser)
        time.sleep(1)
        screenshot(browser, "worklist")
    finally:
        first.stop()
    restarted = start_app(env)
    try:
        browser.get(f"{restarted.url}/worklist")
        wait_for(browser, lambda: "case(s), most in need of a read first" in body_text(browser), what="the worklist after a restart")
        after = body_text(browser)
        count = lambda t: t.split(" case(s), most")[0].split()[-1]  # noqa: E731  "N of M case(s)" -> M
        assert count(after) == count(listed) and int(count(after)) >= 2
        assert "kept_0.png" not in after  # no file names in the stored cases
    finally:
        restarted.stop()
