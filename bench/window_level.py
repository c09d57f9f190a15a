"""Window/level in a real headless browser: how long one film takes to redraw after a slider step, and whether
the step reran that film's fragment only (issue 35, item 8: "within 0.3 s for one 224-px film").

    python bench/window_level.py [--image FILE] [--steps 30] [--save]

Opens one film (default: assets/samples/normal-1.jpeg, 224 px) in the Viewer on the shipped model, then presses
the Level slider's arrow key `--steps` times. Each step is timed in the browser's own clock, from the key press to
the moment Plotly swaps the film's pixels (the figure's <image> gets its new data). Every element the step greys
out (Streamlit's data-stale) is recorded: a fragment rerun greys out nothing outside the film's own fragment.
Also the server's part alone: building and serialising the figure for one step (radiograph_figure + to_json).
Needs Debian chromium + chromium-driver.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import ROOT, emit, pct, use_temporary_home

from tests.harness import make_browser, results_shown, start_app, upload, wait_for

# In the page: note the time of each key press (capture phase, before the slider sees it), of each change of the
# film's pixels, the start of each rerun of the film's fragment (its elements marked stale), and every visible
# element outside the film's fragment (when the film was first drawn) marked stale.
INSTRUMENT = """
const film = arguments[0];
window.__wl = {keys: [], draws: [], stale: [], starts: []};
const outside = new Set([...document.querySelectorAll('[data-testid=stElementContainer]')].filter(e => !film.contains(e) && e.getBoundingClientRect().height > 0));
document.addEventListener('keydown', () => window.__wl.keys.push(performance.now()), true);
new MutationObserver(records => {
  for (const r of records) {
    if (r.target.getAttribute('data-stale') === 'true' && film.contains(r.target)) window.__wl.starts.push(performance.now());
    if (r.target.getAttribute('data-stale') === 'true' && outside.has(r.target)) {
      window.__wl.stale.push((r.target.innerText || r.target.innerHTML.replace(/class="[^"]*"/g, '')).slice(0, 80));
    }
  }
}).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['data-stale']});
let last = null;
const watch = () => {
  const img = document.querySelector('.js-plotly-plot image');
  const href = img && (img.getAttribute('href') || img.getAttribute('xlink:href'));
  if (href && last !== null && href !== last) window.__wl.draws.push(performance.now());
  if (href) last = href;
  requestAnimationFrame(watch);
};
requestAnimationFrame(watch);
"""


def film_fragment(browser):
    """The film's fragment: the smallest block holding both the radiograph and its Level slider."""
    return browser.execute_script("""
        const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => p.getBoundingClientRect().height > 300);
        let node = plot;
        while (node && !node.querySelector('[data-testid=stSlider]')) node = node.parentElement;
        return node;""")


def step_level(browser, key: str) -> None:
    """Press `key` on the Level slider (its keyboard input: react-aria's hidden range input), as a reader would."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.execute_script("document.querySelector(\"input[type=range][aria-label='Level (brightness)']\").focus()")
    ActionChains(browser).send_keys(key).perform()


def server_side(image: Path, steps: int) -> list[float]:
    """Seconds to build and serialise the film's figure for one window/level step (the fragment's own work)."""
    from cxr_app.radiograph import radiograph_figure
    from cxr_core.inputs.imaging import load_image

    pixels = load_image(image.read_bytes()).pixels
    times = []
    for i in range(steps):
        t = time.perf_counter()
        radiograph_figure(pixels, None, level=0.5 + 0.01 * (i % 20), width=1.0, height=380).to_json()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    from selenium.webdriver.common.keys import Keys

    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=str(ROOT / "assets" / "samples" / "normal-1.jpeg"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--verbose", action="store_true", help="print what each step greyed out beyond the film")
    args = ap.parse_args()
    image = Path(args.image)
    use_temporary_home("cxr_bench_wl_")
    server = start_app()
    browser = make_browser(1280, 800)
    try:
        browser.get(server.url)
        upload(browser, [image])
        wait_for(browser, lambda: results_shown(browser, 1), timeout=120, what="the result")
        wait_for(browser, lambda: film_fragment(browser) is not None, timeout=30, what="the film and its sliders")
        time.sleep(2)
        browser.execute_script(INSTRUMENT, film_fragment(browser))
        latencies, to_start, whole_page = [], [], 0
        for i in range(args.steps):
            keys_before = browser.execute_script("return window.__wl.draws.length")
            stale_before = browser.execute_script("return window.__wl.stale.length")
            step_level(browser, Keys.ARROW_RIGHT if i % 2 == 0 else Keys.ARROW_LEFT)
            wait_for(browser, lambda: browser.execute_script("return window.__wl.draws.length") > keys_before,
                     timeout=30, what="the film's redraw")
            time.sleep(0.4)  # let the rerun finish before the next step
            wl = browser.execute_script("return window.__wl")
            latencies.append((wl["draws"][keys_before] - wl["keys"][-1]) / 1000)
            began = [t for t in wl["starts"] if t >= wl["keys"][-1]]
            if began:
                to_start.append((began[0] - wl["keys"][-1]) / 1000)
            outside = wl["stale"][stale_before:]
            whole_page += bool(outside)
            if outside and args.verbose:
                print("greyed out beyond the film:", outside[:8])
        server_times = server_side(image, args.steps)
        emit("film", f"{image.name} ({image.stat().st_size} bytes, 224 px), shipped model, 1280 x 800")
        emit("steps", args.steps)
        emit("window_level_key_to_redraw_p50_s", pct(latencies, 50), "s")
        emit("window_level_key_to_redraw_p95_s", pct(latencies, 95), "s")
        emit("window_level_key_to_redraw_max_s", max(latencies), "s")
        if to_start:
            emit("window_level_key_to_fragment_rerun_start_p50_s", pct(to_start, 50), "s")
        emit("window_level_steps_that_greyed_out_more_than_the_film", whole_page)
        emit("server_figure_build_and_serialise_p50_s", pct(server_times, 50), "s")
        emit("server_figure_build_and_serialise_p95_s", pct(server_times, 95), "s")
        emit("target", "key to redraw <= 0.3 s for one 224-px film")
    finally:
        browser.quit()
        server.stop()


if __name__ == "__main__":
    main()
