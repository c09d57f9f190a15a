"""Retake the README's screenshots (docs/screenshots/*.png) from the current app in headless Debian chromium, at a
1280 x 800 page area: the shipped model, the four sample films of assets/samples, a throwaway $CXR_HOME.

    python docs/screenshots.py              # rewrite docs/screenshots/
    python docs/screenshots.py --out DIR    # somewhere else

Needs Debian chromium + chromium-driver. The tests take their own screenshots into a temp folder, never here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.harness import (FILM_CANVAS, READER_BOX, body_text, make_browser, results_shown,  # noqa: E402
                             start_app, upload, wait_for)


def page_area(browser, width: int = 1280, height: int = 800) -> None:
    """The page area (not the window) at width x height, as a reader's screen shows it."""
    for _ in range(5):
        time.sleep(0.3)
        bars = browser.execute_script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
        browser.set_window_size(width + bars[0], height + bars[1])
        time.sleep(0.3)
        if browser.execute_script("return [window.innerWidth, window.innerHeight]") == [width, height]:
            return
    raise RuntimeError("could not set a 1280 x 800 page area")


def nav(browser, page: str) -> None:
    from selenium.webdriver.common.by import By

    next(a for a in browser.find_elements(By.CSS_SELECTOR, "[data-testid=stSidebarNav] a") if page in a.text).click()


def settle(browser, seconds: float = 2.0) -> None:
    """Wait until the app has stopped running (its status widget gone), then a moment for the charts to draw."""
    wait_for(browser, lambda: not browser.find_elements("css selector", "[data-testid=stStatusWidget]"), timeout=60,
             what="the app to finish running")
    time.sleep(seconds)


def take(out: Path) -> list[Path]:
    from selenium.webdriver.common.by import By

    films = sorted((ROOT / "assets" / "samples").glob("*.jpeg"))
    if len(films) != 4:
        raise SystemExit(f"expected the four sample films in assets/samples, found {len(films)}")
    os.environ["CXR_HOME"] = tempfile.mkdtemp(prefix="cxr-screenshots-home-")  # never a user's cases
    for name in ("CXR_DATABASE_URL", "CXR_REGISTRY", "CXR_RUNS_DIR"):  # the shipped model, a fresh database
        os.environ.pop(name, None)
    out.mkdir(parents=True, exist_ok=True)
    server, browser = start_app(), make_browser()
    shots = []

    def shot(name: str) -> None:
        shots.append(out / f"{name}.png")
        browser.save_screenshot(str(shots[-1]))

    try:
        browser.get(server.url)
        page_area(browser)
        wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, READER_BOX), what="the reader's name box")
        browser.find_element(By.CSS_SELECTOR, READER_BOX).send_keys("Dr A. Smith\n")
        time.sleep(1.5)
        upload(browser, films)
        wait_for(browser, lambda: results_shown(browser, 1) and "of 4" in body_text(browser), timeout=180,
                 what="the four sample films analysed")
        wait_for(browser, lambda: browser.execute_script(f"return {FILM_CANVAS}.dataset.draws"), timeout=60,
                 what="the film")
        settle(browser, 1)
        browser.get(f"{server.url}/?case=1")  # the stored first film (bacterial), laid out as with results on screen
        wait_for(browser, lambda: results_shown(browser, 1), timeout=60, what="case 1")
        wait_for(browser, lambda: browser.execute_script(f"return {FILM_CANVAS}.dataset.draws"), timeout=60,
                 what="its film")
        settle(browser, 3)
        shot("viewer_results")
        for page, ready, name in (("Worklist", "case(s), most in need of a read first", "worklist"),
                                  ("Dashboards", "Run a fresh evaluation", "dashboards"),
                                  ("Training", "Run history", "training")):
            nav(browser, page)
            wait_for(browser, lambda: ready in body_text(browser), timeout=90, what=page)
            settle(browser, 3)
            if "Traceback" in body_text(browser):
                raise SystemExit(f"the {page} page shows a traceback")
            shot(name)
    finally:
        browser.quit()
        server.stop()
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args(argv)
    for path in take(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
