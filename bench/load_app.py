"""Load test: N concurrent browser sessions upload and predict at once against the running app.

    python bench/load_app.py [--sessions 8] [--rounds 2]

Bounded: sessions x rounds uploads in all, each with a timeout; loopback only. Prints errors,
p50/p95 upload-to-result latency, how many times the server loaded the model, and whether every
P(pneumonia) shown equals the CLI's for the same file (to the 3 decimals the app shows).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from _common import ROOT, emit, pct, sample_images, use_temporary_home

from testkit.harness import body_text, make_browser, results_shown, start_app, upload, wait_for


def cli_probabilities(files: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "cxr_core", "predict", *files, "--json"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return {os.path.basename(r["file"]): r["pneumonia_probability"] for r in map(json.loads, out.stdout.splitlines())}


def session(url: str, files: list[str], rounds: int) -> list[tuple[str, float, str | None, float | None]]:
    """One browser: upload a file per round, wait for its result; (file, latency, error, shown P)."""
    results = []
    driver = make_browser()
    try:
        for r in range(rounds):
            f = files[r % len(files)]
            driver.get(url)
            try:
                wait_for(driver, lambda: driver.find_elements("css selector", "input[type=file]"), timeout=120, what="viewer")
                t = time.perf_counter()
                upload(driver, [f])
                wait_for(driver, lambda: results_shown(driver, 1), timeout=180, what="result")
                latency = time.perf_counter() - t
                text = body_text(driver)
                m = re.search(r"P\(pneumonia\)\s*\n?\s*([01]\.\d{3})", text)
                err = "Traceback" if "Traceback" in text else None
                results.append((os.path.basename(f), latency, err, float(m.group(1)) if m else None))
            except AssertionError as exc:
                results.append((os.path.basename(f), float("nan"), f"timeout: {str(exc)[:80]}", None))
    finally:
        driver.quit()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    use_temporary_home("cxr_bench_load_")
    if not (1 <= args.sessions <= 16 and 1 <= args.rounds <= 10):
        sys.exit("--sessions must be 1..16 and --rounds 1..10 (a bounded load test)")
    folder, kind = sample_images(args.sessions * args.rounds)
    files = [str(p) for p in sorted(folder.glob("*.jpeg"))]
    server = start_app()
    try:
        with ThreadPoolExecutor(args.sessions) as pool:
            chunks = [files[i::args.sessions] for i in range(args.sessions)]
            all_results = [r for rs in pool.map(lambda c: session(server.url, c, args.rounds), chunks) for r in rs]
        rss, peak = server.rss_mb()
    finally:
        server.stop()
    reference = cli_probabilities(files)
    lat = [r[1] for r in all_results if r[2] is None]
    errors = [r for r in all_results if r[2] is not None]
    mismatches = [r for r in all_results if r[3] is not None and abs(r[3] - reference[r[0]]) > 0.0015]
    unparsed = [r for r in all_results if r[2] is None and r[3] is None]
    loads = server.log_path.read_text(errors="replace").count("cxr: model loaded")
    emit("sessions", str(args.sessions))
    emit("uploads", str(len(all_results)))
    emit("errors", str(len(errors)))
    if lat:
        emit("upload_to_result_p50_s", pct(lat, 50), "s")
        emit("upload_to_result_p95_s", pct(lat, 95), "s")
    emit("model_loads_in_server", str(loads))
    emit("predictions_differing_from_cli", str(len(mismatches)))
    emit("predictions_not_parsed", str(len(unparsed)))
    emit("server_peak_resident_memory_mb", peak, "MB")
    emit("images", kind)


if __name__ == "__main__":
    main()
