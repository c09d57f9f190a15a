"""Window/level in a real headless browser: how long one film takes to redraw after a Level key press, and that
the step reruns nothing and keeps the reader's zoom (issue 35, item 8: "within 0.3 s for one 224-px film").

    python bench/window_level.py [--image FILE] [--steps 30] [--save]

Opens one film (default: assets/samples/normal-1.jpeg, 224 px) in the Viewer on the shipped model, zooms it with
the mouse wheel, then presses the Level control's arrow key `--steps` times. The film is the canvas component of
cxr_app/film_component.py, which windows the film in the browser: each step is timed in the browser's own clock,
from the key press to the canvas's next drawn frame (its data-drawn-at, set by the component after drawing).
Every element Streamlit greys out (data-stale: a script or fragment rerun) is counted, and the zoom compared after
the steps. Also the server's part, once per film: building what the component is sent (radiograph.film_data).
Needs Debian chromium + chromium-driver.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import ROOT, emit, pct, use_temporary_home

from testkit.harness import FILM_CANVAS, film_control, make_browser, results_shown, start_app, upload, wait_for

# In the page: note the time of each key press (capture phase, before the control sees it) and every element
# Streamlit greys out for a rerun.
INSTRUMENT = """
window.__wl = {keys: [], stale: 0};
document.addEventListener('keydown', () => window.__wl.keys.push(performance.now()), true);
new MutationObserver(records => {
  for (const r of records) if (r.target.getAttribute('data-stale') === 'true') window.__wl.stale += 1;
}).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['data-stale']});
"""


def canvas_state(browser) -> dict:
    return browser.execute_script(f"return Object.assign({{}}, ({FILM_CANVAS}).dataset)")


def server_side(image: Path, steps: int) -> list[float]:
    """Seconds to build what the film component is sent for this film (once per film, not per step)."""
    from cxr_app.radiograph import film_data
    from cxr_core.inputs.imaging import load_image

    pixels = load_image(image.read_bytes()).pixels
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        film_data(pixels, None)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    import cv2
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(ROOT / "assets" / "samples" / "normal-1.jpeg"))
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    image = Path(args.image)
    use_temporary_home("cxr_bench_wl_")
    server = start_app()
    browser = make_browser(1280, 800)
    try:
        browser.get(server.url)
        upload(browser, [image])
        wait_for(browser, lambda: results_shown(browser, 1), timeout=120, what="the result")
        wait_for(browser, lambda: int(canvas_state(browser).get("draws", 0)) > 0, timeout=30, what="the film drawn")
        time.sleep(2)
        canvas = browser.execute_script(f"return {FILM_CANVAS}")
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300).perform()
        wait_for(browser, lambda: float(canvas_state(browser)["zoom"]) > 1, timeout=10, what="the film zoomed")
        zoomed = canvas_state(browser)
        browser.execute_script(INSTRUMENT)
        browser.execute_script(f"{film_control('level')}.focus()")
        latencies = []
        for i in range(args.steps):
            draws = int(canvas_state(browser)["draws"])
            ActionChains(browser).send_keys(Keys.ARROW_RIGHT if i % 2 == 0 else Keys.ARROW_LEFT).perform()
            wait_for(browser, lambda: int(canvas_state(browser)["draws"]) > draws, timeout=30, what="the film's redraw")
            pressed = browser.execute_script("return window.__wl.keys")[-1]
            latencies.append((float(canvas_state(browser)["drawnAt"]) - pressed) / 1000)
            time.sleep(0.1)
        time.sleep(1)
        after = canvas_state(browser)
        stale = browser.execute_script("return window.__wl.stale")
        server_times = server_side(image, args.steps)
        h, w = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).shape
        emit("film", f"{image.name} ({image.stat().st_size} bytes, {w} x {h} px), shipped model, 1280 x 800, "
                     "canvas component (cxr_app/film_component.py)")
        emit("steps", args.steps)
        emit("window_level_key_to_redraw_p50_s", pct(latencies, 50), "s")
        emit("window_level_key_to_redraw_p95_s", pct(latencies, 95), "s")
        emit("window_level_key_to_redraw_max_s", max(latencies), "s")
        emit("window_level_elements_greyed_out_by_a_rerun", stale)
        kept = "kept" if zoomed["transform"] == after["transform"] else "LOST"
        emit("zoom_before_and_after_the_steps", f"{zoomed['zoom']} / {after['zoom']} ({kept})")
        emit("server_film_data_once_per_film_p50_s", pct(server_times, 50), "s")
        emit("target", "key to redraw <= 0.3 s for one 224-px film")
    finally:
        browser.quit()
        server.stop()


if __name__ == "__main__":
    main()
