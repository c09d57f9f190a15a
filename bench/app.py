"""App timings with a real headless browser: start to first render, upload to result, the server's CPU per rerun
of the Viewer with a model loaded (a page reload: one script run), memory.

    python bench/app.py [--image FILE] [--reruns 20]

Needs Debian chromium + chromium-driver. Uses the active model of assets/models (or $CXR_REGISTRY).
"""

from __future__ import annotations

import argparse
import time

from _common import emit, pct, sample_images, use_temporary_home

from testkit.harness import make_browser, results_shown, start_app, upload, wait_for


def viewer_shown(browser) -> list:
    return browser.find_elements("css selector", "input[type=file]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", help="image to upload (default: a sample 224-px JPEG)")
    ap.add_argument("--reruns", type=int, default=20, help="page reloads timed for the server's CPU per rerun")
    args = ap.parse_args()
    use_temporary_home("cxr_bench_app_")
    folder, kind = sample_images(3)
    image = args.image or str(sorted(folder.glob("*.jpeg"))[0])
    t0 = time.perf_counter()
    server = start_app()
    browser = make_browser()
    try:
        emit("server_health_ok_s", server.ready_s, "s")
        browser.get(server.url)
        wait_for(browser, lambda: viewer_shown(browser), what="viewer")
        emit("streamlit_run_to_viewer_first_render_s", time.perf_counter() - t0, "s")
        t = time.perf_counter()
        upload(browser, [image])
        wait_for(browser, lambda: results_shown(browser, 1), timeout=120, what="first result")
        emit("first_upload_to_result_shown_s (model load included)", time.perf_counter() - t, "s")
        browser.get(server.url)
        wait_for(browser, lambda: viewer_shown(browser), what="viewer")
        t = time.perf_counter()
        upload(browser, [str(sorted(folder.glob("*.jpeg"))[1])])
        wait_for(browser, lambda: results_shown(browser, 1), timeout=60, what="second result")
        emit("warm_upload_to_result_shown_s", time.perf_counter() - t, "s")
        per_rerun = []
        for _ in range(args.reruns):
            cpu = server.cpu_s()
            browser.get(server.url)
            wait_for(browser, lambda: viewer_shown(browser), what="viewer")
            time.sleep(0.5)  # the run's end (Streamlit's collection after it) lands in this rerun's figure
            per_rerun.append(server.cpu_s() - cpu)
        emit("server_cpu_per_viewer_rerun_p50_s", pct(per_rerun, 50), "s")
        emit("server_cpu_per_viewer_rerun_p95_s", pct(per_rerun, 95), "s")
        rss, peak = server.rss_mb()
        emit("app_resident_memory_mb", rss, "MB")
        emit("app_peak_resident_memory_mb", peak, "MB")
        emit("images", kind)
    finally:
        browser.quit()
        server.stop()


if __name__ == "__main__":
    main()
