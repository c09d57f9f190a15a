"""Several workstations, one worklist, tested as a deployment runs: PostgreSQL on loopback, two app servers
(`streamlit run`, two CXR_HOME folders, one CXR_DATABASE_URL) driven by Debian's chromium, and the DICOM
listener as a third writer. Skips, saying why, where chromium or PostgreSQL is missing; .ci/run installs both."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pydicom
import pytest

from cxr_core.cases.store import CaseStore
from testkit import inputs
from testkit.reviews import own_label
from tests.conftest import PROJECT_ROOT, cli_env, run_cli
from tests.system.test_browser import screenshot
from testkit.harness import (CHROMEDRIVER, CHROMIUM, FILM_STATES, OVERLAID_FILMS, body_text, c_store, free_port,
                             make_browser, results_shown, sign_in, start_app, tick_row, upload, wait_for)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")

REFRESH_S = 2


def _select_first_row(browser, selected: str, tries: int = 3) -> None:
    """Tick the worklist table's first row until the page says `selected`: a click that lands while the grid
    redraws (the worklist refreshes itself) is lost."""
    from selenium.common.exceptions import WebDriverException

    for attempt in range(tries):
        try:
            tick_row(browser, 0)
            wait_for(browser, lambda: selected in body_text(browser), timeout=10, what="the selected row")
            return
        except (AssertionError, WebDriverException):  # lost, or the grid was redrawn under the pointer
            if attempt == tries - 1:
                raise


def test_two_workstations_and_the_listener_share_one_worklist_on_postgresql(tiny_registry, tiny_data, postgres_url,
                                                                             tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from cxr_core.cases.store import CaseStore

    common = {"CXR_REGISTRY": str(tiny_registry.root), "CXR_DATABASE_URL": postgres_url,
              "CXR_WORKLIST_REFRESH_S": str(REFRESH_S)}
    homes = {name: tmp_path / f"workstation-{name}" for name in ("a", "b", "listener")}
    servers, browsers, listener = [], [], None
    try:
        servers = [start_app({**common, "CXR_HOME": str(homes[n])}, log_path=tmp_path / f"app-{n}.log") for n in "ab"]
        browser_a, browser_b = browsers = [make_browser(), make_browser()]
        # B's worklist is open and empty before anything is stored.
        browser_b.get(f"{servers[1].url}/worklist")
        sign_in(browser_b, "Dr B")
        wait_for(browser_b, lambda: "No case yet" in body_text(browser_b), what="B's empty worklist")

        # A reader on workstation A uploads a film in the Viewer.
        film = tmp_path / "film.png"
        film.write_bytes(sorted((tiny_data / "PNEUMONIA").iterdir())[0].read_bytes())
        browser_a.get(servers[0].url)
        sign_in(browser_a, "Dr A")
        upload(browser_a, [film])
        wait_for(browser_a, lambda: results_shown(browser_a, 1), what="A's result")

        # B sees it appear without reloading, within the refresh interval (plus a Streamlit round trip).
        waited = wait_for(browser_b, lambda: "1 of 1 case(s)" in body_text(browser_b), timeout=REFRESH_S + 15,
                          what="the case on B's worklist")
        assert waited <= REFRESH_S + 15
        _select_first_row(browser_b, "Selected: case 1 (")
        link = "//a[.//p[text()='Open in the Viewer']]"  # drawn just after the caption that names the selection
        wait_for(browser_b, lambda: browser_b.find_elements(By.XPATH, link), timeout=30, what="the link to the Viewer")
        browser_b.find_element(By.XPATH, link).click()
        # the image, and the reader's name kept across the page switch
        wait_for(browser_b, lambda: all(t in body_text(browser_b) for t in ("Reader review", "Reader: Dr B")),
                 what="case 1 in B's Viewer")
        text = body_text(browser_b)
        assert "not in the case database" not in text and "Traceback" not in text
        if "Heatmap off." in text:  # a NORMAL result: its heatmap is asked for
            toggle = browser_b.find_element(By.XPATH, "//label[.//p[text()='Show the heatmap']]")
            browser_b.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
            toggle.click()
        wait_for(browser_b, lambda: "Grad-CAM: where the model found evidence" in body_text(browser_b),
                 what="the heatmap from the database")
        # the film draws after its caption: wait for the overlay and its legend themselves
        try:
            wait_for(browser_b, lambda: browser_b.execute_script(OVERLAID_FILMS) == 1, timeout=30,
                     what="the heatmap and its legend")
        except AssertionError as exc:
            screenshot(browser_b, "deployment-b-no-overlay")
            components = browser_b.execute_script(
                "return [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')].map(e => !!e.shadowRoot)")
            raise AssertionError(f"{exc}\nfilms: {browser_b.execute_script(FILM_STATES)}; components: {components}; "
                                 f"console: {[e['message'][:400] for e in browser_b.get_log('browser')][-15:]}") from None
        browser_b.find_element(By.XPATH, "//label[.//p[text()='Agree']]").click()
        agreed = own_label(CaseStore.open(postgres_url).get(1))  # an agreement records the model's own label
        final = "//div[@data-testid='stSelectbox'][.//p[text()='Final label']]"
        wait_for(browser_b, lambda: browser_b.find_elements(By.XPATH, final + "//input"), what="the final-label box")
        field = browser_b.find_element(By.XPATH, final + "//input")
        field.click()
        field.send_keys(agreed)
        wait_for(browser_b, lambda: [o.text for o in browser_b.find_elements(By.CSS_SELECTOR, "[role=option]")]
                 == [agreed], what=f"the {agreed} option alone")
        field.send_keys(Keys.ENTER)
        wait_for(browser_b, lambda: not browser_b.find_elements(By.CSS_SELECTOR, "[role=option]"),
                 what="the option chosen (the list closed)")
        browser_b.find_element(By.XPATH, "//button[.//p[text()='Save review']]").click()
        wait_for(browser_b, lambda: "Case 1: review saved." in body_text(browser_b), what="B's saved review")

        # The DICOM listener (a third CXR_HOME) stores a case: B's worklist shows it within the interval.
        port = free_port()
        listener = subprocess.Popen([sys.executable, "-m", "cxr_core", "listen", "--port", str(port), "--aet", "CXRAI",
                                     "--address", "127.0.0.1"], cwd=PROJECT_ROOT,
                                    env={**os.environ, **common, "CXR_HOME": str(homes["listener"]),
                                         "TF_CPP_MIN_LOG_LEVEL": "3"},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        next(a for a in browser_b.find_elements(By.CSS_SELECTOR, "[data-testid=stSidebarNav] a")
             if "Worklist" in a.text).click()  # back to the Worklist, in the same session
        wait_for(browser_b, lambda: "1 of 1 case(s)" in body_text(browser_b), what="B's worklist again")
        img = cv2.imread(str(sorted((tiny_data / "NORMAL").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
        ds = pydicom.dcmread(io.BytesIO(inputs.dicom(array=img.astype("uint16") * 16, age="004Y")))
        assert c_store(port, ds) == 0x0000
        stored_at = time.perf_counter()
        wait_for(browser_b, lambda: "2 of 2 case(s)" in body_text(browser_b), timeout=REFRESH_S + 15,
                 what="the listener's case on B's worklist")
        assert time.perf_counter() - stored_at <= REFRESH_S + 15
        time.sleep(1)
        browser_b.execute_script("window.scrollTo(0, 0)")
        screenshot(browser_b, "worklist_shared")
        # B exports the reviewed case for local validation from the app, too.
        box = browser_b.find_element(By.CSS_SELECTOR, "input[aria-label='Export to folder']")
        box.send_keys(str(tmp_path / "site-app") + "\n")
        time.sleep(0.5)
        browser_b.find_element(By.XPATH, "//button[.//p[text()='Export']]").click()
        wait_for(browser_b, lambda: "Exported 0 NORMAL and 1 PNEUMONIA" in body_text(browser_b)
                 or "Exported 1 NORMAL and 0 PNEUMONIA" in body_text(browser_b), what="the export from B's app")
        assert len(list((tmp_path / "site-app").rglob("*.png"))) == 1
    finally:
        if listener is not None:
            listener.send_signal(signal.SIGTERM)
            listener.wait(timeout=30)
        for b in browsers:
            b.quit()
        for s in servers:
            s.stop()

    # The audit names both readers; B exports the case from the CLI though A made it.
    store = CaseStore.open(postgres_url)
    audit = store.audit()
    assert ("Dr A", "create", 1) in {(e["actor"], e["action"], e["case_id"]) for e in audit}
    assert ("Dr B", "review", 1) in {(e["actor"], e["action"], e["case_id"]) for e in audit}
    assert ("Dr B", "export") in {(e["actor"], e["action"]) for e in audit}
    assert any(e["action"] == "create" and e["actor"].startswith("unsigned (listener, from MODALITY") for e in audit)
    env_b = cli_env(**common, CXR_HOME=str(homes["b"]))
    export = run_cli(["cases", "export", str(tmp_path / "site"), "--reviewed-only"], env=env_b)
    assert export.returncode == 0, export.stderr
    assert len(list((tmp_path / "site").rglob("*.png"))) == 1
    listed = run_cli(["cases", "list", "--json"], env=env_b)
    assert listed.returncode == 0 and sorted(json.loads(line)["case_id"] for line in listed.stdout.splitlines()) == [1, 2]
    assert not any((homes[n] / "images").exists() for n in homes)  # no workstation keeps pictures of its own
