"""Run the app for tests and benchmarks: a Streamlit server on a free loopback port and headless
Debian chromium drivers. Used by tests/test_browser.py, bench/app.py and bench/load_app.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    proc: subprocess.Popen
    url: str
    log_path: Path
    started: float
    ready_s: float

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        kb = lambda k: float(fields.get(k, "0 kB").split()[0]) / 1024  # noqa: E731
        return kb("VmRSS"), kb("VmHWM")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_app(env: dict[str, str] | None = None, log_path: Path | None = None, timeout: float = 90) -> AppServer:
    """`streamlit run app.py` on 127.0.0.1:<free port>; returns once /_stcore/health answers."""
    port = free_port()
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"cxr_app_{port}.log"
    started = time.perf_counter()
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=PROJECT_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < timeout:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return AppServer(proc, url, log_path, started, time.perf_counter() - started)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"the app did not start; see {log_path}")


def make_browser(width: int = 1280, height: int = 800) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    return driver


def body_text(driver: Any) -> str:
    return driver.find_element("tag name", "body").text


def wait_for(driver: Any, predicate: Callable[[], Any], timeout: float = 90, what: str = "condition") -> float:
    """Poll until predicate() is truthy; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if predicate():
                return time.perf_counter() - t0
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; page text: {body_text(driver)[:1500]}")


def upload(driver: Any, paths: list[Path]) -> None:
    driver.find_element("css selector", "input[type=file]").send_keys("\n".join(str(p) for p in paths))


def results_shown(driver: Any, n: int) -> bool:
    return body_text(driver).count("Download PDF report") >= n
